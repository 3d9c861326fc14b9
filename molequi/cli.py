"""The ``molequi`` command: one sub-command per job, each defined next to the code it drives."""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command name -> module defining ``add_arguments(parser)`` and ``run(args) -> int``
COMMANDS: dict[str, str] = {
    "train": "molequi.training.cli_train",
    "evaluate": "molequi.training.cli_evaluate",
    "demo": "molequi.training.cli_demo",
    "md": "molequi.calculators.cli_md",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(prog="molequi", description="Equivariant interatomic potentials.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=module.__doc__.strip().splitlines()[0], description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``molequi`` console script."""
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
