"""The dashboard's tabs that own state of their own: the loss plots, the validation samples and quality."""

from __future__ import annotations

from dataclasses import dataclass
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
from vocodertui.dashboard.plotting import PlotSettings, traces, validation_traces, x_axis
from vocodertui.dashboard.widgets import RUN_COLOURS, CheckpointTable, Legend, LossPlot, Spectrogram, Trace, plot_title
from vocodertui.series import TREND_WINDOW

LOSS_PLOTS = tuple((loss, title(loss)) for loss in LOSSES)
OPTIONAL_LOSSES = ("loss_stft",)  # plotted only when a compared run has it


class LossesPane(TabPane):
    """Every loss and the validation mel-L1 of the compared runs, smoothed, windowed and scaled as
    the user picked, one colour per run.

    The plots are redrawn only when a reactive changes value: new rows or validations of a run
    (``Curves`` compares by version), or the settings.
    """

    curves: reactive[tuple[Curves, ...]] = reactive((), init=False)  # the compared runs', the steered one first
    settings = reactive(PlotSettings(), init=False)

    def __init__(self) -> None:
        super().__init__("Losses", id="losses")

    def compose(self) -> ComposeResult:
        yield Static(id="plot-settings")
        yield Legend(id="losses-legend")
        with Grid(id="plots"):
            for column, _ in LOSS_PLOTS:
                yield LossPlot(id=f"plot-{column}")
            yield LossPlot(id="plot-val_mel")

    def on_mount(self) -> None:
        self.describe_settings()

    def watch_settings(self) -> None:
        self.describe_settings()
        self.draw()

    def watch_curves(self) -> None:
        self.query_one("#losses-legend", Legend).show(tuple(c.name for c in self.curves))
        self.draw()

    def describe_settings(self) -> None:
        s = self.settings
        self.query_one("#plot-settings", Static).update(
            f"smoothing [b]{s.smoothing_name}[/b] (m +/-)  ·  window [b]{s.window_name}[/b] (w)  ·  "
            f"x [b]{s.x_name}[/b] (x)  ·  y [b]{'log' if s.log_y else 'linear'}[/b] (y)  ·  "
            f"arrows: last {TREND_WINDOW} lines vs the {TREND_WINDOW} before"
        )

    def draw(self) -> None:
        runs, s = self.curves, self.settings
        if not runs:
            return
        for column in OPTIONAL_LOSSES:
            self.query_one(f"#plot-{column}", LossPlot).display = any(c.recorded(column) for c in runs)
        self.query_one("#plots", Grid).styles.grid_size_columns = 3 + sum(
            self.query_one(f"#plot-{column}", LossPlot).display for column in OPTIONAL_LOSSES)
        for column, label in LOSS_PLOTS:
            lines, clipped = traces(runs, column, s, log_y=s.log_y)
            self.query_one(f"#plot-{column}", LossPlot).show(
                plot_title(label, runs[0].column(column)) + CLIPPED * clipped, lines, s.log_y)
        lines, clipped = validation_traces(runs, s, log_y=s.log_y)
        val = np.array([v for _, _, v in runs[0].validations], dtype=np.float64)
        self.query_one("#plot-val_mel", LossPlot).show(plot_title("val mel-L1", val) + CLIPPED * clipped, lines, s.log_y)


CLIPPED = " (≤0 clipped)"


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


NO_QUALITY = "no quality scored yet (schedule.quality_every)"


@dataclass(frozen=True)
class RunQuality:
    """One compared run's quality records (its current timeline's, step order)."""

    name: str
    started: Optional[float]
    records: tuple[Quality, ...]


class QualityPane(TabPane):
    """Each quality metric of the compared runs against step or hours, the steered run's latest value
    and trend in the title, and its checkpoints with the quality scored at their steps."""

    runs: reactive[tuple[RunQuality, ...]] = reactive((), init=False)  # the steered run first
    x: reactive[str] = reactive("step", init=False)

    def __init__(self) -> None:
        super().__init__("Quality", id="quality")

    def compose(self) -> ComposeResult:
        yield Static(NO_QUALITY, id="quality-summary")
        yield Legend(id="quality-legend")
        with Grid(id="quality-plots"):
            for name in QUALITY_METRICS:
                yield LossPlot(id=f"quality-{name}")
        yield CheckpointTable(id="quality-checkpoints")

    def watch_x(self) -> None:
        self.draw()

    def watch_runs(self) -> None:
        self.query_one("#quality-legend", Legend).show(tuple(r.name for r in self.runs))
        self.draw()

    def draw(self) -> None:
        records = self.runs[0].records if self.runs else ()
        summary = self.query_one("#quality-summary", Static)
        if not records:
            summary.update(NO_QUALITY)
        else:
            latest = records[-1]
            unscored = f"  ·  {len(latest.unscored)} unscored (file, metric)" if latest.unscored else ""
            summary.update(
                f"step {latest.step:,}: {latest.files} validation files in {latest.seconds:.1f} s, pitch model "
                f"[b]{latest.pitch_model}[/b]{unscored}  ·  arrows: the latest scoring against the one before")
        for name, metric in QUALITY_METRICS.items():
            lines = []
            for i, run in enumerate(self.runs):
                scored = np.array([(q.step, q.time, q.metrics[name].mean) for q in run.records if name in q.metrics],
                                  dtype=np.float64).reshape(-1, 3)
                lines.append(Trace(x_axis(run.started, scored[:, 0], scored[:, 1], self.x), scored[:, 2], RUN_COLOURS[i]))
            primary = np.array([q.metrics[name].mean for q in records if name in q.metrics], dtype=np.float64)
            label = f"{metric.title} ({'↑' if metric.higher_is_better else '↓'} better)"
            self.query_one(f"#quality-{name}", LossPlot).show(plot_title(label, primary, trend_window=1), tuple(lines))
