"""The run directory: the only interface between the trainer and everything that watches it.

See docs/run-directory.md; the records themselves are typed in ``trainer.records``. This module
imports neither torch nor textual: the trainer writes through it and the dashboard and control
commands read through it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import msgspec

from trainer.errors import UserError
from trainer.records import EVENTS_DECODER, METRICS_DECODER, QUALITY_DECODER, QUALITY_PREFIX, Event, Metrics, Quality, Record, encode

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
EVENTS = "events.jsonl"
LOG = "trainer.log"
PID = "trainer.pid"
LOCK = "trainer.lock"
PLAN = "start-plan.json"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
REFERENCES = "reference"

CHECKPOINT_PREFIX = "ckpt_"
CHECKPOINT_SUFFIX = ".pt"


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:08d}{CHECKPOINT_SUFFIX}"


def checkpoint_step(path: Path) -> int | None:
    """The step in a ``ckpt_XXXXXXXX.pt`` name, or None for any other file."""
    name = path.name
    if not (name.startswith(CHECKPOINT_PREFIX) and name.endswith(CHECKPOINT_SUFFIX)):
        return None
    digits = name[len(CHECKPOINT_PREFIX) : -len(CHECKPOINT_SUFFIX)]
    return int(digits) if digits.isdigit() else None


RUN_NAME_MAX = 100
RUN_NAME_PUNCTUATION = "-_.+@=,"


def run_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a run folder, or None: a run name is one plain folder name that
    a shell, a terminal and every file system take as it is."""
    if not name:
        return "it is empty"
    if len(name) > RUN_NAME_MAX:
        return f"it has {len(name)} characters, more than {RUN_NAME_MAX}"
    if name.startswith("."):
        return "it starts with '.' (such folders hold caches, not runs)"
    bad = sorted({c for c in name if not (c.isalnum() or c in RUN_NAME_PUNCTUATION)})
    if bad:
        return f"it contains {' '.join(repr(c) for c in bad[:5])}"
    return None


def plain_name(text: str) -> str:
    """``text`` with every character a run name cannot hold replaced by '_', cut to the maximum length."""
    cleaned = "".join(c if c.isalnum() or c in RUN_NAME_PUNCTUATION else "_" for c in text).lstrip(".")
    return cleaned[:RUN_NAME_MAX] or "run"


def run_in(logs_dir: Path, name: str) -> RunPaths:
    """The run ``name`` under ``logs_dir``; a name that is not a plain folder name is a UserError."""
    problem = run_name_problem(name)
    if problem:
        shown = repr(name if len(name) <= 40 else name[:40] + "…")
        raise UserError(f"invalid run name {shown}: {problem}; use letters, digits and {RUN_NAME_PUNCTUATION} "
                        f"(at most {RUN_NAME_MAX} characters, not starting with '.')")
    return RunPaths(logs_dir / name)


