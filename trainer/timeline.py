"""A run's history as the dashboard shows it: the records of metrics.jsonl and events.jsonl that a
resume, restart or NaN rollback has not voided, in step order (``records.supersede`` over both
files at once). What the exports write. No torch."""

from __future__ import annotations

from trainer.records import Event, Metrics, Quality, Record, supersede
from trainer.rundir import RunPaths, read_records


def current_records(run: RunPaths) -> list[Record]:
    """Every record of the run's current timeline. The two files are merged by the time their lines
    were written (each file is already in that order), so a rewind event voids the metrics lines
    written before it, as it voids the events."""
    written = [*read_records(run.metrics, Metrics).records, *read_records(run.metrics, Quality).records,
               *read_records(run.events, Event).records]
    return supersede(sorted(written, key=lambda record: record.time))
