"""Following growing JSONL files, and the loss-curve arithmetic of the dashboard."""

import os

import numpy as np
import pytest

from recordkit import make
from trainer.records import Metrics, NanRollback, Quality, Resume, Start, encode, supersede
from trainer.rundir import JsonlWriter
from vocodertui.follow import METRIC_COLUMNS, JsonlFollower, MetricsFollower, columns_of, effective, rewinds_of
from vocodertui.series import EMA_WEIGHTS, downsample, ema, moving_mean, positive_for_log, smooth, trend


def metric(step, t=None, **values):
    return Metrics(time=float(step if t is None else t), step=step, **{"loss_g": 50.0 - step / 100, **values})


def append(path, *records, raw=b""):
    with open(path, "ab") as f:
        for r in records:
            f.write(encode(r))
        f.write(raw)


def test_follower_reads_only_new_whole_lines(tmp_path):
    path = tmp_path / "m.jsonl"
    follower = JsonlFollower(path, Metrics)
    assert follower.read_new() == ([], False)  # no file yet
    append(path, metric(1), raw=b'{"time": 2, "st')
    records, reset = follower.read_new()
    assert [r.step for r in records] == [1] and not reset
    append(path, raw=b'ep": 2}\n')
    assert [r.step for r in follower.read_new()[0]] == [2]  # the torn line, once whole
    assert follower.read_new() == ([], False)
    append(path, raw=b'garbage\n{"time": 4.0, "step": "four"}\n')
    append(path, metric(3))
    assert [r.step for r in follower.read_new()[0]] == [3] and follower.skipped == 2


def test_follower_starts_over_after_truncation_or_replacement(tmp_path):
    path = tmp_path / "m.jsonl"
    append(path, metric(1), metric(2), metric(3))
    follower = JsonlFollower(path, Metrics)
    assert len(follower.read_new()[0]) == 3
    path.write_bytes(encode(metric(7)))  # shorter: truncated and rewritten
    records, reset = follower.read_new()
    assert reset and [r.step for r in records] == [7]
    replacement = tmp_path / "new.jsonl"
    append(replacement, metric(8), metric(9), metric(10), metric(11))
    os.replace(replacement, path)  # a new file, longer than the old offset
    records, reset = follower.read_new()
    assert reset and [r.step for r in records] == [8, 9, 10, 11]
    path.unlink()
    assert follower.read_new() == ([], True)


@pytest.mark.parametrize("polled_while_absent", [True, False])
def test_metrics_follower_starts_over_on_the_file_a_writer_recreated(tmp_path, polled_while_absent):
    path = tmp_path / "metrics.jsonl"
    writer = JsonlWriter(path)
    for step in (1, 2, 3):
        writer.write(metric(step))
    follower = MetricsFollower(path)
    assert follower.poll() and follower.recent[:, 1].tolist() == [1, 2, 3]
    path.unlink()
    if polled_while_absent:
        assert follower.poll() and len(follower.recent) == 0
    writer.write(metric(4))
    writer.close()
    assert follower.poll() and follower.recent[:, 1].tolist() == [4]


def test_metrics_follower_opens_a_big_file_from_its_tail_and_indexes_the_rest_lazily(tmp_path):
    path = tmp_path / "metrics.jsonl"
    writer = JsonlWriter(path)
    for step in range(1, 20001):
        writer.write(metric(step))
    writer.close()
    follower = MetricsFollower(path, tail_bytes=64 * 1024)
    follower.poll()
    tail_steps = follower.recent[:, 1]
    assert tail_steps[-1] == 20000 and 100 < len(tail_steps) < 2000  # only the last 64 KB was parsed
    assert np.all(np.diff(tail_steps) == 1)  # starting on a whole line
    assert not follower.head_indexed and len(follower.head_sample(100)) == 0
    while follower.index_some(budget=256 * 1024):
        pass
    assert follower.head_lines == 20000 - len(tail_steps)
    sample = follower.head_sample(100)
    assert len(sample) == 100 and sample[0, 1] == 1 and sample[-1, 1] == 20000 - len(tail_steps)
    writer = JsonlWriter(path)
    writer.write(metric(20001))
    assert follower.poll() and follower.recent[-1, 1] == 20001


