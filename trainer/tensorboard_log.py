"""TensorBoard event files of a run: every metrics field, the validation mel-L1, the quality means,
and the validation samples (spectrogram PNGs as images, WAVs as audio).

The files are written by TensorBoard's own writer (``EventFileWriter``: the TFRecord framing,
CRCs, a background thread) with its protocol buffers; the PNGs and WAVs go in as the bytes the
trainer already wrote. It needs neither torch nor TensorFlow, so ``vocodertui export-metrics``
converts a run without loading torch, and the trainer's live writer (``logging.tensorboard``) is
the same code fed as the records are written.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

import msgspec
import soundfile
from PIL import Image
from tensorboard.compat.proto.event_pb2 import Event as TfEvent
from tensorboard.compat.proto.event_pb2 import SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from trainer.records import ENDINGS, REWINDS, Checkpoint, Metrics, Quality, Record, Validation
from trainer.rundir import RunPaths
from trainer.timeline import current_records

log = logging.getLogger("trainer")

EVENT_FILE_PREFIX = "events.out.tfevents."
METRIC_FIELDS = tuple(f.name for f in msgspec.inspect.type_info(Metrics).fields if f.name not in ("time", "step"))


def scalar_tag(field: str) -> str:
    """The TensorBoard tag of a metrics field: ``loss/g``, ``step_time/data``, ``train/lr``, ..."""
    for prefix, group in (("loss_", "loss"), ("time_", "step_time")):
        if field.startswith(prefix):
            return f"{group}/{field.removeprefix(prefix)}"
    return f"train/{field}"


VAL_MEL_TAG = "validation/mel_l1"


def quality_tag(metric: str) -> str:
    return f"quality/{metric}"


def event_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(EVENT_FILE_PREFIX + "*"))


class EventWriter:
    """One new event file in ``folder``."""

    def __init__(self, folder: Path, flush_secs: float = 30):
        folder.mkdir(parents=True, exist_ok=True)
        self.file = EventFileWriter(str(folder), max_queue_size=1024, flush_secs=flush_secs)  # the caller never waits on the disk
        self.skipped: list[str] = []  # sample files that could not be read: "path: reason"
        self.written = {"scalar": 0, "image": 0, "audio clip": 0}

    def _add(self, step: int, wall_time: float, value: Summary.Value) -> None:
        self.written[{"simple_value": "scalar", "image": "image", "audio": "audio clip"}[value.WhichOneof("value")]] += 1
        self.file.add_event(TfEvent(wall_time=wall_time, step=step, summary=Summary(value=[value])))

    def scalar(self, tag: str, value: Optional[float], step: int, wall_time: float) -> None:
        if value is not None:  # a non-finite value was written to the JSONL as null
            self._add(step, wall_time, Summary.Value(tag=tag, simple_value=value))

    def image(self, tag: str, png: Path, step: int, wall_time: float) -> None:
        with Image.open(png) as image:
            (width, height), channels = image.size, len(image.getbands())
        self._add(step, wall_time, Summary.Value(tag=tag, image=Summary.Image(
            height=height, width=width, colorspace=channels, encoded_image_string=png.read_bytes())))

    def audio(self, tag: str, wav: Path, step: int, wall_time: float) -> None:
        info = soundfile.info(wav)
        self._add(step, wall_time, Summary.Value(tag=tag, audio=Summary.Audio(
            sample_rate=info.samplerate, num_channels=info.channels, length_frames=info.frames,
            encoded_audio_string=wav.read_bytes(), content_type="audio/wav")))

    def purge_after(self, step: int) -> None:
        """What a resume or rollback to ``step`` voids: TensorBoard drops the points after ``step``
        that the files already hold (its Python loader at this SessionLog.START, its data server as
        each tag's next point arrives at a step not above theirs)."""
        self.file.add_event(TfEvent(wall_time=time.time(), step=step + 1, session_log=SessionLog(status=SessionLog.START)))

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def write_record(writer: EventWriter, record: Record, run: RunPaths) -> None:
    """The TensorBoard points of one record (other kinds of record have none)."""
    if isinstance(record, Metrics):
        for field in METRIC_FIELDS:
            writer.scalar(scalar_tag(field), getattr(record, field), record.step, record.time)
    elif isinstance(record, Quality):
        for metric, summary in record.metrics.items():
            writer.scalar(quality_tag(metric), summary.mean, record.step, record.time)
    elif isinstance(record, Validation):
        writer.scalar(VAL_MEL_TAG, record.val_mel, record.step, record.time)
        write_samples(writer, record, run)


def write_samples(writer: EventWriter, validation: Validation, run: RunPaths) -> None:
    """The sample folder of a validation: each utterance's spectrogram, its audio and its reference."""
    if validation.samples is None:
        return
    folder = run.root / validation.samples
    if not folder.resolve().is_relative_to(run.samples.resolve()):
        return  # a crafted line pointing elsewhere: never read outside the run
    for wav in sorted(folder.glob("*.wav")):
        for tag, path, add in ((f"audio/{wav.stem}", wav, writer.audio),
                               (f"spectrogram/{wav.stem}", wav.with_suffix(".png"), writer.image),
                               (f"reference/{wav.stem}", run.references / wav.name, writer.audio)):
            if not path.is_file():
                continue
            try:
                add(tag, path, validation.step, validation.time)
            except (OSError, soundfile.LibsndfileError) as exc:  # deleted meanwhile, or not audio or PNG
                writer.skipped.append(f"{path}: {exc}")
                log.warning("TensorBoard: skipped %s: %s", path, exc)


def write_history(writer: EventWriter, run: RunPaths) -> int:
    """Everything the run directory's current timeline holds; returns the number of records read."""
    records = current_records(run)
    for record in records:
        write_record(writer, record, run)
    return len(records)


class LiveTensorBoard:
    """The trainer's writer for ``logging.tensorboard``: fed each record as it is written, from the
    artifacts layer (never inside a step), flushed at checkpoints and at the end.

    Each trainer process opens a new event file in ``logs/<run>/tensorboard/``. When the folder
    has none yet (a new run, or one that trained without TensorBoard so far), the process's first
    event (its start or resume) writes the run's history into it first, so the folder holds the
    whole run. A later rewind (a resume into a folder with history, a NaN rollback) tells
    TensorBoard to drop what it superseded (``purge_after``).
    """

    def __init__(self, run: RunPaths):
        self.run = run
        self.folder = run.root / "tensorboard"
        self.writer: Optional[EventWriter] = None
        self.failed = False

    def record(self, record: Record) -> None:
        """After ``record`` was written to the run directory."""
        if self.failed:
            return
        try:
            if self.writer is None:
                if self._open(record):
                    return
            elif isinstance(record, REWINDS):
                self.writer.purge_after(record.step)
            write_record(self.writer, record, self.run)
            if isinstance(record, (Checkpoint, *ENDINGS)):
                self.writer.flush()
        except OSError as exc:  # a full disk: training goes on without TensorBoard
            self.failed = True
            log.warning("TensorBoard logging stopped at step %d: %s", record.step, exc)

    def _open(self, first: Record) -> bool:
        """Open this process's event file; returns whether that wrote ``first`` with the history."""
        fresh = not event_files(self.folder)
        self.writer = EventWriter(self.folder)
        if fresh:
            started = time.perf_counter()
            count = write_history(self.writer, self.run)
            if count > 1:
                log.info("TensorBoard: wrote the run's history (%d records) in %.1f s", count, time.perf_counter() - started)
        elif isinstance(first, REWINDS):
            self.writer.purge_after(first.step)
        return fresh

    def close(self) -> None:
        if self.writer is not None and not self.failed:
            try:
                self.writer.close()
            except OSError as exc:
                log.warning("TensorBoard: the last points could not be written: %s", exc)
