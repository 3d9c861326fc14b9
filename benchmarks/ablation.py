"""Ablation at equal wall-clock: train variants of a molequi config side by side, print test errors.

Each variant is ``name:key=value;key=value`` (``--set`` overrides of the base config). Variants
run ``--parallel`` at a time (default 2, one thread each, so that on a 2-core machine each
process has a core: equal wall-clock is then equal CPU time), each with the same data, split,
seed and ``max_minutes``; the test errors come from the trainer's own test pass on model.pt
(the best EMA weights). One table (meV, meV/Å), the load average per run, and a JSON file.

Example (3BPA: 450 train / 50 validation from train_300K, 300 test frames of train_mixedT)::

    python benchmarks/ablation.py --minutes 4 \\
        --data ../shared/data/3bpa/train_300K.xyz --train-size 450 --val-size 50 \\
        --test-path ../shared/data/3bpa/train_mixedT.xyz --test-size 300 \\
        --variant "gate:" --variant "tp:model.nonlinearity=tensor_product;model.hidden_irreps=32x0e+32x1o+32x2e"
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from molequi.io import atomic_write_json  # noqa: E402


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``"name:a=1;b=2"`` -> ``("name", ["a=1", "b=2"])``."""
    name, _, rest = text.partition(":")
    if not name:
        raise ValueError(f"variant {text!r}: expected name:key=value;key=value")
    return name, [item.strip() for item in rest.split(";") if item.strip()]


def run_variant(name: str, overrides: list[str], args: argparse.Namespace) -> dict:
    """Train one variant in its own process (one thread) and read its metrics.json."""
    out = Path(args.workdir) / name
    settings = [
        f"data.path={args.data}", f"data.train_size={args.train_size}", f"data.val_size={args.val_size}",
        f"max_minutes={args.minutes}", f"budget_clock={args.clock}", f"output_dir={out}", "progress_bar=false", "plots=false", "tensorboard=false",
    ]  # fmt: skip
    if args.test_path:
        settings += [f"data.test_path={args.test_path}", f"data.test_size={args.test_size}"]
    if args.isolated_atoms:
        settings.append(f"data.isolated_atoms={args.isolated_atoms}")
    command = [sys.executable, "-m", "molequi.cli", "train", args.config, "--overwrite", "--threads", str(args.threads)]
    for item in settings + overrides:
        command += ["--set", item]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    log = out.with_suffix(".log")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as stream:
        code = subprocess.call(command, stdout=stream, stderr=subprocess.STDOUT, env=env, cwd=REPOSITORY)
    row = {"name": name, "overrides": overrides, "returncode": code, "wall_s": time.perf_counter() - start,
           "load_start": load_start, "load_end": os.getloadavg()[0], "log": str(log)}  # fmt: skip
    metrics_file = out / "metrics.json"
    if code == 0 and metrics_file.exists():
        metrics = json.loads(metrics_file.read_text())
        row.update({"epochs": metrics["epochs"], "best_epoch": metrics["best_epoch"], "test": metrics["test"]})
    return row


def table(rows: list[dict]) -> str:
    """Markdown table of the test errors in meV and meV/Å."""
    lines = [
        "| variant | epochs | E MAE (meV) | E RMSE (meV) | F MAE (meV/Å) | F RMSE (meV/Å) | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        test = row.get("test")
        if not test:
            lines.append(f"| {row['name']} | failed (exit {row['returncode']}, see {row['log']}) | | | | | |")
            continue
        lines.append(
            f"| {row['name']} | {row['epochs']} | {1000 * test['energy_mae']:.1f} | {1000 * test['energy_rmse']:.1f} | "
            f"{1000 * test['forces_mae']:.1f} | {1000 * test['forces_rmse']:.1f} | "
            f"{row['load_start']:.1f}-{row['load_end']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPOSITORY / "examples" / "configs" / "molecule.yaml"))
    parser.add_argument("--data", required=True, help="training file (train + validation frames are drawn from it)")
    parser.add_argument("--train-size", type=int, required=True)
    parser.add_argument("--val-size", type=int, required=True)
    parser.add_argument("--test-path", default=None)
    parser.add_argument("--test-size", type=int, default=300)
    parser.add_argument("--isolated-atoms", default=None, help="isolated-atom file for E0 (data.isolated_atoms)")
    parser.add_argument("--minutes", type=float, default=5.0, help="budget of every variant (minutes of --clock)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="budget in wall-clock or per-process CPU time")
    parser.add_argument("--variant", action="append", required=True, help="name:key=value;key=value (repeatable)")
    parser.add_argument("--parallel", type=int, default=2, help="variants trained at the same time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per variant")
    parser.add_argument("--workdir", default="/tmp/molequi-ablation")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    variants = [parse_variant(text) for text in args.variant]
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        rows = list(pool.map(lambda v: run_variant(v[0], v[1], args), variants))
    print(f"{args.data}: {args.train_size} train / {args.val_size} val, test {args.test_path} "
          f"({args.test_size} frames), {args.minutes} min each, {args.parallel} at a time x {args.threads} thread(s)")  # fmt: skip
    print(table(rows))
    if args.json:
        atomic_write_json(Path(args.json), {"args": vars(args), "rows": rows})
    return 0 if all(row["returncode"] == 0 for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
