"""A CSV metrics log that a resumed run appends to instead of deleting.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when its folder is not empty, so every resume
lost the rows logged before it (the step-500 validation included). :class:`ResumableCSVLogger`
keeps them: it reads the existing header and appends; a column new in the resumed run rewrites
the file with the wider header, old rows kept (their new columns empty).

Rows logged after the checkpoint a run resumes from, by the attempt that was interrupted, stay
in the file too: the same ``step`` can appear twice, the later row belonging to the resumed run.
"""

from __future__ import annotations

import csv
import logging

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

logger = logging.getLogger(__name__)


class AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer, minus the deletion of an existing ``metrics.csv``."""

    def _check_log_dir_exists(self) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            header = next(csv.reader(file), [])
        self.metrics_keys = list(header)  # appended rows follow the file's column order
        logger.info("appending to %s (%d columns)", self.metrics_file_path, len(header))


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives resumes (rows appended, never deleted)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment
