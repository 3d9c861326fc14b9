#!/usr/bin/env bash
# The device check of issue 11, in one call of at most 10 minutes on a machine with a CUDA GPU:
#   1. the `cuda` tests (tests/cuda: symmetry, float64 finite differences, CPU/GPU agreement, a
#      training step and a trainer run, the calculator, torch.compile and a deployed package on the GPU);
#   2. the GPU speed table of benchmarks/deploy_speed.py on model_speed.py's systems (32 aspirin as
#      one batch, 648- and 5,184-atom water; energy + forces and an eager training step; float32 and
#      float64; molequi eager, then compiled).
# Every step has its own time limit and writes as it goes, so a step cut short still leaves its
# results; the script goes on to the next one and exits non-zero if any step failed.
#
# Usage, from anywhere (nothing is fetched; torch with CUDA must be installed):
#   OUT=/path/to/results CARRY=/path/to/wheels bash benchmarks/gpu_check.sh
# CARRY (default ./.carry, ignored by git) holds wheels of what the GPU machine lacks, installed into
# /tmp/molequi-site with --no-deps; molequi itself runs from this checkout. Made on a machine with pip:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .carry ase==3.29.0 e3nn==0.6.0
# MACE is not timed here: model_speed.py's workers (benchmarks/peers) time CPU calls and have no device option.
# OUT (default ./gpu_check_out) receives: env.json, pytest_cuda.log, pytest_cuda.xml, speed_eager.json,
# speed_compiled.json, speed.log and gpu_check.json (the exit status of every step).
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
OUT=${OUT:-$REPO/gpu_check_out}
CARRY=${CARRY:-$REPO/.carry}
PY=${PYTHON:-python3}
SITE=/tmp/molequi-site
mkdir -p "$OUT"
declare -A STATUS

if compgen -G "$CARRY/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$CARRY"/*.whl
    STATUS[install]=$?
else
    STATUS[install]=skipped
fi
# molequi from this checkout; the C++ kernel (CPU only) is not built: the CPU references run the fused PyTorch path
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MOLEQUI_FUSED_KERNEL=0

timeout 60 $PY - >"$OUT/env.json" <<'EOF'
import json, platform, torch
import e3nn, torch_geometric, ase
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "e3nn": e3nn.__version__, "torch_geometric": torch_geometric.__version__, "ase": ase.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
print(json.dumps(info, indent=1))
EOF
STATUS[env]=$?
cat "$OUT/env.json"

# 1. the cuda tests (about 3 minutes: two of them compile for the GPU)
timeout 270 $PY -m pytest -m cuda tests/cuda -q -p no:cacheprovider -rA --junitxml="$OUT/pytest_cuda.xml" 2>&1 | tee "$OUT/pytest_cuda.log"
STATUS[pytest_cuda]=${PIPESTATUS[0]}

# 2. speed: eager first (seconds), then compiled (inductor compiles one graph per dtype and batch shape)
SPEED=(benchmarks/deploy_speed.py --device cuda --systems aspirin32,water648,water5184 --dtypes float32,float64
       --tasks forces,train --train-systems aspirin32 --repeats 20 --repeats-large 10)
timeout 90 $PY "${SPEED[@]}" --forms eager --json "$OUT/speed_eager.json" 2>&1 | tee "$OUT/speed.log"
STATUS[speed_eager]=${PIPESTATUS[0]}
timeout 200 $PY "${SPEED[@]}" --forms compiled --tasks forces --json "$OUT/speed_compiled.json" 2>&1 | tee -a "$OUT/speed.log"
STATUS[speed_compiled]=${PIPESTATUS[0]}

failed=0
summary="{"
for step in install env pytest_cuda speed_eager speed_compiled; do
    summary+="\"$step\": \"${STATUS[$step]}\", "
    [[ ${STATUS[$step]} == 0 || ${STATUS[$step]} == skipped ]] || failed=1
done
echo "${summary%, }}" | tee "$OUT/gpu_check.json"
exit $failed
