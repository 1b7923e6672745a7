"""The dashboard's tabs that own state of their own: the loss plots, the validation samples and quality."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import OptionList, Static, TabPane
from textual.widgets.option_list import Option

from trainer.records import LOSSES, QUALITY_METRICS, Quality, title
from vocodertui.dashboard import spectrogram
from vocodertui.dashboard.feed import Curves, SampleSet
from vocodertui.dashboard.widgets import CheckpointTable, LossPlot, Spectrogram
from vocodertui.series import SMOOTHINGS, TREND_WINDOW

WINDOWS = (None, 10_000, 1_000)  # plot windows in steps; None is the whole run
SMOOTHING_NAMES = {"raw": "raw", "ema": "EMA", "mean": "moving mean"}
LOSS_PLOTS = tuple((loss, title(loss)) for loss in LOSSES[:5])


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
    """The latest validation's samples: a list, and the highlighted one as A/B: its reference's
    spectrogram above the generated one on one colour scale, with the quality scored on it."""

    samples: reactive[Optional[SampleSet]] = reactive(None, init=False)

    def __init__(self) -> None:
        super().__init__("Samples", id="samples")

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield OptionList(id="sample-list")
            with Vertical(id="sample-ab"):
                yield Static(id="sample-scores")
                yield Spectrogram(id="reference-spectrogram")
                yield Spectrogram(id="generated-spectrogram")

    def on_show(self) -> None:
        self.query_one("#sample-list", OptionList).focus()  # the arrow keys pick a sample

    def watch_samples(self, samples: Optional[SampleSet]) -> None:
        options = self.query_one("#sample-list", OptionList)
        before = options.highlighted
        options.clear_options()
        files = samples.generated if samples else ()
        options.add_options([Option(p.stem, id=str(p)) for p in files])
        if files:
            options.highlighted = min(before or 0, len(files) - 1)
            self.show_sample(files[options.highlighted])
        else:
            self.query_one("#sample-scores", Static).update("")
            for widget in self.query(Spectrogram):
                widget.show(Spectrogram.EMPTY, None)

    @on(OptionList.OptionHighlighted, "#sample-list")
    def sample_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.show_sample(Path(event.option.id))

    def show_sample(self, generated: Path) -> None:
        samples = self.samples
        self.query_one("#sample-scores", Static).update(sample_scores(generated.stem, samples.step, samples.quality))
        self.load_spectrograms(generated, samples.reference(generated))

    @work(thread=True, exclusive=True, group="spectrogram")
    def load_spectrograms(self, generated: Path, reference: Path) -> None:
        widgets = {reference: self.query_one("#reference-spectrogram", Spectrogram),
                   generated: self.query_one("#generated-spectrogram", Spectrogram)}
        read = {}
        for path, widget in widgets.items():
            try:
                read[path] = spectrogram.read_wav(path)
            except spectrogram.READ_ERRORS as exc:
                why = ("runs trained before references were kept have none" if path == reference and not path.exists()
                       else str(exc))
                self.call_later(widget.show, f"cannot show {path.parent.name}/{path.name}: {why}", None)
        pictures = spectrogram.log_spectrograms(*(audio for audio, _ in read.values()))
        for (path, (audio, rate)), picture in zip(read.items(), pictures):
            caption = f"{path.parent.name}/{path.name}  {len(audio) / rate:.2f} s at {rate} Hz"
            self.call_later(widgets[path].show, caption, (picture, rate))


def sample_scores(sample: str, step: int, quality: Optional[Quality]) -> str:
    """The quality of one sample at its step, each metric beside the mean over the files scored."""
    if quality is None:
        return f"[dim]no quality scored at step {step:,} (schedule.quality_every)[/dim]"
    values = quality.per_file.get(sample)
    if values is None:
        return (f"[dim]{escape(sample)} is not among the {quality.files} files scored at step {step:,} "
                f"(schedule.quality_files scores the first ones)[/dim]")
    cells = [f"{metric.title} [b]{values[name]:.4g}[/b] ({quality.metrics[name].mean:.4g})"
             for name, metric in QUALITY_METRICS.items() if name in values]
    cells += [f"{QUALITY_METRICS[u.metric].title} [dim]-[/dim] ({escape(u.reason)})"
              for u in quality.unscored if u.file == sample and u.metric in QUALITY_METRICS]
    return f"quality at step {step:,}: this file (the mean of {quality.files})\n" + "  ·  ".join(cells)


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
