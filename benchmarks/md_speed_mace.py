"""MACE side of ``md_speed.py``: run with the python of a separate venv that has mace-torch.

Builds an untrained ``ScaleShiftMACE`` for the elements of the structure, attaches MACE's
``MACECalculator`` and prints one JSON line: ``{"params": ..., "steps_per_s": ..., ...}``.

    /work/venv-mace/bin/python benchmarks/md_speed_mace.py system.extxyz --steps 50 --warmup 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # e3nn 0.4.4 loads its constants with torch.load

import ase.io  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from md_timing import md_steps_per_second  # noqa: E402


def build_mace(elements: list[int], args: argparse.Namespace) -> torch.nn.Module:
    """An untrained ScaleShiftMACE with MACE's standard blocks (residual interactions, SiLU gates)."""
    from e3nn import o3
    from mace import modules

    interaction = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    return modules.ScaleShiftMACE(
        r_max=args.r_max,
        num_bessel=8,
        num_polynomial_cutoff=5,
        max_ell=args.max_ell,
        interaction_cls=interaction,
        interaction_cls_first=interaction,
        num_interactions=args.layers,
        num_elements=len(elements),
        hidden_irreps=o3.Irreps(args.hidden_irreps),
        MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=np.zeros(len(elements)),
        avg_num_neighbors=10.0,
        atomic_numbers=elements,
        correlation=args.correlation,
        gate=torch.nn.functional.silu,
        radial_MLP=[64, 64, 64],
        atomic_inter_scale=1.0,
        atomic_inter_shift=0.0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("structure")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--r-max", type=float, default=5.0)
    parser.add_argument("--hidden-irreps", default="64x0e+64x1o")
    parser.add_argument("--max-ell", type=int, default=3)
    parser.add_argument("--correlation", type=int, default=3)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()

    import mace
    from mace.calculators import MACECalculator

    torch.set_num_threads(args.threads)
    torch.set_default_dtype(getattr(torch, args.dtype))
    atoms = ase.io.read(args.structure, index=0)
    torch.manual_seed(0)
    model = build_mace(sorted(set(atoms.numbers.tolist())), args)
    atoms.calc = MACECalculator(models=model, device="cpu", default_dtype=args.dtype)
    rates = md_steps_per_second(atoms, args.steps, args.warmup, args.repeats)
    config = f"{args.hidden_irreps}, max_ell {args.max_ell}, correlation {args.correlation}, {args.layers} layers"
    print(
        json.dumps(
            {
                "code": f"MACE {mace.__version__}",
                "model": config,
                "params": sum(p.numel() for p in model.parameters()),
                "threads": torch.get_num_threads(),
                "steps_per_s": rates,
            }
        )
    )


if __name__ == "__main__":
    main()
