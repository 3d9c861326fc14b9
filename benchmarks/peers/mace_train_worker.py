"""MACE side of ``benchmarks/accuracy_budget.py``: train MACE for a wall-clock budget, then predict.

Run with the python of a venv that has mace-torch (never molequi's: MACE pins e3nn 0.4.4)::

    .peers/mace/bin/python benchmarks/peers/mace_train_worker.py --train train.extxyz \\
        --valid valid.extxyz --predict val=valid.extxyz --predict test=test.extxyz \\
        --minutes 5 --size 32:1 --e0s iso_atoms.xyz --workdir /tmp/mace_run --out result.json

MACE has no wall-clock budget, so this worker runs MACE's own ``mace_run_train`` (``run(args)``,
in this process) with a huge ``max_num_epochs`` and stops it by the rule molequi's ``max_minutes``
uses (:class:`EpochBudget`): an epoch's training loop ends at the step after which the time left
is what the last validation took, MACE then validates and checkpoints that epoch as usual, and
the next epoch does not start. The clock starts after the imports, right before ``run``, so it counts what molequi's does:
reading the data, E0s and statistics, building the graphs, the model, MACE's initial validation
pass and every epoch with its validation and checkpoint. MACE keeps only its best checkpoint
(lowest validation loss, saved with the EMA weights); that is loaded into the model and used
for the predictions. MACE's own end-of-run evaluation is skipped (we predict ourselves).

Settings (MACE's documented ones for small molecules, see :func:`mace_arguments`): r_max 5,
max_ell 3, correlation 3, 2 interactions, E0s from isolated atoms (else ``average``), loss
``weighted`` with energy weight 1 and forces weight 1000 (MACE's rMD17/3BPA recipe), batch size 5,
lr 0.01, AMSGrad, EMA 0.99, ReduceLROnPlateau, float64. Everything after ``--`` is passed on to
``mace_run_train`` unchanged (later options win).

Input files carry their targets as ``REF_energy`` (``atoms.info``, eV) and ``REF_forces``
(``atoms.arrays``, eV/A), MACE's default keys. Output: ``--out`` JSON with the training record
and, per ``--predict NAME=PATH``, an npz ``{energy [G] eV, forces [N, 3] eV/A}`` in frame order.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness  # noqa: E402

SIZE_PATTERN = re.compile(r"^(\d+):(\d+)$")
IRREPS_PATTERN = re.compile(r"^\s*\d+x\d+[eo](\s*\+\s*\d+x\d+[eo])*\s*$")
CHECKPOINT_EPOCH = re.compile(r"_epoch-(\d+)(_swa)?\.pt$")


def size_arguments(spec: str) -> list[str]:
    """``mace_run_train`` options for a model size: ``C:L`` (``--num_channels C --max_L L``) or hidden irreps.

    Raises:
        ValueError: ``spec`` is neither (e.g. ``32x0e+32x1o:1``, which mixes both).
    """
    spec = spec.strip()
    match = SIZE_PATTERN.match(spec)
    if match:
        return [f"--num_channels={match[1]}", f"--max_L={match[2]}"]
    if IRREPS_PATTERN.match(spec):
        return [f"--hidden_irreps={spec.replace(' ', '')}"]
    raise ValueError(f"MACE size {spec!r}: expected CHANNELS:MAX_L (e.g. 32:1) or hidden irreps (e.g. 32x0e+32x1o)")


def mace_arguments(args: argparse.Namespace, e0s: str, extra: list[str]) -> list[str]:
    """The ``mace_run_train`` command line of this run (without the program name)."""
    work = Path(args.workdir)
    return [
        "--name=mace", f"--seed={args.seed}", f"--work_dir={work}", f"--log_dir={work / 'logs'}",
        f"--checkpoints_dir={work / 'checkpoints'}", f"--results_dir={work / 'results'}", f"--model_dir={work}",
        "--device=cpu", f"--default_dtype={args.dtype}", "--plot=False", "--pin_memory=False",
        f"--train_file={args.train}", f"--valid_file={args.valid}",
        "--energy_key=REF_energy", "--forces_key=REF_forces", f"--E0s={e0s}",
        f"--model={args.model}", *size_arguments(args.size),
        "--r_max=5.0", "--max_ell=3", "--correlation=3", "--num_interactions=2",
        "--loss=weighted", "--energy_weight=1.0", "--forces_weight=1000.0",
        f"--batch_size={args.batch_size}", f"--valid_batch_size={args.eval_batch_size}",
        "--lr=0.01", "--amsgrad", "--ema", "--ema_decay=0.99", "--scheduler=ReduceLROnPlateau",
        "--max_num_epochs=1000000000", "--patience=1000000000", "--eval_interval=1", "--error_table=PerAtomMAE",
        *extra,
    ]  # fmt: skip


def isolated_atom_energies(path: str) -> str:
    """MACE's ``--E0s`` dictionary ``{Z: energy in eV}`` from a file of one-atom frames (``REF_energy``)."""
    import ase.io

    energies = {}
    for atoms in ase.io.read(path, ":"):
        if len(atoms) != 1:
            raise ValueError(f"{path}: isolated-atom frames must hold one atom, got {len(atoms)}")
        energies[int(atoms.numbers[0])] = float(atoms.info["REF_energy"])
    return repr(dict(sorted(energies.items())))


