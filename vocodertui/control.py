"""Steering a trainer from outside: launching it detached and stopping it, through the run
directory and verified signals only. No torch here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from trainer import pidfile
from trainer.records import ENDINGS, SEGMENTS, Checkpoint, Crashed, Event, Finished, kind_of
from trainer.rundir import RunPaths, read_records

POLL_S = 0.2


class ControlError(Exception):
    """A control action that cannot be carried out; the message is one line for the user."""


def log_tail(run: RunPaths, lines: int = 15) -> str:
    """The last lines of trainer.log, read from its end (the file grows for as long as the run lives)."""
    try:
        with open(run.log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no trainer.log)"


def launch_detached(run: RunPaths, command: list[str], timeout: float, progress: Callable[[str], None]) -> int:
    """Start the trainer (``command``: ``python -m trainer PLAN``, behind torchrun when given) in its
    own session (stdin /dev/null, output to trainer.log), and wait until it has written its PID file
    and its start or resume event. Returns the trainer's PID (rank 0's under torchrun)."""
    run.root.mkdir(parents=True, exist_ok=True)
    launched_at = time.time()
    with open(run.log, "ab") as log:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, env={**os.environ, pidfile.TOKEN_ENV: pidfile.new_token()})
    deadline = time.monotonic() + timeout
    while True:
        code = child.poll()
        since = [e for e in read_records(run.events, Event).records if e.time >= launched_at]
        if code == 0 and any(isinstance(e, Finished) for e in since):  # a run so short that it ended before we looked
            return child.pid
        if code is not None:
            raise ControlError(f"the trainer exited during start-up (status {code}); last lines of {run.log}:\n{log_tail(run)}")
        record = pidfile.read_pid_file(run)
        if isinstance(record, pidfile.PidRecord) and any(isinstance(e, SEGMENTS) and e.pid == record.pid for e in since):
            return record.pid
        if time.monotonic() > deadline:
            raise ControlError(
                f"the trainer (pid {child.pid}) has not reported its start after {timeout:.0f} s; it keeps running: "
                f"watch {run.log}"
            )
        last = log_tail(run, 1)
        progress(last.split(" INFO ", 1)[-1] if last else "starting")
        time.sleep(POLL_S)


def send_signal(run: RunPaths, sig: signal.Signals) -> int:
    """Signal the run's trainer after verifying it is that trainer; returns its PID."""
    live = pidfile.check(run)
    if not live.alive:
        if live.reason == "no PID file":
            raise ControlError(f"run {run.name} is not running")
        raise ControlError(f"run {run.name} is not running: stale PID file, {live.reason}; nothing signalled")
    os.kill(live.record.pid, sig)
    return live.record.pid


def stop(run: RunPaths, timeout: float, force: bool, progress: Callable[[str], None]) -> str:
    """Graceful stop (SIGTERM: finish the step, checkpoint, exit); SIGKILL after ``timeout`` if ``force``.

    Returns a line describing the outcome; raises ControlError if the trainer could not be stopped.
    """
    live = pidfile.check(run)
    pid = send_signal(run, signal.SIGTERM)
    asked_at = time.time()
    deadline = time.monotonic() + timeout
    while True:
        still = pidfile.check(run)
        if not (still.alive and still.record.pid == pid):
            final = [e for e in read_records(run.events, Event).records if e.time >= asked_at and isinstance(e, ENDINGS)]
            if final:
                e = final[-1]
                return f"run {run.name} {kind_of(type(e))} at step {e.step}" + (f" ({e.reason})" if isinstance(e, Crashed) else "")
            return f"run {run.name} (pid {pid}) has exited"
        if time.monotonic() > deadline:
            break
        recent = [e for e in read_records(run.events, Event).records if e.time >= asked_at]
        doing = "writing the checkpoint" if any(isinstance(e, Checkpoint) for e in recent) else "finishing the current step"
        progress(f"waiting for pid {pid}: {doing} ({time.time() - asked_at:.0f} s)")
        time.sleep(POLL_S)
    if not force:
        raise ControlError(f"run {run.name} (pid {pid}) is still stopping after {timeout:.0f} s; wait, or use --force to kill it")
    again = pidfile.check(run)
    if not (again.alive and again.record == live.record):
        return f"run {run.name} (pid {pid}) has exited"
    os.kill(pid, signal.SIGKILL)
    return f"run {run.name} (pid {pid}) killed after {timeout:.0f} s; resume it from its last checkpoint"


def resume(run: RunPaths, checkpoint: Path, timeout: float, progress: Callable[[str], None]) -> int:
    """Start the run's trainer again, detached, from ``checkpoint`` with the config the run was last
    trained with (its config.yaml), through ``vocodertui start`` and so its pre-flight checks;
    returns the trainer's PID once it has written its resume event."""
    command = [sys.executable, "-m", "vocodertui.cli", "start", "--yes", "--run", run.name,
               "--logs-dir", str(run.root.parent.resolve()), "--resume", str(checkpoint.resolve()), "--wait", str(timeout)]
    with tempfile.TemporaryFile() as output:
        starter = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        while starter.poll() is None:
            progress(log_tail(run, 1))
            time.sleep(POLL_S)
        output.seek(0)
        said = output.read().decode(errors="replace").strip().splitlines()
    if starter.returncode != 0:
        errors = [line for line in said if "error:" in line]
        raise ControlError((errors or said or [f"start exited with status {starter.returncode}"])[-1])
    record = pidfile.read_pid_file(run)
    if not isinstance(record, pidfile.PidRecord):
        raise ControlError(f"run {run.name} started and has already exited; see {run.log}")
    return record.pid
