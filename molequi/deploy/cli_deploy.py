"""Export a model file as an AOTInductor package (.pt2) for MD engines, checked against the eager model.

The package computes energy, forces and (unless --no-stress) stress of one structure from its
positions, atomic numbers and neighbour list, with any number of atoms and edges; it runs with
torch alone (the same torch release; no molequi model classes, no e3nn), e.g. through
``MolequiCalculator("OUT.pt2")`` or ``molequi md OUT.pt2 start.xyz``. Compiling takes minutes.
The package is written only if it agrees with the eager model on test structures (by default
clusters of the model's elements of 12 and 27 atoms, and a periodic box of 27 atoms).

Example: molequi deploy runs/demo/model.pt demo.pt2
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``deploy`` options on ``parser``."""
    parser.add_argument("model", help="model file (model.pt)")
    parser.add_argument("out", help="package to write (a .pt2 file)")
    parser.add_argument("--device", default="cpu", help="where the package will run: cpu or cuda[:k] (default cpu)")
    parser.add_argument(
        "--dtype", choices=("float32", "float64"), default=None, help="precision of the package (default: the model's)"
    )
    parser.add_argument("--no-stress", action="store_true", help="energy and forces only (molecules; a little faster)")
    parser.add_argument(
        "--structures",
        default=None,
        metavar="FILE",
        help="check on these frames (any file ASE reads) instead of generated clusters; the first is traced",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="largest max|package - eager| / max(1, max|eager|) per output (default 1e-10 float64, 1e-4 float32)",
    )


def run(args: argparse.Namespace) -> int:
    """Deploy as ``args`` say; returns the exit status (2 with a one-line message for bad input)."""
    import ase.io
    import torch

    from ..devices import resolve_device
    from .export import deploy

    try:
        structures = ase.io.read(args.structures, ":") if args.structures else None
        report = deploy(
            args.model,
            args.out,
            structures=structures,
            stress=not args.no_stress,
            device=resolve_device(args.device),
            dtype=getattr(torch, args.dtype) if args.dtype else None,
            tolerance=args.tolerance,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"molequi deploy: error: {error}", file=sys.stderr)
        return 2
    stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report.seconds.items())
    print(f"wrote {report.path} ({stages})")
    for name, errors in report.errors.items():
        listed = ", ".join(f"{output} {error:.1e}" for output, error in errors.items())
        print(f"  {name}: max |package - eager| / max(1, max |eager|): {listed}")
    print(f"every output within {report.tolerance:.0e}")
    return 0
