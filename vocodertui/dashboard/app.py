"""``vocodertui monitor``: the Textual dashboard of a training run.

The app composes the screen, owns the keys and steers the trainer only through
``vocodertui.control`` (verified PID, signals), as ``vocodertui stop`` and ``start`` do. Reading is
``RunReader``'s, in a worker thread; each view it posts is handed out to the widgets and panes as
value-comparable reactives, so only what changed repaints. It never imports torch.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Callable, Iterable, Optional

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane
from textual.worker import get_current_worker

from trainer.records import SEGMENTS
from trainer.rundir import RunPaths
from vocodertui import control
from vocodertui.dashboard.alerts_banner import AlertBanner, AlertList
from vocodertui.dashboard.feed import RunFeed, RunView
from vocodertui.dashboard.panes import LossesPane, QualityPane, SamplesPane
from vocodertui.dashboard.reader import RunReader
from vocodertui.dashboard.screens import CheckpointPicker, ConfirmStop, HelpScreen, RunPicker
from vocodertui.dashboard.widgets import CheckpointTable, EventLog, ProgressPanel, RunHeader, SystemLine
from vocodertui.runstate import list_runs, run_status

RESUME_TIMEOUT_S = 600.0


class Quitting(Exception):
    """Raised in a worker waiting on the trainer when the dashboard closes."""


class MonitorApp(App):
    class ViewRead(Message):
        """A fresh view of the run from the reader (posted, so the reader never waits on the UI)."""

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
        Binding("5", "tab('quality')", "Quality", show=False),
    ]

    launching = reactive(False, bindings=True)  # a resume was asked for and its trainer has not said so yet
    steerable: reactive[tuple[Optional[str], bool]] = reactive((None, False), bindings=True)  # state, any checkpoint

    def __init__(self, run: RunPaths, logs_dir: Path, feed: Callable[[RunPaths], RunFeed] = RunFeed):
        super().__init__()
        self.make_feed = feed
        self.run_paths = run
        self.logs_dir = logs_dir
        self.view: Optional[RunView] = None
        self.reader: Optional[RunReader] = None

    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        yield AlertBanner(id="alerts")
        yield ProgressPanel(id="progress")
        yield SystemLine(id="system")
        with TabbedContent(id="tabs"):
            yield LossesPane()
            with TabPane("Checkpoints", id="checkpoints"):
                yield CheckpointTable(id="checkpoint-table")
            yield SamplesPane()
            with TabPane("Events", id="events"):
                yield AlertList(id="event-alerts")
                yield EventLog(id="event-log", wrap=True)
            yield QualityPane()
        yield Footer()

    def on_mount(self) -> None:
        self.follow(self.run_paths)

    def on_unmount(self) -> None:
        if self.reader is not None:
            self.reader.close()

    def follow(self, run: RunPaths) -> None:
        if self.reader is not None:
            self.reader.close()  # its worker ends after the view it is reading
        self.reader = RunReader(run, self.make_feed)
        self.read(self.reader)

    @work(thread=True, group="feed")
    def read(self, reader: RunReader) -> None:
        reader.run(lambda view: self.post_message(self.ViewRead(view)))

    def on_monitor_app_view_read(self, message: MonitorApp.ViewRead) -> None:
        view = message.view
        if view.run != self.run_paths:
            return  # from the reader of a run we have just switched away from
        if not self.query(RunHeader):
            return  # posted as the app closed: the screen's widgets are already gone
        self.view = view
        if self.launching and view.status.pid and any(
                isinstance(e, SEGMENTS) and e.pid == view.status.pid for e in view.events[-50:]):
            self.launching = False  # the new trainer has loaded its checkpoint and said so
        self.steerable = (view.status.state, bool(view.checkpoints))
        self.query_one(RunHeader).show(view, self.launching)
        self.query_one(AlertBanner).show(view)
        self.query_one(AlertList).show(view)
        self.query_one(ProgressPanel).show(view)
        self.query_one(SystemLine).show(view)
        for table in self.query(CheckpointTable):
            table.show(view)
        self.query_one(EventLog).show(view)
        self.query_one(LossesPane).curves = view.curves
        self.query_one(SamplesPane).samples = view.samples
        self.query_one(QualityPane).quality = view.quality

    # ------------------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> Optional[bool]:
        state, any_checkpoint = self.steerable
        if action == "stop":
            return state in ("running", "stalled") and not self.launching or None
        if action == "checkpoint":
            return state == "running" and not self.launching or None
        if action == "resume":
            resumable = state in ("stopped", "crashed", "finished") and any_checkpoint
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
        self.notify(message.splitlines()[0], severity="error", timeout=10)

    def action_smoothing(self) -> None:
        self.query_one(LossesPane).cycle_smoothing()

    def action_window(self) -> None:
        self.query_one(LossesPane).cycle_window()

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
        self.view, self.launching, self.steerable = None, False, (None, False)
        self.query_one(EventLog).restart()
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
