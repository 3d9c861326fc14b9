"""PNG figures of a run: learning curves and energy / force parity plots (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .evaluate import Predictions  # noqa: E402
from ..io import atomic_write  # noqa: E402

#: (csv column suffix, axis label, factor from eV-based units) of the curves drawn next to the loss.
CURVES = (
    ("energy_per_atom_mae", "energy MAE (meV/atom)", 1000.0),
    ("forces_mae", "force MAE (meV/Å)", 1000.0),
)


def save_figure(figure: plt.Figure, path: str | os.PathLike) -> None:
    """Write ``figure`` as a PNG atomically and close it."""
    try:
        atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=110))
    finally:
        plt.close(figure)


def plot_learning_curves(history: Sequence[dict[str, float]], path: str | os.PathLike) -> None:
    """Loss and MAEs of training and validation against the epoch (log scale).

    Args:
        history: one row per epoch with ``epoch``, ``train_loss``, ``val_loss`` and
            ``{train,val}_<metric>`` columns (as in metrics.csv).
        path: the PNG to write.
    """
    panels = [("loss", "loss", 1.0)] + [c for c in CURVES if f"val_{c[0]}" in history[0]]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    epochs = [row["epoch"] for row in history]
    for ax, (column, label, factor) in zip(axes[0], panels):
        for split in ("train", "val"):
            values = [row.get(f"{split}_{column}", float("nan")) * factor for row in history]
            ax.plot(epochs, values, label=split, marker="o" if len(epochs) < 30 else None, markersize=3)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    figure.tight_layout()
    save_figure(figure, path)


def plot_parity(
    reference: np.ndarray, predicted: np.ndarray, quantity: str, unit: str, path: str | os.PathLike
) -> None:
    """Predicted against reference values with the diagonal, and the MAE / RMSE in the title.

    Args:
        reference, predicted: ``[M]`` values in ``unit``.
        quantity: axis label, e.g. ``"energy per atom"``.
        unit: e.g. ``"eV/atom"``.
        path: the PNG to write.
    """
    figure, ax = plt.subplots(figsize=(4.2, 4.0))
    error = predicted - reference
    ax.scatter(reference, predicted, s=4, alpha=0.5, linewidths=0)
    low, high = float(min(reference.min(), predicted.min())), float(max(reference.max(), predicted.max()))
    ax.plot([low, high], [low, high], "k--", linewidth=0.8)
    ax.set_xlabel(f"reference {quantity} ({unit})")
    ax.set_ylabel(f"predicted {quantity} ({unit})")
    ax.set_title(f"MAE {np.abs(error).mean():.4g}, RMSE {np.sqrt(np.square(error).mean()):.4g} {unit}", fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)


def plot_predictions(predictions: Predictions, output_dir: str | os.PathLike) -> list[Path]:
    """``parity_energy.png`` and (with forces) ``parity_forces.png`` in ``output_dir``; returns the paths."""
    output_dir = Path(output_dir)
    paths = []
    ref, pred = predictions.energy_per_atom
    if ref.size:
        paths.append(output_dir / "parity_energy.png")
        plot_parity(ref, pred, "energy per atom", "eV/atom", paths[-1])
    ref, pred = predictions.forces
    if ref.size:
        paths.append(output_dir / "parity_forces.png")
        plot_parity(ref, pred, "force component", "eV/Å", paths[-1])
    return paths
