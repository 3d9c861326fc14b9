"""QM9 per CPU-minute: molequi's EquivariantPotential and NBodyNetwork against PyTorch Geometric's SchNet.

Every row is one training run (``molequi train``, or ``peers/schnet_qm9.py`` for SchNet, which is
the same trainer with SchNet's model section) on the same split of the 25k QM9 subset: 20,000
train / 2,000 validation / 3,000 test, drawn with ``random_split_indices(25000, [20000, 2000],
seed)`` as ``examples/configs/qm9_u0.yaml`` draws them. The split goes to npz files in
``--workdir`` (training + validation molecules placed so that molequi's seeded draw returns exactly
them, the test molecules in their own file), so that every run, whatever its training size, is
tested on the same 3,000 molecules; the learning-curve subsets (1k, 5k) are prefixes of one seeded
order of the 20k (containing every element). Same loss (MSE of the energy per atom; E0 = QM9's
atom references), optimiser, schedule (a cosine planned in time), EMA, batch size, budget
(``max_minutes`` on ``--clock``, set-up counted; the epoch that would overrun is cut) and
threads for all. Peak learning rates: 0.01 for the molequi models, 0.002 for SchNet, the better
of each model's probes (200 training molecules, 9 epochs, test U0 MAE in eV: EquivariantPotential
0.002: 2.4, 0.005: 1.1, 0.01: 0.74, 0.02: 0.48; NBodyNetwork (its former 16x0e+16x1o+16x2e
configuration) 0.002: 1.31, 0.01: 0.93; SchNet
0.001: 0.62, 0.002: 0.51, 0.005: 0.56, 0.01: 2.57); 0.02 was not tried at scale.

Rows (``--rows``): ``equivariant`` (qm9_u0.yaml), ``nbody`` (nbody_qm9_u0.yaml, with the hierarchy),
``schnet`` (SchNet at its published size: 6 interactions, 128 features and filters) and
``schnet_small`` (64/64/3, a step as cheap as the molequi model's) at every budget;
``nbody_flat`` (``hierarchy=false``) at the first budget; at the first budget, after those,
``curve`` (1k and 5k training molecules for the best molequi model and SchNet; the 20k point is
the main row), ``mu`` (the best model with the dipole head, qm9_mu.yaml; Debye) and ``gap`` (the
mean-pooled intensive head, qm9_gap.yaml, its shift and scale from the training gaps; EquivariantPotential,
as NBodyNetwork has no intensive head). The best molequi model is the one with the lower
validation U0 MAE at the first budget (``--best`` when neither ran).

Fairness of concurrent runs: on this 2-core machine two runs go at a time, each one process with
one torch/OpenMP thread, so each has a core: equal wall-clock is equal CPU time on an otherwise
idle machine, and ``--clock cpu`` (the default) makes the budget each process's own CPU time, which
other jobs on a shared machine do not change (each row records its CPU time / wall time and the
1-minute load average). One thread per run avoids the stalls
that 2-thread processes suffer whenever another process takes a core (every OpenMP barrier waits
for the descheduled thread), which would make 2-thread timings swing by several times on a shared
machine; and two runs side by side see the same memory-bandwidth contention. The graphs are
built (cached) and one-time builds (molequi's C++ kernel) warmed up before any clock starts.

Usage (from the repository root; about 2 hours for the defaults)::

    .venv/bin/python benchmarks/qm9_budget.py --json /tmp/qm9_budget.json
    .venv/bin/python benchmarks/qm9_budget.py --rows equivariant,schnet --budgets 10
    .venv/bin/python benchmarks/qm9_budget.py --quick          # minutes: tiny subsets, 1-minute budgets, two rows
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CONFIGS = ROOT / "examples" / "configs"
SCHNET = ROOT / "benchmarks" / "peers" / "schnet_qm9.py"
EPOCH_LINE = re.compile(r"^epoch\s+\d+/\d+\s.*\s(\d+(?:\.\d+)?) s( \*)?$")

#: qm9_u0.yaml's training and validation sizes (the split every run draws from).
FULL = (20000, 2000)
#: train, validation, test molecules and the learning-curve training sizes (full run, --quick).
SIZES = {"full": (20000, 2000, 3000, (1000, 5000)), "quick": (200, 50, 100, (100,))}
ROWS = ("equivariant", "nbody", "schnet", "schnet_small", "nbody_flat", "curve", "mu", "gap")
#: The rows that ``--override`` can change (the rest take their settings from the best model's row).
OVERRIDABLE = ROWS[:5]
#: Long-run published U0 test MAEs (meV; ~110k training molecules, GPU days), for context only.
ANCHORS = {"PaiNN": 5.9, "DimeNet++": 6.3, "SchNet": 14.0, "Cormorant": 22.0}
#: Each model: (config, extra --set overrides, runs through the SchNet peer).
MODELS = {
    "EquivariantPotential": ("qm9_u0.yaml", [], False),
    "NBodyNetwork": ("nbody_qm9_u0.yaml", [], False),
    "NBodyNetwork flat": ("nbody_qm9_u0.yaml", ["model.hierarchy=false"], False),
    "SchNet": ("qm9_u0.yaml", [], True),
    "SchNet small": ("qm9_u0.yaml", ["model.hidden_channels=64", "model.num_filters=64", "model.num_interactions=3"], True),
}
MOLEQUI = {"equivariant": "EquivariantPotential", "nbody": "NBodyNetwork"}
METRIC = {"U0": ("energy_mae", 1000.0, "meV"), "mu": ("dipole_norm_mae", 1.0, "D"), "gap": ("intensive_mae", 1000.0, "meV")}


@dataclass
class Job:
    """One training run."""

    row: str
    model: str
    budget: float
    train: int
    target: str = "U0"
    overrides: list[str] = field(default_factory=list)
    config: str | None = None  # None: the model's config

    @property
    def name(self) -> str:
        return re.sub(r"[^\w.+-]", "_", f"{self.row}-{self.model}-{self.target}-{self.train}-{self.budget:g}min")


# ----------------------------------------------------------------------------- data
def split(num: int, sizes: tuple[int, int, int, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Indices into the 25k file: qm9_u0.yaml's draw (``FULL`` train / validation, the rest test), then subsets.

    ``train`` comes in a seeded random order (its prefixes are the smaller training sets); with
    ``--quick`` the validation and test sets are seeded random subsets of the full ones.
    """
    from molequi.data.datasets import random_split_indices

    n_train, n_val, n_test, _ = sizes
    train, val, test = (t.numpy() for t in random_split_indices(num, list(FULL), seed))
    rng = np.random.default_rng(seed)
    return {
        "train": train[rng.permutation(len(train))],
        "val": np.sort(val[rng.permutation(len(val))[:n_val]]),
        "test": np.sort(test[rng.permutation(len(test))[:n_test]]),
    }


