"""Train the demo potential on the shipped EMT Cu/Au dataset (a few minutes on a CPU) and print its test errors.

Runs examples/configs/demo.yaml of the source checkout, writing model.pt, metrics and plots
to runs/demo (replacing an earlier demo run there). The C++ kernel is built first where this
machine has no build yet (once, about a minute). Options of `molequi train` such as
--set work too, e.g. --set max_epochs=5 for a quick look.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import __file__ as package_init
from .config import load_config
from .report import configure_logging, format_metrics, set_threads
from .trainer import train
from .yaml_io import read_yaml

#: The checkout that holds the package (``examples/`` and ``datasets/`` live beside it).
REPOSITORY = Path(package_init).resolve().parents[1]
DEMO_CONFIG = REPOSITORY / "examples" / "configs" / "demo.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``[--output DIR] [--set KEY=VALUE ...] [--threads N]``."""
    parser.add_argument("--output", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a value of demo.yaml, e.g. --set max_epochs=5",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=1,
        help="CPU threads for torch (default 1: the demo's small tensors gain ~10%% from a second thread on an idle "
        "machine but run many times slower with two threads when the cores are shared)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Train the demo; returns 2 with a message when the checkout's files are missing."""
    configure_logging()
    try:
        set_threads(args.threads)
        if not DEMO_CONFIG.is_file():
            raise FileNotFoundError(
                f"{DEMO_CONFIG} not found: `molequi demo` needs the source checkout (examples/ and datasets/ beside the package)"
            )
        raw = read_yaml(DEMO_CONFIG)
        raw["data"]["path"] = str(REPOSITORY / raw["data"]["path"])  # the demo data lives in the checkout
        config = load_config(raw, [f"output_dir={args.output}", *args.overrides])
        build_kernel()
        result = train(config, overwrite=True)
    except (FileNotFoundError, ValueError, FloatingPointError) as error:
        print(f"molequi demo: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nmolequi demo: interrupted", file=sys.stderr)
        return 130
    print(f"\ndemo finished: {result.epochs} epochs in {result.wall_time_s / 60:.1f} min ({result.stop_reason}).")
    if result.epochs < config.max_epochs:
        print(f"note: stopped after {result.epochs} of {config.max_epochs} epochs, so the errors differ from the README's")
    print(f"test errors of {result.output_dir / 'model.pt'} (EMA weights of epoch {result.best_epoch}):")
    print(format_metrics(result.test_metrics))
    print(f"files in {result.output_dir}: model.pt, metrics.csv, metrics.json, learning_curves.png, parity_energy.png, parity_forces.png")
    return 0


def build_kernel() -> None:
    """Build (or load) the fused C++ kernel now, so that its first-use build (about a minute) is
    not part of the training's time."""
    from ..nn.conv.kernel import fused_kernel

    fused_kernel()
