"""Accuracy per CPU-minute: molequi and MACE trained side by side at equal wall-clock, tested on the same frames.

For each data set and budget, molequi (``molequi train`` with each ``--molequi-config`` and
``max_minutes``) and MACE 0.3.16 (``peers/mace_train_worker.py`` in MACE's own venv: its
``mace_run_train``, stopped by the same time rule) train on the same frames with the same threads;
both then predict the same validation and test frames, and one function computes every error.

Data sets (:data:`SETS`; protocol in ``benchmarks/README.md``): ``3bpa`` (450/50 from train_300K.xyz,
test train_mixedT.xyz less its 31 training frames), ``aspirin`` (rMD17, 950/50, 1,000 test frames),
``acac`` (450/50 from train_300K.xyz, tests test_MD_300K.xyz and test_MD_600K.xyz). The split frames
go to extxyz files in ``--workdir`` (``REF_energy``/``REF_forces``), so both codes read the same frames.

Usage (from the repository root; prints a markdown table, ``--json`` keeps everything)::

    .venv/bin/python benchmarks/accuracy_budget.py --json /tmp/accuracy_budget.json --workdir /tmp/accuracy_budget
    .venv/bin/python benchmarks/accuracy_budget.py --sets 3bpa --budgets 5 --mace-sizes 32:1,64:1
    .venv/bin/python benchmarks/accuracy_budget.py --quick --sets 3bpa --mace-sizes 16:0   # minutes: smoke test
    # the N-body network beside molecule.yaml's and MACE's runs of an earlier --json (same splits), no MACE retrained:
    .venv/bin/python benchmarks/accuracy_budget.py --clock cpu --sets 3bpa,aspirin --mace-sizes "" \
        --molequi-config examples/configs/nbody_molecule.yaml --earlier /tmp/accuracy_budget.json --json /tmp/nbody.json

Errors: energy per structure (meV) and force components (meV/A), MAE and RMSE. The MACE row marked
``*`` is the size with the lowest validation force MAE in that set and budget; the ratio row
divides molequi's errors by that row's.
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
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "benchmarks" / "peers"
sys.path.insert(0, str(PEERS))
from mace_train_worker import size_arguments  # noqa: E402  (pure Python: checks --mace-sizes here)

ENERGY_KEY, FORCES_KEY = "REF_energy", "REF_forces"
EPOCH_LINE = re.compile(r"^epoch\s+\d+/\d+\s.*\s(\d+(?:\.\d+)?) s( \*)?$")
QUICK_FRAMES = (40, 10, 30)  # train, validation, test frames per test file


@dataclass(frozen=True)
class DataSet:
    """Where a benchmark set comes from (paths relative to the data folder)."""

    source: str
    train: int
    val: int
    tests: dict[str, tuple[str, int | None]]  # name -> (file, at most this many frames from its start)
    isolated_atoms: str | None


SETS = {
    "3bpa": DataSet("3bpa/train_300K.xyz", 450, 50, {"mixedT": ("3bpa/train_mixedT.xyz", None)}, "3bpa/iso_atoms.xyz"),
    "aspirin": DataSet(
        "rmd17/aspirin_train_1200_macejax.xyz", 950, 50, {"test": ("rmd17/aspirin_test_1800_macejax.xyz", 1000)}, None
    ),
    "acac": DataSet(
        "acac/train_300K.xyz", 450, 50,
        {"MD300K": ("acac/test_MD_300K.xyz", None), "MD600K": ("acac/test_MD_600K.xyz", None)}, "acac/isolated_atoms.xyz",
    ),  # fmt: skip
}


# ----------------------------------------------------------------------------- frames and splits
def labelled(atoms, forces: bool = True):
    """A bare copy of ``atoms`` with its energy (eV) in ``info[REF_energy]`` and forces (eV/A) in ``arrays[REF_forces]``."""
    from ase import Atoms

    copy = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    copy.info[ENERGY_KEY] = float(atoms.get_potential_energy())
    if forces:
        copy.arrays[FORCES_KEY] = np.array(atoms.get_forces(), dtype=np.float64)
    return copy


def position_key(atoms) -> bytes:
    """Identity of a geometry: atomic numbers and positions rounded to 1e-5 A."""
    return atoms.numbers.tobytes() + np.round(atoms.positions, 5).tobytes()


def without_overlap(frames: list, reference: list) -> tuple[list, int]:
    """``frames`` less those whose geometry occurs in ``reference``, and how many were removed."""
    seen = {position_key(atoms) for atoms in reference}
    kept = [atoms for atoms in frames if position_key(atoms) not in seen]
    return kept, len(frames) - len(kept)


def draw(num: int, train: int, val: int, seed: int) -> tuple[list[int], list[int]]:
    """Seeded disjoint random training and validation indices into ``num`` frames."""
    if train < 1 or val < 1 or train + val > num:
        raise ValueError(f"{train} training + {val} validation frames do not fit into {num}")
    order = np.random.default_rng(seed).permutation(num)
    return order[:train].tolist(), order[train : train + val].tolist()


def molequi_positions(train: int, val: int, seed: int) -> tuple[list[int], list[int]]:
    """Where molequi's seeded draw (``data.train_size/val_size`` from one file) takes its training and validation frames.

    molequi draws both sets at random from one file with
    :func:`molequi.data.datasets.random_split_indices` and the run's seed.
    """
    from molequi.data.datasets import random_split_indices

    train_at, val_at, _ = random_split_indices(train + val, [train, val], seed)
    return train_at.tolist(), val_at.tolist()


def molequi_file_order(train: list, val: list, seed: int) -> list:
    """``train + val`` arranged so that molequi's seeded draw returns exactly ``train`` and ``val``.

    Placing the frames at the positions of :func:`molequi_positions` makes molequi's split the
    given one (each run checks it in its checkpoint).
    """
    ordered: list = [None] * (len(train) + len(val))
    for positions, frames in zip(molequi_positions(len(train), len(val), seed), (train, val)):
        for position, atoms in zip(positions, frames):
            ordered[position] = atoms
    return ordered


def prepare_set(name: str, data_dir: Path, workdir: Path, seed: int, quick: bool) -> dict[str, Any]:
    """Draw the split of set ``name`` and write its extxyz files; returns their paths and sizes."""
    import ase.io

    spec = SETS[name]
    source = [labelled(a) for a in ase.io.read(data_dir / spec.source, ":")]
    n_train, n_val, n_test = QUICK_FRAMES if quick else (spec.train, spec.val, None)
    train_at, val_at = draw(len(source), n_train, n_val, seed)
    train, val = [source[i] for i in train_at], [source[i] for i in val_at]
    folder = workdir / "data" / name
    folder.mkdir(parents=True, exist_ok=True)
    files = {"train": folder / "train.extxyz", "val": folder / "valid.extxyz", "trainval": folder / "train_valid_molequi.extxyz"}
    ase.io.write(files["train"], train, format="extxyz")
    ase.io.write(files["val"], val, format="extxyz")
    ase.io.write(files["trainval"], molequi_file_order(train, val, seed), format="extxyz")
    if spec.isolated_atoms:
        files["isolated_atoms"] = folder / "isolated_atoms.extxyz"
        isolated = [labelled(a, forces=False) for a in ase.io.read(data_dir / spec.isolated_atoms, ":")]
        ase.io.write(files["isolated_atoms"], isolated, format="extxyz")
    tests, removed, counts = {}, {}, {"train": n_train, "val": n_val}
    for test_name, (path, limit) in spec.tests.items():
        frames = [labelled(a) for a in ase.io.read(data_dir / path, ":")]
        frames, removed[test_name] = without_overlap(frames, source)
        frames = frames[: min(x for x in (limit, n_test, len(frames)) if x is not None)]
        tests[test_name], counts[test_name] = folder / f"test_{test_name}.extxyz", len(frames)
        ase.io.write(tests[test_name], frames, format="extxyz")
    return {
        "files": {k: str(v) for k, v in files.items()}, "tests": {k: str(v) for k, v in tests.items()}, "frames": counts,
        "removed_overlap": removed, "train_source_indices": train_at, "val_source_indices": val_at,
        "isolated_atoms": str(files["isolated_atoms"]) if spec.isolated_atoms else None,
    }  # fmt: skip


# ----------------------------------------------------------------------------- errors
def reference(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Energies ``[G]`` (eV) and forces ``[N, 3]`` (eV/A) stored in a file written by :func:`prepare_set`."""
    import ase.io

    frames = ase.io.read(path, ":")
    return np.array([a.info[ENERGY_KEY] for a in frames]), np.concatenate([a.arrays[FORCES_KEY] for a in frames])


