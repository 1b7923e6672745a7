"""Following the JSONL files of a run directory while the trainer appends to them.

Readers keep a byte offset and read only what was appended since, so an update costs what was
written, never the size of the file. They hold back a line until its newline arrives (it is still
being written, or was torn by a kill), and start over when a file is truncated or replaced.

``MetricsFollower`` opens a file of any size quickly: it parses only its last megabyte at once and
indexes the older lines lazily (their byte offsets, not their contents, and the quality lines among
them), so plots of the whole run parse an evenly spaced sample of them on demand. No torch and no
textual here.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Optional

import numpy as np

from trainer.records import LOSSES, QUALITY_PREFIX, REWINDS, Event, Metrics, Quality
from trainer.rundir import Kind, decode_lines

STEP_TIMES = ("time_data", "time_d", "time_g", "time_optim", "time_other")  # seconds per step, by phase
HEALTH = ("lr", "grad_norm_g", "grad_norm_d", "steps_per_s", *STEP_TIMES, "rss_bytes")
METRIC_COLUMNS = ("time", "step", *LOSSES, *HEALTH)
TAIL_BYTES = 1 << 20
INDEX_CHUNK_BYTES = 8 << 20


class JsonlFollower:
    """Whole records of ``kind`` (``Metrics``, ``Quality`` or ``Event``) appended to a JSONL file since the last
    ``read_new``; ``skipped`` counts the whole lines that did not decode."""

    def __init__(self, path: Path, kind: Kind, start: int = 0):
        self.path = path
        self.kind = kind
        self.skipped = 0
        self.offset = start  # where the next unread byte is
        self.pending = b""  # a line whose newline has not arrived yet
        self.identity: Optional[tuple[int, int]] = None

    def read_new(self) -> tuple[list, bool]:
        """(new records, whether the file was truncated or replaced so that earlier records are void)."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                identity = (st.st_dev, st.st_ino)
                reset = (self.identity is not None and identity != self.identity) or st.st_size < self.offset
                if reset:
                    self.offset, self.pending = 0, b""
                self.identity = identity
                if st.st_size == self.offset:
                    return [], reset
                f.seek(self.offset)
                data = f.read(st.st_size - self.offset)
        except FileNotFoundError:
            reset = self.identity is not None
            self.identity, self.offset, self.pending = None, 0, b""
            return [], reset
        self.offset += len(data)
        data = self.pending + data
        cut = data.rfind(b"\n") + 1
        self.pending = data[cut:]
        whole = data[:cut]
        decoded = decode_lines(quality_lines(whole) if self.kind is Quality else whole.splitlines(keepends=True), self.kind)
        self.skipped += decoded.skipped
        return decoded.records, reset


def quality_lines(data: bytes) -> list[bytes]:
    """The quality lines among whole metrics.jsonl lines, found without splitting the metrics lines
    (a million of them are a few hundred quality lines' haystack)."""
    needle = b"\n" + QUALITY_PREFIX
    starts = [0] if data.startswith(QUALITY_PREFIX) else []
    found = data.find(needle)
    while found != -1:
        starts.append(found + 1)
        found = data.find(needle, found + 1)
    return [data[start:data.find(b"\n", start) + 1] for start in starts]


def current_timeline(records: list, rewinds: list[tuple[float, int]]) -> list:
    """The records a resume or rollback has not voided: those written after each rewind, or at or before its step."""
    return [r for r in records if all(r.time >= t or r.step <= step for t, step in rewinds)]


def columns_of(records: list[Metrics]) -> np.ndarray:
    """Metrics records as a float array [n, len(METRIC_COLUMNS)]; a null value, or a field the
    trainer that wrote the line did not have yet, is NaN."""
    rows = [[getattr(r, k, None) for k in METRIC_COLUMNS] for r in records]
    try:
        return np.array(rows, dtype=np.float64).reshape(len(rows), len(METRIC_COLUMNS))
    except OverflowError:  # an integer beyond float64 (no trainer wrote it): NaN, as a value that did not decode
        return np.array([[_as_float(v) for v in row] for row in rows], dtype=np.float64).reshape(len(rows), len(METRIC_COLUMNS))


def _as_float(value) -> float:
    try:
        return np.nan if value is None else float(value)
    except OverflowError:
        return np.nan