def nested_prefix(order: np.ndarray, numbers: list[np.ndarray], size: int) -> np.ndarray:
    """The first ``size`` molecules of ``order``, with every element of ``order`` in them.

    An element they lack comes in with its first molecule in ``order``, which replaces the last
    molecule whose removal loses no element.

    Args:
        order: molecule indices (a seeded order of the training set).
        numbers: atomic numbers of every molecule of the file.
        size: molecules to keep.
    """

    def elements(items: list[int]) -> set[int]:
        return set(np.concatenate([numbers[j] for j in items]).tolist()) if items else set()

    subset = [int(i) for i in order[:size]]
    wanted, have = elements(list(order)), elements(subset)
    for i in order[size:]:
        new = set(numbers[i].tolist())
        if have >= wanted:
            break
        if new <= have:
            continue
        for slot in range(len(subset) - 1, -1, -1):
            if elements(subset[:slot] + subset[slot + 1 :]) | new >= have:
                subset[slot], have = int(i), have | new
                break
    return np.array(subset)


def write_npz(source: dict[str, np.ndarray], indices: np.ndarray, path: Path) -> None:
    """The molecules ``indices`` of a QM9 npz (``convert_qm9pack.py`` layout), in that order, written atomically.

    Atomic, since a second instance of this script on the same workdir rewrites the split files
    (with the same content) while the first one's runs may be opening them.
    """
    from molequi.io import atomic_write

    offsets = source["offsets"]
    molecules = len(offsets) - 1
    atoms = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in indices])
    out = {k: v[indices] for k, v in source.items() if k != "offsets" and len(v) == molecules}
    counts = np.diff(offsets)[indices]
    out.update(offsets=np.concatenate([[0], np.cumsum(counts)]), Z=source["Z"][atoms], R=source["R"][atoms])
    atomic_write(path, lambda file: np.savez(file, **out))


