"""Steering a trainer from outside: launching it detached and stopping it, through the run
directory and verified signals only. No torch here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from vocodertui import pidfile
from vocodertui.rundir import RunPaths, read_jsonl

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


def launch_detached(run: RunPaths, launcher: list[str], child_args: list[str], timeout: float,
                    progress: Callable[[str], None]) -> int:
    """Start the trainer in its own session (stdin /dev/null, output to trainer.log), behind
    ``launcher`` (torchrun) when given, and wait until it has written its PID file and its start or
    resume event. Returns the trainer's PID (rank 0's under torchrun)."""
    run.root.mkdir(parents=True, exist_ok=True)
    launched_at = time.time()
    with open(run.log, "ab") as log:
        child = subprocess.Popen(
            [*(launcher or [sys.executable]), "-m", "vocodertui.cli", *child_args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while True:
        code = child.poll()
        finished_already = code == 0 and any(e.get("event") == "finished" and e["time"] >= launched_at for e in read_jsonl(run.events))
        if finished_already:  # a run so short that it ended before we looked
            return child.pid
        if code is not None:
            raise ControlError(f"the trainer exited during start-up (status {code}); last lines of {run.log}:\n{log_tail(run)}")
        record = pidfile.read_pid_file(run)
        started = isinstance(record, pidfile.PidRecord) and any(
            e.get("event") in ("start", "resume") and e.get("pid") == record.pid and e["time"] >= launched_at
            for e in read_jsonl(run.events)
        )
        if started:
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
            final = [e for e in read_jsonl(run.events) if e["time"] >= asked_at and e.get("event") in ("stopped", "finished", "crashed")]
            if final:
                e = final[-1]
                return f"run {run.name} {e['event']} at step {e['step']}" + (f" ({e['reason']})" if e.get("reason") and e["event"] == "crashed" else "")
            return f"run {run.name} (pid {pid}) has exited"
        if time.monotonic() > deadline:
            break
        recent = [e for e in read_jsonl(run.events) if e["time"] >= asked_at]
        doing = "writing the checkpoint" if any(e.get("event") == "checkpoint" for e in recent) else "finishing the current step"
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
    trained with (its config.yaml); returns the trainer's PID once it has written its resume event."""
    args = ["start", "--daemon-child", "--run-name", run.name, "--logs-dir", str(run.root.parent.resolve()),
            "--resume", str(checkpoint.resolve())]
    return launch_detached(run, [], args, timeout, progress)