class BudgetReached(Exception):
    """Raised before an epoch when the budget is spent (caught by :func:`train_for`)."""


class EpochBudget:
    """molequi's ``max_minutes`` rule around an epoch function: cut the epoch's loader, then refuse the next epoch.

    The time left for a validation is what the last one took (the time from the end of an epoch's
    training loop to the next epoch's start: MACE's validation and checkpoint), 0 before the first.

    Args:
        budget_s: the budget; start: the clock reading it counts from; clock: seconds.

    Attributes:
        epoch_starts: clock reading at the start of every epoch; cuts: ``(epoch, steps)`` of cut epochs.
    """

    def __init__(self, budget_s: float, start: float, clock: Callable[[], float]) -> None:
        self.budget_s, self.start, self.clock = budget_s, start, clock
        self.epoch_starts: list[float] = []
        self.cuts: list[tuple[int, int]] = []
        self.validation_s, self._train_end = 0.0, None

    def spent(self) -> bool:
        """Whether no more than the last validation's time is left."""
        return self.clock() - self.start + self.validation_s >= self.budget_s

    def run_epoch(self, epoch_function: Callable[..., Any], data_loader: Any, **kwargs: Any) -> Any:
        """Call ``epoch_function(data_loader=<cut loader>, **kwargs)``; raises :class:`BudgetReached` when spent."""
        now = self.clock()
        if self._train_end is not None:
            self.validation_s = now - self._train_end
        if self.epoch_starts and self.spent():  # at least one epoch, so that a checkpoint exists
            raise BudgetReached
        self.epoch_starts.append(now)
        try:
            return epoch_function(data_loader=self._cut(data_loader, len(self.epoch_starts)), **kwargs)
        finally:
            self._train_end = self.clock()

    def _cut(self, data_loader: Any, epoch: int) -> Any:
        """The batches of ``data_loader`` until the budget is spent after a step."""
        for step, batch in enumerate(data_loader, 1):
            yield batch  # the caller takes its optimisation step before asking for the next batch
            if self.spent():
                self.cuts.append((epoch, step))
                return


