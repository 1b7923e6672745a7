"""A run's current timeline as CSV files (the standard library's ``csv`` writer), for spreadsheets
and pandas: ``metrics.csv`` (every field of a metrics line), ``validation.csv`` and ``quality.csv``
(each metric's mean, 95 % half-width and file count). An empty cell is a null; numbers are written
with Python's shortest round-trip form, so reading them back gives the values of the JSONL lines."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import msgspec

from trainer.records import QUALITY_METRICS, Metrics, Quality, Record, Validation
from trainer.rundir import write_text_atomic

CSV_FILES = ("metrics.csv", "validation.csv", "quality.csv")
METRICS_COLUMNS = tuple(f.name for f in msgspec.inspect.type_info(Metrics).fields)
VALIDATION_COLUMNS = ("time", "step", "val_mel", "seconds", "samples")
QUALITY_COLUMNS = ("time", "step", "files", "seconds", "pitch_model")


def quality_columns(metric: str) -> tuple[str, str, str]:
    return metric, f"{metric}_ci95", f"{metric}_n"


def write_csv(records: list[Record], out: Path) -> dict[str, int]:
    """The three files in ``out``; returns the rows written to each."""
    metrics = [r for r in records if isinstance(r, Metrics)]
    validations = [r for r in records if isinstance(r, Validation)]
    scored = [r for r in records if isinstance(r, Quality)]
    names = [m for m in QUALITY_METRICS if any(m in q.metrics for q in scored)]
    names += sorted({m for q in scored for m in q.metrics} - set(names))  # a metric this version does not know
    tables = {
        "metrics.csv": (METRICS_COLUMNS, [[getattr(r, c) for c in METRICS_COLUMNS] for r in metrics]),
        "validation.csv": (VALIDATION_COLUMNS, [[getattr(r, c) for c in VALIDATION_COLUMNS] for r in validations]),
        "quality.csv": (QUALITY_COLUMNS + tuple(c for m in names for c in quality_columns(m)),
                        [[getattr(q, c) for c in QUALITY_COLUMNS] + [v for m in names for v in _summary_cells(q, m)]
                         for q in scored]),
    }
    for name, (header, rows) in tables.items():
        text = io.StringIO(newline="")
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)  # None is written as an empty cell
        write_text_atomic(out / name, text.getvalue())
    return {name: len(rows) for name, (_, rows) in tables.items()}


def _summary_cells(quality: Quality, metric: str) -> list:
    summary = quality.metrics.get(metric)
    return [None, None, None] if summary is None else [summary.mean, summary.ci95, summary.n]