def errors(energy: np.ndarray, forces: np.ndarray, ref_energy: np.ndarray, ref_forces: np.ndarray) -> dict[str, float]:
    """MAE and RMSE of energy per structure (meV) and of force components (meV/A).

    Raises:
        ValueError: predictions and references of different shapes (frames lost or reordered).
    """
    energy, forces = np.asarray(energy, dtype=np.float64).reshape(-1), np.asarray(forces, dtype=np.float64)
    if energy.shape != ref_energy.shape or forces.shape != ref_forces.shape:
        raise ValueError(f"predictions {energy.shape}/{forces.shape} do not match the references {ref_energy.shape}/{ref_forces.shape}")
    de, df = 1000 * (energy - ref_energy), 1000 * (forces - ref_forces).reshape(-1)
    return {
        "frames": int(energy.size),
        "energy_mae": float(np.abs(de).mean()), "energy_rmse": float(np.sqrt((de**2).mean())),
        "forces_mae": float(np.abs(df).mean()), "forces_rmse": float(np.sqrt((df**2).mean())),
    }  # fmt: skip


def file_errors(predictions: str | Path, path: str | Path) -> dict[str, float]:
    """:func:`errors` of an npz ``{energy, forces}`` against the frames of ``path``."""
    with np.load(predictions) as pred:
        return errors(pred["energy"], pred["forces"], *reference(path))


