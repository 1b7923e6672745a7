"""The dashboard's widgets. Each renders a part of a ``RunView``; none of them reads files."""

from __future__ import annotations

import datetime
from typing import Optional

import numpy as np
from rich.text import Text
from textual.widget import Widget
from textual.widgets import DataTable, RichLog, Static
from textual_plotext import PlotextPlot

from trainer.records import (Checkpoint, Crashed, Event, Finished, NanRollback, Resume, Start, Stopped, Stopping,
                             Validation, kind_of)
from vocodertui.dashboard import spectrogram
from vocodertui.dashboard.feed import RunView
from vocodertui.series import downsample, smooth, trend
from vocodertui.units import format_bytes, format_duration

STATE_CLASSES = {"running": "-ok", "finished": "-ok", "stopping": "-warning", "stalled": "-warning",
                 "stopped": "-idle", "not started": "-idle", "crashed": "-error", "starting": "-warning"}
ARROWS = {"down": "↓", "up": "↑", "flat": "→"}


class Line(Static):
    """A fixed one-line Static that repaints only when its text changes (the dashboard idles cheaply)."""

    text = ""

    def set_text(self, text: str) -> None:
        if text != self.text:
            self.text = text
            self.update(text, layout=False)


class RunHeader(Line):
    """Run name, state, PID, uptime and the age of the last metrics line."""

    def show(self, view: RunView, launching: bool) -> None:
        s = view.status
        state = "starting" if launching and s.state not in ("running", "stopping") else s.state
        state_class = STATE_CLASSES.get(state, "-idle")
        if not self.has_class(state_class):
            self.set_classes(state_class)
        parts = [f"[b]{s.name}[/b]", f"● {state}"]
        if s.pid:
            parts.append(f"pid {s.pid}")
            if s.uptime_s is not None:
                parts.append(f"up {format_duration(s.uptime_s)}")
        age = s.last_metric_age_s
        parts.append(f"last metric {format_duration(age)} ago" if age is not None else "no metrics yet")
        if s.reason:
            parts.append(s.reason)
        self.set_text("  ·  ".join(parts))


class ProgressPanel(Widget):
    """Step / target bar with checkpoint and milestone ticks, then steps/s, ETA and learning rate."""

    view: Optional[RunView] = None
    drawn: Optional[tuple] = None

    def show(self, view: RunView) -> None:
        self.view = view
        s = view.status
        key = (s.step, s.target_step, s.steps_per_s, s.eta_s, view.rows_version, view.milestones,
               tuple(c.step for c in view.checkpoints))
        if key != self.drawn:
            self.drawn = key
            self.refresh()

    def render(self) -> Text:
        view = self.view
        if view is None:
            return Text("reading the run directory…")
        colours = self.app.theme_variables
        s = view.status
        width = max(self.size.width, 10)
        target = s.target_step or max(s.step, 1)
        filled = min(int(width * s.step / target), width)
        bar = Text("━" * filled, style=f"bold {colours['accent']}") + Text("─" * (width - filled), style="dim")
        marks: list[tuple[str, str]] = [(" ", "")] * width
        for ck in view.checkpoints:
            marks[min(width * ck.step // target, width - 1)] = ("▲", colours["success"])
        for m in (m for m in view.milestones if m <= target):
            reached = m <= s.step
            marks[min(width * m // target, width - 1)] = ("◆", f"bold {colours['success' if reached else 'warning']}")
        ticks = Text.assemble(*marks)
        stats = [f"step {s.step:,} / {target:,} ({100 * s.step / target:.0f} %)",
                 f"{s.steps_per_s:.2f} steps/s" if s.steps_per_s else "- steps/s", f"ETA {format_duration(s.eta_s)}"]
        if view.latest is not None and view.latest.lr is not None:
            stats.append(f"lr {view.latest.lr:.3g}")
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
        self.set_text("  ·  ".join(parts))


class LossPlot(PlotextPlot):
    """One loss against step, raw or smoothed, with its latest value and trend in the title."""

    def show(self, label: str, steps: np.ndarray, values: np.ndarray, smoothing: str, trend_values: np.ndarray) -> None:
        finite = np.isfinite(values)
        steps, values = steps[finite], values[finite]
        plt = self.plt
        plt.clear_data()
        plt.xlabel("")
        direction = trend(trend_values)
        latest = f" {values[-1]:.4g}" if len(values) else " -"
        plt.title(f"{label}{latest} {ARROWS.get(direction, '')}".rstrip())
        if len(values):
            x, y = downsample(steps, smooth(values, smoothing), max(self.size.width * 2, 2))
            plt.plot(x.tolist(), y.tolist(), marker="braille")
        self.refresh()


class CheckpointTable(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_columns("step", "saved", "size", "val mel-L1", "best")

    def show(self, view: RunView) -> None:
        rows = [(f"{c.step:,}", _clock(c.time), format_bytes(c.size),
                 f"{c.val_mel:.4f}" if c.val_mel is not None else "-", "★" if c.best else "")
                for c in reversed(view.checkpoints)]
        if rows != [tuple(str(cell) for cell in self.get_row_at(i)) for i in range(self.row_count)]:
            self.clear()
            for row in rows:
                self.add_row(*row)


def _clock(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


EVENT_STYLES = {Crashed: "bold red", NanRollback: "yellow", Stopping: "yellow", Stopped: "yellow",
                Finished: "green", Start: "cyan", Resume: "cyan", Validation: "dim"}


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
    return ""


class EventLog(RichLog):
    """Every event, oldest first; appends only what is new."""

    shown = 0

    def show(self, view: RunView) -> None:
        if len(view.events) < self.shown:
            self.clear()
            self.shown = 0
        for e in view.events[self.shown:]:
            line = Text(f"{_clock(e.time)}  step {e.step:>8}  ")
            line.append(f"{kind_of(type(e)):<12}", style=EVENT_STYLES.get(type(e), ""))
            line.append(" " + describe_event(e))
            self.write(line)
        self.shown = len(view.events)


class Spectrogram(Widget):
    """The selected validation sample as a log-power spectrogram."""

    caption = "no validation samples yet"
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
