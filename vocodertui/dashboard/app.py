"""``vocodertui monitor``: the Textual dashboard of a training run.

It reads the run directory in a worker thread (``RunFeed``), woken by watchfiles or, failing that,
by polling, and steers the trainer only through ``vocodertui.control`` (verified PID, signals), as
``vocodertui stop`` and ``start`` do. It never imports torch.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Grid, Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from vocodertui import control
from vocodertui.dashboard import spectrogram
from vocodertui.dashboard.feed import RunFeed, RunView
from vocodertui.dashboard.screens import CheckpointPicker, ConfirmStop, HelpScreen, RunPicker
from vocodertui.dashboard.widgets import CheckpointTable, EventLog, LossPlot, ProgressPanel, RunHeader, Spectrogram, SystemLine
from trainer.records import LOSSES, SEGMENTS, title
from trainer.rundir import RunPaths
from vocodertui.runstate import list_runs, run_status
from vocodertui.series import SMOOTHINGS, TREND_WINDOW

TICK_S = 1.0  # liveness, system figures and ETA are refreshed this often without any file change
POLL_S = 0.25  # when watchfiles cannot watch the folder
WINDOWS = (None, 10_000, 1_000)  # plot windows in steps; None is the whole run
SMOOTHING_NAMES = {"raw": "raw", "ema": "EMA", "mean": "moving mean"}
LOSS_PLOTS = tuple((loss, title(loss)) for loss in LOSSES)
RESUME_TIMEOUT_S = 600.0


class Quitting(Exception):
    """Raised in a worker waiting on the trainer when the dashboard closes."""


class Waker:
    """Wakes the feed worker when something in the run folder changes (watchfiles), else every tick."""

    def __init__(self, folder: Path):
        self.changed = threading.Event()
        self.stop = threading.Event()
        self.polling = False
        self.thread = threading.Thread(target=self._watch, args=(folder,), daemon=True, name="run-folder-watch")
        self.thread.start()

    def _watch(self, folder: Path) -> None:
        try:
            import watchfiles

            for _ in watchfiles.watch(folder, stop_event=self.stop, debounce=50, step=30, raise_interrupt=False):
                self.changed.set()
        except Exception:  # no inotify, folder missing, too many watches: poll instead
            self.polling = True
            self.changed.set()

    def wait(self, timeout: float) -> None:
        self.changed.wait(min(timeout, POLL_S) if self.polling else timeout)
        self.changed.clear()

    def close(self) -> None:
        self.stop.set()
        self.changed.set()


class MonitorApp(App):
    class ViewRead(Message):
        """A fresh view of the run from the feed worker (posted, so the worker never waits on the UI)."""

        def __init__(self, view: RunView):
            super().__init__()
            self.view = view

    CSS_PATH = "app.tcss"
    TITLE = "vocodertui monitor"
    BINDINGS = [
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("c", "checkpoint", "Checkpoint"),
        Binding("m", "smoothing", "Smoothing"),
        Binding("w", "window", "Window"),
        Binding("l", "runs", "Runs"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("1", "tab('losses')", "Losses", show=False),
        Binding("2", "tab('checkpoints')", "Checkpoints", show=False),
        Binding("3", "tab('samples')", "Samples", show=False),
        Binding("4", "tab('events')", "Events", show=False),
    ]

    def __init__(self, run: RunPaths, logs_dir: Path, feed: Callable[[RunPaths], RunFeed] = RunFeed):
        super().__init__()
        self.make_feed = feed
        self.run_paths = run
        self.logs_dir = logs_dir
        self.view: Optional[RunView] = None
        self.smoothing = SMOOTHINGS[0]
        self.window_index = 0
        self.launching = False
        self.waker: Optional[Waker] = None
        self._plotted: Optional[tuple] = None
        self._samples: tuple[Path, ...] = ()
        self._state: Optional[str] = None

    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        yield ProgressPanel(id="progress")
        yield SystemLine(id="system")
        with TabbedContent(id="tabs"):
            with TabPane("Losses", id="losses"):
                yield Static(id="plot-settings")
                with Grid(id="plots"):
                    for column, label in LOSS_PLOTS:
                        yield LossPlot(id=f"plot-{column}")
                    yield LossPlot(id="plot-val_mel")
            with TabPane("Checkpoints", id="checkpoints"):
                yield CheckpointTable(id="checkpoint-table")
            with TabPane("Samples", id="samples"):
                with Horizontal():
                    yield OptionList(id="sample-list")
                    yield Spectrogram(id="spectrogram")
            with TabPane("Events", id="events"):
                yield EventLog(id="event-log", wrap=True)
        yield Footer()

    def on_mount(self) -> None:
        self.show_plot_settings()
        self.follow(self.run_paths)

    def on_unmount(self) -> None:
        if self.waker is not None:
            self.waker.close()

    # ------------------------------------------------------------------------------ reading

    @work(thread=True, exclusive=True, group="feed")
    def follow(self, run: RunPaths) -> None:
        worker = get_current_worker()
        if self.waker is not None:
            self.waker.close()
        self.waker = waker = Waker(run.root)
        feed = self.make_feed(run)
        try:
            while not worker.is_cancelled:
                self.post_message(self.ViewRead(feed.view()))
                if feed.index_some():
                    continue  # keep indexing; new lines are still read between chunks
                waker.wait(TICK_S)
        finally:
            waker.close()

    def on_monitor_app_view_read(self, message: ViewRead) -> None:
        self.show_view(message.view)

    def show_view(self, view: RunView) -> None:
        if view.run != self.run_paths:
            return  # from the feed of a run we have just switched away from
        self.view = view
        state = view.status.state
        if self.launching and view.status.pid and any(
                isinstance(e, SEGMENTS) and e.pid == view.status.pid for e in view.events[-50:]):
            self.launching = False  # the new trainer has loaded its checkpoint and said so
        self.query_one(RunHeader).show(view, self.launching)
        self.query_one(ProgressPanel).show(view)
        self.query_one(SystemLine).show(view)
        self.query_one(CheckpointTable).show(view)
        self.query_one(EventLog).show(view)
        self.show_plots()
        self.show_samples(view.samples)
        if (state, self.launching, bool(view.checkpoints)) != self._state:
            self._state = (state, self.launching, bool(view.checkpoints))
            self.refresh_bindings()

    def show_plot_settings(self) -> None:
        window = WINDOWS[self.window_index]
        self.query_one("#plot-settings", Static).update(
            f"smoothing [b]{SMOOTHING_NAMES[self.smoothing]}[/b] (m)  ·  window "
            f"[b]{'all steps' if window is None else f'last {window:,} steps'}[/b] (w)  ·  "
            f"arrows: last {TREND_WINDOW} logged steps against the {TREND_WINDOW} before"
        )

    def show_plots(self) -> None:
        view = self.view
        if view is None:
            return
        key = (view.rows_version, len(view.validations), self.smoothing, self.window_index)
        if key == self._plotted:
            return
        self._plotted = key
        steps = view.column("step")
        window = WINDOWS[self.window_index]
        first = steps[-1] - window if (window is not None and len(steps)) else -np.inf
        shown = steps > first
        for column, label in LOSS_PLOTS:
            values = view.column(column)
            self.query_one(f"#plot-{column}", LossPlot).show(label, steps[shown], values[shown], self.smoothing, values)
        val_steps = np.array([s for s, _ in view.validations], dtype=np.float64)
        val = np.array([v for _, v in view.validations], dtype=np.float64)
        shown = val_steps > first
        self.query_one("#plot-val_mel", LossPlot).show("val mel-L1", val_steps[shown], val[shown], "raw", val)

    def show_samples(self, samples: tuple[Path, ...]) -> None:
        if samples == self._samples:
            return
        self._samples = samples
        options = self.query_one("#sample-list", OptionList)
        before = options.highlighted
        options.clear_options()
        options.add_options([Option(p.stem, id=str(p)) for p in samples])
        if samples:
            options.highlighted = min(before or 0, len(samples) - 1)
            self.load_spectrogram(samples[options.highlighted])

    @on(OptionList.OptionHighlighted, "#sample-list")
    def sample_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.load_spectrogram(Path(event.option.id))

    @work(thread=True, exclusive=True, group="spectrogram")
    def load_spectrogram(self, path: Path) -> None:
        widget = self.query_one(Spectrogram)
        try:
            audio, rate = spectrogram.read_wav(path)
        except spectrogram.READ_ERRORS as exc:
            self.call_later(widget.show, f"cannot read {path.name}: {exc}", None)
            return
        caption = f"{path.parent.name}/{path.name}  {len(audio) / rate:.2f} s at {rate} Hz"
        self.call_later(widget.show, caption, (spectrogram.log_spectrogram(audio), rate))

    # ------------------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> Optional[bool]:
        state = self.view.status.state if self.view else None
        if action == "stop":
            return state in ("running", "stalled") and not self.launching or None
        if action == "checkpoint":
            return state == "running" and not self.launching or None
        if action == "resume":
            resumable = state in ("stopped", "crashed", "finished") and bool(self.view.checkpoints)
            return resumable and not self.launching or None
        return True

    def action_stop(self) -> None:
        status = self.view.status

        def answered(yes: Optional[bool]) -> None:
            if yes:
                self.signal_trainer(signal.SIGTERM, "stop requested: the trainer finishes the step and checkpoints")

        self.push_screen(ConfirmStop(status.name, status.step), answered)

    def action_checkpoint(self) -> None:
        self.signal_trainer(signal.SIGUSR1, "checkpoint requested")

    def signal_trainer(self, sig: signal.Signals, done: str) -> None:
        try:
            pid = control.send_signal(self.run_paths, sig)
        except control.ControlError as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(f"{done} (pid {pid})")

    def action_resume(self) -> None:
        def picked(path: Optional[Path]) -> None:
            if path is not None:
                self.launching = True
                self.refresh_bindings()
                self.notify(f"resuming {self.run_paths.name} from {path.name}")
                self.resume_from(path)

        self.push_screen(CheckpointPicker(list(self.view.checkpoints)), picked)

    @work(thread=True, exclusive=True, group="control")
    def resume_from(self, path: Path) -> None:
        worker = get_current_worker()

        def still_wanted(_line: str) -> None:
            if worker.is_cancelled:  # the dashboard is closing; the trainer starts without us
                raise Quitting

        try:
            pid = control.resume(self.run_paths, path, RESUME_TIMEOUT_S, still_wanted)
        except Quitting:
            return
        except control.ControlError as exc:
            self.call_from_thread(self.resume_failed, str(exc))
            return
        self.call_from_thread(self.notify, f"trainer running again as pid {pid}")

    def resume_failed(self, message: str) -> None:
        self.launching = False
        self.refresh_bindings()
        self.notify(message.splitlines()[0], severity="error", timeout=10)

    def action_smoothing(self) -> None:
        self.smoothing = SMOOTHINGS[(SMOOTHINGS.index(self.smoothing) + 1) % len(SMOOTHINGS)]
        self.show_plot_settings()
        self.show_plots()

    def action_window(self) -> None:
        self.window_index = (self.window_index + 1) % len(WINDOWS)
        self.show_plot_settings()
        self.show_plots()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    @work(thread=True, exclusive=True, group="runs")
    def action_runs(self) -> None:
        statuses = [run_status(r) for r in list_runs(self.logs_dir)]
        self.call_from_thread(self.push_screen, RunPicker(statuses, self.run_paths.name), self.switch_run)

    def switch_run(self, name: Optional[str]) -> None:
        if name is None or name == self.run_paths.name:
            return
        self.run_paths = RunPaths(self.logs_dir / name)
        self.view, self._plotted, self._samples, self._state, self.launching = None, None, (), None, False
        self.query_one(EventLog).clear()
        self.query_one(EventLog).shown = 0
        self.follow(self.run_paths)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for action, title, help_text in (
            ("stop", "Stop training", "graceful stop: finish the step, checkpoint, exit"),
            ("resume", "Resume training", "pick a checkpoint and start the trainer from it"),
            ("checkpoint", "Checkpoint now", "ask the trainer to write a checkpoint"),
            ("smoothing", "Cycle loss smoothing", "raw, EMA, moving mean"),
            ("window", "Cycle plot window", "all steps, last 10,000, last 1,000"),
            ("runs", "Switch run", "pick another run under the logs directory"),
        ):
            if self.check_action(action, ()):
                yield SystemCommand(title, help_text, getattr(self, f"action_{action}"))
