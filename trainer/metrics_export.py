"""``vocodertui export-metrics``: a run directory's current timeline (what the dashboard shows, the
lines a resume or rollback superseded left out) as TensorBoard event files or CSV files. No torch.

Default folders: ``logs/<run>/tensorboard/`` (where the trainer's live writer puts them, so
``tensorboard --logdir logs`` shows every run once, by its name) and ``logs/<run>/export/`` for
CSV. A folder that already holds such files is left alone unless ``overwrite``: what they hold
comes from the run directory, so replacing them loses nothing, but a second set beside the first
would show every point twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from trainer import pidfile
from trainer.csv_export import CSV_FILES, write_csv
from trainer.errors import UserError
from trainer.rundir import RunPaths
from trainer.timeline import current_records

FORMATS = ("tensorboard", "csv")
# trainer.tensorboard_log is imported where it is used: loading tensorboard takes a few tenths of a
# second, and the command line imports this module for FORMATS.


@dataclass
class ExportReport:
    out: Path
    written: dict[str, int] = field(default_factory=dict)  # csv: rows per file; tensorboard: points per kind
    skipped: list[str] = field(default_factory=list)  # sample files that could not be read


def default_out(run: RunPaths, fmt: str) -> Path:
    return run.root / ("tensorboard" if fmt == "tensorboard" else "export")


def export_metrics(run: RunPaths, fmt: str, out: Optional[Path] = None, overwrite: bool = False) -> ExportReport:
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: use tensorboard or csv")
    if not run.events.is_file() and not run.metrics.is_file():
        raise UserError(f"{run.root} has neither events.jsonl nor metrics.jsonl: nothing to export")
    out = out or default_out(run, fmt)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: name a folder (it is created if missing)")
    existing = _existing_outputs(out, fmt)
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise UserError(f"{out} already holds {existing[0].name}{more}: pass --overwrite to write the export afresh "
                        "(nothing is lost: the run directory holds it all), or --out another folder")
    if existing and out.resolve() == default_out(run, "tensorboard").resolve() and pidfile.check(run).alive:
        raise UserError(f"run {run.name} is training and its trainer may be writing {out}: export to another folder "
                        "with --out, or stop it first")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for path in existing:
            path.unlink()
        records = current_records(run)
        if fmt == "csv":
            return ExportReport(out, written=write_csv(records, out))
        from trainer.tensorboard_log import EventWriter, write_record

        writer = EventWriter(out)
        for record in records:
            write_record(writer, record, run)
        writer.close()
        return ExportReport(out, written=writer.written, skipped=writer.skipped)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}; pass --out with a folder you can write") from None


def _existing_outputs(out: Path, fmt: str) -> list[Path]:
    if not out.is_dir():
        return []
    if fmt == "csv":
        return [out / name for name in CSV_FILES if (out / name).exists()]
    from trainer.tensorboard_log import event_files

    return event_files(out)
