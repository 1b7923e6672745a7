"""The run directory: the only interface between the trainer and everything that watches it.

See docs/run-directory.md. This module imports neither torch nor textual: the trainer writes through
it and the dashboard and control commands read through it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
EVENTS = "events.jsonl"
LOG = "trainer.log"
PID = "trainer.pid"
LOCK = "trainer.lock"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"

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
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def samples(self) -> Path:
        return self.root / SAMPLES

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


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonlWriter:
    """Appends records as whole lines, each with a single ``write`` on an O_APPEND descriptor.

    If the file ends in a torn line (a writer killed mid-write), a newline is written first so the
    fragment stays a line of its own, which readers skip.
    """

    def __init__(self, path: Path):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(self.fd).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    os.write(self.fd, b"\n")

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: _finite(v) for k, v in record.items()}
        data = (json.dumps(clean, separators=(",", ":")) + "\n").encode()
        written = os.write(self.fd, data)
        while written < len(data):  # only after a signal or a full disk; the line stays whole or torn at its end
            written += os.write(self.fd, data[written:])

    def close(self) -> None:
        os.close(self.fd)


def parse_lines(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """Records from raw lines; a torn or garbled line is skipped."""
    for line in lines:
        if not line.endswith(b"\n"):
            continue  # still being written, or torn by a crash
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every whole record of a JSONL file (an absent file has none)."""
    try:
        with open(path, "rb") as f:
            return list(parse_lines(f))
    except FileNotFoundError:
        return []


def tail_records(path: Path, max_bytes: int = 65536) -> list[dict[str, Any]]:
    """The whole records in the last ``max_bytes`` of a JSONL file (cheap on a file of any size)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes - 1)
            f.seek(start)
            lines = f.read().splitlines(keepends=True)
    except FileNotFoundError:
        return []
    if start and lines:
        lines = lines[1:]  # the byte before the window ends the line it cuts, or is that line's tail
    return list(parse_lines(lines))


def supersede(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records in step order once resumes are accounted for.

    A run resumed (or rolled back after a non-finite loss) to the checkpoint at step S recomputes
    every step after S, so a ``start`` (S = 0), ``resume`` or ``nan_rollback`` event at S drops earlier records with step > S, and a metrics line for step s replaces any
    earlier line for a step >= s.
    """
    kept: list[dict[str, Any]] = []
    for record in records:
        step = record.get("step")
        if isinstance(step, int):
            if "event" not in record:
                while kept and kept[-1].get("step", -1) >= step:
                    kept.pop()
            elif record["event"] in ("start", "resume", "nan_rollback"):
                while kept and kept[-1].get("step", -1) > step:
                    kept.pop()
        kept.append(record)
    return kept
