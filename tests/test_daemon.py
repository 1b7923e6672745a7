"""The detached trainer and its control commands, against real trainer processes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from recordkit import line, write_pid_record
from trainer import pidfile
from trainer.config import load_config
from trainer.records import Metrics, Start
from vocodertui.cli import main
from vocodertui.control import ControlError, launch_detached
from trainer.rundir import RunPaths, decode_lines, read_jsonl, read_records
from vocodertui.runstate import run_status

from conftest import REPO, write_config


def wait_for(condition, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def events(run: RunPaths, name: str) -> list[dict]:
    return [e for e in read_jsonl(run.events) if e["event"] == name]


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def daemon(quick_config, demo_corpus, tmp_path, capsys):
    """A trainer started in the background with `vocodertui start --yes`; stopped at the end if still alive."""
    logs = tmp_path / "logs"
    code, out, err = cli(capsys, "start", "--yes", "--config", quick_config, "--data", demo_corpus,
                         "--run", "bg", "--logs-dir", logs, "--target-step", 100000)
    assert code == 0, err
    assert "✓" in out and "✗" not in out and "trainer running as pid" in out
    run = RunPaths(logs / "bg")
    yield run
    live = pidfile.check(run)
    if live.alive:
        os.kill(live.record.pid, signal.SIGKILL)


def test_background_run_is_steered_by_signals_and_stop(daemon, capsys, quick_config, demo_corpus):
    run = daemon
    record = pidfile.read_pid_file(run)
    assert record.pid != os.getpid() and os.getsid(record.pid) == record.pid  # its own session
    wait_for(lambda: read_jsonl(run.metrics), "the first metrics line")
    status = run_status(run)
    assert status.state == "running" and status.pid == record.pid and status.rss_bytes > 0

    os.kill(record.pid, signal.SIGUSR1)
    wait_for(lambda: any(e["reason"] == "requested" for e in events(run, "checkpoint")), "a requested checkpoint")
    os.kill(record.pid, signal.SIGUSR2)
    validations = len(events(run, "validation"))
    wait_for(lambda: len(events(run, "validation")) > validations, "a requested validation")

    code, out, err = cli(capsys, "start", "--foreground", "--config", quick_config, "--data", demo_corpus,
                         "--run", "bg", "--logs-dir", run.root.parent, "--resume", "latest")
    assert code == 1 and f"run bg is being trained right now by process {record.pid}" in err

    code, out, _ = cli(capsys, "stop", "--run", "bg", "--logs-dir", run.root.parent)
    assert code == 0 and "run bg stopped at step" in out
    stopped = events(run, "stopped")[-1]
    assert stopped["step"] in [s for s, _ in run.checkpoint_files()]
    assert not run.pid.exists() and run_status(run).state == "stopped"

    code, _, err = cli(capsys, "stop", "--run", "bg", "--logs-dir", run.root.parent)
    assert code == 1 and err == "vocodertui: error: run bg is not running\n"
    code, out, _ = cli(capsys, "status", "--logs-dir", run.root.parent, "--json")
    assert code == 0 and json.loads(out)[0]["state"] == "stopped"


def test_only_this_run_directorys_trainer_is_ever_signalled(daemon, capsys):
    """A copy of a live run folder is not running, and neither is a PID file forged to name an
    unrelated process exactly (its pid, create time and argv): stop signals neither."""
    run = daemon
    wait_for(lambda: read_jsonl(run.metrics), "the first metrics line")
    trainer = pidfile.read_pid_file(run).pid
    copy = RunPaths(run.root.parent / "bg_copy")
    shutil.copytree(run.root, copy.root, symlinks=True)

    status = run_status(copy)
    assert status.state != "running" and status.pid is None and "a copied run folder" in status.stale_pid_file
    code, _, err = cli(capsys, "stop", "--run", copy.name, "--logs-dir", run.root.parent)
    assert code == 1 and "nothing signalled" in err

    shell = subprocess.Popen(["sh", "-c", "sleep 60"])
    try:
        write_pid_record(copy, shell.pid)  # the shell's own pid, create time and argv, and this run's folder
        assert "does not hold this run's trainer.lock" in run_status(copy).stale_pid_file
        code, _, err = cli(capsys, "stop", "--run", copy.name, "--logs-dir", run.root.parent)
        assert code == 1 and "nothing signalled" in err
        assert shell.poll() is None
    finally:
        shell.kill()
        shell.wait()
    assert run_status(run).state == "running" and run_status(run).pid == trainer


def metric_steps(run: RunPaths) -> list[int]:
    return [m.step for m in read_records(run.metrics, Metrics).records]


def test_deleted_metrics_and_events_files_come_back_and_keep_every_later_step(daemon, capsys):
    run = daemon
    log_every = load_config(run.config).schedule.log_every
    wait_for(lambda: metric_steps(run), "the first metrics line")
    with open(run.metrics, "rb") as old_metrics:  # the trainer goes on writing into it until it notices
        deleted_at = metric_steps(run)[-1]
        run.events.unlink()  # first, so that the event for metrics.jsonl cannot land in the old events.jsonl
        run.metrics.unlink()
        wait_for(lambda: metric_steps(run), "metrics.jsonl again")
        wait_for(lambda: metric_steps(run)[-1] > deleted_at + 2 * log_every, "two more metrics lines")
        code, out, _ = cli(capsys, "stop", "--run", "bg", "--logs-dir", run.root.parent)
        assert code == 0 and "run bg stopped at step" in out
        old_steps = [m.step for m in decode_lines(old_metrics, Metrics).records]

    new_steps = metric_steps(run)
    assert new_steps[0] == old_steps[-1] + log_every  # not one line lost between the files
    assert new_steps == list(range(new_steps[0], new_steps[-1] + 1, log_every))
    reopened = {e["file"]: e for e in events(run, "file_reopened")}
    assert {name: e["reason"] for name, e in reopened.items()} == {"metrics.jsonl": "deleted", "events.jsonl": "deleted"}
    assert reopened["metrics.jsonl"]["step"] == new_steps[0]
    new_events = read_jsonl(run.events)
    assert new_events[0] == reopened["events.jsonl"] and new_events[-1]["event"] == "stopped"
    assert run_status(run).state == "stopped"
    assert "metrics.jsonl was deleted; reopened it" in run.log.read_text()


def test_stale_pid_files_are_never_trusted(quick_config, demo_corpus, tmp_path, capsys):
    run = RunPaths(tmp_path / "r")
    run.root.mkdir()
    run.events.write_text(line(Start, time=1.0, step=0, target_step=10))
    run.pid.write_text("garbage {")
    assert run_status(run).stale_pid_file == "the PID file is unreadable (not the JSON a trainer writes)"
    code, _, err = cli(capsys, "stop", "--run", "r", "--logs-dir", tmp_path)
    assert code == 1 and "stale PID file" in err

    foreign = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_pid_record(run, foreign.pid, create_time=1.0, argv=["python", "-m", "vocodertui.cli", "start"])
        status = run_status(run)
        assert status.state == "crashed" and f"PID {foreign.pid} now belongs to another process" in status.stale_pid_file
        code, _, err = cli(capsys, "stop", "--run", "r", "--logs-dir", tmp_path)
        assert code == 1 and "nothing signalled" in err
        assert foreign.poll() is None  # still alive: never signalled
    finally:
        foreign.kill()
        foreign.wait()


def test_a_launch_that_dies_early_shows_the_log(tmp_path):
    run = RunPaths(tmp_path / "r")
    run.root.mkdir()
    run.plan.write_text("{not a plan")
    with pytest.raises(ControlError) as refused:
        launch_detached(run, [sys.executable, "-m", "trainer", str(run.plan)], timeout=60, progress=lambda _: None)
    assert "the trainer exited during start-up (status 1)" in str(refused.value)
    assert "is not a start plan that vocodertui wrote" in str(refused.value)


def test_check_reports_every_problem_as_a_cross(tmp_path, capsys):
    code, out, _ = cli(capsys, "check", "--data", tmp_path / "missing", "--logs-dir", tmp_path)
    assert code == 1
    assert "✗   data" in out and "data directory not found" in out and "✓   configuration" in out


def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(quick_config, demo_corpus, tmp_path):
    """RLIMIT_FSIZE makes writes past 6 MB fail as a full disk would, mid-checkpoint."""
    import resource

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (6_000_000, 6_000_000))

    args = [sys.executable, "-m", "vocodertui.cli", "start", "--foreground", "--config", str(quick_config),
            "--data", str(demo_corpus), "--run", "r", "--logs-dir", str(tmp_path), "--target-step", "4"]
    first = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    run = RunPaths(tmp_path / "r")
    before = (run.checkpoints / "ckpt_00000004.pt").read_bytes()
    proc = subprocess.run(args[:-1] + ["8", "--resume", "latest"], cwd=REPO, capture_output=True, text=True,
                          preexec_fn=limit_file_size)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("vocodertui: error: cannot write checkpoint")
    assert (run.checkpoints / "ckpt_00000004.pt").read_bytes() == before
    assert not list(run.checkpoints.glob(".ckpt_*"))
    crashed = events(run, "crashed")[-1]
    assert "cannot write checkpoint" in crashed["reason"]


def test_a_resume_without_config_trains_on_the_checkpoints_own_data(quick_config, tmp_path, capsys):
    """Not on the demo's: the checkpoint's saved config names its data, batch and all, even after
    the run's config.yaml is gone and the resume starts a new run."""
    import numpy as np
    import soundfile as sf

    data = tmp_path / "own"
    data.mkdir()
    rng = np.random.default_rng(1)
    for i in range(12):
        sf.write(data / f"u{i}.wav", (0.1 * rng.standard_normal(22050)).astype(np.float32), 22050)
    own = write_config(tmp_path / "own.yaml", training={"batch_size": 2}, data={"val_count": 1},
                       schedule={"log_every": 2, "checkpoint_every": 2, "validate_every": 100, "val_samples": 0,
                                 "milestones": [], "quality_every": 0})
    logs = tmp_path / "logs"
    code, _, err = cli(capsys, "start", "--foreground", "--config", own, "--data", data, "--run", "base",
                       "--logs-dir", logs, "--target-step", 2)
    assert code == 0, err
    base = RunPaths(logs / "base")
    base.config.unlink()

    code, out, err = cli(capsys, "start", "--yes", "--run", "fork", "--logs-dir", logs, "--resume",
                         base.checkpoints / "ckpt_00000002.pt", "--target-step", 4)
    assert code == 0, err
    assert "the config ckpt_00000002.pt was trained with" in out and f"{data.resolve()}: 12 files" in out
    fork = RunPaths(logs / "fork")
    wait_for(lambda: events(fork, "finished"), "the resumed run to finish")
    resumed = events(fork, "resume")[-1]
    assert resumed["step"] == 2 and resumed["config"] == load_config(own).name
    trained_with = load_config(fork.config)
    assert trained_with.data.path == str(data.resolve()) and trained_with.training.batch_size == 2

    # a --config that changes what it was trained with is shown and needs --yes
    code, out, err = cli(capsys, "start", "--run", "fork", "--logs-dir", logs, "--resume", "latest",
                         "--target-step", 6, "--config", quick_config)
    assert code == 1 and "pass --yes to resume with them" in err and not fork.pid.exists()
    assert "⚠   resume checkpoint" in out and "training.batch_size: 2 → 4" in out and "data.path" in out
