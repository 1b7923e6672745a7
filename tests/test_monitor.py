"""The dashboard (`vocodertui monitor`) driven with Textual's Pilot, against prepared run directories
and against a real trainer process."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from trainer import pidfile
from vocodertui.cli import main
from vocodertui.dashboard.app import MonitorApp
from vocodertui.dashboard.feed import RunFeed, SystemStats
from vocodertui.dashboard.screens import CheckpointPicker, ConfirmStop, RunPicker
from textual.widgets import DataTable, Static

from vocodertui.dashboard.panes import LossesPane, QualityPane
from vocodertui.dashboard.widgets import CheckpointTable, EventLog, LossPlot, RunHeader, Spectrogram
from recordkit import make, write_pid_record
from trainer.records import EVENTS, Metrics, Quality, Resume, Summary, UnscoredFile, kind_of
from trainer.rundir import JsonlWriter, RunPaths, checkpoint_name, read_jsonl

from conftest import REPO

NOW = 1_795_600_000.0
SYSTEM = SystemStats(cpu_percent=42.0, ram_used=3 << 30, ram_total=16 << 30, disk_free=100 << 30, trainer_rss=None)


def frozen_feed(run: RunPaths) -> RunFeed:
    """A feed whose clock and machine figures do not move, so screens are reproducible."""
    return RunFeed(run, clock=lambda: NOW, system=lambda _run, rss: SYSTEM)


class FakeRun:
    """A run directory written the way the trainer writes it, with times in the past."""

    def __init__(self, root: Path, target: int = 400, milestones=(200,)):
        self.run = RunPaths(root)
        for folder in (self.run.root, self.run.checkpoints, self.run.samples):
            folder.mkdir(parents=True, exist_ok=True)
        self.run.config.write_text("schedule:\n  log_every: 10\n")
        self.metrics = JsonlWriter(self.run.metrics)
        self.events = JsonlWriter(self.run.events)
        self.target, self.milestones = target, list(milestones)

    def event(self, t: float, name: str, step: int, **fields) -> None:
        kind = next(k for k in EVENTS if kind_of(k) == name)
        self.events.write(make(kind, time=t, step=step, **fields))

    def start(self, t: float, pid: int = 1) -> None:
        self.event(t, "start", 0, config="demo", pid=pid, target_step=self.target, device="cpu", precision="fp32",
                   threads=2, milestones=self.milestones)

    def train(self, t0: float, first: int, last: int, every: int = 10, rate: float = 2.0) -> float:
        rng = np.random.default_rng(first)
        for step in range(first, last + 1, every):
            decay = np.exp(-step / 300)
            self.metrics.write(Metrics(time=t0 + step / rate, step=step, epoch=step // 40,
                                       loss_g=float(40 + 30 * decay + rng.normal(0, 1)), loss_d=float(4 + 3 * decay),
                                       loss_mel=float(0.5 + 0.9 * decay), loss_adv=float(2 + 4 * decay), loss_fm=float(0.7 + 0.3 * decay),
                                       lr=2e-4, steps_per_s=rate, grad_norm_g=100.0, grad_norm_d=5.0))
        return t0 + last / rate

    def checkpoint(self, t: float, step: int, val_mel: float, reason: str = "scheduled", quality=None) -> None:
        path = self.run.checkpoints / checkpoint_name(step)
        path.write_bytes(b"\0" * 4096)
        os.utime(path, (t, t))
        self.event(t, "validation", step, val_mel=val_mel, seconds=0.5, samples=self.sample(step))
        self.event(t, "checkpoint", step, path=f"checkpoints/{path.name}", size=4096, val_mel=val_mel,
                   epoch=step // 40, reason=reason, quality=quality)

    def sample(self, step: int, ids=("LJ001-0001",), amplitude: float = 0.5) -> str:
        folder = self.run.samples / f"step_{step:08d}"
        folder.mkdir(exist_ok=True)
        for utt in ids:
            write_chirp(folder / f"{utt}.wav", amplitude)
        return f"samples/{folder.name}"


def write_chirp(path: Path, amplitude: float) -> None:
    """One second of a 200 Hz to 2 kHz sweep, 16-bit PCM at 22.05 kHz, as the trainer writes samples."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(22050) / 22050
    audio = amplitude * np.sin(2 * np.pi * (200 + 1800 * t) * t)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes((audio * 32767).astype("<i2").tobytes())


