"""Console helpers of the training commands: logging set-up, thread count, metric tables."""

from __future__ import annotations

import logging

import torch

#: (metric prefix, label, unit shown, factor from eV-based units) in display order.
ROWS = (
    ("energy", "energy", "meV", 1000.0),
    ("energy_per_atom", "energy per atom", "meV/atom", 1000.0),
    ("forces", "forces", "meV/Å", 1000.0),
    ("stress", "stress", "meV/Å³", 1000.0),
)


def configure_logging() -> None:
    """Show molequi's INFO messages (epoch lines, results) on stderr, without prefixes."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    package = logging.getLogger("molequi")
    if not package.handlers:
        package.addHandler(handler)
    package.setLevel(logging.INFO)


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op CPU threads when given.

    Raises:
        ValueError: ``threads < 1``.
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be positive, got {threads}")
        torch.set_num_threads(threads)


def format_metrics(metrics: dict[str, float]) -> str:
    """A table of MAE and RMSE per quantity present in ``metrics`` (values in eV-based units)."""
    lines = [f"  {'':<16}{'MAE':>12}{'RMSE':>12}"]
    for prefix, label, unit, factor in ROWS:
        if f"{prefix}_mae" in metrics:
            mae, rmse = factor * metrics[f"{prefix}_mae"], factor * metrics[f"{prefix}_rmse"]
            lines.append(f"  {label:<16}{mae:>12.3f}{rmse:>12.3f}  {unit}")
    return "\n".join(lines)
