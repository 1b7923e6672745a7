"""Who is training a run: the lock the trainer holds and the PID file it writes, and how a
controller decides whether the PID file still describes that trainer.

A PID alone is never trusted. The PID file must name this very run directory (a copied run folder
carries the original's PID file), and its process must still exist on this host with the recorded
creation time and command line, hold this run directory's ``trainer.lock`` open (only the trainer
that locked it does), and, when it was launched detached, carry the file's per-start token in its
environment. Anything else is a stale PID file, and nothing is ever signalled through one.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
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
    run_dir: str  # the resolved run directory the process trains
    token: str  # this start's own: VOCODERTUI_RUN_TOKEN of a detached trainer, else random


# A detached trainer is launched with this variable set (vocodertui/control.py); its PID file names it.
TOKEN_ENV = "VOCODERTUI_RUN_TOKEN"


def new_token() -> str:
    return secrets.token_hex(16)


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
    record = PidRecord(me.pid, me.create_time(), socket.gethostname(), me.cmdline() or sys.argv, time.time(),
                       str(run.root.resolve()), os.environ.get(TOKEN_ENV) or new_token())
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
            run_dir=str(raw["run_dir"]), token=str(raw["token"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return "the PID file is unreadable (not the JSON a trainer writes)"


def check(run: RunPaths) -> Liveness:
    """Whether the PID file names this run's live trainer; every other case carries a reason."""
    record = read_pid_file(run)
    if record is None:
        return Liveness(False, "no PID file")
    if isinstance(record, str):
        return Liveness(False, record)
    root = run.root.resolve()
    if record.run_dir != str(root):
        return Liveness(False, f"the PID file is of run directory {record.run_dir[:120]}, not of this one "
                               "(a copied run folder?)", record)
    if record.host != socket.gethostname():
        return Liveness(False, f"the PID file was written on host {record.host[:80]}, not this one", record)
    if record.pid <= 0:
        return Liveness(False, f"PID {record.pid} is not a process id", record)
    try:
        process = psutil.Process(record.pid)
        create_time = process.create_time()
        cmdline = process.cmdline()
        if abs(create_time - record.create_time) > 0.05 or cmdline != record.argv:
            return Liveness(False, f"PID {record.pid} now belongs to another process ({' '.join(cmdline)[:80]})", record)
        if process.status() == psutil.STATUS_ZOMBIE:
            return Liveness(False, f"process {record.pid} has exited", record)
        if not _holds(process, root / run.lock.name):
            return Liveness(False, f"process {record.pid} does not hold this run's {run.lock.name}: "
                                   "it is not this run's trainer", record)
        token = process.environ().get(TOKEN_ENV)
    except psutil.NoSuchProcess:
        return Liveness(False, f"process {record.pid} is gone", record)
    except psutil.AccessDenied:
        return Liveness(False, f"process {record.pid} belongs to another user", record)
    if token is not None and token != record.token:
        return Liveness(False, f"process {record.pid} was started for another run (its token differs)", record)
    return Liveness(True, "", record, process)


def _holds(process: psutil.Process, path: Path) -> bool:
    return any(f.path == str(path) for f in process.open_files())
