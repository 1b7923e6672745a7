"""Comparing runs in the dashboard (overlaid plots, the run list's marks, the Runs tab's table and
config diff), the Health tab, and the plot keys (x axis, log scale, EMA weight), with Pilot."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from textual.widgets import DataTable, Label

from trainer.config import config_from_dict
from trainer.records import EVENTS, Metrics, Quality, Resume, Start, Stopped
from trainer.rundir import RunPaths, read_jsonl
from vocodertui.cli import main
from vocodertui.dashboard.app import MonitorApp
from vocodertui.dashboard.feed import RunFeed
from vocodertui.dashboard.panes import LossesPane, QualityPane
from vocodertui.dashboard.plotting import PlotSettings, traces, validation_traces
from vocodertui.dashboard.screens import CheckpointPicker, RunPicker
from vocodertui.dashboard.widgets import RUN_COLOURS, Legend, LossPlot
from vocodertui.runstate import list_runs
from vocodertui.runsummary import config_diff, summarize, wall_time
from recordkit import make
from test_hostile_input import jsonl_files
from test_monitor import NOW, FakeRun, finished_run, frozen_feed, scored, until, utc  # noqa: F401 (utc: a fixture)


def compare(*runs: RunPaths) -> MonitorApp:
    return MonitorApp(runs, runs[0].root.parent, feed=frozen_feed)


def stopped_run(root, config: str = "schedule:\n  log_every: 10\n") -> FakeRun:
    """300 of 400 steps at 1 step/s from NOW - 5000, a checkpoint at 200, then stopped."""
    fake = FakeRun(root)
    fake.run.config.write_text(config)
    fake.start(NOW - 5000)
    fake.train(NOW - 5000, 10, 300, rate=1.0)
    fake.checkpoint(NOW - 5000 + 200, 200, 0.65)
    fake.event(NOW - 4600, "stopped", 300, reason="SIGTERM")
    return fake


def logged(run: RunPaths, field: str) -> tuple[np.ndarray, np.ndarray]:
    """(step, field) of every metrics line of the run, read back from the file."""
    lines = [line for line in read_jsonl(run.metrics) if "kind" not in line]
    return np.array([line["step"] for line in lines], float), np.array([line[field] for line in lines], float)


def text_of(app, selector: str) -> str:
    return str(app.query_one(selector).render())


async def loaded(pilot, app, runs: int = 1) -> None:
    await until(pilot, lambda: app.tabs_mounted and len(app.query_one(LossesPane).curves) == runs, f"the plots of {runs} runs")


async def test_two_runs_overlay_every_plot_in_their_colours_with_a_legend(tmp_path):
    a, b = finished_run(tmp_path / "a"), stopped_run(tmp_path / "b")
    for fake, pesq in ((a, 2.5), (b, 3.0)):
        fake.metrics.write(Quality(time=NOW - 4700, step=200, files=3, seconds=4.0, pitch_model="tiny", metrics=scored(pesq)))
    app = compare(a.run, b.run)
    async with app.run_test(size=(140, 45)) as pilot:
        await loaded(pilot, app, runs=2)
        plot = app.query_one("#plot-loss_g", LossPlot)
        assert [t.colour for t in plot.traces] == list(RUN_COLOURS[:2])
        for trace, fake in zip(plot.traces, (a, b)):
            steps, values = logged(fake.run, "loss_g")
            assert trace.x.tolist() == steps.tolist() and np.allclose(trace.y, values)
        val = app.query_one("#plot-val_mel", LossPlot).traces
        assert [t.y.tolist() for t in val] == [[0.9, 0.7, 0.75, 0.72], [0.65]]
        pesq = app.query_one(QualityPane).query_one("#quality-pesq_wb", LossPlot).traces
        assert [t.y.tolist() for t in pesq] == [[2.5], [3.0]]
        legend = app.query_one("#losses-legend", Legend)
        assert legend.display and str(legend.render()) == "● a   ● b"
        assert text_of(app, "#header") == "● a finished 400/400  ·  ● b stopped 300/400"
        assert app.view.run == a.run and app.check_action("resume", ())  # the keys steer the first run
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, CheckpointPicker), "the checkpoint picker")
        assert str(app.screen.query_one(Label).render()).startswith("Resume a from which checkpoint?")
        assert app.screen.query_one(DataTable).row_count == 4  # a's checkpoints, not b's one


async def test_switching_to_a_run_without_quality_clears_the_quality_plots(tmp_path):
    a, b = finished_run(tmp_path / "a"), stopped_run(tmp_path / "b")
    a.metrics.write(Quality(time=NOW - 7000, step=200, files=3, seconds=4.0, pitch_model="tiny", metrics=scored(2.5)))
    app = compare(a.run)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        plot = app.query_one("#quality-pesq_wb", LossPlot)
        await until(pilot, lambda: len(plot.traces) == 1 and plot.traces[0].y.tolist() == [2.5], "a's score")
        app.compare((b.run.name,))
        await until(pilot, lambda: app.view is not None and app.view.run == b.run and len(plot.traces[0].y) == 0, "b's none")
        assert text_of(app, "#quality-summary").startswith("no quality scored yet")


async def test_a_single_run_has_no_legend_line(tmp_path):
    app = compare(finished_run(tmp_path / "a").run)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        assert not app.query_one("#losses-legend", Legend).display
        assert len(app.query_one("#plot-loss_g", LossPlot).traces) == 1


async def test_space_in_the_run_list_marks_runs_to_compare_and_enter_applies_them(tmp_path):
    a = finished_run(tmp_path / "a")
    stopped_run(tmp_path / "b")
    app = compare(a.run)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)

        async def pick(*keys: str) -> None:
            await pilot.press("l")
            await until(pilot, lambda: isinstance(app.screen, RunPicker), "the run list")
            table = app.screen.query_one(DataTable)
            assert table.get_row_at(0)[1].strip() in ("a", "▸ a", "b", "▸ b")
            await pilot.press(*keys)

        row_of_b = [r.name for r in list_runs(tmp_path)].index("b")  # the list's order
        await pick(*["down"] * row_of_b, "space")
        marks = [str(app.screen.query_one(DataTable).get_row_at(i)[0]) for i in range(2)]
        assert sorted(marks) == ["●1", "●2"]  # a was marked already, first
        await pilot.press("enter")
        await loaded(pilot, app, runs=2)
        assert [r.name for r in app.runs] == ["a", "b"] and app.view.run.name == "a"
        await until(pilot, lambda: "● b stopped" in text_of(app, "#header"), "b in the header")

        await pick(*["down"] * row_of_b, "space", "enter")  # unmark b
        await loaded(pilot, app, runs=1)
        assert [r.name for r in app.runs] == ["a"]


async def test_x_switches_to_hours_since_each_runs_start_and_y_to_a_log_scale(tmp_path):
    a, b = finished_run(tmp_path / "a"), stopped_run(tmp_path / "b")
    app = compare(a.run, b.run)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app, runs=2)
        await pilot.press("x")
        assert "x hours since each run's start" in text_of(app, "#plot-settings")
        traces = app.query_one("#plot-loss_d", LossPlot).traces
        # a: 2 steps/s from NOW - 7200, so step 400 is 200 s in; b: 1 step/s, step 300 is 300 s in
        assert traces[0].x[-1] == pytest.approx(200 / 3600) and traces[1].x[-1] == pytest.approx(300 / 3600)
        assert app.query_one("#plot-val_mel", LossPlot).traces[1].x.tolist() == pytest.approx([200 / 3600])
        await pilot.press("y")
        assert "y log" in text_of(app, "#plot-settings")
        plot = app.query_one("#plot-loss_d", LossPlot)
        assert plot.log_y and "clipped" not in plot.title
        axis = [label.split("┤")[0].strip() for label in plot.render().plain.splitlines() if "┤" in label]
        assert float(axis[0]) > float(axis[-1]) > 0  # labelled with the losses themselves, top to bottom
        await pilot.press("y")
        assert not app.query_one("#plot-loss_d", LossPlot).log_y


async def test_a_log_scale_shows_a_zero_loss_at_the_least_positive_one_and_says_so(tmp_path):
    fake = FakeRun(tmp_path / "r")
    fake.start(NOW - 100)
    for step, adv in ((10, 0.0), (20, 0.0), (30, 2.0), (40, 1.5)):  # no discriminator before step 30
        fake.metrics.write(Metrics(time=NOW - 100 + step, step=step, loss_g=1.0, loss_adv=adv, loss_fm=0.0))
    app = compare(fake.run)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        await pilot.press("y")
        plot = app.query_one("#plot-loss_adv", LossPlot)
        assert plot.traces[0].y.tolist() == [1.5, 1.5, 2.0, 1.5] and plot.title.endswith("(≤0 clipped)")
        zeros = app.query_one("#plot-loss_fm", LossPlot)  # nothing above 0: an empty plot, not a crash
        assert zeros.log_y and "⠁" not in zeros.render().plain and "⣀" not in zeros.render().plain


async def test_plus_and_minus_set_a_debiased_ema_whose_first_point_is_the_first_value(tmp_path):
    fake = finished_run(tmp_path / "a")
    app = compare(fake.run)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        _, raw = logged(fake.run, "loss_g")
        await pilot.press("plus")
        assert "smoothing EMA 0.95" in text_of(app, "#plot-settings")
        smoothed = app.query_one("#plot-loss_g", LossPlot).traces[0].y
        assert smoothed[0] == pytest.approx(raw[0]) and np.abs(np.diff(smoothed)).max() < np.abs(np.diff(raw)).max()
        await pilot.press("minus", "minus")
        assert "smoothing EMA 0.8" in text_of(app, "#plot-settings")
        await pilot.press(*["minus"] * 6)  # down to 0 and no further: the raw values
        assert "smoothing EMA 0 " in text_of(app, "#plot-settings")
        assert np.allclose(app.query_one("#plot-loss_g", LossPlot).traces[0].y, raw)


async def test_mr_stft_loss_is_plotted_only_for_runs_that_have_it(tmp_path):
    plain = finished_run(tmp_path / "plain")
    stft = FakeRun(tmp_path / "stft")
    stft.start(NOW - 100)
    for step in (10, 20, 30):
        stft.metrics.write(Metrics(time=NOW - 100 + step, step=step, loss_g=5.0, loss_stft=3.0 - step / 30))
    app = compare(plain.run)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        assert not app.query_one("#plot-loss_stft", LossPlot).display
        app.compare(("plain", "stft"))
        await loaded(pilot, app, runs=2)
        plot = app.query_one("#plot-loss_stft", LossPlot)
        assert plot.display and plot.traces[1].y.tolist() == pytest.approx([3 - 1 / 3, 3 - 2 / 3, 2.0])
        assert plot.title.startswith("MR-STFT")


CONFIG_A = "schedule:\n  log_every: 10\n"
CONFIG_B = ("schedule:\n  log_every: 10\ngenerator:\n  type: bigvgan\ndiscriminator:\n  kinds: [mpd, mrd]\n"
            "loss:\n  stft: multi_resolution\ntraining:\n  batch_size: 8\n")


async def test_runs_tab_lists_every_run_and_the_config_keys_that_differ_between_the_compared(tmp_path):
    a = finished_run(tmp_path / "a")
    a.checkpoint(NOW - 7000, 400, 0.5, quality={"pesq_wb": 3.25})  # saved again at 400, now the best
    b = stopped_run(tmp_path / "b", CONFIG_B)
    stopped_run(tmp_path / "c", "generator: [")  # not compared, config unreadable
    app = compare(a.run, b.run)
    async with app.run_test(size=(160, 45)) as pilot:
        await loaded(pilot, app, runs=2)
        await pilot.press("7")
        table = app.query_one("#runs-table", DataTable)
        await until(pilot, lambda: table.row_count == 3, "the three runs")
        header = [str(c.label) for c in table.columns.values()]
        assert header == ["", "run", "state", "step", "best val mel-L1", "recipe", "started", "wall time", "PESQ wb"]
        rows = {row[1]: [str(cell) for cell in row] for row in (table.get_row_at(i) for i in range(3))}
        assert rows["a"][2:6] == ["finished", "400 / 400", "0.5000", "hifigan · msd+mpd · lsgan, mel single"]
        assert rows["a"][7:] == ["3m 20s", "3.25"]  # wall time from the start event to the finished one
        assert rows["b"][2:6] == ["stopped", "300 / 400", "0.6500", "bigvgan · mpd+mrd · lsgan, mel single, stft"]
        assert rows["b"][7:] == ["6m 40s", "-"]
        assert rows["a"][0] == "●" and rows["b"][0] == "●" and rows["c"][0] == "" and rows["c"][5] == "no readable config"
        diff = app.query_one("#config-diff", DataTable)
        keys = {str(row[0]): [str(cell) for cell in row[1:]] for row in (diff.get_row_at(i) for i in range(diff.row_count))}
        assert keys["generator.type"] == ["hifigan", "bigvgan"] and keys["training.batch_size"] == ["16", "8"]
        assert keys["discriminator.kinds"] == ["['msd', 'mpd']", "['mpd', 'mrd']"] and keys["loss.stft"] == ["none", "multi_resolution"]
        assert "schedule.log_every" not in keys and "name" not in keys  # equal keys are left out
        assert "differ between ● a ● b" in text_of(app, "#config-diff-title")


def test_config_diff_names_the_keys_that_differ_in_the_configs_order():
    a, b = config_from_dict({"training": {"batch_size": 8}}), config_from_dict({"training": {"batch_size": 8, "seed": 7}})
    assert config_diff({"a": a, "b": b}) == [("training.seed", (1234, 7))]
    assert config_diff({"a": a, "b": a, "c": None}) == []  # an unreadable config takes no part
    assert config_diff({"a": a}) == []


def test_wall_time_adds_up_each_start_and_resume():
    events = [make(Start, time=100.0, step=0), make(Stopped, time=160.0, step=30),
              make(Resume, time=1000.0, step=30), make(Stopped, time=1030.0, step=50)]
    assert wall_time(events, last_metric=1020.0, now=5000.0, alive=False) == 60 + 30
    assert wall_time(events[:3], last_metric=1020.0, now=1100.0, alive=True) == 60 + 100  # a live trainer counts to now
    assert wall_time([], None, 5000.0, False) is None


HEALTHY = dict(lr=2e-4, grad_norm_g=120.0, grad_norm_d=6.0, steps_per_s=4.0)


async def test_health_tab_plots_what_the_trainer_recorded_and_says_what_it_did_not(tmp_path):
    fake = FakeRun(tmp_path / "old")
    fake.start(NOW - 100)
    for step, lr in ((10, 1e-4), (20, 1e-3), (30, 1e-2)):
        fake.metrics.write(Metrics(time=NOW - 100 + step, step=step, loss_g=5.0, **{**HEALTHY, "lr": lr}))
    app = compare(fake.run)
    async with app.run_test(size=(140, 45)) as pilot:
        await loaded(pilot, app)
        await pilot.press("6")
        lr = app.query_one("#health-lr", LossPlot)
        assert lr.log_y and lr.traces[0].y.tolist() == [1e-4, 1e-3, 1e-2]
        axis = [row.split("┤")[0].strip() for row in lr.render().plain.splitlines() if "┤" in row]
        assert axis == ["0.01", "0.001", "0.0001"]  # one label a decade
        assert app.query_one("#health-grad_norm_d", LossPlot).traces[0].y.tolist() == [6.0] * 3
        for plot in ("#health-rss_bytes", "#health-split"):  # this trainer wrote neither
            assert app.query_one(plot, LossPlot).note == "not recorded by this run's trainer"
            assert "not recorded by this run's trainer" in app.query_one(plot, LossPlot).render().plain


async def test_a_learning_rate_decaying_within_a_decade_gets_distinct_axis_labels(tmp_path):
    fake = FakeRun(tmp_path / "decay")
    fake.start(NOW - 100)
    for epoch in range(5):  # 2e-4 decayed by jik876's 0.999 an epoch: 2e-4 ... 1.992e-4
        fake.metrics.write(Metrics(time=NOW - 100 + epoch, step=10 * epoch, loss_g=5.0,
                                   **{**HEALTHY, "lr": 2e-4 * 0.999 ** epoch}))
    app = compare(fake.run)
    async with app.run_test(size=(140, 45)) as pilot:
        await loaded(pilot, app)
        await pilot.press("6")
        lr = app.query_one("#health-lr", LossPlot)
        axis = [row.split("┤")[0].strip() for row in lr.render().plain.splitlines() if "┤" in row]
        assert len(axis) >= 3 and len(set(axis)) == len(axis), axis
        assert all(1.99e-4 <= float(label) <= 2e-4 for label in axis), axis


STEP_TIMES = dict(time_data=0.01, time_d=0.1, time_g=0.2, time_optim=0.05, time_other=0.002)


@pytest.mark.skipif("time_data" not in Metrics.__struct_fields__, reason="the trainer's step-time fields are not in records.Metrics yet")
async def test_health_tab_plots_the_step_time_split_and_the_trainers_memory(tmp_path):
    fake = FakeRun(tmp_path / "new")
    fake.start(NOW - 100)
    for step in (10, 20):
        fake.metrics.write(Metrics(time=NOW - 100 + step, step=step, rss_bytes=step * 100_000_000, **HEALTHY, **STEP_TIMES))
    app = compare(fake.run)
    async with app.run_test(size=(140, 45)) as pilot:
        await loaded(pilot, app)
        await pilot.press("6")
        split = app.query_one("#health-split", LossPlot)
        assert [t.y.tolist() for t in split.traces] == [[v, v] for v in STEP_TIMES.values()]
        assert split.title == "step time, s/step: 0.362 in all"
        assert app.query_one("#health-rss_bytes", LossPlot).traces[0].y.tolist() == [1000.0, 2000.0]


def test_monitor_takes_several_runs_and_refuses_a_missing_one(tmp_path, capsys, monkeypatch):
    finished_run(tmp_path / "a")
    stopped_run(tmp_path / "b")
    shown = []
    monkeypatch.setattr(MonitorApp, "run", lambda app: shown.append([r.name for r in app.runs]))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["monitor", "--run", "b", "--run", "a", "--run", "b", "--logs-dir", str(tmp_path)]) == 0
    assert shown == [["b", "a"]]  # in the order given, each once
    assert main(["monitor", "--run", "a", "--run", "nope", "--logs-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.endswith(f"run nope not found in {tmp_path}\n")
    many = [arg for i in range(7) for arg in ("--run", f"r{i}")]
    assert main(["monitor", *many, "--logs-dir", str(tmp_path)]) == 1
    assert "monitor compares at most 6 runs at once, got 7" in capsys.readouterr().err


def test_compare_snapshot(tmp_path, snap_compare, utc):  # noqa: F811
    a, b = finished_run(tmp_path / "ljspeech-v1"), stopped_run(tmp_path / "bigvgan-try", CONFIG_B)
    app = compare(a.run, b.run)

    async def ready(pilot):
        await until(pilot, lambda: app.tabs_mounted and len(app.query_one(LossesPane).curves) == 2 and
                    "● bigvgan-try stopped" in text_of(app, "#header"), "both runs")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 40), run_before=ready)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=jsonl_files(list(EVENTS)), metrics=jsonl_files([Metrics, Quality]))
def test_any_run_directory_gives_a_runs_row_and_plottable_lines(events, metrics):
    with tempfile.TemporaryDirectory() as folder:
        run = RunPaths(Path(folder) / "r")
        run.checkpoints.mkdir(parents=True)
        run.events.write_bytes(events)
        run.metrics.write_bytes(metrics)
        row = summarize(run)
        assert row.recipe == "no readable config" and (row.wall_s is None or row.wall_s == row.wall_s)
        curves = RunFeed(run).view().curves
        for settings_ in (PlotSettings(), PlotSettings(x="hours", smoothing="ema", log_y=True, window=1_000)):
            for column in ("loss_g", "lr", "rss_bytes"):
                lines, _ = traces((curves,), column, settings_, log_y=settings_.log_y)
                assert len(lines[0].x) == len(lines[0].y)
            lines, _ = validation_traces((curves,), settings_)
            assert len(lines[0].x) == len(lines[0].y)