class MetricsFollower:
    """metrics.jsonl: the recent records parsed, the older lines indexed lazily and sampled on demand;
    its quality records, those among the older lines as they are indexed."""

    def __init__(self, path: Path, tail_bytes: int = TAIL_BYTES, keep_recent: int = 200_000, keep_records: int = 64):
        self.path = path
        self.tail_bytes = tail_bytes
        self.keep_recent = keep_recent
        self.keep_records = keep_records  # the newest lines kept as records (for the run state and the alerts)
        self._open()

    def _open(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        self.head_end = self._line_start_before(max(0, size - self.tail_bytes))  # older lines end here
        self.head_offsets = np.zeros(0, dtype=np.int64)  # starts of the indexed older lines
        self.indexed_to = 0  # the head is indexed up to this byte
        self.recent = np.zeros((0, len(METRIC_COLUMNS)))  # parsed records from head_end on, file order
        self.last_records: collections.deque[Metrics] = collections.deque(maxlen=self.keep_records)
        self.follower = JsonlFollower(self.path, Metrics, start=self.head_end)
        self.quality_follower = JsonlFollower(self.path, Quality, start=self.head_end)
        self.head_quality: list[Quality] = []  # from the lines indexed so far
        self.tail_quality: list[Quality] = []
        self.head_quality_skipped = 0
        self._sample_cache: dict[int, np.ndarray] = {}

    def _line_start_before(self, offset: int) -> int:
        """The start of the first whole line at or after ``offset``."""
        if offset == 0:
            return 0
        with open(self.path, "rb") as f:
            f.seek(offset - 1)
            while chunk := f.read(65536):
                nl = chunk.find(b"\n")
                if nl >= 0:
                    return offset + nl
                offset += len(chunk)
        return offset

    @property
    def head_indexed(self) -> bool:
        return self.indexed_to >= self.head_end

    @property
    def quality(self) -> list[Quality]:
        """The quality records read so far, file order (the older lines' only once indexed)."""
        return self.head_quality + self.tail_quality

    @property
    def skipped(self) -> int:
        """Whole lines read so far that did not decode."""
        return self.follower.skipped + self.quality_follower.skipped + self.head_quality_skipped

    def poll(self) -> bool:
        """Read what was appended; True when there is something new (or the file started over)."""
        records, reset = self.follower.read_new()
        quality, quality_reset = self.quality_follower.read_new()
        if reset or quality_reset:
            reset = True
            self._open()
            records, _ = self.follower.read_new()
            quality, _ = self.quality_follower.read_new()
        self.tail_quality.extend(quality)
        if records:
            self.last_records.extend(records)
            self.recent = np.concatenate([self.recent, columns_of(records)])[-self.keep_recent:]
        return bool(records) or reset

    def index_some(self, budget: int = INDEX_CHUNK_BYTES) -> bool:
        """Index up to ``budget`` more bytes of the older lines; True when there is more to index."""
        if self.head_indexed:
            return False
        with open(self.path, "rb") as f:
            f.seek(self.indexed_to)
            chunk = f.read(min(budget, self.head_end - self.indexed_to))
        ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10) + 1 + self.indexed_to
        starts = np.concatenate([[self.indexed_to], ends[:-1]]) if len(ends) else np.zeros(0, dtype=np.int64)
        self.head_offsets = np.concatenate([self.head_offsets, starts.astype(np.int64)])
        if len(ends):
            quality = decode_lines(quality_lines(chunk[:ends[-1] - self.indexed_to]), Quality)
            self.head_quality.extend(quality.records)
            self.head_quality_skipped += quality.skipped
        self.indexed_to = int(ends[-1]) if len(ends) else self.head_end
        return not self.head_indexed

    @property
    def head_lines(self) -> int:
        return len(self.head_offsets)

    def head_sample(self, count: int) -> np.ndarray:
        """Up to ``count`` evenly spaced older lines, parsed (only those lines are read)."""
        n = self.head_lines if self.head_indexed else 0
        if n == 0:
            return np.zeros((0, len(METRIC_COLUMNS)))
        picks = np.unique(np.linspace(0, n - 1, min(count, n)).astype(np.int64))
        key = len(picks)
        if key not in self._sample_cache:
            ends = np.append(self.head_offsets[1:], self.head_end)
            with open(self.path, "rb") as f:
                fd = f.fileno()
                lines = [os.pread(fd, int(ends[i] - self.head_offsets[i]), int(self.head_offsets[i])) for i in picks]
            self._sample_cache[key] = columns_of(decode_lines(lines, Metrics).records)
        return self._sample_cache[key]


def effective(rows: np.ndarray, rewinds: list[tuple[float, int]]) -> np.ndarray:
    """The rows (file order) that describe the run's current timeline, in step order.

    Vectorised form of ``records.supersede``: a row is dropped when a rewind event (start, resume,
    NaN rollback) at step S written after it has S < its step, or when a later row has a step at or
    below its own.
    """
    t, step = rows[:, 0], rows[:, 1]
    keep = np.ones(len(rows), dtype=bool)
    for when, at in rewinds:
        keep &= ~((t < when) & (step > at))
    rows = rows[keep]
    if len(rows) == 0:
        return rows
    later_min = np.minimum.accumulate(rows[::-1, 1])[::-1]
    keep = np.append(rows[:-1, 1] < later_min[1:], True)
    return rows[keep]


def rewinds_of(events: list[Event]) -> list[tuple[float, int]]:
    return [(e.time, e.step) for e in events if isinstance(e, REWINDS)]