def finished_run(root: Path) -> FakeRun:
    fake = FakeRun(root)
    fake.start(NOW - 7200)
    end = fake.train(NOW - 7200, 10, 400)
    for step, val in ((100, 0.9), (200, 0.7), (300, 0.75), (400, 0.72)):
        fake.checkpoint(NOW - 7200 + step / 2, step, val, "milestone" if step == 200 else "scheduled")
    fake.event(end, "finished", 400, target_step=400)
    return fake


async def until(pilot, condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


def header(app) -> str:
    return str(app.query_one(RunHeader).render())


def monitor(run: RunPaths, feed=frozen_feed) -> MonitorApp:
    return MonitorApp(run, run.root.parent, feed=feed)


async def test_finished_run_shows_its_history_and_offers_resume_not_stop(tmp_path):
    fake = finished_run(tmp_path / "r1")
    app = monitor(fake.run)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.tabs_mounted, "the first view on every tab")
        assert "finished" in header(app) and app.query_one(RunHeader).has_class("-ok")
        assert app.view.status.step == 400 and app.view.curves.rows[-1, 1] == 400 and len(app.view.curves.rows) == 40
        assert app.check_action("resume", ()) and app.check_action("stop", ()) is None
        assert app.check_action("checkpoint", ()) is None
        table = app.query_one(CheckpointTable)
        assert table.row_count == 4
        best = [table.get_row_at(i) for i in range(4) if table.get_row_at(i)[4] == "★"]
        assert [row[0] for row in best] == ["200"]
        await pilot.press("s")  # disabled: nothing happens
        assert not isinstance(app.screen, ConfirmStop)
        assert app.query_one(EventLog).shown == len(read_jsonl(fake.run.events))


def test_an_idle_run_gives_equal_curves_so_plots_are_not_redrawn(tmp_path):
    feed = frozen_feed(finished_run(tmp_path / "r").run)
    while feed.index_some():
        pass
    idle = feed.view().curves
    assert feed.view().curves == idle
    assert frozen_feed(feed.run).view().curves != idle  # another feed, even of the same run, never compares equal
    JsonlWriter(feed.run.metrics).write({"time": NOW, "step": 410, "loss_g": 1.0})
    assert feed.view().curves != idle


async def test_command_palette_offers_only_the_actions_that_apply(tmp_path):
    app = monitor(finished_run(tmp_path / "r").run)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.tabs_mounted, "the first view on every tab")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Resume training" in titles and "Stop training" not in titles and "Checkpoint now" not in titles
        await pilot.press("ctrl+p", *"resume")
        await until(pilot, lambda: bool(app.screen.query("CommandList")) and app.screen.query_one("CommandList").option_count > 0,
                    "the palette's matches")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, CheckpointPicker), "the checkpoint picker")
        await pilot.press("escape")
        await until(pilot, lambda: not app.screen.is_modal, "the picker to close")
        assert app.launching is False  # cancelled: nothing started


async def test_crashed_run_shows_the_reason_in_error_colours(tmp_path):
    fake = FakeRun(tmp_path / "r")
    fake.start(NOW - 100)
    fake.train(NOW - 100, 10, 50)
    fake.event(NOW - 60, "crashed", 50, reason="RuntimeError: CUDA out of memory", traceback="...")
    app = monitor(fake.run)
    async with app.run_test() as pilot:
        await until(pilot, lambda: app.tabs_mounted, "the first view on every tab")
        assert "crashed" in header(app) and "CUDA out of memory" in header(app)
        assert app.query_one(RunHeader).has_class("-error")
        assert app.check_action("resume", ()) is None  # no checkpoint to resume from


