"""The Health tab: is the run healthy, and where does a step's time go.

Learning rate (log scale), gradient norms, steps/s and the trainer's resident memory of every
compared run, and the steered run's step time split into its phases (``STEP_TIMES``).
"""

from __future__ import annotations

import numpy as np
from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Grid
from textual.reactive import reactive
from textual.widgets import Static, TabPane

from vocodertui.dashboard.feed import Curves
from vocodertui.dashboard.plotting import PlotSettings, traces
from vocodertui.dashboard.widgets import RUN_COLOURS, Legend, LossPlot, Trace, dot, hex_colour, plot_title
from vocodertui.follow import STEP_TIMES

# column, title, log y, scale
HEALTH_PLOTS = (
    ("lr", "lr G (log)", True, 1.0),
    ("grad_norm_g", "grad norm G", False, 1.0),
    ("grad_norm_d", "grad norm D", False, 1.0),
    ("steps_per_s", "steps/s", False, 1.0),
    ("rss_bytes", "trainer RSS MB", False, 1e-6),
)
PHASES = {"time_data": "data", "time_d": "D", "time_g": "G", "time_optim": "optim", "time_other": "other"}
PHASE_COLOURS = dict(zip(STEP_TIMES, RUN_COLOURS[1:] + RUN_COLOURS[:1]))  # not the first run's blue, for contrast
NOT_RECORDED = "not recorded by this run's trainer"
NOT_RECORDED_BY_ANY = "not recorded by these runs' trainers"


class HealthPane(TabPane):
    """Raw values (no smoothing), in the loss plots' window and on their x axis."""

    curves: reactive[tuple[Curves, ...]] = reactive((), init=False)  # the compared runs', the steered one first
    settings = reactive(PlotSettings(), init=False)

    def __init__(self) -> None:
        super().__init__("Health", id="health")

    def compose(self) -> ComposeResult:
        yield Static(id="health-settings")
        yield Legend(id="health-legend")
        with Grid(id="health-plots"):
            for column, *_ in HEALTH_PLOTS:
                yield LossPlot(id=f"health-{column}")
            yield LossPlot(id="health-split")

    stale = False  # something changed while the tab was hidden

    def watch_settings(self) -> None:
        self.draw()

    def watch_curves(self) -> None:
        self.query_one("#health-legend", Legend).show(tuple(c.name for c in self.curves))
        self.draw()

    def on_show(self) -> None:
        if self.stale:
            self.draw()

    def draw(self) -> None:
        runs, s = self.curves, self.settings
        self.stale = not self.display
        if not runs or self.stale:  # hidden: drawn when shown
            return
        phases = "  ".join(f"[{hex_colour(PHASE_COLOURS[c])}]■[/] {name}" for c, name in PHASES.items())
        self.query_one("#health-settings", Static).update(
            f"x [b]{s.x_name}[/b] (x)  ·  window [b]{s.window_name}[/b] (w)  ·  step time of {dot(0)} "
            f"{escape(runs[0].name)}: {phases}")
        for column, label, log_y, scale in HEALTH_PLOTS:
            plot = self.query_one(f"#health-{column}", LossPlot)
            if not any(c.recorded(column) for c in runs):
                plot.show(label, (), note=NOT_RECORDED if len(runs) == 1 else NOT_RECORDED_BY_ANY)
                continue
            lines, _ = traces(runs, column, s, smoothed=False, log_y=log_y, scale=scale)
            plot.show(plot_title(label, runs[0].column(column) * scale), lines, log_y)
        self.draw_split(runs[0], s)

    def draw_split(self, curves: Curves, s: PlotSettings) -> None:
        plot = self.query_one("#health-split", LossPlot)
        if not any(curves.recorded(c) for c in STEP_TIMES):
            plot.show("step time split", (), note=NOT_RECORDED)
            return
        lines = []
        for column in STEP_TIMES:
            (line,), _ = traces((curves,), column, s, smoothed=False)
            lines.append(Trace(line.x, line.y, PHASE_COLOURS[column]))
        latest = np.nansum([curves.column(c)[-1] for c in STEP_TIMES])
        plot.show(f"step time, s/step: {latest:.3g} in all", tuple(lines))