def predict_molequi(model_path: Path, path: str, out: Path, cache_dir: Path) -> None:
    """molequi's energies and forces on every frame of ``path``, saved like the MACE worker's npz."""
    import torch
    from torch_geometric.loader import DataLoader

    from molequi.models.checkpoint import load_model
    from molequi.training.data import read_dataset

    model = load_model(model_path)
    dtype = next(model.parameters()).dtype
    dataset = read_dataset(path, model.r_max, dtype, energy_key=ENERGY_KEY, forces_key=FORCES_KEY, cache_dir=str(cache_dir))
    energies, forces = [], []
    for batch in DataLoader(dataset, batch_size=50, shuffle=False):
        with torch.enable_grad():
            pred = model(batch, compute_forces=True)
        energies.append(pred["energy"].detach().double().numpy())
        forces.append(pred["forces"].detach().double().numpy())
    np.savez(out, energy=np.concatenate(energies), forces=np.concatenate(forces))


# ----------------------------------------------------------------------------- jobs
@dataclass
class Job:
    """One training run: a code (and MACE size) on one set for one budget."""

    set_name: str
    budget: float
    code: str  # "molequi" or "mace"
    size: str | None = None  # MACE's size
    config: Path | None = None  # molequi's config

    @property
    def label(self) -> str:
        return f"molequi {self.config.stem}" if self.code == "molequi" else f"MACE {self.size}"

    def directory(self, workdir: Path) -> Path:
        return workdir / "runs" / re.sub(r"[^\w.+-]", "_", f"{self.set_name}-{self.budget:g}min-{self.label}")