async def test_events_tab_says_when_the_trainer_reopened_a_deleted_metrics_file(tmp_path):
    fake = FakeRun(tmp_path / "r")
    fake.start(NOW - 100)
    fake.train(NOW - 100, 10, 50)
    fake.event(NOW - 60, "file_reopened", 50, file="metrics.jsonl", reason="deleted")
    fake.event(NOW - 50, "nan_rollback", 40, failed_step=51, checkpoint="checkpoints/ckpt_00000040.pt",
               skipped_batch={"epoch": 1, "batch": 3}, strikes=1)
    app = monitor(fake.run)
    async with app.run_test(size=(140, 40)) as pilot:
        await until(pilot, lambda: app.tabs_mounted, "the first view on every tab")
        await pilot.press("4")
        log = app.query_one(EventLog)
        await until(pilot, lambda: log.shown == 3, "the events")
        text = " ".join(strip.text.strip() for strip in log.lines)  # a long line wraps at the console's width
        assert "file_reopened metrics.jsonl was deleted: a new one from here on" in text
        # the kinds' column is as wide as the longest kind, so the descriptions line up
        starts = {strip.text.find(word) for strip in log.lines for word in ("demo on cpu", "metrics.jsonl", "step 51")}
        assert len(starts - {-1}) == 1


# Stands in for a trainer that hangs: it writes the name of each signal it gets to a file, one per line,
# and dies of SIGTERM after writing it down.
SIGNAL_RECORDER = """
import fcntl, os, signal, sys
log = open(sys.argv[1], "a", buffering=1)
os.makedirs(os.path.dirname(sys.argv[2]), exist_ok=True)
lock = os.open(sys.argv[2], os.O_RDWR | os.O_CREAT)  # held as a trainer holds its run's lock
fcntl.flock(lock, fcntl.LOCK_EX)
def record(sig, _frame):
    log.write(signal.Signals(sig).name + "\\n")
    if sig == signal.SIGTERM:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGWINCH):
    signal.signal(sig, record)
log.write("ready\\n")
while True:
    signal.pause()
"""


class SignalledProcess:
    def __init__(self, folder: Path, run: RunPaths):
        self.log = folder / "signals.txt"
        self.proc = subprocess.Popen([sys.executable, "-c", SIGNAL_RECORDER, str(self.log), str(run.lock)])
        self.pid = self.proc.pid
        self.wait_for_lines(1)

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def wait_for_lines(self, count: int) -> list[str]:
        """Waits on the file itself (the process writes it as it handles each signal)."""
        deadline = time.monotonic() + 30
        while len(self.lines()) < count:
            assert time.monotonic() < deadline, f"the process recorded only {self.lines()}"
            assert self.proc.poll() is None or len(self.lines()) >= count, f"it died having recorded {self.lines()}"
            time.sleep(0.01)
        return self.lines()


@pytest.fixture
def fake_trainer(tmp_path):
    recorder = SignalledProcess(tmp_path, RunPaths(tmp_path / "r"))
    yield recorder
    recorder.proc.kill()
    recorder.proc.wait()


def adopt(run: RunPaths, proc: SignalledProcess) -> None:
    write_pid_record(run, proc.pid, start_time=time.time() - 2000)


async def test_stalled_run_warns_and_stop_signals_the_verified_trainer(tmp_path, fake_trainer):
    fake = FakeRun(tmp_path / "r")
    fake.start(time.time() - 2000, pid=fake_trainer.pid)
    fake.train(time.time() - 2000, 10, 100)  # the last line is half an hour old
    adopt(fake.run, fake_trainer)
    app = monitor(fake.run, feed=RunFeed)
    async with app.run_test() as pilot:
        await until(pilot, lambda: app.tabs_mounted, "the first view on every tab")
        assert "stalled" in header(app) and app.query_one(RunHeader).has_class("-warning")
        assert f"pid {fake_trainer.pid}" in header(app)
        assert app.check_action("resume", ()) is None
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmStop)
        await pilot.press("n")
        await until(pilot, lambda: not app.screen.is_modal, "the question to close")
        # A marker after the answer: Linux delivers a pending SIGTERM before it, so had "n" sent one,
        # the process would have died writing SIGTERM and never written the marker.
        os.kill(fake_trainer.pid, signal.SIGWINCH)
        assert fake_trainer.wait_for_lines(2) == ["ready", "SIGWINCH"]
        await pilot.press("s", "y")
        assert fake_trainer.proc.wait(timeout=10) == -signal.SIGTERM
        assert fake_trainer.lines() == ["ready", "SIGWINCH", "SIGTERM"]  # "y" sent exactly one
        await until(pilot, lambda: app.view.status.state == "crashed", "the dead trainer to show as crashed")
        assert "died without a word" in header(app)


