"""Run states from prepared run directories (no trainer needed): the PID file is this test process."""

import json
import os
import subprocess
import sys

from recordkit import line, write_pid_record
from trainer import pidfile
from trainer.records import Checkpoint, Crashed, Finished, Metrics, Start, Stopping
from trainer.rundir import RunPaths
from vocodertui.runstate import checkpoint_table, list_runs, run_status

NOW = 1_800_000_000.0


def prepared_run(tmp_path, metrics_times=(), events=(), live=True, name="r") -> RunPaths:
    run = RunPaths(tmp_path / name)
    run.checkpoints.mkdir(parents=True)
    run.config.write_text("schedule: {log_every: 10}\n")
    run.events.write_text(line(Start, time=NOW - 1000, step=0, target_step=1000) + "".join(events))
    run.metrics.write_text("".join(line(Metrics, time=t, step=10 * (i + 1)) for i, t in enumerate(metrics_times)))
    if live:  # this test process stands in for the trainer: it holds the lock and writes the PID file
        pidfile.RunLock(run)
        pidfile.write_pid_file(run)
    return run


def test_running_with_rate_and_eta(tmp_path):
    run = prepared_run(tmp_path, metrics_times=[NOW - 40, NOW - 30, NOW - 20, NOW - 10])
    s = run_status(run, now=NOW)
    assert s.state == "running" and s.step == 40 and s.target_step == 1000
    assert s.steps_per_s == 1.0 and s.eta_s == 960 and s.last_metric_age_s == 10 and s.rss_bytes > 0


def test_stalled_when_nothing_is_written_while_the_process_lives(tmp_path):
    run = prepared_run(tmp_path, metrics_times=[NOW - 910, NOW - 900])
    s = run_status(run, now=NOW)
    assert s.state == "stalled" and "nothing written for 900 s" in s.reason


def test_stopping_after_the_signal(tmp_path):
    run = prepared_run(tmp_path, metrics_times=[NOW - 20, NOW - 10],
                       events=[line(Stopping, time=NOW - 5, step=20, reason="SIGTERM")])
    assert run_status(run, now=NOW).state == "stopping"


def test_terminal_states_and_a_silent_death(tmp_path):
    finished = prepared_run(tmp_path, [NOW - 10], [line(Finished, time=NOW - 5, step=1000, target_step=1000)], live=False, name="f")
    assert run_status(finished, now=NOW).state == "finished"
    crashed = prepared_run(tmp_path, [NOW - 10], [line(Crashed, time=NOW - 5, step=10, reason="RuntimeError: x")],
                           live=False, name="c")
    assert (run_status(crashed, now=NOW).state, run_status(crashed, now=NOW).reason) == ("crashed", "RuntimeError: x")
    killed = prepared_run(tmp_path, [NOW - 10], live=False, name="k")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed.pid.write_text(json.dumps({"pid": dead.pid, "create_time": 1.0, "host": pidfile.socket.gethostname(),
                                      "argv": ["x"], "start_time": 1.0, "run_dir": str(killed.root.resolve()), "token": "t"}))
    s = run_status(killed, now=NOW)
    assert s.state == "crashed" and "died without a word" in s.reason and f"process {dead.pid} is gone" in s.stale_pid_file
    empty = RunPaths(tmp_path / "e")
    empty.root.mkdir()
    empty.config.write_text("{}")
    assert run_status(empty, now=NOW).state == "not started"
    assert {r.name for r in list_runs(tmp_path)} == {"f", "c", "k", "e"}


def test_checkpoint_table_marks_the_best(tmp_path):
    run = prepared_run(tmp_path, events=[
        line(Checkpoint, time=NOW, step=10, val_mel=0.5),
        line(Checkpoint, time=NOW, step=20, val_mel=0.4),
        line(Checkpoint, time=NOW, step=30, val_mel=None),
    ], live=False)
    for step in (10, 20, 30):
        (run.checkpoints / f"ckpt_{step:08d}.pt").write_bytes(b"x" * step)
    rows = checkpoint_table(run)
    assert [(r.step, r.size, r.val_mel, r.best) for r in rows] == [(10, 10, 0.5, False), (20, 20, 0.4, True), (30, 30, None, False)]


def test_a_record_of_the_wrong_type_is_skipped_and_counted_not_fatal(tmp_path):
    run = prepared_run(tmp_path, metrics_times=[NOW - 20, NOW - 10], live=False,
                       events=[line(Finished, time=NOW - 5, step=20, target_step=20).replace('"step":20', '"step":"20"'),
                               '{"event":"stopped","time":"yesterday"}\n'])
    s = run_status(run, now=NOW)
    assert s.skipped_records == 2 and s.step == 20 and s.state == "crashed"  # the valid start and metrics still count


def test_a_lock_holder_started_for_another_token_is_not_the_trainer(tmp_path):
    run = RunPaths(tmp_path / "r")
    run.root.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); print(flush=True); time.sleep(60)", str(run.lock)],
        stdout=subprocess.PIPE, env={**os.environ, pidfile.TOKEN_ENV: "the-token-it-was-started-with"})
    try:
        holder.stdout.readline()  # it holds the lock
        write_pid_record(run, holder.pid, token="the-token-it-was-started-with")
        assert pidfile.check(run).alive
        write_pid_record(run, holder.pid, token="another-start")
        live = pidfile.check(run)
        assert not live.alive and "its token differs" in live.reason
    finally:
        holder.kill()
        holder.wait()
