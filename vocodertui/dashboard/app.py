"""``vocodertui monitor``: the Textual dashboard of a training run, or of several compared.

The app composes the screen, owns the keys and steers the trainer only through
``vocodertui.control`` (verified PID, signals), as ``vocodertui stop`` and ``start`` do; when runs
are compared, the first is the one it steers. Reading is ``RunReader``'s, one worker thread per
run; each view a reader posts is handed out to the widgets and panes as value-comparable
reactives, so only what changed repaints. The tabs are mounted once the steered run's first view
is on screen: composing and styling their hundred-odd widgets took a fifth of the first frame, and
the header and progress need none of them. It never imports torch.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

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
from vocodertui.dashboard.health import HealthPane
from vocodertui.dashboard.panes import LossesPane, QualityPane, RunQuality, SamplesPane
from vocodertui.dashboard.plotting import PlotSettings
from vocodertui.dashboard.reader import RunReader
from vocodertui.dashboard.runs import RunsPane
from vocodertui.dashboard.screens import CheckpointPicker, ConfirmStop, HelpScreen, RunPicker
from vocodertui.dashboard.widgets import RUN_COLOURS, CheckpointTable, EventLog, ProgressPanel, RunHeader, SystemLine
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
        Binding("plus,equals_sign", "ema(1)", "heavier EMA", show=False),
        Binding("minus", "ema(-1)", "lighter EMA", show=False),
        Binding("x", "x_axis", "x axis", show=False),
        Binding("y", "log_scale", "log y", show=False),
        Binding("l", "runs", "Runs"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("1", "tab('losses')", "Losses", show=False),
        Binding("2", "tab('checkpoints')", "Checkpoints", show=False),
        Binding("3", "tab('samples')", "Samples", show=False),
        Binding("4", "tab('events')", "Events", show=False),
        Binding("5", "tab('quality')", "Quality", show=False),
        Binding("6", "tab('health')", "Health", show=False),
        Binding("7", "tab('runs')", "Runs", show=False),
    ]

    launching = reactive(False, bindings=True)  # a resume was asked for and its trainer has not said so yet
    steerable: reactive[tuple[Optional[str], bool]] = reactive((None, False), bindings=True)  # state, any checkpoint
    plot_settings = reactive(PlotSettings(), init=False)

    def __init__(self, runs: RunPaths | Sequence[RunPaths], logs_dir: Path, feed: Callable[[RunPaths], RunFeed] = RunFeed):
        super().__init__()
        self.make_feed = feed
        self.runs: tuple[RunPaths, ...] = (runs,) if isinstance(runs, RunPaths) else tuple(dict.fromkeys(runs))
        self.logs_dir = logs_dir
        self.view: Optional[RunView] = None  # the steered run's
        self.views: dict[RunPaths, RunView] = {}  # the latest of each compared run
        self.readers: dict[RunPaths, RunReader] = {}
        self.tabs_mounted = False  # until the first view is on screen; then every tab and its widgets are there

    @property
    def run_paths(self) -> RunPaths:
        """The run the keys steer: the first compared."""
        return self.runs[0]

    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        yield AlertBanner(id="alerts")
        yield ProgressPanel(id="progress")
        yield SystemLine(id="system")
        yield Footer()

    async def mount_tabs(self) -> None:
        """The tabs, then what they show of the views read so far."""
        if self.tabs_mounted or self.query_one_optional(Footer) is None:
            return  # mounted already, or the app is closing
        tabs = TabbedContent(id="tabs")
        for pane in (LossesPane(),
                     TabPane("Checkpoints", CheckpointTable(id="checkpoint-table"), id="checkpoints"),
                     SamplesPane(),
                     TabPane("Events", AlertList(id="event-alerts"), EventLog(id="event-log", wrap=True), id="events"),
                     QualityPane(),
                     HealthPane(),
                     RunsPane(self.logs_dir)):
            tabs.compose_add_child(pane)  # what `with TabbedContent():` does in a compose
        await self.mount(tabs, before=self.query_one(Footer))
        if not self.is_running:
            return  # the app closed while they were mounting
        self.tabs_mounted = True
        if self.focused is None:
            self.screen.focus_next()  # the tab bar, as the screen's auto-focus would have at start
        self.query_one(RunsPane).compared = tuple(r.name for r in self.runs)
        self.watch_plot_settings(self.plot_settings)
        if self.view is not None:
            self.show_steered(self.view)
        self.show_compared()

    def on_mount(self) -> None:
        self.follow()

    def on_unmount(self) -> None:
        for reader in self.readers.values():
            reader.close()

    def follow(self) -> None:
        """A reader for each compared run that has none; those no longer compared are closed (a run
        that stays keeps its reader, so nothing is read twice)."""
        for run in [r for r in self.readers if r not in self.runs]:
            self.readers.pop(run).close()  # its worker ends after the view it is reading
            self.views.pop(run, None)
        for run, reader in self.readers.items():
            reader.set_steered(run == self.run_paths)
        self.start_readers()
        if self.tabs_mounted:
            self.query_one(RunsPane).compared = tuple(r.name for r in self.runs)

    def start_readers(self) -> None:
        """A reader for the steered run at once; for the other compared runs once its first view is on
        screen, so that their reading (parsing, a thread each) does not delay its newest step."""
        for run in self.runs:
            if run not in self.readers and (run == self.run_paths or self.run_paths in self.views):
                self.readers[run] = RunReader(run, self.make_feed, steered=run == self.run_paths)
                self.read(self.readers[run])

    @work(thread=True, group="feed")
    def read(self, reader: RunReader) -> None:
        reader.run(lambda view: self.post_message(self.ViewRead(view)))

    def on_monitor_app_view_read(self, message: MonitorApp.ViewRead) -> None:
        view = message.view
        if view.run not in self.runs:
            return  # from the reader of a run we have just stopped following
        if self.query_one_optional(RunHeader) is None:  # query_one is cached; query() would walk every widget
            return  # posted as the app closed: the screen's widgets are already gone
        self.views[view.run] = view
        first = False
        if view.run == self.run_paths:
            first = self.view is None
            self.show_steered(view)
            if len(self.readers) < len(self.runs):
                self.call_after_refresh(self.start_readers)
        self.show_compared()
        if first:  # the newest step on screen first; the tabs, and plotext's drawing of the plots, the frame after
            self.call_after_refresh(self.mount_tabs)

    def show_compared(self) -> None:
        """The header and the plots, once every compared run has been read (colours go by position)."""
        if any(run not in self.views for run in self.runs) or self.query_one_optional(RunHeader) is None:
            return
        views = [self.views[run] for run in self.runs]
        self.query_one(RunHeader).show(views, self.launching)
        if not self.tabs_mounted:
            return
        curves = tuple(v.curves for v in views)
        self.query_one(LossesPane).curves = curves
        self.query_one(HealthPane).curves = curves
        self.query_one(QualityPane).runs = tuple(RunQuality(v.run.name, v.curves.started, v.quality) for v in views)

    def show_steered(self, view: RunView) -> None:
        self.view = view
        if self.launching and view.status.pid and any(
                isinstance(e, SEGMENTS) and e.pid == view.status.pid for e in view.events[-50:]):
            self.launching = False  # the new trainer has loaded its checkpoint and said so
        self.steerable = (view.status.state, bool(view.checkpoints))
        self.query_one(AlertBanner).show(view)
        self.query_one(ProgressPanel).show(view)
        self.query_one(SystemLine).show(view)
        if not self.tabs_mounted:
            return
        self.query_one(AlertList).show(view)
        for table in ("#checkpoint-table", "#quality-checkpoints"):
            self.query_one(table, CheckpointTable).show(view)
        self.query_one(EventLog).show(view)
        self.query_one(SamplesPane).samples = view.samples

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

        self.push_screen(CheckpointPicker(list(self.view.checkpoints), self.run_paths.name), picked)

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
        self.plot_settings = self.plot_settings.next_smoothing()

    def action_ema(self, by: int) -> None:
        self.plot_settings = self.plot_settings.ema_step(by)

    def action_window(self) -> None:
        self.plot_settings = self.plot_settings.next_window()

    def action_x_axis(self) -> None:
        self.plot_settings = self.plot_settings.next_x()

    def action_log_scale(self) -> None:
        self.plot_settings = self.plot_settings.toggle_log()

    def watch_plot_settings(self, settings: PlotSettings) -> None:
        if not self.tabs_mounted:
            return  # mount_tabs hands them over
        self.query_one(LossesPane).settings = settings
        self.query_one(HealthPane).settings = settings
        self.query_one(QualityPane).x = settings.x

    def action_tab(self, tab: str) -> None:
        if self.tabs_mounted:
            self.query_one(TabbedContent).active = tab

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    @work(thread=True, exclusive=True, group="runs")
    def action_runs(self) -> None:
        statuses = [run_status(r) for r in list_runs(self.logs_dir)]
        picker = RunPicker(statuses, tuple(r.name for r in self.runs), most=len(RUN_COLOURS))
        self.call_from_thread(self.push_screen, picker, self.compare)

    def compare(self, names: Optional[tuple[str, ...]]) -> None:
        """Follow these runs (the first steered) instead of the current ones."""
        if not names or names == tuple(r.name for r in self.runs):
            return
        steered = self.run_paths
        self.runs = tuple(RunPaths(self.logs_dir / name) for name in names)
        self.follow()
        if self.run_paths != steered:
            self.view, self.launching, self.steerable = None, False, (None, False)
            if self.tabs_mounted:
                self.query_one(EventLog).restart()
            if self.run_paths in self.views:  # compared already: no need to wait for its reader
                self.show_steered(self.views[self.run_paths])
        self.show_compared()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for action, title, help_text in (
            ("stop", "Stop training", "graceful stop: finish the step, checkpoint, exit"),
            ("resume", "Resume training", "pick a checkpoint and start the trainer from it"),
            ("checkpoint", "Checkpoint now", "ask the trainer to write a checkpoint"),
            ("smoothing", "Cycle loss smoothing", "raw, EMA, moving mean"),
            ("window", "Cycle plot window", "all steps, last 10,000, last 1,000"),
            ("x_axis", "Cycle the x axis", "step, or wall-clock hours since each run's start"),
            ("log_scale", "Toggle log scale", "the loss plots' y axis: log or linear"),
            ("runs", "Switch or compare runs", "pick runs under the logs directory; space marks several to compare"),
        ):
            if self.check_action(action, ()):
                yield SystemCommand(title, help_text, getattr(self, f"action_{action}"))