async def test_torn_lines_and_new_lines_reach_the_screen(tmp_path):
    fake = FakeRun(tmp_path / "r")
    fake.start(NOW - 100)
    fake.train(NOW - 100, 10, 50)
    with open(fake.run.metrics, "ab") as f:
        f.write(b'{"time": 1, "garbage\n{"time":1795599960.0,"step":60,"epoch":1,"loss_g":4')
    app = monitor(fake.run)
    async with app.run_test() as pilot:
        await until(pilot, lambda: app.tabs_mounted, "the first view on every tab")
        assert app.view.curves.rows[-1, 1] == 50
        with open(fake.run.metrics, "ab") as f:
            f.write(b'1.5,"loss_d":4.0,"loss_mel":0.8}\n')
        await until(pilot, lambda: app.view.curves.rows[-1, 1] == 60, "the completed line")
        assert app.view.curves.column("loss_g")[-1] == 41.5


async def test_resumed_run_plots_only_the_current_timeline(tmp_path):
    fake = FakeRun(tmp_path / "r")
    fake.start(NOW - 1000)
    fake.train(NOW - 1000, 10, 100)
    fake.checkpoint(NOW - 1000 + 25, 50, 0.8)
    fake.event(NOW - 800, "crashed", 100, reason="killed")
    fake.event(NOW - 700, "resume", 50, checkpoint="checkpoints/ckpt_00000050.pt", epoch=1, superseded=[],
               config="demo", pid=2, target_step=400, device="cpu", precision="fp32", threads=2, milestones=[200])
    fake.train(NOW - 700 - 25, 60, 70)
    app = monitor(fake.run)
    async with app.run_test() as pilot:
        await until(pilot, lambda: app.tabs_mounted, "the first view on every tab")
        assert app.view.curves.column("step").tolist() == [10, 20, 30, 40, 50, 60, 70]


def scored(pesq: float) -> dict:
    return {"pesq_wb": Summary(pesq, 0.1, 3), "mstft": Summary(4.0 - pesq, 0.2, 3)}


async def test_quality_tab_plots_the_current_timelines_scores_and_the_picker_shows_them(tmp_path):
    fake = FakeRun(tmp_path / "r")
    fake.start(NOW - 1000)
    fake.train(NOW - 1000, 10, 150)
    for step, pesq in ((50, 1.5), (100, 2.5), (150, 3.9)):
        t = NOW - 1000 + step / 2
        fake.metrics.write(Quality(time=t, step=step, files=3, seconds=4.2, pitch_model="tiny", metrics=scored(pesq)))
        if step < 150:
            fake.checkpoint(t, step, 1.0 - step / 1000, quality={n: v.mean for n, v in scored(pesq).items()})
    fake.event(NOW - 800, "crashed", 150, reason="killed")
    fake.event(NOW - 700, "resume", 100, checkpoint="checkpoints/ckpt_00000100.pt", epoch=1, superseded=[],
               config="demo", pid=2, target_step=400, device="cpu", precision="fp32", threads=2, milestones=[200])
    fake.metrics.write(Quality(time=NOW - 600, step=150, files=3, seconds=4.0, pitch_model="tiny", metrics=scored(2.75),
                               unscored=[UnscoredFile("LJ001-0001", "vuv_f1", "no voiced frame in either signal")]))
    fake.event(NOW - 600, "stopped", 150, reason="SIGTERM")
    app = monitor(fake.run)
    async with app.run_test(size=(160, 50)) as pilot:
        await until(pilot, lambda: app.tabs_mounted and app.view.quality, "the quality records")
        assert [(q.step, q.metrics["pesq_wb"].mean) for q in app.view.quality] == [(50, 1.5), (100, 2.5), (150, 2.75)]
        await pilot.press("5")
        assert app.query_one("#tabs").active == "quality"
        pane = app.query_one(QualityPane)
        assert pane.query_one("#quality-pesq_wb", LossPlot).title == "PESQ wb (↑ better) 2.75 ↑"
        assert pane.query_one("#quality-mstft", LossPlot).title == "M-STFT (↓ better) 1.25 ↓"
        summary = str(pane.query_one("#quality-summary", Static).render())
        assert "step 150" in summary and "tiny" in summary and "1 unscored" in summary
        table = pane.query_one(CheckpointTable)
        await until(pilot, lambda: table.row_count == 2, "the checkpoint rows")
        assert [str(c.label) for c in table.columns.values()] == ["step", "saved", "size", "val mel-L1", "PESQ wb", "M-STFT", "best"]
        assert [table.get_row_at(i)[4] for i in range(2)] == ["2.5", "1.5"]
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, CheckpointPicker), "the checkpoint picker")
        picker = app.screen.query_one(DataTable)
        assert "PESQ wb" in [str(c.label) for c in picker.columns.values()]


