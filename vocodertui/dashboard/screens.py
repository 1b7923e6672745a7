"""Modal screens: confirm a stop, pick a checkpoint to resume from, pick a run, help."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label

from vocodertui.dashboard.widgets import RUN_COLOURS, hex_colour
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

    def __init__(self, checkpoints: list[CheckpointInfo], run_name: str):
        super().__init__()
        self.checkpoints = sorted(checkpoints, key=lambda c: c.step, reverse=True)
        self.run_name = run_name

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Resume {self.run_name} from which checkpoint? (↑↓, enter; esc cancels)")
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


class RunPicker(ModalScreen[Optional[tuple[str, ...]]]):
    """The runs under the logs directory, most recently active first, the compared ones marked.

    Space marks or unmarks the highlighted run; enter applies the marks (the first marked is the one
    the keys steer), or, with the marks as they were, switches to the highlighted run alone.
    """

    BINDINGS = [Binding("escape", "dismiss(None)", "cancel"), Binding("space", "mark", "mark")]

    def __init__(self, statuses: list[RunStatus], compared: tuple[str, ...], most: int):
        super().__init__()
        self.statuses = statuses
        self.compared = compared
        self.marked = [name for name in compared if name in {s.name for s in statuses}]
        self.most = most

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Enter switches to the highlighted run; space marks runs to compare, then enter "
                        "applies the marks; esc cancels", classes="wrap")
            yield DataTable(cursor_type="row", id="runs")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("", key="mark")
        table.add_columns("run", "state", "step", "last metric")
        for s in self.statuses:
            step = f"{s.step:,}" + (f" / {s.target_step:,}" if s.target_step else "")
            age = format_duration(s.last_metric_age_s) + " ago" if s.last_metric_age_s is not None else "-"
            table.add_row("", ("▸ " if s.name == self.compared[0] else "  ") + s.name, s.state, step, age, key=s.name)
        self.show_marks()
        table.focus()

    def show_marks(self) -> None:
        table = self.query_one(DataTable)
        for s in self.statuses:
            order = self.marked.index(s.name) if s.name in self.marked else None
            table.update_cell(s.name, "mark", "" if order is None else Text(f"●{order + 1}", style=hex_colour(RUN_COLOURS[order])))

    def action_mark(self) -> None:
        table = self.query_one(DataTable)
        if not self.statuses:
            return
        name = self.statuses[table.cursor_row].name
        if name in self.marked:
            self.marked.remove(name)
        elif len(self.marked) >= self.most:
            self.notify(f"at most {self.most} runs compare at once", severity="warning")
            return
        else:
            self.marked.append(name)
        self.show_marks()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if self.marked and tuple(self.marked) != self.compared:
            self.dismiss(tuple(self.marked))
        else:
            self.dismiss((event.row_key.value,))


HELP = """\
# vocodertui monitor

Watches runs through their run directories; training goes on when you quit.
Keys that do not apply to the run's state are greyed out in the footer.
When runs are compared, the plots overlay them, one colour each, and the
keys that steer act on the first run only (bold in the header).

- `s` stop gracefully (asks first): finish the step, write a checkpoint, exit
- `r` resume a stopped, crashed or finished run from a checkpoint you pick
- `c` ask the trainer for a checkpoint now
- `m` loss smoothing: raw, EMA, moving mean
- `+` `-` a heavier or lighter EMA (0 to 0.99), debiased as wandb draws it
- `w` plot window: all steps, last 10,000, last 1,000
- `x` x axis: step, or wall-clock hours since each run's start
- `y` loss plots on a log scale, or linear
- `l` the run list: enter switches; space marks runs to compare, then enter
- `1` `2` `3` `4` `5` `6` `7` losses, checkpoints, samples, events, quality, health, runs
- `ctrl+p` command palette, `q` quit
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss(None)", "close")]

    def compose(self) -> ComposeResult:
        from textual.widgets import Markdown  # markdown-it takes ~0.05 s to import: not before the first frame

        with VerticalScroll(classes="dialog"):
            yield Markdown(HELP)
