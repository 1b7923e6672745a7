"""The dashboard's widgets. Each renders a part of a ``RunView``; none of them reads files."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Optional

import numpy as np
from rich.markup import escape
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import DataTable, RichLog, Static
from textual_plotext import PlotextPlot

from trainer.records import (EVENTS, Checkpoint, Crashed, Event, Finished, NanRollback, ReopenedFile, Resume, Start,
                             Stopped, Stopping, Validation, kind_of)
from vocodertui.dashboard import spectrogram
from vocodertui.dashboard.feed import RunView
from vocodertui.runstate import quality_cells, scored_metrics
from vocodertui.series import TREND_WINDOW, downsample, trend
from vocodertui.units import format_bytes, format_duration

STATE_CLASSES = {"running": "-ok", "finished": "-ok", "stopping": "-warning", "stalled": "-warning",
                 "stopped": "-idle", "not started": "-idle", "crashed": "-error", "starting": "-warning"}
ARROWS = {"down": "↓", "up": "↑", "flat": "→"}


class Line(Static):
    """A fixed one-line Static that repaints only when its text changes (the dashboard idles cheaply)."""

    text = reactive("", init=False)

    def watch_text(self, text: str) -> None:
        self.update(text, layout=False)


# textual-plotext's own colour sequence, so the first run looks as a single run always has
RUN_COLOURS = ((0, 130, 200), (60, 180, 75), (230, 25, 75), (255, 225, 25), (245, 130, 48), (145, 30, 180))


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def dot(index: int, mark: str = "●") -> str:
    """``mark`` in the colour of the ``index``-th compared run (markup)."""
    return f"[{hex_colour(RUN_COLOURS[index])}]{mark}[/]"


def short_count(n: int) -> str:
    """12345 -> 12.3k, 500000 -> 500k, 1200000 -> 1.2M."""
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + unit
    return str(n)


class RunHeader(Line):
    """Run name, state, PID, uptime and the age of the last metrics line; when runs are compared,
    each run's state and step in its colour, the first (the one the keys steer) in bold."""

    def show(self, views: list[RunView], launching: bool) -> None:
        s = views[0].status
        state = "starting" if launching and s.state not in ("running", "stopping") else s.state
        self.set_classes(STATE_CLASSES.get(state, "-idle"))
        if len(views) > 1:
            self.text = "  ·  ".join(
                f"{dot(i)} {'[b]' + escape(v.status.name) + '[/b]' if i == 0 else escape(v.status.name)} "
                f"{state if i == 0 else v.status.state} {short_count(v.status.step)}"
                + (f"/{short_count(v.status.target_step)}" if v.status.target_step else "")
                for i, v in enumerate(views))
            return
        parts = [f"[b]{escape(s.name)}[/b]", f"● {state}"]
        if s.pid:
            parts.append(f"pid {s.pid}")
            if s.uptime_s is not None:
                parts.append(f"up {format_duration(s.uptime_s)}")
        age = s.last_metric_age_s
        parts.append(f"last metric {format_duration(age)} ago" if age is not None else "no metrics yet")
        if s.reason:
            parts.append(escape(s.reason))
        self.text = "  ·  ".join(parts)


class Legend(Line):
    """The compared runs, each named in its colour; hidden while there is one."""

    def show(self, names: tuple[str, ...]) -> None:
        self.display = len(names) > 1
        self.text = "   ".join(f"{dot(i)} {escape(name)}" for i, name in enumerate(names))


@dataclass(frozen=True)
class Progress:
    """What the progress panel draws, comparable by value."""

    step: int
    target_step: Optional[int]
    steps_per_s: Optional[float]
    eta_s: Optional[float]
    lr: Optional[float]
    milestones: tuple[int, ...]
    checkpoints: tuple[int, ...]  # their steps

    @classmethod
    def of(cls, view: RunView) -> Progress:
        s = view.status
        return cls(s.step, s.target_step, s.steps_per_s, s.eta_s, view.latest.lr if view.latest is not None else None,
                   view.milestones, tuple(c.step for c in view.checkpoints))