async def test_samples_tab_shows_reference_above_generated_with_the_files_own_scores(tmp_path):
    fake = FakeRun(tmp_path / "r")
    fake.start(NOW - 1000)
    fake.train(NOW - 1000, 10, 150)
    samples = fake.sample(150, ids=("LJ001-0001", "LJ001-0002"), amplitude=0.25)
    write_chirp(fake.run.references / "LJ001-0001.wav", 0.5)  # none kept for LJ001-0002
    fake.event(NOW - 700, "validation", 150, val_mel=0.8, seconds=0.5, samples=samples)
    fake.metrics.write(Quality(time=NOW - 699, step=150, files=3, seconds=4.0, pitch_model="tiny", metrics=scored(2.75),
                               unscored=[UnscoredFile("LJ001-0001", "mstft", "too short")],
                               per_file={"LJ001-0001": {"pesq_wb": 3.125}, "LJ001-0003": {"pesq_wb": 2.5, "mstft": 1.5}}))
    app = monitor(fake.run)
    async with app.run_test(size=(160, 50)) as pilot:
        await until(pilot, lambda: app.tabs_mounted and app.view.samples is not None, "the samples")
        await pilot.press("3")
        pane = app.query_one("#samples")
        reference = pane.query_one("#reference-spectrogram", Spectrogram)
        generated = pane.query_one("#generated-spectrogram", Spectrogram)
        await until(pilot, lambda: generated.source is not None and reference.source is not None, "both spectrograms")
        assert reference.caption.startswith("reference/LJ001-0001.wav  1.00 s at 22050 Hz")
        assert generated.caption.startswith("step_00000150/LJ001-0001.wav")
        # one colour scale: the generated sweep at half the reference's amplitude is 6 dB darker
        assert reference.source[0].max() == 0.0
        assert abs(generated.source[0].max() - 20 * np.log10(0.5)) < 0.05
        scores = str(pane.query_one("#sample-scores", Static).render())
        assert "quality at step 150: this file (the mean of 3)" in scores
        assert "PESQ wb 3.125 (2.75)" in scores and "M-STFT - (too short)" in scores
        screen = app.export_screenshot()
        assert screen.index("reference/LJ001-0001.wav") < screen.index("step_00000150/LJ001-0001.wav")

        await pilot.press("down")
        await until(pilot, lambda: generated.caption.startswith("step_00000150/LJ001-0002.wav"), "the second sample")
        await until(pilot, lambda: reference.source is None, "the missing reference")
        assert reference.caption == "cannot show reference/LJ001-0002.wav: runs trained before references were kept have none"
        assert generated.source[0].max() == 0.0  # alone, it sets its own scale
        assert "LJ001-0002 is not among the 3 files scored at step 150" in str(pane.query_one("#sample-scores", Static).render())


