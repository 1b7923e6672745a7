"""The run's warnings (``vocodertui/alerts.py``) on the dashboard: a banner under the header and a list at
the top of the Events tab. Both are hidden while there are none, and repaint only when the warnings change."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from trainer.config import ALERT_KINDS
from vocodertui.alerts import Alert
from vocodertui.dashboard.feed import RunView
from vocodertui.dashboard.widgets import _clock

BANNER_LINES = 3  # more warnings than this: the rest are counted and listed in the Events tab
KIND_WIDTH = max(len(kind) for kind in ALERT_KINDS)


class Warnings(Static):
    """The run's warnings, hidden while there are none; subclasses draw them in ``watch_alerts``."""

    alerts: reactive[tuple[Alert, ...]] = reactive((), init=False)

    def on_mount(self) -> None:
        self.display = False

    def show(self, view: RunView) -> None:
        self.alerts = tuple(view.status.warnings)


class AlertBanner(Warnings):
    """One line per warning (cut to the width, app.tcss): ⚠, its kind, since which step, and the message."""

    def watch_alerts(self, alerts: tuple[Alert, ...]) -> None:
        self.display = bool(alerts)
        lines = [Text(f"⚠ {a.kind} since step {a.since_step:,}: {a.message}") for a in alerts[:BANNER_LINES]]
        if len(alerts) > BANNER_LINES:
            lines.append(Text(f"⚠ {len(alerts) - BANNER_LINES} more in the Events tab (4)"))
        self.update(Text("\n").join(lines))


class AlertList(Warnings):
    """The warnings in the Events tab, in its columns: since when, since which step, kind, and why."""

    def watch_alerts(self, alerts: tuple[Alert, ...]) -> None:
        self.display = bool(alerts)
        rows = []
        for a in alerts:
            when = _clock(a.since_time) if a.since_time is not None else " " * 19
            rows.append(Text(f"{when}  step {a.since_step:>8}  {'⚠ ' + a.kind:<{KIND_WIDTH + 2}} {a.message}"))
        self.update(Text("\n").join(rows))
