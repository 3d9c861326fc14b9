"""The ``molequi`` command: one sub-command per job, each defined next to the code it drives.

Only the sub-command that runs is imported (with torch), so ``molequi --help`` and
``molequi --version`` answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__

# sub-command name -> (module defining ``add_arguments(parser)`` and ``run(args) -> int``, the
# first line of that module's docstring: the one-line help of ``molequi --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "molequi.training.cli_train",
        "Train a model from a YAML config: model.pt, checkpoint.pt, metrics.csv/json and plots in output_dir.",
    ),
    "evaluate": (
        "molequi.training.cli_evaluate",
        "Evaluate a trained model on a dataset: MAE and RMSE of energies, forces, stress or a QM9 molecular target.",
    ),
    "demo": (
        "molequi.training.cli_demo",
        "Train the demo potential on the shipped EMT Cu/Au dataset (a few minutes on a CPU) and print its test errors.",
    ),
    "md": ("molequi.calculators.cli_md", "Run molecular dynamics (NVE or Langevin) with a molequi model and ASE."),
    "deploy": (
        "molequi.deploy.cli_deploy",
        "Export a model file as an AOTInductor package (.pt2) for MD engines, checked against the eager model.",
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; ``command``'s module is imported and its options registered (the others are listed only)."""
    parser = argparse.ArgumentParser(prog="molequi", description="Equivariant interatomic potentials.")
    parser.add_argument("--version", action="version", version=f"molequi {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, summary) in COMMANDS.items():
        if name != command:
            subparsers.add_parser(name, help=summary, description=summary)
            continue
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=summary, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``molequi`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((item for item in argv if not item.startswith("-")), None)
    if os.environ.get("RANK", "0") != "0":
        # a DDP worker other than rank 0: torch's C++ warnings (DDP's reducer, ...) once per run, from rank 0
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    args = build_parser(command).parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
