"""Modal screens: confirm a stop, pick a checkpoint to resume from, pick a run, help."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label, Markdown

from vocodertui.runstate import CheckpointInfo, RunStatus, quality_cells, scored_metrics
from vocodertui.units import format_bytes, format_duration


class ConfirmStop(ModalScreen[bool]):
    BINDINGS = [Binding("y", "answer(True)", "stop it"), Binding("n,escape", "answer(False)", "cancel")]

    def __init__(self, run_name: str, step: int):
        super().__init__()
        self.question = (f"Stop run {run_name} at step {step:,}?\n"
                         "The trainer finishes the step in progress, writes a checkpoint and exits.")

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            with Horizontal(classes="buttons"):
                yield Button("Stop (y)", variant="error", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class CheckpointPicker(ModalScreen[Optional[Path]]):
    """The run's checkpoints, newest first; enter resumes from the highlighted one."""

    BINDINGS = [Binding("escape", "dismiss(None)", "cancel")]

    def __init__(self, checkpoints: list[CheckpointInfo]):
        super().__init__()
        self.checkpoints = sorted(checkpoints, key=lambda c: c.step, reverse=True)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Resume from which checkpoint? (↑↓, enter; esc cancels)")
            yield DataTable(cursor_type="row", id="checkpoints")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        metrics = scored_metrics(self.checkpoints)
        table.add_columns("step", "val mel-L1", *(m.title for m in metrics), "age", "size", "best")
        now = time.time()
        for c in self.checkpoints:
            table.add_row(f"{c.step:,}", f"{c.val_mel:.4f}" if c.val_mel is not None else "-", *quality_cells(c, metrics),
                          format_duration(now - c.time) + " ago", format_bytes(c.size), "★" if c.best else "", key=c.path)
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(Path(event.row_key.value))


class RunPicker(ModalScreen[Optional[str]]):
    """The runs under the logs directory, most recently active first."""

    BINDINGS = [Binding("escape", "dismiss(None)", "cancel")]

    def __init__(self, statuses: list[RunStatus], current: str):
        super().__init__()
        self.statuses = statuses
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Switch to which run? (↑↓, enter; esc cancels)")
            yield DataTable(cursor_type="row", id="runs")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("run", "state", "step", "last metric")
        for s in self.statuses:
            step = f"{s.step:,}" + (f" / {s.target_step:,}" if s.target_step else "")
            age = format_duration(s.last_metric_age_s) + " ago" if s.last_metric_age_s is not None else "-"
            table.add_row(("▸ " if s.name == self.current else "  ") + s.name, s.state, step, age, key=s.name)
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(event.row_key.value)


HELP = """\
# vocodertui monitor

Watches one run through its run directory; training goes on when you quit.
Keys that do not apply to the run's state are greyed out in the footer.

- `s` stop gracefully (asks first): finish the step, write a checkpoint, exit
- `r` resume a stopped, crashed or finished run from a checkpoint you pick
- `c` ask the trainer for a checkpoint now
- `m` loss smoothing: raw, EMA, moving mean
- `w` plot window: all steps, last 10,000, last 1,000
- `l` switch to another run under the logs directory
- `1` `2` `3` `4` `5` losses, checkpoints, samples, events, quality
- `ctrl+p` command palette, `q` quit
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss(None)", "close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Markdown(HELP)
