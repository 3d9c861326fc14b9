"""Train a model from a YAML config: model.pt, checkpoint.pt, metrics.csv/json and plots in output_dir.

Examples:
  molequi train examples/configs/demo.yaml
  molequi train examples/configs/demo.yaml --set data.train_size=100 --set max_epochs=10
  molequi train examples/configs/demo.yaml --resume --set max_epochs=200
  torchrun --nproc_per_node=4 -m molequi.cli train config.yaml   (DDP, one process per GPU)

Every key is checked: an unknown or misspelt key, or a value of the wrong type, is an error
that names it. See molequi.training.config for the keys and their defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import load_config
from .distributed import launcher_rank
from .report import configure_logging, format_metrics, report_error, set_threads
from .trainer import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``CONFIG [--set KEY=VALUE ...] [--resume | --overwrite] [--threads N]``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("config", type=Path, help="YAML config file")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set data.train_size=100 (repeatable; values are read as YAML)",
    )  # fmt: skip
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in output_dir from its checkpoint.pt")
    mode.add_argument("--overwrite", action="store_true", help="start afresh even if output_dir holds a previous run")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")


def run(args: argparse.Namespace) -> int:
    """Train; returns 0, 2 with a one-line message for bad config or data or a diverged run, 130 on Ctrl-C.

    Under DDP (``torchrun``) rank 0 alone prints the results and the message of an error.
    """
    configure_logging()
    main_process = launcher_rank() == 0
    try:
        set_threads(args.threads)
        config = load_config(args.config, args.overrides)
        result = train(config, resume=args.resume, overwrite=args.overwrite)
    except FileExistsError as error:
        report_error("train", f"{error} (--resume continues it, --overwrite replaces it)")
        return 2
    except (FileNotFoundError, ValueError, FloatingPointError) as error:
        report_error("train", error)
        return 2
    except KeyboardInterrupt:
        if main_process:
            print("\nmolequi train: interrupted; --resume continues after the last completed epoch", file=sys.stderr)
        return 130
    if result.test_metrics and main_process:
        print(f"test errors of {result.output_dir / 'model.pt'} (epoch {result.best_epoch}):")
        print(format_metrics(result.test_metrics))
    return 0