def sample_dir_name(step: int) -> str:
    return f"step_{step:08d}"


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def events(self) -> Path:
        return self.root / EVENTS

    @property
    def log(self) -> Path:
        return self.root / LOG

    @property
    def pid(self) -> Path:
        return self.root / PID

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def plan(self) -> Path:
        return self.root / PLAN

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def samples(self) -> Path:
        return self.root / SAMPLES

    @property
    def references(self) -> Path:
        """The validation utterances the samples are generated from, as the trainer reads them."""
        return self.samples / REFERENCES

    def checkpoint_files(self) -> list[tuple[int, Path]]:
        """(step, path) of every checkpoint file, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = [(checkpoint_step(p), p) for p in self.checkpoints.iterdir()]
        return sorted((s, p) for s, p in found if s is not None)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` so that readers see the old text or the new one, never a partial file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class JsonlWriter:
    """Appends records as whole lines, each with a single ``write`` on an O_APPEND descriptor.

    If the file ends in a torn line (a writer killed mid-write), a newline is written first so the
    fragment stays a line of its own, which readers skip. Before each record it checks that its path
    still names the open file; when the file was deleted or replaced by another, it opens the path
    again and calls ``on_reopen(path, reason, record)`` before writing ``record`` there.
    """

    def __init__(self, path: Path, on_reopen: Optional[Callable[[Path, str, Record], None]] = None):
        self.path = path
        self.on_reopen = on_reopen
        self.opened = self._open()  # (fd, (st_dev, st_ino)): one attribute, so a signal handler never sees half a swap

    @property
    def fd(self) -> int:
        return self.opened[0]

    def _open(self) -> tuple[int, tuple[int, int]]:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        st = os.fstat(fd)
        if st.st_size:
            with open(self.path, "rb") as f:
                f.seek(st.st_size - 1)
                if f.read(1) != b"\n":
                    os.write(fd, b"\n")
        return fd, (st.st_dev, st.st_ino)

    def _replaced(self) -> Optional[str]:
        """Why the path no longer names the open file (``deleted``, ``replaced by another file``), or None."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return "deleted"
        return None if (st.st_dev, st.st_ino) == self.opened[1] else "replaced by another file"

    def write(self, record: Record) -> None:
        reason = self._replaced()
        if reason is not None:
            self._reopen()
            if self.on_reopen is not None:
                self.on_reopen(self.path, reason, record)
        fd, data = self.fd, encode(record)
        written = os.write(fd, data)
        while written < len(data):  # only after a signal or a full disk; the line stays whole or torn at its end
            written += os.write(fd, data[written:])

    def _reopen(self) -> None:
        # The new file is open before the old one closes, so its inode cannot be the old one's
        # reused (a follower tells files apart by inode).
        old_fd, _ = self.opened
        self.opened = self._open()
        os.close(old_fd)

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class Decoded:
    """The records that decoded, and how many whole lines did not (garbled, torn, wrong types)."""

    records: list
    skipped: int = 0


Kind = type[Metrics] | type[Quality] | type[Event]


def decode_lines(lines: Iterable[bytes], kind: Kind) -> Decoded:
    """Records of ``kind`` from raw lines: ``Metrics`` or ``Quality`` from metrics.jsonl (each
    passes over the other's lines), ``Event`` from events.jsonl.

    A line without its newline is still being written (or was torn by a crash) and is left out
    without being counted; a whole line that does not decode into a record is skipped and counted.
    """
    decoder = {Metrics: METRICS_DECODER, Quality: QUALITY_DECODER}.get(kind, EVENTS_DECODER)
    quality_lines = {Metrics: False, Quality: True}.get(kind)  # of metrics.jsonl's two kinds of line, which to read
    out = Decoded([])
    for line in lines:
        if not line.endswith(b"\n"):
            continue
        if quality_lines is not None and line.startswith(QUALITY_PREFIX) != quality_lines:
            continue
        try:
            out.records.append(decoder.decode(line))
        except msgspec.DecodeError:  # ValidationError is a DecodeError too
            out.skipped += 1 if line.strip() else 0
    return out


def read_records(path: Path, kind: Kind) -> Decoded:
    """Every record of a JSONL file (an absent file has none)."""
    try:
        with open(path, "rb") as f:
            return decode_lines(f, kind)
    except FileNotFoundError:
        return Decoded([])


def tail_records(path: Path, kind: Kind, max_bytes: int = 65536) -> Decoded:
    """The records in the last ``max_bytes`` of a JSONL file (cheap on a file of any size)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes - 1)
            f.seek(start)
            lines = f.read().splitlines(keepends=True)
    except FileNotFoundError:
        return Decoded([])
    if start and lines:
        lines = lines[1:]  # the byte before the window ends the line it cuts, or is that line's tail
    return decode_lines(lines, kind)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every whole line of a JSONL file that is a JSON object, as plain data: for tools and tests
    that want the raw records (the product reads through ``read_records``)."""
    found = []
    try:
        with open(path, "rb") as f:
            for line in f:
                try:
                    record = json.loads(line) if line.endswith(b"\n") else None
                except ValueError:
                    continue
                if isinstance(record, dict):
                    found.append(record)
    except FileNotFoundError:
        pass
    return found