def test_metrics_follower_finds_the_older_quality_lines_as_it_indexes_them(tmp_path):
    path = tmp_path / "metrics.jsonl"
    writer = JsonlWriter(path)
    for step in range(1, 5001):
        writer.write(metric(step))
        if step % 1000 == 0:
            writer.write(make(Quality, time=float(step), step=step, metrics={}))
    writer.close()
    append(path, raw=b'{"kind":"quality","time":1,"step":"garbled"}\n')
    follower = MetricsFollower(path, tail_bytes=16 * 1024)
    follower.poll()
    assert [q.step for q in follower.quality] == [5000]  # only the tail's so far
    assert follower.skipped == 1
    while follower.index_some(budget=32 * 1024):
        pass
    assert [q.step for q in follower.quality] == [1000, 2000, 3000, 4000, 5000]
    append(path, make(Quality, time=6000.0, step=6000, metrics={}))
    follower.poll()
    assert [q.step for q in follower.quality][-2:] == [5000, 6000]


def test_vectorised_supersede_agrees_with_the_record_by_record_rule():
    rng = np.random.default_rng(0)
    for _ in range(50):
        records, step, t = [], 0, 0.0
        for _ in range(rng.integers(5, 60)):
            t += 1.0
            if rng.random() < 0.15 and step > 0:
                step = int(rng.integers(0, step))  # a resume or rollback to an earlier checkpoint
                kind = [Resume, NanRollback, Start][rng.integers(0, 3)]
                step = 0 if kind is Start else step
                records.append(make(kind, time=t, step=step))
            else:
                step += int(rng.integers(1, 4))
                records.append(metric(step, t))
        metrics = [r for r in records if isinstance(r, Metrics)]
        events = [r for r in records if not isinstance(r, Metrics)]
        expected = [r.step for r in supersede(records) if isinstance(r, Metrics)]
        got = effective(columns_of(metrics), rewinds_of(events))
        assert got[:, 1].tolist() == expected


def test_columns_turn_nulls_into_nan():
    rows = columns_of([Metrics(time=1.0, step=2, loss_g=None, loss_d=3.0)])
    assert rows.shape == (1, len(METRIC_COLUMNS)) and np.isnan(rows[0, 2]) and rows[0, 1] == 2 and rows[0, 3] == 3.0


@pytest.mark.parametrize("weight", EMA_WEIGHTS)
def test_smoothing_matches_the_textbook_loops(weight):
    x = np.random.default_rng(1).standard_normal(1000) + np.linspace(5, 0, 1000)
    loop, m = [], 0.0
    for t, v in enumerate(x, 1):  # wandb's and TensorBoard's debiased EMA
        m = weight * m + (1 - weight) * v
        loop.append(m / (1 - weight ** t))
    smoothed = ema(x, weight)
    assert smoothed[0] == pytest.approx(x[0], rel=1e-12)  # the first point is not dragged towards 0
    assert np.allclose(smoothed, loop, rtol=1e-10, atol=1e-10)
    expected = [x[max(0, i - 19): i + 1].mean() for i in range(len(x))]
    assert np.allclose(moving_mean(x), expected)
    x[10] = np.nan
    assert np.isfinite(smooth(x, "ema")).all() and np.isfinite(smooth(x, "mean")).all()


def test_trend_compares_the_last_window_with_the_one_before():
    assert trend(np.linspace(10, 1, 300)) == "down"
    assert trend(np.linspace(1, 10, 300)) == "up"
    assert trend(np.full(300, 3.0)) == "flat"
    assert trend(np.ones(150)) is None  # not enough logged steps yet


@pytest.mark.parametrize("n", [5, 1000, 1_000_003])
def test_downsample_keeps_the_shape_and_the_ends(n):
    steps = np.arange(n, dtype=np.float64)
    x, y = downsample(steps, 2.0 * steps, 200)
    assert len(x) == min(n, 200) and np.allclose(y, 2.0 * x)
    assert x[0] < n / 200 + 1 and x[-1] > n - n / 200 - 2