async def test_a_huge_metrics_file_renders_from_its_tail_then_indexes_the_rest(tmp_path):
    fake = FakeRun(tmp_path / "r", target=300_000)
    fake.start(NOW - 400_000)
    line = '{"time":%.1f,"step":%d,"epoch":1,"loss_g":%.3f,"loss_d":4.0,"loss_mel":0.7,"loss_adv":2.0,"loss_fm":0.8,"lr":0.0002,"steps_per_s":1.0}\n'
    with open(fake.run.metrics, "w") as f:
        f.writelines(line % (NOW - 400_000 + s, s, 100 - s / 3000) for s in range(1, 300_001))
    app = monitor(fake.run)
    async with app.run_test() as pilot:
        await until(pilot, lambda: app.tabs_mounted, "the first view on every tab")
        first = app.view
        assert first.status.step == 300_000 and first.curves.rows[-1, 1] == 300_000
        await until(pilot, lambda: not app.view.indexing, "the older lines to be indexed")
        steps = app.view.curves.column("step")
        assert steps[0] == 1 and len(steps) < 20_000 and np.all(np.diff(steps) > 0)


async def test_run_list_switches_between_runs(tmp_path):
    finished_run(tmp_path / "older")
    other = FakeRun(tmp_path / "newer")
    other.start(NOW - 50)
    other.train(NOW - 50, 10, 20)
    other.event(NOW - 30, "stopped", 20, reason="SIGTERM")
    app = monitor(RunPaths(tmp_path / "newer"))
    async with app.run_test() as pilot:
        await until(pilot, lambda: app.tabs_mounted, "the first view on every tab")
        assert app.view.status.state == "stopped"
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, RunPicker), "the run list")
        await pilot.press("down", "enter")
        await until(pilot, lambda: app.view is not None and app.view.run.name == "older", "the other run")
        assert app.view.status.state == "finished"
        await pilot.press("3")
        await until(pilot, lambda: app.query_one("#generated-spectrogram", Spectrogram).caption.startswith(
            "step_00000400/LJ001-0001.wav"), "the older run's latest sample")
        assert "no quality scored at step 400" in str(app.query_one("#sample-scores", Static).render())


async def test_smoothing_and_window_keys_redraw_the_loss_plots(tmp_path):
    fake = FakeRun(tmp_path / "r", target=3000)
    fake.start(NOW - 2000)
    fake.train(NOW - 2000, 10, 3000)
    app = monitor(fake.run)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.tabs_mounted and app.query_one(LossesPane).curves == (app.view.curves,),
                    "the plots")
        settings = app.query_one("#plot-settings", Static)
        plot = app.query_one("#plot-loss_g", LossPlot)

        def step_axis() -> list[float]:
            return [float(label) for label in plot.render().plain.rstrip().splitlines()[-1].split()]

        raw = app.export_screenshot()
        assert "smoothing raw" in str(settings.render()) and step_axis()[0] < 100
        await pilot.press("m")
        assert "smoothing EMA" in str(settings.render()) and app.export_screenshot() != raw
        await pilot.press("w", "w")
        assert "window last 1,000 steps" in str(settings.render()) and 2000 <= step_axis()[0] < 2100


class Leaving(Exception):
    pass


@pytest.mark.parametrize("after_s", [0.0, 0.002, 0.005, 0.01])
async def test_closing_while_the_tabs_mount_raises_nothing_of_its_own(tmp_path, after_s):
    fake = FakeRun(tmp_path / "r", target=3000)
    fake.start(NOW - 2000)
    fake.train(NOW - 2000, 10, 3000)
    app = monitor(fake.run)
    with pytest.raises(Leaving):  # not a NoMatches from the half-mounted tabs
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.view is not None, "the first view")
            await pilot.pause(after_s)
            raise Leaving