def prepare_data(args: argparse.Namespace) -> dict[str, Any]:
    """The split files in ``workdir/data``: ``trainval_<k>.npz`` per training size and ``test.npz``."""
    from molequi.data.datasets import random_split_indices

    with np.load(args.data) as npz:
        source = {k: npz[k] for k in npz.files}
    n_train, n_val, n_test, curve = sizes = SIZES["quick" if args.quick else "full"]
    parts = split(len(source["gdb_idx"]), sizes, args.seed)
    if len(parts["test"]) < n_test:
        raise ValueError(f"{args.data}: {len(source['gdb_idx'])} molecules leave {len(parts['test'])} test molecules, not {n_test}")
    offsets = source["offsets"]
    numbers = [source["Z"][offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    folder = args.workdir / "data"
    folder.mkdir(parents=True, exist_ok=True)
    files, train_sets = {}, {}
    for k in sorted({n_train, *curve}):
        train = nested_prefix(parts["train"], numbers, k)
        order = np.empty(k + n_val, dtype=np.int64)
        at_train, at_val, _ = random_split_indices(k + n_val, [k, n_val], args.seed)
        order[at_train.numpy()], order[at_val.numpy()] = train, parts["val"]
        files[k], train_sets[k] = folder / f"trainval_{k}.npz", train
        write_npz(source, order, files[k])
    write_npz(source, parts["test"], folder / "test.npz")
    return {"files": {k: str(v) for k, v in files.items()}, "test": str(folder / "test.npz"), "sizes": [n_train, n_val, n_test],
            "curve": list(curve),
            "test_gdb_idx": source["gdb_idx"][parts["test"]].tolist()}  # fmt: skip


# ----------------------------------------------------------------------------- runs
def command(job: Job, data: dict[str, Any], args: argparse.Namespace, directory: Path) -> list[str]:
    """The training command of ``job`` into ``directory``: the data, split, budget and output settings last."""
    config, extra, peer = MODELS[job.model]
    n_val = data["sizes"][1]
    settings = [
        *extra, *job.overrides, f"data.path={data['files'][job.train]}", f"data.train_size={job.train}",
        f"data.val_size={n_val}", f"data.test_path={data['test']}", "data.test_size=null", f"data.cache_dir={args.workdir / 'cache'}",
        f"seed={args.seed}", f"max_minutes={job.budget}", f"output_dir={directory}", "device=cpu", "plots=false",
        "tensorboard=false", "progress_bar=false", f"budget_clock={args.clock}",
    ]  # fmt: skip
    program = [str(SCHNET)] if peer else ["-m", "molequi.cli", "train"]
    head = [sys.executable, *program, str(CONFIGS / (job.config or config)), "--threads", str(args.threads), "--overwrite"]
    return head + [item for setting in settings for item in ("--set", setting)]


def run_job(job: Job, data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Train one job in a fresh folder and read its metrics.json; a failure is recorded, not raised."""
    directory = args.workdir / "runs" / job.name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    cmd = command(job, data, args, directory)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    result: dict[str, Any] = {**job.__dict__, "name": job.name, "command": cmd, "loadavg": [os.getloadavg()[0]]}
    start = time.perf_counter()
    with open(directory / "train.log", "w") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
    result.update(process_s=time.perf_counter() - start, cpu_s=usage.ru_utime + usage.ru_stime)
    result["loadavg"].append(os.getloadavg()[0])
    text = (directory / "train.log").read_text()
    if os.waitstatus_to_exitcode(status) != 0 or not (directory / "metrics.json").exists():
        result["error"] = f"exit {os.waitstatus_to_exitcode(status)}: " + (text.strip().splitlines() or ["no output"])[-1]
        return result
    metrics = json.loads((directory / "metrics.json").read_text())
    key, factor, unit = METRIC[job.target]
    if key not in metrics["test"]:
        result["error"] = f"metrics.json has no test {key} (test metrics: {sorted(metrics['test'])})"
        return result
    result.update(
        epochs=metrics["epochs"], best_epoch=metrics["best_epoch"], train_s=metrics["wall_time_s"], unit=unit,
        test_mae=factor * metrics["test"][key], val_mae=factor * metrics["val"][key], test_frames=metrics["frames"]["test"],
        epoch_s=[float(m[1]) for line in text.splitlines() if (m := EPOCH_LINE.match(line))],
    )  # fmt: skip
    return result


def prebuild(jobs: list[Job], data: dict[str, Any], args: argparse.Namespace) -> float:
    """Build (cache) the graphs of every file the jobs read, and run each molequi model once, before any clock.

    The forward and backward pass of each molequi model here does the one-time builds (the C++
    kernel, into this benchmark's ``TORCH_EXTENSIONS_DIR``) that would otherwise fall into the
    budget of the first runs. Returns the seconds taken.
    """
    import torch
    from torch_geometric.data import Batch

    from molequi.dtypes import default_dtype
    from molequi.training import load_config
    from molequi.training.data import qm9_dataset
    from molequi.training.model_factory import build_model, model_r_max

    start = time.perf_counter()
    built: dict[tuple[str, float, str], Any] = {}
    warmed = set()
    for job in jobs:
        config_name, _, peer = MODELS[job.model]
        config = load_config(CONFIGS / (job.config or config_name), graph_settings(job))
        r_max, dtype = model_r_max(config.model), getattr(torch, config.dtype)
        for path in (data["files"][job.train], data["test"]):
            if (path, r_max, config.dtype) not in built:
                built[path, r_max, config.dtype] = qm9_dataset(path, r_max, dtype, "U0", str(args.workdir / "cache"))
        if not peer and job.model not in warmed:
            warmed.add(job.model)
            with default_dtype(dtype):
                model = build_model(config.model.name, {"species": [1, 6, 7, 8, 9], **config.model.options})
                batch = Batch.from_data_list([built[data["test"], r_max, config.dtype][i] for i in range(4)])
                model(batch, compute_forces=False)["energy"].sum().backward()
    return time.perf_counter() - start


def graph_settings(job: Job) -> list[str]:
    """The ``--set`` settings of ``job`` that its config can read, to build its graphs before the clock.

    The SchNet peer borrows a molequi config whose model section lacks SchNet's own keys, so its
    ``model.*`` settings are dropped, except ``model.r_max``: the peer's cutoff is the graph's.
    """
    _, extra, peer = MODELS[job.model]
    settings = [*extra, *job.overrides]
    return [o for o in settings if not (peer and o.startswith("model.") and not o.startswith("model.r_max="))]


def main_jobs(rows: list[str], budgets: list[float], n_train: int, overrides: dict[str, list[str]] | None = None) -> list[Job]:
    """The rows that need no earlier result, longest budgets first (so the pool ends evenly).

    ``overrides`` (``--override``): extra ``--set`` settings per row, e.g. ``{"schnet": ["model.r_max=4.0"]}``.
    """
    overrides = overrides or {}

    def job(row: str, model: str, budget: float) -> Job:
        return Job(row, model, budget, n_train, overrides=list(overrides.get(row, [])))

    jobs = []
    for budget in sorted(budgets, reverse=True):
        for row, model in (("equivariant", "EquivariantPotential"), ("nbody", "NBodyNetwork"), ("schnet", "SchNet"), ("schnet_small", "SchNet small")):
            if row in rows:
                jobs.append(job(row, model, budget))
    if "nbody_flat" in rows:
        jobs.append(job("nbody_flat", "NBodyNetwork flat", budgets[0]))
    return jobs


def best_model(results: list[dict[str, Any]], budget: float, fallback: str) -> str:
    """The molequi model with the lower validation U0 MAE at ``budget`` among ``results``, else ``fallback``."""
    done = [r for r in results if r["row"] in MOLEQUI and r["budget"] == budget and "val_mae" in r]
    return min(done, key=lambda r: r["val_mae"])["model"] if done else MOLEQUI[fallback]


def later_jobs(rows: list[str], best: str, budget: float, data: dict[str, Any]) -> list[Job]:
    """The rows that depend on the best molequi model: learning curve, mu and gap."""
    n_train = data["sizes"][0]
    jobs = [Job("curve", m, budget, k) for k in data["curve"] for m in (best, "SchNet")] if "curve" in rows else []
    if "mu" in rows:
        mu = ["data.target=mu", "model.dipole=true", "loss.energy_weight=0", "loss.dipole_weight=1"]
        jobs.append(Job("mu", best, budget, n_train, "mu", [] if best == "EquivariantPotential" else mu,
                        "qm9_mu.yaml" if best == "EquivariantPotential" else None))  # fmt: skip
    if "gap" in rows:
        jobs.append(Job("gap", "EquivariantPotential", budget, n_train, "gap", [], "qm9_gap.yaml"))
    return jobs


# ----------------------------------------------------------------------------- table
def format_table(results: list[dict[str, Any]], data: dict[str, Any]) -> str:
    """Markdown: one line per run, then the published anchors."""
    n_train, n_val, n_test = data["sizes"]
    lines = [f"QM9 25k subset: {n_train} train / {n_val} validation / {n_test} test molecules (the same test molecules in every row)", "",
             "| row | model | target | train | budget | epochs | s/epoch | test MAE | val MAE | CPU % | load 1-min |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in sorted(results, key=lambda r: (ROWS.index(r["row"]), r["target"], r["model"], r["train"], r["budget"])):
        settings = r.get("overrides", []) if r["row"] in OVERRIDABLE else []  # --override's, named in the row
        model = r["model"] + (f" ({', '.join(settings)})" if settings else "")
        where = f"| {r['row']} | {model} | {r['target']} | {r['train']} | {r['budget']:g} min |"
        if "error" in r:
            lines.append(f"{where} failed: {r['error'][:90]} ||||||")
            continue
        epoch_s = f"{np.median(r['epoch_s']):.0f}" if r["epoch_s"] else "-"
        unit, cpu = r["unit"], 100 * r["cpu_s"] / r["process_s"]
        lines.append(f"{where} {r['epochs']} | {epoch_s} | {r['test_mae']:.3g} {unit} | {r['val_mae']:.3g} {unit} | {cpu:.0f} | "
                     f"{r['loadavg'][0]:.1f}-{r['loadavg'][1]:.1f} |")  # fmt: skip
    anchors = ", ".join(f"{name} {mae:g}" for name, mae in ANCHORS.items())
    lines += ["", f"Published long-run U0 test MAEs for context (meV; ~110k training molecules, GPU days): {anchors}."]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=None, help=f"comma-separated, of {', '.join(ROWS)} (default all; --quick: equivariant,schnet)")
    parser.add_argument("--budgets", default=None, help="minutes per run, comma-separated; the first is the budget of the single-budget rows (default 10,30; --quick: 1)")
    parser.add_argument("--best", choices=sorted(MOLEQUI), default="equivariant", help="best molequi model when neither ran (default equivariant)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="cpu", help="what the budget counts (default cpu: each run's CPU time)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (default 2: one per core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "qm9" / "qm9_25k.npz")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/qm9_budget"))
    parser.add_argument("--json", type=Path, default=None, help="results file (default WORKDIR/qm9_budget.json)")
    parser.add_argument("--override", action="append", default=[], metavar="ROW:KEY=VALUE", help=f"an extra --set setting for every run of ROW ({', '.join(OVERRIDABLE)}), e.g. schnet:model.r_max=4.0; repeatable")
    parser.add_argument("--quick", action="store_true", help="smoke test: 200/50/100 molecules, 1-minute budgets, two rows")
    args = parser.parse_args(argv)
    rows = [r.strip() for r in (args.rows or ("equivariant,schnet" if args.quick else ",".join(ROWS))).split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if not rows or unknown:
        parser.error(f"--rows: unknown or empty {unknown}; known: {', '.join(ROWS)}")
    budgets = [float(b) for b in (args.budgets or ("1" if args.quick else "10,30")).split(",") if b.strip()]
    if not budgets or min(budgets) <= 0:
        parser.error(f"--budgets: positive minutes expected, got {args.budgets}")
    if args.threads < 1 or args.parallel < 1:
        parser.error("--threads and --parallel must be positive")
    if not args.data.exists():
        parser.error(f"--data: {args.data} not found")
    overrides: dict[str, list[str]] = {}
    for item in args.override:
        row, _, setting = item.partition(":")
        if row not in OVERRIDABLE or "=" not in setting:
            parser.error(f"--override: ROW:KEY=VALUE with ROW one of {', '.join(OVERRIDABLE)} expected, got {item!r}")
        overrides.setdefault(row, []).append(setting)
    args.rows, args.budgets, args.workdir, args.override = rows, budgets, args.workdir.resolve(), overrides
    args.json = args.json or args.workdir / "qm9_budget.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from molequi.io import atomic_write_json

    # torch's C++ extensions build into a shared folder by default: keep this benchmark's own
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(args.workdir / "torch_extensions"))
    data = prepare_data(args)
    results: list[dict[str, Any]] = []

    def save() -> None:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        atomic_write_json(args.json, {"settings": settings, "argv": sys.argv, "data": data, "results": results})

    def run_all(jobs: list[Job]) -> None:
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            for result in pool.map(lambda job: run_job(job, data, args), jobs):
                results.append(result)
                save()
                status = result.get("error") or f"{result['epochs']} epochs, test MAE {result['test_mae']:.3g} {result['unit']}"
                print(f"done: {result['name']}: {status}", flush=True)

    first = main_jobs(args.rows, args.budgets, data["sizes"][0], args.override)
    best = MOLEQUI[args.best]
    later = later_jobs(args.rows, best, args.budgets[0], data)
    print(f"graphs and warm-up (untimed): {prebuild(first + later, data, args):.0f} s", flush=True)
    run_all(first)
    best = best_model(results, args.budgets[0], args.best)
    run_all(later_jobs(args.rows, best, args.budgets[0], data))
    print(format_table(results, data))
    print(f"wrote {args.json}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