def test_a_log_axis_gets_the_least_positive_value_for_zeros():
    shown, clipped = positive_for_log(np.array([0.5, 0.0, 2.0, -1.0]))
    assert clipped and shown.tolist() == [0.5, 0.5, 2.0, 0.5]
    shown, clipped = positive_for_log(np.array([0.5, 2.0]))
    assert not clipped and shown.tolist() == [0.5, 2.0]


def test_columns_turn_an_integer_beyond_float64_into_nan():
    rows = columns_of([Metrics(time=1.0, step=2, loss_g=1.5), Metrics(time=2.0, step=10**400, loss_g=2.5)])
    assert rows[0, 1] == 2 and np.isnan(rows[1, 1]) and rows[:, 2].tolist() == [1.5, 2.5]


@pytest.mark.parametrize("steered, pid, wait", [(True, 4242, 0.75), (True, None, 9.75), (False, 4242, 4.75), (False, None, None)])
def test_a_reader_ticks_often_only_for_what_moves_without_a_file_change(tmp_path, monkeypatch, steered, pid, wait):
    """Every second for the steered run's live trainer, never for a compared run without one; with no
    trainer and no file changed, only the machine figures are read again."""
    from types import SimpleNamespace

    from trainer.rundir import RunPaths
    from vocodertui.dashboard import reader

    calls, waits = [], []
    view = SimpleNamespace(status=SimpleNamespace(pid=pid), indexing=False)  # a status has a pid while its trainer lives
    feed = SimpleNamespace(view=lambda warnings=True: calls.append("view") or view, index_some=lambda: False,
                           with_fresh_system=lambda _view: calls.append("system") or view)
    run = reader.RunReader(RunPaths(tmp_path / "r"), lambda _run: feed, steered=steered)
    changes = iter([False, True, False])  # what woke the reader: a tick, a file change, a tick

    def wait_for_a_change(timeout):
        waits.append(timeout)
        if len(waits) == 3:
            run.close()
        return next(changes)

    monkeypatch.setattr(run.waker, "wait", wait_for_a_change)
    monkeypatch.setattr(reader.time, "monotonic", lambda: 1000.25)  # a quarter second past a multiple of every tick
    run.run(lambda _view: None)
    assert waits == [wait] * 3
    reads = ["view"] * 4 if pid else ["view", "view", "system", "view"]  # the first frame, then one per wake
    assert calls == reads


def test_a_compared_run_without_a_trainer_is_read_again_when_its_files_change(tmp_path):
    """It never ticks, so only the folder watch can bring its new lines to the screen, even a line
    written while the watch was being set up."""
    import queue
    import threading

    from trainer.rundir import RunPaths
    from vocodertui.dashboard.feed import RunFeed
    from vocodertui.dashboard.reader import RunReader

    run = RunPaths(tmp_path / "r")
    run.root.mkdir()
    metrics = JsonlWriter(run.metrics)
    metrics.write(Metrics(time=1.0, step=10, loss_g=2.5))

    class WrittenToRightAfterTheFirstReads(RunFeed):
        reads = 0

        def view(self, warnings=True):
            view = super().view(warnings)
            self.reads += 1
            if self.reads == 2:  # the first frame's, then the first before waiting
                metrics.write(Metrics(time=2.0, step=20, loss_g=2.25))
            return view

    views = queue.Queue()
    reader = RunReader(run, WrittenToRightAfterTheFirstReads, steered=False)
    thread = threading.Thread(target=reader.run, args=(views.put,), daemon=True)
    thread.start()
    try:
        assert [views.get(timeout=30).latest.step for _ in range(2)] == [10, 10]
        while views.get(timeout=30).latest.step != 20:  # no tick: without a wake, no view comes
            pass
        metrics.write(Metrics(time=3.0, step=30, loss_g=2.0))  # and once watched, every change
        while views.get(timeout=30).latest.step != 30:
            pass
    finally:
        reader.close()
        thread.join(timeout=30)
