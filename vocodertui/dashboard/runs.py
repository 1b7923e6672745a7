"""The Runs tab: every run under the logs directory side by side, and the config keys that differ
between the compared runs. Read in a worker when the tab is shown or the compared runs change."""

from __future__ import annotations

import datetime
from pathlib import Path

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.reactive import reactive
from textual.widgets import DataTable, Static, TabPane

from trainer.config import Config
from vocodertui.dashboard.widgets import RUN_COLOURS, dot, hex_colour
from vocodertui.runstate import quality_cells, scored_metrics
from vocodertui.runsummary import RunSummary, config_diff, summaries
from vocodertui.units import format_duration


class RunsPane(TabPane):
    compared: reactive[tuple[str, ...]] = reactive((), init=False)  # the runs the plots overlay, in their order

    def __init__(self, logs_dir: Path) -> None:
        super().__init__("Runs", id="runs")
        self.logs_dir = logs_dir

    def compose(self) -> ComposeResult:
        yield Static("reading the runs…", id="runs-summary")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="config-diff-title")
        yield DataTable(id="config-diff", cursor_type="row")

    def on_show(self) -> None:
        self.read_runs()

    def watch_compared(self) -> None:
        if self.display:  # hidden, it reads them when shown
            self.read_runs()

    @work(thread=True, exclusive=True, group="runs-tab")
    def read_runs(self) -> None:
        found = summaries(self.logs_dir)
        self.app.call_from_thread(self.show_runs, found)

    def show_runs(self, found: list[RunSummary]) -> None:
        compared = self.compared
        runs = "1 run" if len(found) == 1 else f"{len(found)} runs"
        self.query_one("#runs-summary", Static).update(
            f"{runs} under {escape(str(self.logs_dir))} (read when this tab is shown); quality: the best "
            f"checkpoint's  ·  compare runs: l, space marks, enter applies")
        metrics = scored_metrics([s.best for s in found if s.best is not None])
        table = self.query_one("#runs-table", DataTable)
        table.clear(columns=True)
        table.add_columns("", "run", "state", "step", "best val mel-L1", "recipe", "started", "wall time",
                          *(m.title for m in metrics))
        for s in found:
            st = s.status
            mark = Text("●", style=hex_colour(RUN_COLOURS[compared.index(s.name)])) if s.name in compared else ""
            quality = quality_cells(s.best, metrics) if s.best is not None else ("-",) * len(metrics)
            table.add_row(mark, s.name, st.state, f"{st.step:,}" + (f" / {st.target_step:,}" if st.target_step else ""),
                          f"{s.best_val:.4f}" if s.best_val is not None else "-", s.recipe,
                          f"{datetime.datetime.fromtimestamp(s.started):%Y-%m-%d %H:%M}" if s.started else "-",
                          format_duration(s.wall_s), *quality, key=s.name)
        self.show_diff({s.name: s for s in found})

    def show_diff(self, found: dict[str, RunSummary]) -> None:
        title = self.query_one("#config-diff-title", Static)
        table = self.query_one("#config-diff", DataTable)
        table.clear(columns=True)
        runs = [(i, found[name]) for i, name in enumerate(self.compared) if name in found]
        if len(runs) < 2:
            title.update("[dim]mark two or more runs in the run list (l, space, enter) to see the config keys that differ[/dim]")
            return
        configs: dict[str, Config] = {s.name: s.config for _, s in runs if s.config is not None}
        unreadable = "".join(f"  ·  {dot(i)} {escape(s.name)}: {escape(s.config_problem)}" for i, s in runs if s.config is None)
        diff = config_diff(configs)
        names = " ".join(f"{dot(i)} {escape(s.name)}" for i, s in runs if s.config is not None)
        title.update(f"config keys that differ between {names}: {len(diff)}{unreadable}" if len(configs) >= 2
                     else f"[dim]fewer than two readable configs{unreadable}[/dim]")
        if not diff:
            return
        table.add_column("key")
        for i, s in runs:
            if s.config is not None:
                table.add_column(Text(s.name, style=hex_colour(RUN_COLOURS[i])))
        for key, values in diff:
            table.add_row(key, *(str(v) for v in values))
