"""Evaluate a trained model on a dataset: MAE and RMSE of energies, forces, stress or a QM9 molecular target.

Energies are compared in total and per atom; a QM9 molecular target is ``--target mu`` (the dipole
norm, for a model with ``dipole=true``) or ``gap``/``homo``/``lumo`` (the intensive head).

Example:
  molequi evaluate runs/demo/model.pt datasets/demo/emt_cu.extxyz --json errors.json

Errors are printed in meV units; the JSON holds them in eV-based units (eV, eV/atom, eV/A,
eV/A^3) under keys such as energy_mae, energy_per_atom_mae, forces_mae, forces_rmse. Energy errors
far beyond the spread of the data's energies get a hint that --energy-unit is probably wrong.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data import keys
from ..models.checkpoint import UNITS, load_model
from .data import read_dataset
from ..devices import resolve_device
from .evaluate import evaluate
from ..io import atomic_write_json
from .report import format_metrics, set_threads, unit_hint

#: Per-graph references that can be evaluated (forces and stress come with energies).
TARGETS = (keys.ENERGY, keys.DIPOLE_NORM, keys.INTENSIVE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``MODEL DATA [--json OUT]`` and the options that say how to read DATA."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("model", type=Path, help="model file (model.pt of a training run)")
    parser.add_argument("data", type=Path, help="dataset file (any ASE-readable file, or a QM9 source with --format qm9)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the errors to this JSON file")
    parser.add_argument("--format", choices=("ase", "qm9"), default="ase", help="how to read DATA (default: ase)")
    parser.add_argument("--target", default=None, help="QM9 property (default U0; mu, gap, homo, lumo are molecular targets)")
    parser.add_argument("--energy-key", default=None, help="where DATA stores energies (default: calculator results)")
    parser.add_argument("--forces-key", default=None, help="where DATA stores forces")
    parser.add_argument("--stress-key", default=None, help="where DATA stores stresses")
    parser.add_argument("--energy-unit", default="eV", help="energy unit of DATA (eV, meV, kcal/mol, Ha, ...)")
    parser.add_argument("--batch-size", type=int, default=20, help="graphs per batch (default 20)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--cache-dir", default=None, help="dataset cache folder (default ~/.cache/molequi)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def run(args: argparse.Namespace) -> int:
    """Evaluate and print (and write) the errors; returns 2 with a message for bad input."""
    try:
        set_threads(args.threads)
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
        device = resolve_device(args.device)
        model = load_model(args.model, map_location=device)
        dtype = next(model.parameters()).dtype
        dataset = read_dataset(
            args.data, model.r_max, dtype, format=args.format, target=args.target, energy_key=args.energy_key,
            forces_key=args.forces_key, stress_key=args.stress_key, energy_unit=args.energy_unit, cache_dir=args.cache_dir,
        )  # fmt: skip
        if len(dataset) == 0 or not any(key in dataset[0] for key in TARGETS):
            raise ValueError(f"{args.data} has no {', '.join(TARGETS)} to compare with")
        accumulator, predictions = evaluate(model, dataset, device, args.batch_size, collect=True)
        metrics = {k: v for k, v in accumulator.compute().items() if not k.endswith("_mse")}
        if not metrics:
            found = [key for key in TARGETS if key in dataset[0]]
            raise ValueError(f"{args.model} predicts none of the targets of {args.data} ({', '.join(found)}): "
                             "a dipole_norm needs a model with dipole=true, an intensive target one with intensive=true")  # fmt: skip
    except (FileNotFoundError, ValueError) as error:
        print(f"molequi evaluate: error: {error}", file=sys.stderr)
        return 2
    print(f"{args.model} on {args.data} ({len(dataset)} frames):")
    print(format_metrics(metrics))
    hint = unit_hint(*predictions.energy_per_atom, args.energy_unit)
    if hint:
        print(hint)
    if args.json is not None:
        record = {"model": str(args.model), "data": str(args.data), "frames": len(dataset), **metrics,
                  "units": {**UNITS, "energy_per_atom": "eV/atom"}}  # fmt: skip
        atomic_write_json(args.json, record)
        print(f"wrote {args.json}")
    return 0
