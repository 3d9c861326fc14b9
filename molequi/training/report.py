"""Console helpers of the training commands: logging set-up, error lines, thread count, metric tables, unit hints."""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings

import numpy as np
import torch

from ..data.units import ENERGY_UNITS
from .distributed import launcher_rank

#: (metric prefix, label, unit shown, factor from eV-based units) in display order.
ROWS = (
    ("energy", "energy", "meV", 1000.0),
    ("energy_per_atom", "energy per atom", "meV/atom", 1000.0),
    ("forces", "forces", "meV/Å", 1000.0),
    ("stress", "stress", "meV/Å³", 1000.0),
    ("dipole_norm", "dipole norm", "D", 1.0),
    ("intensive", "intensive", "meV", 1000.0),  # QM9's gap, HOMO, LUMO: read in eV
)

#: An energy MAE this many times the spread of the reference energies suggests a unit mix-up.
UNIT_HINT_RATIO = 10.0
#: A unit is named when the references are within this factor of that unit's scale times the predictions.
UNIT_MATCH_TOLERANCE = 1.5
#: Seconds a DDP rank other than 0 waits before reporting an error (see :func:`report_error`).
ERROR_DELAY_S = 5.0


def configure_logging() -> None:
    """Show molequi's INFO messages (epoch lines, results) on stderr, without prefixes.

    On DDP ranks other than 0, which run the same code on the same data, only errors are shown
    and Python warnings are ignored: rank 0 reports each of them once.
    """
    package = logging.getLogger("molequi")
    if not package.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        package.addHandler(handler)
    if launcher_rank() == 0:
        package.setLevel(logging.INFO)
    else:
        package.setLevel(logging.ERROR)
        warnings.simplefilter("ignore")


def default_logging() -> None:
    """:func:`configure_logging` unless the program has set up logging itself (a handler on ``molequi`` or the root logger).

    So that ``molequi.training.train`` shows its epoch lines when called from a plain script.
    """
    if not logging.getLogger("molequi").hasHandlers():
        configure_logging()


def report_error(command: str, error: BaseException | str) -> None:
    """Print ``molequi <command>: error: <error>`` on stderr, once per run also under DDP.

    All DDP processes read the same config and data, so bad input fails each of them alike:
    rank 0 reports at once; another rank waits :data:`ERROR_DELAY_S` first, by when ``torchrun``
    has stopped it if rank 0 failed too, and else reports, naming its rank.
    """
    rank = launcher_rank()
    if rank:
        time.sleep(ERROR_DELAY_S)
    where = f" (rank {rank})" if rank else ""
    print(f"molequi {command}: error{where}: {error}", file=sys.stderr, flush=True)


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
    """A table of MAE and RMSE per quantity present in ``metrics`` (values in eV-based units).

    Columns are as wide as their widest entry and two spaces apart, so that numbers of any
    size stay apart.
    """
    rows = [
        (label, f"{factor * metrics[f'{prefix}_mae']:.3f}", f"{factor * metrics[f'{prefix}_rmse']:.3f}", unit)
        for prefix, label, unit, factor in ROWS
        if f"{prefix}_mae" in metrics
    ]
    label_width = max([len(row[0]) for row in rows], default=0)
    width = max([len("RMSE"), *(len(value) for row in rows for value in row[1:3])])
    lines = [f"  {'':<{label_width}}  {'MAE':>{width}}  {'RMSE':>{width}}"]
    lines += [f"  {label:<{label_width}}  {mae:>{width}}  {rmse:>{width}}  {unit}" for label, mae, rmse, unit in rows]
    return "\n".join(lines)


def unit_hint(reference: np.ndarray, predicted: np.ndarray, energy_unit: str) -> str | None:
    """A hint that the data's energies are not in ``energy_unit`` (the unit they were read in), or ``None``.

    Given when the per-atom energy MAE exceeds :data:`UNIT_HINT_RATIO` times the spread
    (standard deviation) of the reference energies per atom, i.e. when the model does far worse
    than predicting their mean. When the references are close to a known unit's factor times
    the predictions (least squares), that unit is named.

    Args:
        reference: ``[G]`` reference energies per atom as read (eV, converted from ``energy_unit``).
        predicted: ``[G]`` the model's energies per atom (eV).
        energy_unit: the unit the data was read in (a key of :data:`~molequi.data.units.ENERGY_UNITS`).
    """
    reference, predicted = np.asarray(reference, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    if len(reference) < 2:  # no energies (a molecular target) or too few to have a spread
        return None
    mae, spread = float(np.abs(reference - predicted).mean()), float(reference.std())
    if not mae > UNIT_HINT_RATIO * spread:
        return None
    hint = (
        f"hint: the energy errors are {mae / max(spread, 1e-300):.3g} times the spread of the reference energies; "
        f"the data's energies are probably not in {energy_unit} (set their unit with --energy-unit)"
    )
    scale = float(reference @ predicted / (predicted @ predicted)) if predicted.any() else 0.0
    if scale > 0:
        # energies in unit u read as energy_unit are ENERGY_UNITS[energy_unit] / ENERGY_UNITS[u] times too large
        implied = ENERGY_UNITS[energy_unit] / scale
        unit = min(ENERGY_UNITS, key=lambda name: abs(math.log(ENERGY_UNITS[name] / implied)))
        if unit != energy_unit and abs(math.log(ENERGY_UNITS[unit] / implied)) < math.log(UNIT_MATCH_TOLERANCE):
            hint += f"; they look like {unit}: try --energy-unit {unit}"
    return hint


def epoch_summary(row: dict[str, float], max_epochs: int, seconds: float, best: bool) -> str:
    """One log line per epoch, errors in meV."""
    parts = [f"epoch {row['epoch']:>4d}/{max_epochs}", f"lr {row['lr']:.2e}", f"loss {row['train_loss']:.4g}/{row['val_loss']:.4g}"]
    if "val_energy_per_atom_mae" in row:
        parts.append(f"val E/atom MAE {1000 * row['val_energy_per_atom_mae']:.2f} meV")
    if "val_forces_mae" in row:
        parts.append(f"val F MAE {1000 * row['val_forces_mae']:.1f} meV/Å")
    if "val_dipole_norm_mae" in row:
        parts.append(f"val mu MAE {row['val_dipole_norm_mae']:.3f} D")
    if "val_intensive_mae" in row:
        parts.append(f"val intensive MAE {1000 * row['val_intensive_mae']:.1f} meV")
    parts.append(f"{seconds:.1f} s" + (" *" if best else ""))
    return "  ".join(parts)