def run_logged(command: list[str], log: Path, threads: int) -> dict[str, Any]:
    """Run ``command`` with ``threads`` OpenMP/MKL threads, output into ``log``.

    Returns its wall and CPU seconds (``os.wait4``: this child's own usage, all its threads) and
    the 1-minute load average at its start and end.

    Raises:
        RuntimeError: a non-zero exit, with the end of the log.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    load_start, start = os.getloadavg()[0], time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"exit code {process.returncode} of {' '.join(command[:4])} ...; end of {log}:\n" + log.read_text()[-3000:])
    return {"process_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "loadavg": [load_start, os.getloadavg()[0]]}


def molequi_command(config: Path, data: dict[str, Any], args: argparse.Namespace, directory: Path, extra: list[str]) -> list[str]:
    """``molequi train config`` on the set's split, into ``directory`` (own dataset cache), with ``extra`` overrides last."""
    frames = data["frames"]
    overrides = [
        f"data.path={data['files']['trainval']}", f"data.train_size={frames['train']}", f"data.val_size={frames['val']}",
        "data.test_path=null", "data.test_size=null", f"data.energy_key={ENERGY_KEY}", f"data.forces_key={FORCES_KEY}",
        "data.stress_key=null", "data.energy_unit=eV", f"data.isolated_atoms={data['isolated_atoms'] or 'null'}",
        f"data.cache_dir={directory / 'cache'}", f"seed={args.seed}", f"output_dir={directory}",
        "device=cpu", "plots=false", "tensorboard=false", "progress_bar=false", *extra,
    ]  # fmt: skip
    command = [sys.executable, "-m", "molequi.cli", "train", str(config), "--threads", str(args.threads)]
    return command + [item for override in overrides for item in ("--set", override)]


def warm_up(data: dict[str, Any], args: argparse.Namespace) -> float:
    """One untimed epoch of each molequi config on 4 frames, so that one-time builds (its C++ kernel) happen before any clock runs."""
    seconds = 0.0
    for config in args.molequi_config:
        directory = args.workdir / "warmup" / config.stem
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        extra = [*args.molequi_set, "data.train_size=4", "data.val_size=2", "max_epochs=1", "max_minutes=null"]
        seconds += run_logged(molequi_command(config, data, args, directory, extra), directory / "train.log", args.threads)["process_s"]
    return seconds


