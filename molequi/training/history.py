"""Per-epoch metrics: kept in memory (and in the checkpoint), written to metrics.csv and TensorBoard."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path

from ..io import atomic_write_text

logger = logging.getLogger(__name__)


class History:
    """The rows of metrics.csv, one per epoch.

    The whole file is rewritten atomically after each epoch from the rows in memory, so after a
    resume it holds exactly the rows of the checkpoint (none from an epoch that was cut short).

    Args:
        output_dir: where ``metrics.csv`` (and ``tensorboard/``) go.
        write: whether this process writes files (DDP rank 0 only).
        tensorboard: log each row to TensorBoard too, if ``torch.utils.tensorboard`` imports.
    """

    def __init__(self, output_dir: str | Path, write: bool = True, tensorboard: bool = False) -> None:
        self.path = Path(output_dir) / "metrics.csv"
        self.write = write
        self.rows: list[dict[str, float]] = []
        self.writer = None
        if write and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.info("TensorBoard is not installed; logging to metrics.csv only")
            else:
                self.writer = SummaryWriter(str(Path(output_dir) / "tensorboard"))

    def restore(self, rows: Sequence[dict[str, float]]) -> None:
        """Start from stored rows (resuming) and rewrite metrics.csv with them."""
        self.rows = [dict(row) for row in rows]
        self._write_csv()

    def append(self, row: dict[str, float]) -> None:
        """Add one epoch's row (``epoch`` first) and write it out."""
        self.rows.append(dict(row))
        self._write_csv()
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(key.replace("_", "/", 1), value, global_step=int(row["epoch"]))
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def _write_csv(self) -> None:
        if not self.write or not self.rows:
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(self.rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: repr(v) if isinstance(v, float) else v for k, v in row.items()} for row in self.rows)
        atomic_write_text(self.path, buffer.getvalue())


def read_metrics_csv(path: str | Path) -> list[dict[str, float]]:
    """The rows of a metrics.csv as numbers (``epoch`` as int)."""
    with open(path, newline="") as file:
        return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()} for row in csv.DictReader(file)]