def train_for(argv: list[str], budget_s: float, start: float, clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Run ``mace_run_train`` with ``argv`` until the budget stops it; returns the model and timings.

    The epoch loop of ``mace.tools.train.train`` calls ``train_one_epoch`` (with keyword arguments)
    through its module globals, so wrapping that one function in :class:`EpochBudget` gives the
    time check without copying MACE's loop.
    """
    from mace import tools
    from mace.cli.run_train import run

    train_module = sys.modules["mace.tools.train"]
    original = train_module.train_one_epoch
    budget = EpochBudget(budget_s, start, clock)
    record: dict[str, Any] = {"epoch_starts": budget.epoch_starts, "cut_epochs": budget.cuts, "model": None}

    def timed_epoch(**kwargs):
        record["model"] = kwargs["model"]
        return budget.run_epoch(original, **kwargs)

    train_module.train_one_epoch = timed_epoch
    try:
        run(tools.build_default_arg_parser().parse_args(argv))
        record["stop_reason"] = "max_num_epochs"
    except BudgetReached:
        record["stop_reason"] = "budget"
    finally:
        train_module.train_one_epoch = original
    record["stop"] = clock()
    return record


def best_checkpoint(directory: Path) -> tuple[Path, int]:
    """MACE's saved checkpoint (it keeps the best one) and its epoch.

    Raises:
        FileNotFoundError: none was saved (the budget ended before the first validation).
    """
    found = sorted((int(m[1]), path) for path in directory.glob("*.pt") if (m := CHECKPOINT_EPOCH.search(path.name)))
    if not found:
        raise FileNotFoundError(f"no MACE checkpoint in {directory}: the budget ended before the first epoch")
    epoch, path = found[-1]
    return path, epoch


def predict(model, path: str, out: Path, batch_size: int) -> int:
    """Energies and forces of every frame of ``path`` (MACE's data pipeline, as ``mace_eval_configs``)."""
    import ase.io
    import numpy as np
    from mace import data
    from mace.tools import torch_geometric, utils

    frames = ase.io.read(path, ":")
    z_table = utils.AtomicNumberTable([int(z) for z in model.atomic_numbers])
    heads = getattr(model, "heads", None)
    graphs = [
        data.AtomicData.from_config(data.config_from_atoms(atoms), z_table=z_table, cutoff=float(model.r_max), heads=heads)
        for atoms in frames
    ]
    energies, forces = [], []
    for batch in torch_geometric.dataloader.DataLoader(graphs, batch_size=batch_size, shuffle=False, drop_last=False):
        output = model(batch.to_dict(), training=False, compute_force=True)
        energies.append(output["energy"].detach().numpy())
        forces.append(output["forces"].detach().numpy())
    np.savez(out, energy=np.concatenate(energies), forces=np.concatenate(forces))
    return len(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True, help="training frames (extxyz with REF_energy / REF_forces)")
    parser.add_argument("--valid", required=True, help="validation frames (MACE's --valid_file)")
    parser.add_argument("--predict", action="append", default=[], metavar="NAME=PATH", help="frames to predict after training (repeatable)")
    parser.add_argument("--minutes", type=float, required=True, help="budget (minutes of --clock)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall-clock or this process's CPU time (as molequi's budget_clock)")
    parser.add_argument("--size", default="32:1", help="CHANNELS:MAX_L or hidden irreps (default 32:1)")
    parser.add_argument("--model", choices=["MACE", "ScaleShiftMACE"], default="ScaleShiftMACE")
    parser.add_argument("--e0s", default="average", help="file of isolated atoms, or 'average' (least squares on the training set)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64", help="default: MACE's, float64")
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--eval-batch-size", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    predictions = dict(item.split("=", 1) for item in args.predict)

    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # e3nn 0.4.4 loads its constants with torch.load
    import torch

    torch.set_num_threads(args.threads)
    import mace
    import mace.cli.run_train  # noqa: F401  (imported before the clock starts, as molequi's are)

    args.workdir.mkdir(parents=True, exist_ok=True)
    loadavg_start = os.getloadavg()[0]
    e0s = "average" if args.e0s == "average" else isolated_atom_energies(args.e0s)
    argv_mace = mace_arguments(args, e0s, extra)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    start = clock()
    record = train_for(argv_mace, 60 * args.minutes, start, clock)
    starts = record["epoch_starts"]
    epoch_times = [b - a for a, b in zip(starts, starts[1:] + [record["stop"]])]
    checkpoint, best_epoch = best_checkpoint(args.workdir / "checkpoints")
    model = record["model"]
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["model"])
    model.eval()
    frames = {}
    for name, path in predictions.items():
        frames[name] = predict(model, path, args.workdir / f"pred_{name}.npz", args.eval_batch_size)
    result = {
        "code": "mace",
        "version": mace.__version__,
        "size": args.size,
        "model": args.model,
        "mace_run_train": argv_mace,
        "params": sum(p.numel() for p in model.parameters()),
        "epochs": len(starts),
        "best_epoch": best_epoch + 1,  # MACE counts epochs from 0
        "stop_reason": record["stop_reason"],
        "cut_epochs": record["cut_epochs"],
        "setup_s": (starts[0] if starts else record["stop"]) - start,
        "train_s": record["stop"] - start,
        "epoch_s": epoch_times,
        "predictions": {name: str(args.workdir / f"pred_{name}.npz") for name in predictions},
        "frames": frames,
        "loadavg_start_worker": loadavg_start,
        "loadavg_end_worker": os.getloadavg()[0],
        **_harness.environment(),
    }
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