def run_molequi(job: Job, data: dict[str, Any], args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    """Train molequi for the budget, check its split, predict validation and test frames."""
    import torch

    frames, cache = data["frames"], directory / "cache"
    extra = [f"max_minutes={job.budget}", f"budget_clock={args.clock}", *args.molequi_set]
    command = molequi_command(job.config, data, args, directory, extra)
    process = run_logged(command, directory / "train.log", args.threads)
    summary = json.loads((directory / "metrics.json").read_text())
    split = torch.load(directory / "checkpoint.pt", map_location="cpu", weights_only=False)["split"]
    if [split["train"], split["val"]] != list(molequi_positions(frames["train"], frames["val"], args.seed)):
        raise RuntimeError(f"molequi's split in {directory} is not the benchmark's (was data.train_size/val_size or seed overridden?)")
    predictions = {}
    for name, path in {"val": data["files"]["val"], **data["tests"]}.items():
        predictions[name] = directory / f"pred_{name}.npz"
        predict_molequi(directory / "model.pt", path, predictions[name], cache)
    epoch_s = [float(m[1]) for line in (directory / "train.log").read_text().splitlines() if (m := EPOCH_LINE.match(line))]
    return {
        "epochs": summary["epochs"], "best_epoch": summary["best_epoch"], "stop_reason": summary["stop_reason"],
        "train_s": summary["wall_time_s"], "epoch_s": epoch_s, "predictions": {k: str(v) for k, v in predictions.items()},
        "command": command, **process,
    }  # fmt: skip


def run_mace(job: Job, data: dict[str, Any], args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    """Train MACE of size ``job.size`` for the budget in its venv and predict the same frames."""
    command = [
        str(args.mace_python), str(PEERS / "mace_train_worker.py"), "--train", data["files"]["train"],
        "--valid", data["files"]["val"], "--minutes", str(job.budget), "--clock", args.clock, "--size", job.size, "--model", args.mace_model,
        "--e0s", data["isolated_atoms"] or "average", "--dtype", args.mace_dtype, "--threads", str(args.threads),
        "--seed", str(args.seed), "--workdir", str(directory), "--out", str(directory / "result.json"),
    ]  # fmt: skip
    for name, path in {"val": data["files"]["val"], **data["tests"]}.items():
        command += ["--predict", f"{name}={path}"]
    if args.mace_arg:
        command += ["--", *args.mace_arg]
    process = run_logged(command, directory / "train.log", args.threads)
    return {**json.loads((directory / "result.json").read_text()), "command": command, **process}


def run_job(job: Job, data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Train, predict and score one job (in a fresh directory); failures are recorded, not raised."""
    directory = job.directory(args.workdir)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    result: dict[str, Any] = {"set": job.set_name, "budget_min": job.budget, "code": job.code, "size": job.size, "label": job.label,
                              "config": str(job.config) if job.config else None}  # fmt: skip
    try:
        result.update((run_molequi if job.code == "molequi" else run_mace)(job, data, args, directory))
        evaluated = {"val": data["files"]["val"], **data["tests"]}
        result["errors"] = {name: file_errors(result["predictions"][name], path) for name, path in evaluated.items()}
    except Exception as error:  # noqa: BLE001  (a failed run is reported in the table and the JSON)
        result["error"] = f"{type(error).__name__}: {error}"
    return result


#: What a set's split must share with an earlier run's for that run's rows to stand in this table.
SPLIT_KEYS = ("frames", "removed_overlap", "train_source_indices", "val_source_indices")
#: Settings an earlier run must share with this one.
SAME_SETTINGS = ("clock", "seed", "quick", "threads", "concurrent")


def earlier_results(
    paths: list[Path], data: dict[str, dict[str, Any]], budgets: list[float], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """The finished runs of earlier ``--json`` files of this benchmark, for this run's sets and budgets.

    They let a new code or config stand beside runs already made (e.g. MACE's) without training
    them again: an earlier file must share this run's clock, seed, threads and concurrency and,
    per set, the same split (frame counts, drawn frames, test files less their overlap). Each row
    keeps its errors and gets ``earlier`` (the file); an earlier molequi row from before
    ``--molequi-config`` was repeatable gets that run's config in its label.

    Raises:
        ValueError: an earlier file with other settings or another split.
    """
    rows = []
    for path in paths:
        earlier = json.loads(path.read_text())
        settings = earlier["settings"]
        for key in SAME_SETTINGS:
            if settings.get(key) != getattr(args, key):
                raise ValueError(f"--earlier {path}: {key} is {settings.get(key)!r}, in this run {getattr(args, key)!r}")
        for r in earlier["results"]:
            if r["set"] not in data or r["budget_min"] not in budgets or "errors" not in r:
                continue
            differ = [key for key in SPLIT_KEYS if earlier["sets"][r["set"]][key] != data[r["set"]][key]]
            if differ:
                raise ValueError(f"--earlier {path}: set {r['set']} was split otherwise ({', '.join(differ)} differ)")
            if r["code"] == "molequi" and "config" not in r:
                config = settings["molequi_config"]
                r = {**r, "config": config, "label": f"molequi {Path(config if isinstance(config, str) else config[0]).stem}"}
            rows.append({**r, "earlier": str(path)})
    return rows


# ----------------------------------------------------------------------------- table
def best_mace(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The MACE run with the lowest validation force MAE among ``results`` (None without one)."""
    done = [r for r in results if r["code"] == "mace" and "errors" in r]
    return min(done, key=lambda r: r["errors"]["val"]["forces_mae"]) if done else None


def format_table(results: list[dict[str, Any]], data: dict[str, dict[str, Any]]) -> str:
    """The markdown table: per set, budget and test file, every run, then molequi / best MACE."""
    head = "| set | budget | test (frames) | code | epochs | s/epoch | E MAE | E RMSE | F MAE | F RMSE | CPU % | load 1-min |"
    lines = [head, "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    metrics = ("energy_mae", "energy_rmse", "forces_mae", "forces_rmse")
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["set"], r["budget_min"]), []).append(r)
    for (set_name, budget), runs in groups.items():
        best = best_mace(runs)
        molequis = [r for r in runs if r["code"] == "molequi" and "errors" in r]
        for test in data[set_name]["tests"]:
            where = f"| {set_name} | {budget:g} min | {test} ({data[set_name]['frames'][test]}) |"
            for r in runs:
                label = r["label"] + (" *" if r is best else "") + (" (earlier run)" if "earlier" in r else "")
                if "error" in r:
                    lines.append(f"{where} {label} | failed: {r['error'].splitlines()[0][:80]} ||||||||")
                    continue
                epoch_s = f"{np.median(r['epoch_s']):.1f}" if r.get("epoch_s") else "-"
                values = " | ".join(f"{r['errors'][test][m]:.1f}" for m in metrics)
                load, cpu = f"{r['loadavg'][0]:.2f}-{r['loadavg'][1]:.2f}", f"{100 * r['cpu_s'] / r['process_s']:.0f}"
                lines.append(f"{where} {label} | {r['epochs']} | {epoch_s} | {values} | {cpu} | {load} |")
            for molequi in molequis if best else []:
                ratios = " | ".join(f"{molequi['errors'][test][m] / best['errors'][test][m]:.2f}" for m in metrics)
                lines.append(f"{where} **{molequi['label']} / {best['label']}** | | | {ratios} | | |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line
def parse_list(text: str, kind: str, choices: Any = None) -> list[Any]:
    """A comma-separated list of positive numbers (``kind='budgets'``) or of names from ``choices``.

    Raises:
        ValueError: an empty list, a non-positive budget or an unknown name.
    """
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"--{kind}: empty list")
    if kind == "budgets":
        values = [float(item) for item in items]
        if any(v <= 0 for v in values):
            raise ValueError(f"--budgets: minutes must be positive, got {text}")
        return values
    unknown = [item for item in items if item not in choices]
    if unknown:
        raise ValueError(f"--{kind}: unknown {', '.join(unknown)}; known: {', '.join(choices)}")
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="3bpa,aspirin,acac", help=f"comma-separated, of {', '.join(SETS)}")
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall",
        help="what the budget counts: wall-clock (default) or each process's CPU time (robust to other load on the machine)",
    )  # fmt: skip
    parser.add_argument("--budgets", default=None, help="wall-clock minutes per run, comma-separated (default 5,15; --quick: 1)")
    parser.add_argument("--threads", type=int, default=None, help="threads per process (default 1 concurrent, 2 sequential)")
    parser.add_argument("--concurrent", action=argparse.BooleanOptionalAction, default=True,
                        help="two runs at a time, one core each (default); --no-concurrent: one at a time")
    parser.add_argument("--mace-sizes", default="32:0,32:1,64:1", help="MACE sizes as CHANNELS:MAX_L or hidden irreps, comma-separated")
    parser.add_argument("--mace-model", choices=["MACE", "ScaleShiftMACE"], default="ScaleShiftMACE")
    parser.add_argument("--mace-dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--mace-arg", action="append", default=[], metavar="OPTION", help="extra mace_run_train option (repeatable)")
    parser.add_argument("--mace-python", type=Path, default=ROOT / ".peers" / "mace" / "bin" / "python")
    parser.add_argument("--molequi-config", type=Path, action="append", default=None,
                        help="molequi config (repeatable: one row each; default examples/configs/molecule.yaml)")
    parser.add_argument("--earlier", type=Path, action="append", default=[], metavar="JSON",
                        help="an earlier --json of this benchmark whose runs (same splits and settings) join the table, e.g. "
                        "MACE rows already trained (repeatable)")
    parser.add_argument("--molequi-set", action="append", default=[], metavar="KEY=VALUE", help="extra molequi --set (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="of the splits and both trainings")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/accuracy_budget"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help=f"{'/'.join(map(str, QUICK_FRAMES))} train/val/test frames, 1-minute budget")
    args = parser.parse_args(argv)
    try:
        sets = parse_list(args.sets, "sets", list(SETS))
        budgets = parse_list(args.budgets or ("1" if args.quick else "5,15"), "budgets")
        sizes = [size.strip() for size in args.mace_sizes.split(",") if size.strip()]  # empty: no MACE runs
        for size in sizes:
            size_arguments(size)
        args.molequi_config = args.molequi_config or [ROOT / "examples" / "configs" / "molecule.yaml"]
        if len({config.stem for config in args.molequi_config}) < len(args.molequi_config):
            raise ValueError("--molequi-config: two configs of one name (the rows are labelled by the file's stem)")
        paths = [(args.mace_python, "--mace-python")] if sizes else []
        for path, what in paths + [(c, "--molequi-config") for c in args.molequi_config] + [(e, "--earlier") for e in args.earlier]:
            if not path.exists():
                raise ValueError(f"{what}: {path} not found")
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be positive, got {args.threads}")
    except ValueError as error:
        parser.error(str(error))
    args.threads = args.threads or (1 if args.concurrent else 2)
    args.workdir = args.workdir.resolve()
    import torch

    torch.set_num_threads(args.threads)
    # torch's C++ extensions are built into a shared folder by default: another process rebuilding
    # there (e.g. a test run of an edited kernel) would stall molequi's runs on its build lock
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(args.workdir / "torch_extensions"))
    data = {name: prepare_set(name, args.data, args.workdir, args.seed, args.quick) for name in sets}
    try:
        earlier = earlier_results(args.earlier, data, budgets, args)
    except ValueError as error:
        parser.error(str(error))
    print(f"warm-up (untimed): {warm_up(data[sets[0]], args):.0f} s", flush=True)
    codes = [Job(s, b, "molequi", config=c) for s in sets for b in budgets for c in args.molequi_config]
    jobs = codes + [Job(s, b, "mace", z) for s in sets for b in budgets for z in sizes]
    labels = {(job.set_name, job.budget, job.label) for job in jobs}  # this run's rows replace earlier ones
    earlier = [r for r in earlier if (r["set"], r["budget_min"], r["label"]) not in labels]
    results: list[dict[str, Any]] = [{} for _ in jobs]

    def save() -> None:
        if args.json:
            from molequi.io import atomic_write_json

            settings = {k: [str(x) for x in v] if k in ("molequi_config", "earlier") else str(v) if isinstance(v, Path) else v
                        for k, v in vars(args).items()}  # fmt: skip
            done = earlier + [r for r in results if r]
            atomic_write_json(args.json, {"settings": settings, "argv": sys.argv, "sets": data, "results": done})

    with ThreadPoolExecutor(max_workers=2 if args.concurrent else 1) as pool:
        futures = {pool.submit(run_job, job, data[job.set_name], args): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            result = results[futures[future]] = future.result()
            save()
            status = result.get("error", "").splitlines()[0] if "error" in result else f"{result['epochs']} epochs"
            print(f"done: {result['set']} {result['budget_min']:g} min {result['label']}: {status}", flush=True)
    print(format_table(earlier + results, data))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
