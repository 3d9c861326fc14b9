"""Side-by-side CPU/GPU-free speed benchmark: molequi vs MACE vs NequIP, energy + forces and training.

Every case (model, dtype, system, task) runs in its own subprocess so that peak memory is per case;
MACE and NequIP run with the python of their own virtual environments (they cannot share one with
molequi: MACE pins e3nn 0.4.4, NequIP needs e3nn 0.6). All sides get the same structures (written
here to extxyz files), the same thread count and the same protocol (``benchmarks/peers/_harness.py``):
``--warmup`` untimed calls, then the median wall time of ``--repeats`` calls.

Systems:
    aspirin32  32 aspirin molecules (672 atoms) as one batch: real rMD17 frames from
               ``--aspirin-xyz`` when present, else rattled copies of one built-in aspirin geometry.
    water648   216 water molecules at 1 g/cm^3 (periodic cube of 18.6 A, random orientations, rattled).
    water5184  the same box repeated 2 x 2 x 2 (1728 molecules, 37.3 A) and rattled again, so that the
               time ratio to water648 measures how cost grows with atoms at constant density.
Tasks: ``forces`` (energy + forces by autograd, inference mode) on every system, ``train`` (one
optimiser step on an energy + forces loss, forces kept differentiable) on aspirin32.

Typical use (prints a markdown table; ``--json`` keeps everything)::

    python benchmarks/model_speed.py --json /tmp/model_speed.json
    python benchmarks/model_speed.py --sides molequi,nequip --systems aspirin32 --dtypes float32
    python benchmarks/model_speed.py --quick --sides molequi          # seconds: smoke test

The peers' venvs (created once; torch==2.13.0 named in the same pip call picks the CPU wheel)::

    python3 -m venv /work/venv-mace && /work/venv-mace/bin/pip install torch==2.13.0 mace-torch
    python3 -m venv /work/venv-nequip && /work/venv-nequip/bin/pip install torch==2.13.0 nequip
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
RESULT_PREFIX = "MODEL_SPEED_RESULT "
DEFAULT_ASPIRIN = Path("/work/shared/data/rmd17/aspirin_train_1200_macejax.xyz")
WATER_DENSITY = 1.0  # g/cm^3

#: The models compared, with every option that differs from the worker's defaults. The workers'
#: ``DEFAULTS`` dictionaries (benchmarks/peers/*_worker.py) hold the complete configurations; each
#: result records the configuration it ran with.
SIDES: dict[str, dict[str, Any]] = {
    # molequi's default EquivariantPotential: 3 layers, 32x0e+32x1o+32x2e, sh up to l=2, radial MLP 64x64
    "molequi": {"worker": "molequi_worker.py", "python": None, "config": {}},
    # the same, NequIP-shaped: 4 layers, features and sh up to l=1 (optional side)
    "molequi-l1": {
        "worker": "molequi_worker.py",
        "python": None,
        "config": {"num_layers": 4, "hidden_irreps": "32x0e+32x1o", "lmax": 1},
    },
    # molequi with torch.compile of the fused edge kernels (optional side; inference only)
    "molequi-compile": {"worker": "molequi_worker.py", "python": None, "config": {"compile": True}},
    # molequi's convolution paths before the C++ kernel (optional sides, for before/after tables):
    # fused PyTorch operations, and the reference e3nn TensorProduct with PyG propagate
    "molequi-pytorch": {"worker": "molequi_worker.py", "python": None, "config": {"path": "pytorch"}},
    "molequi-e3nn": {"worker": "molequi_worker.py", "python": None, "config": {"path": "e3nn"}},
    # molequi's NBodyNetwork with its defaults (optional side; fragment hierarchy off for periodic boxes)
    "molequi-nbody": {"worker": "molequi_worker.py", "python": None, "config": {"model": "NBodyNetwork"}},
    # MACE 0.3.x: 64x0e+64x1o, max_ell 3, correlation 3, 2 interactions (issue 7's reference model)
    "mace": {"worker": "mace_worker.py", "python": "/work/venv-mace/bin/python", "config": {}},
    # NequIP 0.19 NequIPGNNModel defaults: 4 layers, l_max 1, parity, 32 features
    "nequip": {"worker": "nequip_worker.py", "python": "/work/venv-nequip/bin/python", "config": {}},
}
DEFAULT_SIDES = "molequi,mace,nequip"

ASPIRIN = [  # frame 0 of rMD17 aspirin (A), used when the data file is absent
    ("C", 2.13746084, -1.09794747, -0.19298651), ("C", 0.88132331, 1.10003051, -1.52512707),
    ("C", 2.72852366, -0.64495417, -1.35901235), ("C", 2.05045871, 0.43181448, -1.97927324),
    ("C", -3.13430958, 1.30858248, 0.61286686), ("C", 0.85659345, -0.60175359, 0.23576132),
    ("C", 0.33428615, 0.53085801, -0.36410058), ("O", -1.11545171, -1.12233611, 1.67749151),
    ("O", -2.23926079, 0.60416411, -1.57045411), ("O", 1.12675979, -1.50115125, 2.40810773),
    ("C", 0.12721811, -1.13662842, 1.50227315), ("C", -2.01019625, 1.07060160, -0.43521139),
    ("O", -0.74212037, 1.18419089, 0.13712028), ("H", 0.81156629, -1.87947766, 3.20391466),
    ("H", 2.63882394, -1.86635266, 0.44709135), ("H", 0.45412871, 1.81052147, -2.19795815),
    ("H", 3.57241406, -1.09521715, -1.77938372), ("H", 2.41930137, 0.72935978, -2.92649836),
    ("H", -4.22328880, 1.12828799, 0.29903782), ("H", -2.94435616, 0.68785278, 1.50734667),
    ("H", -2.90374843, 2.29973565, 1.10954616),
]


# ----------------------------------------------------------------------------- structures
def aspirin_frames(count: int, path: Path, seed: int = 0) -> tuple[list, str]:
    """``count`` aspirin frames: the first ones of ``path`` (rMD17) or rattled built-in copies."""
    import ase.io
    from ase import Atoms

    if path.is_file():
        return ase.io.read(path, f":{count}"), f"rMD17 frames 0-{count - 1} of {path.name}"
    symbols = [s for s, *_ in ASPIRIN]
    positions = [xyz for _, *xyz in ASPIRIN]
    frames = []
    for i in range(count):
        atoms = Atoms(symbols, positions=positions)
        atoms.rattle(0.05, seed=seed + i)
        frames.append(atoms)
    return frames, f"{count} rattled copies of a built-in aspirin geometry ({path} absent)"


def water_box(molecules_per_side: int, seed: int = 0):
    """A periodic cube of ``n^3`` water molecules at 1 g/cm^3, randomly oriented on a grid, rattled by 0.05 A."""
    import numpy as np
    from ase import Atoms
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    count = molecules_per_side**3
    length = (count * 18.01528 / (0.602214076 * WATER_DENSITY)) ** (1.0 / 3.0)  # A
    spacing = length / molecules_per_side
    template = molecule("H2O")
    template.positions -= template.positions[0]  # O at the origin
    symbols, positions = [], []
    for index in np.ndindex(molecules_per_side, molecules_per_side, molecules_per_side):
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        rotation = q * np.sign(np.diag(r))
        positions.append(template.positions @ rotation.T + spacing * (np.array(index) + 0.5))
        symbols += list(template.get_chemical_symbols())
    atoms = Atoms(symbols, positions=np.concatenate(positions), cell=[length] * 3, pbc=True)
    atoms.rattle(0.05, seed=seed)
    atoms.wrap()
    return atoms


def write_systems(workdir: Path, names: list[str], quick: bool, aspirin_path: Path) -> dict[str, dict[str, Any]]:
    """Write the requested systems to ``workdir`` as extxyz; returns ``{name: {path, atoms, frames, source}}``."""
    import ase.io

    systems: dict[str, dict[str, Any]] = {}
    small = water_box(2 if quick else 6, seed=0)
    for name in names:
        if name == "aspirin32":
            frames, source = aspirin_frames(2 if quick else 32, aspirin_path)
        elif name == "water648":
            frames, source = [small], f"{len(small) // 3} water molecules, 1 g/cm^3, seed 0"
        elif name == "water5184":
            big = small.repeat((2, 2, 2))
            big.rattle(0.05, seed=1)
            big.wrap()
            frames, source = [big], f"water648 repeated 2x2x2 ({len(big) // 3} molecules), rattled (seed 1)"
        else:
            raise SystemExit(f"unknown system {name!r}; choose from aspirin32, water648, water5184")
        path = workdir / f"{name}.extxyz"
        ase.io.write(path, frames, format="extxyz")
        systems[name] = {"path": str(path), "atoms": sum(len(f) for f in frames), "frames": len(frames), "source": source}
    return systems


# ----------------------------------------------------------------------------- running workers
def side_python(name: str, args: argparse.Namespace) -> str | None:
    """The interpreter of a side, or None when it is not installed."""
    spec = SIDES[name]
    python = getattr(args, f"{name.split('-')[0]}_python", None) or spec["python"] or sys.executable
    if not Path(python).exists():
        return None
    module = {"molequi": "molequi", "mace": "mace", "nequip": "nequip"}[name.split("-")[0]]
    check = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True)
    return python if check.returncode == 0 else None


def run_case(python: str, side: str, system: dict[str, Any], dtype: str, task: str, args: argparse.Namespace) -> dict[str, Any]:
    large = system["atoms"] > 2000
    repeats = args.repeats_large if large else args.repeats
    warmup = args.warmup_large if large else args.warmup
    config = dict(SIDES[side]["config"])
    command = [
        python, str(PEERS / SIDES[side]["worker"]),
        "--structures", system["path"], "--dtype", dtype, "--task", task,
        "--repeats", str(repeats), "--warmup", str(warmup), "--threads", str(args.threads),
        "--config", json.dumps(config), "--mem-limit-gb", str(args.mem_limit_gb),
    ]
    env = dict(os.environ)
    if args.threads > 0:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    env.setdefault("PYTHONWARNINGS", "ignore")
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"side": side, "error": f"timed out after {args.timeout} s"}
    results = [json.loads(line[len(RESULT_PREFIX):]) for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not results:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        reason = "killed (out of memory?)" if proc.returncode in (-9, 137) else " | ".join(tail)
        return {"side": side, "error": f"exit {proc.returncode}: {reason}", "command": shlex.join(command)}
    result = results[-1]
    result["wall_s"] = time.perf_counter() - start
    result["command"] = shlex.join(command)
    result["repeats"], result["warmup"] = repeats, warmup
    return result


# ----------------------------------------------------------------------------- report
def fmt(value: float, digits: int = 0) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def markdown(rows: list[dict[str, Any]], header: dict[str, Any]) -> str:
    lines = [
        f"Host: {header['host']}; {header['cpus']} CPUs; threads per worker: {header['threads']}; "
        f"load average at start {header['load_start']}, at end {header['load_end']}",
        "",
        "| system | task | dtype | model | params | atoms | edges | median ms | min ms | CPU ms | atoms/s | "
        "peak RSS MB (+ during calls) | graph ms | x molequi time | threads | load (1 min) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    reference = {(r["system"], r["task"], r["dtype"]): r for r in rows if r.get("side") == "molequi" and "median_ms" in r}
    for r in rows:
        key = (r["system"], r["task"], r["dtype"])
        if "median_ms" not in r:
            lines.append(f"| {r['system']} | {r['task']} | {r['dtype']} | {r['side']} | | | | "
                         f"{r.get('error') or r.get('skipped')} | | | | | | | | |")
            continue
        ref = reference.get(key)
        ratio = r["median_ms"] / ref["median_ms"] if ref else None
        lines.append(
            f"| {r['system']} | {r['task']} | {r['dtype']} | {r['side']} | {fmt(r['params'])} | {r['atoms']} | "
            f"{fmt(r['edges'])} | {fmt(r['median_ms'])} | {fmt(r['min_ms'])} | {fmt(r['cpu_ms'])} | "
            f"{fmt(1000 * r['atoms'] / r['median_ms'])} | "
            f"{fmt(r['peak_rss_mb'])} (+{fmt(r['peak_rss_mb'] - r['base_rss_mb'])}) | {fmt(r['graph_ms'], 1)} | "
            f"{fmt(ratio, 2) if ratio else '-'} | {r['threads']} | {r['loadavg_start'][0]:.1f} |"
        )
    scaling = []
    for side in dict.fromkeys(r["side"] for r in rows):
        for dtype in dict.fromkeys(r["dtype"] for r in rows):
            pick = {r["system"]: r for r in rows if r["side"] == side and r["dtype"] == dtype and r["task"] == "forces"}
            small, big = pick.get("water648"), pick.get("water5184")
            if small and big and "median_ms" in small and "median_ms" in big:
                scaling.append(
                    f"| {side} | {dtype} | {big['median_ms'] / small['median_ms']:.2f} | "
                    f"{big['atoms'] / small['atoms']:.2f} | {big['edges'] / small['edges']:.2f} |"
                )
    if scaling:
        lines += ["", "Growth with system size (water5184 / water648, energy + forces):", "",
                  "| model | dtype | time ratio | atom ratio | edge ratio |", "|---|---|---:|---:|---:|", *scaling]
    lines += ["", "median / min ms: wall time per call; CPU ms: median CPU time of the process per call (all "
              "threads; with one thread it is the wall time minus time spent waiting for a busy CPU). "
              "'x molequi time': the model's median time / molequi's in the same row group "
              "(2.00 = molequi has twice the throughput)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sides", default=DEFAULT_SIDES, help=f"comma-separated, from {', '.join(SIDES)}")
    parser.add_argument("--systems", default="aspirin32,water648,water5184")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--tasks", default="forces,train", help="train runs on aspirin32 only")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats-large", type=int, default=5, help="timed calls for systems over 2,000 atoms")
    parser.add_argument("--warmup-large", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="threads per worker (0: torch's default, the core count)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per case")
    parser.add_argument("--mem-limit-gb", type=float, default=None,
                        help="address-space limit per worker (default: 80%% of the memory available at start)")
    parser.add_argument("--aspirin-xyz", type=Path, default=DEFAULT_ASPIRIN)
    parser.add_argument("--mace-python", default=None, help=f"default {SIDES['mace']['python']}")
    parser.add_argument("--nequip-python", default=None, help=f"default {SIDES['nequip']['python']}")
    parser.add_argument("--workdir", type=Path, default=None, help="where the extxyz inputs go (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write every result here")
    parser.add_argument("--quick", action="store_true",
                        help="tiny systems (2 molecules, 24/192 waters), 1 call, no warm-up: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = args.repeats_large = 1
        args.warmup = args.warmup_large = 0
    if args.mem_limit_gb is None:
        with open("/proc/meminfo") as meminfo:
            available = next(int(line.split()[1]) for line in meminfo if line.startswith("MemAvailable"))
        args.mem_limit_gb = round(0.8 * available / 2**20, 1)

    sides = [s for s in args.sides.split(",") if s]
    unknown = [s for s in sides if s not in SIDES]
    if unknown:
        parser.error(f"unknown side(s) {unknown}; choose from {list(SIDES)}")
    systems_wanted = [s for s in args.systems.split(",") if s]
    dtypes = [d for d in args.dtypes.split(",") if d]
    tasks = [t for t in args.tasks.split(",") if t]
    pythons = {side: side_python(side, args) for side in sides}
    for side, python in pythons.items():
        if python is None:
            print(f"# skipping {side}: its python / package is not installed", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="molequi-speed-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        systems = write_systems(workdir, systems_wanted, args.quick, args.aspirin_xyz)
        header = {
            "host": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "threads": args.threads or "default",
            "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "command": shlex.join([sys.executable, *sys.argv]),
            "systems": systems,
        }
        rows = []
        cases = [(name, task, dtype) for name in systems_wanted for task in tasks for dtype in dtypes
                 if task == "forces" or name == "aspirin32"]
        for name, task, dtype in cases:
            for side in sides:  # sides interleaved: a load change hits all of them alike
                if pythons[side] is None:
                    continue
                if task == "train" and side == "molequi-compile":
                    continue
                result = run_case(pythons[side], side, systems[name], dtype, task, args)
                result.update(side=side, system=name, task=task, dtype=dtype)
                rows.append(result)
                summary = (f"{result['median_ms']:.0f} ms (load {result['loadavg_start'][0]:.1f})"
                           if "median_ms" in result else result.get("error") or result.get("skipped"))
                print(f"# {name} {task} {dtype} {side}: {summary}", file=sys.stderr, flush=True)
        header["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(markdown(rows, header))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"header": header, "results": rows}, indent=1))
    return 0 if rows and all("median_ms" in r or "skipped" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