def test_monitor_refuses_an_unknown_run_and_a_missing_terminal(tmp_path, capsys):
    assert main(["monitor", "--run", "nope", "--logs-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"vocodertui: error: run nope not found in {tmp_path}\n"
    finished_run(tmp_path / "r")
    assert main(["monitor", "--logs-dir", str(tmp_path)]) == 1  # stdout is captured here, not a terminal
    assert "monitor needs a terminal" in capsys.readouterr().err


# ----------------------------------------------------------------------------- a real trainer


@pytest.fixture
def trainer_run(quick_config, demo_corpus, tmp_path, capsys):
    logs = tmp_path / "logs"
    code = main(["start", "--yes", "--config", str(quick_config), "--data", str(demo_corpus), "--run", "live",
                 "--logs-dir", str(logs), "--target-step", "100000"])
    assert code == 0, capsys.readouterr().err
    run = RunPaths(logs / "live")
    yield run
    live = pidfile.check(run)
    if live.alive:
        os.kill(live.record.pid, signal.SIGKILL)


async def test_stop_then_resume_a_real_trainer_from_the_keyboard(trainer_run):
    run = trainer_run
    app = MonitorApp(run, run.root.parent)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.view is not None and app.view.status.state == "running"
                    and len(app.view.checkpoints) >= 2, "a running trainer with checkpoints", timeout=120)
        first_pid = app.view.status.pid
        await pilot.press("c")  # checkpoint now
        await until(pilot, lambda: any(getattr(e, "reason", None) == "requested" for e in app.view.events), "a requested checkpoint")
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmStop)
        await pilot.press("y")
        await until(pilot, lambda: app.view.status.state == "stopped", "the trainer to stop", timeout=120)
        assert app.check_action("stop", ()) is None and app.check_action("resume", ())
        stopped_at = app.view.status.step

        await pilot.press("r")
        assert isinstance(app.screen, CheckpointPicker)
        await pilot.press("down", "enter")  # the second newest checkpoint
        chosen = sorted(app.view.checkpoints, key=lambda c: c.step)[-2].step
        await until(pilot, lambda: app.view.status.state == "running" and app.view.status.pid not in (None, first_pid)
                    and not app.launching, "the resumed trainer", timeout=120)
        resume = [e for e in app.view.events if isinstance(e, Resume)][-1]
        assert resume.step == chosen < stopped_at
        assert "running" in header(app)
    assert pidfile.check(run).alive  # quitting the dashboard leaves training going


# ----------------------------------------------------------------------------- snapshots


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_main_screen_snapshot(size, tmp_path, snap_compare, utc):
    fake = finished_run(tmp_path / "ljspeech-v1")
    app = monitor(fake.run)

    async def loaded(pilot):
        def footer_follows_state():
            keys = {k.key: k for k in app.query("FooterKey")}
            return app.tabs_mounted and "r" in keys and not keys["r"].has_class("-disabled") and keys["s"].has_class("-disabled")

        await until(pilot, footer_follows_state, "the footer to show resume enabled and stop disabled")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=loaded)


# ----------------------------------------------------------------------------- a real terminal


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_real_app_in_tmux(tmp_path):
    finished_run(tmp_path / "logs" / "r")
    tmux = ["tmux", "-L", f"vocodertui-test-{os.getpid()}", "-f", os.devnull]  # a private server
    monitor_command = f"{shlex.quote(sys.executable)} -m vocodertui.cli monitor --logs-dir {shlex.quote(str(tmp_path / 'logs'))}"
    # The shell reports the exit status itself: tmux sometimes marks a pane dead before it reaps the process.
    command = f"sh -c {shlex.quote(monitor_command + '; echo dashboard exited with $?')}"
    subprocess.run([*tmux, "new-session", "-d", "-s", "t", "-x", "100", "-y", "30", command, ";",
                    "set-option", "-t", "t", "remain-on-exit", "on"], check=True, cwd=REPO)

    def keys(*names: str) -> None:
        subprocess.run([*tmux, "send-keys", "-t", "t", *names], check=True)

    def screen() -> str:
        # with the history: after the app leaves the alternate screen, its last lines may have scrolled there
        return subprocess.run([*tmux, "capture-pane", "-p", "-S", "-", "-t", "t"], capture_output=True, text=True).stdout

    def wait_for_text(text: str, present: bool = True) -> str:
        deadline = time.monotonic() + 60
        while (text in (shown := screen())) != present:
            assert time.monotonic() < deadline, f"{text!r} never {'appeared' if present else 'went'}; the screen:\n{shown}"
            time.sleep(0.1)
        return shown

    try:
        shown = wait_for_text("r Resume")
        assert "r  ·  ● finished" in shown and "step 400 / 400" in shown and "r Resume" in shown
        keys("?")
        wait_for_text("Keys that do not apply")
        keys("Escape")
        wait_for_text("Keys that do not apply", present=False)  # a key sent right after Escape would read as alt+key
        keys("2")
        wait_for_text("val mel-L1  best")
        keys("q")
        wait_for_text("dashboard exited with 0")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
