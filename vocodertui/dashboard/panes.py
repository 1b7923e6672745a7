"""The dashboard's tabs that own state of their own: the loss plots and the validation samples."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal
from textual.reactive import reactive
from textual.widgets import OptionList, Static, TabPane
from textual.widgets.option_list import Option

from trainer.records import LOSSES, QUALITY_METRICS, Quality, title
from vocodertui.dashboard import spectrogram
from vocodertui.dashboard.feed import Curves
from vocodertui.dashboard.widgets import CheckpointTable, LossPlot, Spectrogram
from vocodertui.series import SMOOTHINGS, TREND_WINDOW

WINDOWS = (None, 10_000, 1_000)  # plot windows in steps; None is the whole run
SMOOTHING_NAMES = {"raw": "raw", "ema": "EMA", "mean": "moving mean"}
LOSS_PLOTS = tuple((loss, title(loss)) for loss in LOSSES)


def _next(options: tuple, current):
    return options[(options.index(current) + 1) % len(options)]


class LossesPane(TabPane):
    """Every loss and the validation mel-L1 against step, smoothed and windowed as the user picked.

    The plots are redrawn only when one of the three reactives changes value: new rows or
    validations (``Curves`` compares by version), the smoothing or the window.
    """

    curves: reactive[Optional[Curves]] = reactive(None)
    smoothing = reactive(SMOOTHINGS[0])
    window: reactive[Optional[int]] = reactive(WINDOWS[0])

    def __init__(self) -> None:
        super().__init__("Losses", id="losses")

    def compose(self) -> ComposeResult:
        yield Static(id="plot-settings")
        with Grid(id="plots"):
            for column, _ in LOSS_PLOTS:
                yield LossPlot(id=f"plot-{column}")
            yield LossPlot(id="plot-val_mel")

    def cycle_smoothing(self) -> None:
        self.smoothing = _next(SMOOTHINGS, self.smoothing)

    def cycle_window(self) -> None:
        self.window = _next(WINDOWS, self.window)

    def watch_smoothing(self) -> None:
        self.describe_settings()
        self.draw()

    def watch_window(self) -> None:
        self.describe_settings()
        self.draw()

    def watch_curves(self) -> None:
        self.draw()

    def describe_settings(self) -> None:
        window = "all steps" if self.window is None else f"last {self.window:,} steps"
        self.query_one("#plot-settings", Static).update(
            f"smoothing [b]{SMOOTHING_NAMES[self.smoothing]}[/b] (m)  ·  window [b]{window}[/b] (w)  ·  "
            f"arrows: last {TREND_WINDOW} logged steps against the {TREND_WINDOW} before"
        )

    def draw(self) -> None:
        curves = self.curves
        if curves is None:
            return
        steps = curves.column("step")
        first = steps[-1] - self.window if (self.window is not None and len(steps)) else -np.inf
        shown = steps > first
        for column, label in LOSS_PLOTS:
            values = curves.column(column)
            self.query_one(f"#plot-{column}", LossPlot).show(label, steps[shown], values[shown], self.smoothing, values)
        val_steps = np.array([s for s, _ in curves.validations], dtype=np.float64)
        val = np.array([v for _, v in curves.validations], dtype=np.float64)
        shown = val_steps > first
        self.query_one("#plot-val_mel", LossPlot).show("val mel-L1", val_steps[shown], val[shown], "raw", val)


class SamplesPane(TabPane):
    """The latest validation's samples: a list, and the highlighted one as a spectrogram."""

    samples: reactive[tuple[Path, ...]] = reactive((), init=False)

    def __init__(self) -> None:
        super().__init__("Samples", id="samples")

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield OptionList(id="sample-list")
            yield Spectrogram(id="spectrogram")

    def watch_samples(self, samples: tuple[Path, ...]) -> None:
        options = self.query_one("#sample-list", OptionList)
        before = options.highlighted
        options.clear_options()
        options.add_options([Option(p.stem, id=str(p)) for p in samples])
        if samples:
            options.highlighted = min(before or 0, len(samples) - 1)
            self.load_spectrogram(samples[options.highlighted])
        else:
            self.query_one(Spectrogram).show(Spectrogram.EMPTY, None)

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


class QualityPane(TabPane):
    """Each quality metric against step, its latest value and trend in the title, and the
    checkpoints with the quality scored at their steps."""

    quality: reactive[tuple[Quality, ...]] = reactive((), init=False)

    def __init__(self) -> None:
        super().__init__("Quality", id="quality")

    def compose(self) -> ComposeResult:
        yield Static("no quality scored yet (schedule.quality_every)", id="quality-summary")
        with Grid(id="quality-plots"):
            for name in QUALITY_METRICS:
                yield LossPlot(id=f"quality-{name}")
        yield CheckpointTable(id="quality-checkpoints")

    def watch_quality(self, records: tuple[Quality, ...]) -> None:
        if not records:
            return
        latest = records[-1]
        unscored = f"  ·  {len(latest.unscored)} unscored (file, metric)" if latest.unscored else ""
        self.query_one("#quality-summary", Static).update(
            f"step {latest.step:,}: {latest.files} validation files in {latest.seconds:.1f} s, pitch model "
            f"[b]{latest.pitch_model}[/b]{unscored}  ·  arrows: the latest scoring against the one before")
        for name, metric in QUALITY_METRICS.items():
            scored = [(q.step, q.metrics[name].mean) for q in records if name in q.metrics]
            steps = np.array([step for step, _ in scored], dtype=np.float64)
            values = np.array([value for _, value in scored], dtype=np.float64)
            label = f"{metric.title} ({'↑' if metric.higher_is_better else '↓'} better)"
            self.query_one(f"#quality-{name}", LossPlot).show(label, steps, values, "raw", values, trend_window=1)