class ProgressPanel(Widget):
    """Step / target bar with checkpoint and milestone ticks, then steps/s, ETA and learning rate."""

    progress: reactive[Optional[Progress]] = reactive(None)

    def show(self, view: RunView) -> None:
        self.progress = Progress.of(view)

    def render(self) -> Text:
        p = self.progress
        if p is None:
            return Text("reading the run directory…")
        colours = self.app.theme_variables
        width = max(self.size.width, 10)
        target = p.target_step or max(p.step, 1)
        filled = min(int(width * p.step / target), width)
        bar = Text("━" * filled, style=f"bold {colours['accent']}") + Text("─" * (width - filled), style="dim")
        marks: list[tuple[str, str]] = [(" ", "")] * width
        for step in p.checkpoints:
            marks[min(width * step // target, width - 1)] = ("▲", colours["success"])
        for m in (m for m in p.milestones if m <= target):
            reached = m <= p.step
            marks[min(width * m // target, width - 1)] = ("◆", f"bold {colours['success' if reached else 'warning']}")
        ticks = Text.assemble(*marks)
        stats = [f"step {p.step:,} / {target:,} ({100 * p.step / target:.0f} %)",
                 f"{p.steps_per_s:.2f} steps/s" if p.steps_per_s else "- steps/s", f"ETA {format_duration(p.eta_s)}"]
        if p.lr is not None:
            stats.append(f"lr {p.lr:.3g}")
        line = "  ·  ".join(stats)
        legend = "▲ checkpoint  ◆ milestone"
        if len(line) + len(legend) + 5 <= width:
            line += " " * (width - len(line) - len(legend)) + legend
        return Text("\n").join([bar, ticks, Text(line)])


class SystemLine(Line):
    def show(self, view: RunView) -> None:
        sys_ = view.system
        parts = [f"CPU {sys_.cpu_percent:.0f} %", f"RAM {format_bytes(sys_.ram_used)} of {format_bytes(sys_.ram_total)}",
                 f"trainer {format_bytes(sys_.trainer_rss)}" if sys_.trainer_rss else "no trainer process", f"disk {format_bytes(sys_.disk_free)} free"]
        if view.indexing:
            parts.append("indexing older metrics…")
        self.text = "  ·  ".join(parts)


@dataclass(frozen=True, eq=False)
class Trace:
    """One line of a plot: x and y as drawn, in one colour."""

    x: np.ndarray
    y: np.ndarray
    colour: tuple[int, int, int]


def plot_title(label: str, values: np.ndarray, trend_window: int = TREND_WINDOW) -> str:
    """``label``, the latest finite value and the trend arrow."""
    finite = values[np.isfinite(values)]
    latest = f" {finite[-1]:.4g}" if len(finite) else " -"
    return f"{label}{latest} {ARROWS.get(trend(finite, trend_window), '')}".rstrip()


class LossPlot(PlotextPlot):
    """Lines against a shared x axis (one per compared run, or per part of a whole), under a title;
    or, when there is nothing to draw, a note saying why.

    Each line is thinned to two points per column of the width the plot has when it is drawn, so a
    resize (the first layout included) draws it again. A log axis is drawn as log10 of the values on
    a linear one, labelled with the values (plotext's own log axis mislabels a flat line).
    """

    title = ""
    traces: tuple[Trace, ...] = ()
    log_y = False
    note = ""
    shown = False  # nothing to show before the first ``show``: blank, not an empty plotext frame (costly to draw)

    def show(self, title: str, traces: tuple[Trace, ...], log_y: bool = False, note: str = "") -> None:
        self.title, self.traces, self.log_y, self.note, self.shown = title, traces, log_y, note, True
        self.draw()

    def on_resize(self) -> None:
        if self.shown:
            self.draw()

    def render(self):
        if not self.shown:
            return Text("")
        if self.note:
            return Text(f"{self.title}\n\n{self.note}", style="dim", justify="center")
        return super().render()

    def draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.xlabel("")
        plt.title(self.title)
        plt.monitor.yticks, plt.monitor.ylabels = [None, None], [None, None]  # plotext's own ticks (its yticks(None) fails)
        plt.yfrequency()
        plt.ylim(None, None)
        drawn = []
        for trace in self.traces:
            x, y = trace.x, trace.y
            if self.log_y:
                positive = y > 0  # a series with no value above 0 has nothing to show on a log axis
                x, y = x[positive], np.log10(y[positive])
            if len(y):
                x, y = downsample(x, y, max(self.size.width * 2, 2))
                plt.plot(x.tolist(), y.tolist(), marker="braille", color=trace.colour)
                drawn.append(y)
        if self.log_y and drawn:
            low, high = min(y.min() for y in drawn), max(y.max() for y in drawn)
            if high - low < 1e-6:  # a flat line: a quarter of a decade either side
                low, high = low - 0.25, high + 0.25
            ticks = (np.arange(np.ceil(low), np.floor(high) + 1) if high - low >= 2 else np.linspace(low, high, 5))
            plt.ylim(low, high)
            plt.yticks(ticks.tolist(), log_tick_labels(ticks))
        self.refresh()


def log_tick_labels(exponents: np.ndarray) -> list[str]:
    """``10 ** exponents`` with as few significant digits (3 at least) as tell every label apart,
    so that a learning rate decaying from 2e-4 to 1.996e-4 does not read 0.0002 on every tick."""
    values = 10.0 ** np.asarray(exponents, dtype=float)
    for digits in range(3, 8):
        labels = [f"{v:.{digits}g}" for v in values]
        if len(set(labels)) == len(labels):
            return labels
    return labels


class CheckpointTable(DataTable):
    """Every checkpoint on disk, newest first, with the quality scored at its step."""

    listed: reactive[tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]] = reactive(((), ()), init=False)  # header, rows

    def on_mount(self) -> None:
        self.cursor_type = "row"

    def show(self, view: RunView) -> None:
        metrics = scored_metrics(view.checkpoints)
        header = ("step", "saved", "size", "val mel-L1", *(m.title for m in metrics), "best")
        rows = tuple((f"{c.step:,}", _clock(c.time), format_bytes(c.size),
                      f"{c.val_mel:.4f}" if c.val_mel is not None else "-", *quality_cells(c, metrics), "★" if c.best else "")
                     for c in reversed(view.checkpoints))
        self.listed = (header, rows)

    def watch_listed(self, old: tuple, new: tuple) -> None:
        header, rows = new
        self.clear(columns=header != tuple(str(c.label) for c in self.columns.values()))
        if not self.columns:
            self.add_columns(*header)
        for row in rows:
            self.add_row(*row)


def _clock(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


EVENT_STYLES = {Crashed: "bold red", NanRollback: "yellow", ReopenedFile: "yellow", Stopping: "yellow", Stopped: "yellow",
                Finished: "green", Start: "cyan", Resume: "cyan", Validation: "dim"}


EVENT_KIND_WIDTH = max(len(kind_of(kind)) for kind in EVENTS)


def describe_event(e: Event) -> str:
    if isinstance(e, Validation):
        return f"val mel-L1 {e.val_mel:.4f}" if e.val_mel is not None else "val mel-L1 -"
    if isinstance(e, Checkpoint):
        return f"{e.path} ({e.reason}, {format_bytes(e.size)})"
    if isinstance(e, Resume):
        return f"from {e.checkpoint}, pid {e.pid}, target {e.target_step}"
    if isinstance(e, Start):
        return f"{e.config} on {e.device}, pid {e.pid}, target {e.target_step}"
    if isinstance(e, (Stopping, Stopped, Crashed)):
        return e.reason
    if isinstance(e, NanRollback):
        return f"step {e.failed_step} was not finite: back to {e.checkpoint}, batch {e.skipped_batch.batch} skipped"
    if isinstance(e, ReopenedFile):
        return f"{e.file} was {e.reason}: a new one from here on"
    return ""


class EventLog(RichLog):
    """Every event, oldest first; appends only what is new."""

    shown = 0  # how many of the run's events are on screen

    def restart(self) -> None:
        self.clear()
        self.shown = 0

    def show(self, view: RunView) -> None:
        if len(view.events) < self.shown:
            self.restart()
        for e in view.events[self.shown:]:
            line = Text(f"{_clock(e.time)}  step {e.step:>8}  ")
            line.append(f"{kind_of(type(e)):<{EVENT_KIND_WIDTH}}", style=EVENT_STYLES.get(type(e), ""))
            line.append(" " + describe_event(e))
            self.write(line)
        self.shown = len(view.events)


class Spectrogram(Widget):
    """The selected validation sample as a log-power spectrogram."""

    EMPTY = "no validation samples yet"
    caption = EMPTY
    source: Optional[tuple[np.ndarray, int]] = None  # (dB spectrogram, sampling rate)

    def show(self, caption: str, source: Optional[tuple[np.ndarray, int]]) -> None:
        self.caption, self.source = caption, source
        self.refresh()

    def render(self) -> Text:
        if self.source is None or self.size.height < 2 or self.size.width < 2:
            return Text(self.caption, style="dim")
        db, rate = self.source
        grid = spectrogram.to_grid(db, rate, 2 * (self.size.height - 1), self.size.width)
        return Text("\n").join([Text(self.caption, style="bold"), spectrogram.render_half_blocks(grid)])
