"""Who is training a run: the lock the trainer holds and the PID file it writes, and how a
controller decides whether the PID file still describes that trainer.

A PID alone is never trusted: the process must still exist, have the recorded creation time and
the recorded command line, on this host. Anything else is a stale PID file.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from typing import Optional

import psutil

from trainer.rundir import RunPaths, write_text_atomic


@dataclass(frozen=True)
class PidRecord:
    pid: int
    create_time: float
    host: str
    argv: list[str]
    start_time: float


@dataclass(frozen=True)
class Liveness:
    alive: bool
    reason: str  # why the PID file is stale, or "" for a live trainer
    record: Optional[PidRecord] = None
    process: Optional[psutil.Process] = None


class RunLock:
    """An exclusive ``fcntl`` lock on ``trainer.lock`` held for the trainer's whole life."""

    def __init__(self, run: RunPaths):
        self.fd = os.open(run.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise

    def release(self) -> None:
        os.close(self.fd)


def write_pid_file(run: RunPaths) -> PidRecord:
    me = psutil.Process()
    record = PidRecord(me.pid, me.create_time(), socket.gethostname(), me.cmdline() or sys.argv, time.time())
    write_text_atomic(run.pid, json.dumps(asdict(record)))
    return record


def remove_pid_file(run: RunPaths, record: PidRecord) -> None:
    """Remove the PID file if it is still ours."""
    current = read_pid_file(run)
    if isinstance(current, PidRecord) and current.pid == record.pid and current.create_time == record.create_time:
        run.pid.unlink(missing_ok=True)


def read_pid_file(run: RunPaths) -> PidRecord | str | None:
    """The record, None if there is no PID file, or a string saying why the file is unusable."""
    try:
        raw = json.loads(run.pid.read_text())
        return PidRecord(
            pid=int(raw["pid"]), create_time=float(raw["create_time"]), host=str(raw["host"]),
            argv=[str(a) for a in raw["argv"]], start_time=float(raw["start_time"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return "the PID file is unreadable (not the JSON a trainer writes)"


def check(run: RunPaths) -> Liveness:
    """Whether the PID file names this run's live trainer; every other case carries a reason."""
    record = read_pid_file(run)
    if record is None:
        return Liveness(False, "no PID file")
    if isinstance(record, str):
        return Liveness(False, record)
    if record.host != socket.gethostname():
        return Liveness(False, f"the PID file was written on host {record.host}, not this one", record)
    try:
        process = psutil.Process(record.pid)
        create_time = process.create_time()
        cmdline = process.cmdline()
    except psutil.NoSuchProcess:
        return Liveness(False, f"process {record.pid} is gone", record)
    except psutil.AccessDenied:
        return Liveness(False, f"process {record.pid} belongs to another user", record)
    if abs(create_time - record.create_time) > 0.05 or cmdline != record.argv:
        return Liveness(False, f"PID {record.pid} now belongs to another process ({' '.join(cmdline)[:80]})", record)
    if process.status() == psutil.STATUS_ZOMBIE:
        return Liveness(False, f"process {record.pid} has exited", record)
    return Liveness(True, "", record, process)
