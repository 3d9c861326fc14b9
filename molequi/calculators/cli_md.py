"""Run molecular dynamics (NVE or Langevin) with a molequi model and ASE.

Writes a trajectory and an ASE MD log; for NVE it prints the energy drift (meV/atom/ps, slope of a
linear fit of the total energy against time) at the end. Velocities are drawn from a
Maxwell-Boltzmann distribution at --temperature unless the structure file already has some.

Example: molequi md model.pt start.xyz --ensemble nve --timestep 0.5 --steps 2000 --out md.traj
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import ase.io
import torch
from ase import Atoms

from .calculator import MolequiCalculator
from .md import ENSEMBLES, run_md


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``md`` options on ``parser``."""
    parser.add_argument("model", help="model file (model.pt) or deployed package (.pt2, molequi deploy)")
    parser.add_argument("structure", help="starting structure (any file ASE reads; the first frame is used)")
    parser.add_argument("--ensemble", choices=ENSEMBLES, default="nve", help="default: nve (velocity Verlet)")
    parser.add_argument(
        "--temperature", type=float, default=300.0, metavar="K", help="initial / thermostat temperature (default 300)"
    )
    parser.add_argument("--timestep", type=float, default=0.5, metavar="FS", help="time step in fs (default 0.5)")
    parser.add_argument("--steps", type=int, default=1000, metavar="N", help="number of MD steps (default 1000)")
    parser.add_argument(
        "--friction", type=float, default=0.01, metavar="1/FS", help="Langevin friction (default 0.01 / fs)"
    )
    parser.add_argument(
        "--interval",
        type=int,
        default=10,
        metavar="N",
        help="steps between frames, log lines and energy samples (default 10)",
    )
    parser.add_argument(
        "--out", default="md.traj", metavar="TRAJ", help="trajectory file, format from its suffix (default md.traj)"
    )
    parser.add_argument(
        "--log", default=None, metavar="FILE", help="MD log file (default: the trajectory name with suffix .log)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of velocities and thermostat noise (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--dtype", choices=("float32", "float64"), default=None, help="evaluation precision (default: the model's)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, metavar="N", help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--skin", type=float, default=1.0, metavar="A", help="neighbour-list skin in A (default 1.0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (there is none anyway when stderr is not a terminal)")


def run(args: argparse.Namespace) -> int:
    """Run the MD described by ``args``; returns the exit status (2 with a one-line message for bad input)."""
    try:
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads must be positive, got {args.threads}")
            torch.set_num_threads(args.threads)
        atoms = read_structure(args.structure)
        atoms.calc = MolequiCalculator(args.model, device=args.device, dtype=args.dtype, skin=args.skin)
        atoms.get_forces()  # bad input (unknown element, overlapping atoms, NaN) fails here, before any file is written
        log = args.log or str(Path(args.out).with_suffix(".log"))
        start = time.perf_counter()
        record = run_md(
            atoms,
            steps=args.steps,
            trajectory=args.out,
            log=log,
            ensemble=args.ensemble,
            timestep_fs=args.timestep,
            temperature_K=args.temperature,
            friction_per_fs=args.friction,
            interval=args.interval,
            seed=args.seed,
            progress=not args.no_progress,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"molequi md: error: {error}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - start
    rate = args.steps / wall
    print(f"{args.steps} steps of {args.ensemble} MD ({len(atoms)} atoms) in {wall:.1f} s ({rate:.1f} steps/s)")
    print(f"trajectory: {args.out}   log: {log}")
    print(f"final temperature: {record.temperature[-1]:.1f} K   mean: {record.temperature.mean():.1f} K")
    if args.ensemble == "nve":
        if len(record.time_ps) >= 2:
            span = record.time_ps[-1]
            print(f"energy drift: {record.drift():.4f} meV/atom/ps (linear fit of the total energy over {span:.3f} ps)")
        else:
            print("energy drift: not available (fewer than two energy samples; lower --interval)")
    return 0


def read_structure(path: str) -> Atoms:
    """The first frame of ``path``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file ASE cannot read as a structure (unknown format, empty, corrupt).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"structure file not found: {path}")
    try:
        return ase.io.read(path, index=0)
    except Exception as error:  # ASE raises many types for foreign, empty or corrupt files
        raise ValueError(f"{path}: not a structure file ASE can read ({type(error).__name__}: {error})") from error
