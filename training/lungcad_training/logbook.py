"""Per-epoch metrics on disk: ``OUT/<task>/metrics.csv`` and TensorBoard ``OUT/runs/<task>``.

Training and validation go to two TensorBoard runs (``train`` and ``val``) under the same tags, so
TensorBoard draws both curves of a metric in one chart. On resume, rows and events after the
checkpoint's epoch (from a run that died after logging but before saving) are dropped first.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

from lungcad.atomic import write_text_atomic
from lungcad_training.metrics import Metrics

log = logging.getLogger(__name__)

BASE_COLUMNS = ("epoch", "phase", "loss", "precision", "recall", "f1")
PHASES = ("train", "val")


class Logbook:
    """Appends one row per (epoch, phase) to the CSV and writes the same scalars to TensorBoard."""

    def __init__(
        self, csv_path: Path, tensorboard_dir: Path, extras: tuple[str, ...], resume_epoch: int
    ) -> None:
        self.columns = (*BASE_COLUMNS, *extras)
        self.csv_path = csv_path
        self._truncate_csv(resume_epoch)
        self.writers: dict[str, Any] = {}
        try:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: slow, lazy
        except ImportError:
            log.warning("tensorboard is not installed: metrics go to %s only", csv_path)
            return
        purge = resume_epoch + 1 if resume_epoch else None
        self.writers = {
            phase: SummaryWriter(str(tensorboard_dir / phase), purge_step=purge) for phase in PHASES
        }

    def _truncate_csv(self, keep_through: int) -> None:
        """Keep rows of epochs <= ``keep_through`` (none when starting afresh); header first."""
        rows: list[dict[str, str]] = []
        if keep_through and self.csv_path.is_file():
            with self.csv_path.open(newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) <= keep_through]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(self.csv_path, buffer.getvalue())

    def write(self, epoch: int, phase: str, metrics: Metrics, samples: int | None = None) -> None:
        row = {"epoch": epoch, "phase": phase}
        for name in self.columns[2:]:
            value = metrics.get(name)
            row[name] = "" if value is None else f"{value:.6g}"
        with self.csv_path.open("a", newline="") as fh:
            csv.DictWriter(fh, self.columns, lineterminator="\n").writerow(row)
        writer = self.writers.get(phase)
        if writer is None:
            return
        for name, value in metrics.items():
            if value is not None:
                writer.add_scalar(name, value, epoch)
        if samples is not None:
            writer.add_scalar("samples", samples, epoch)
        writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
