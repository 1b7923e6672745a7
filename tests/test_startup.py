"""What the dashboard's first frame does not wait for (bench/first_frame.py times it)."""

import subprocess
import sys

from conftest import REPO


def loaded_after(code: str, modules: tuple[str, ...]) -> list[str]:
    check = f"import sys; {code}; print(' '.join(m for m in {modules!r} if m in sys.modules))"
    return subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()


def test_the_monitor_command_imports_no_markdown_parser_until_help_opens():
    assert loaded_after("import vocodertui.cli, vocodertui.dashboard.app", ("markdown_it", "torch")) == []


def test_the_cli_imports_no_textual_or_numpy_before_a_command_needs_them():
    assert loaded_after("import vocodertui.cli", ("textual", "numpy", "plotext", "torch")) == []


async def test_the_help_still_opens_with_its_markdown_imported_late(tmp_path):
    from textual.widgets import Markdown

    from test_monitor import finished_run, monitor, until
    from vocodertui.dashboard.screens import HelpScreen

    app = monitor(finished_run(tmp_path / "run").run)
    async with app.run_test(size=(100, 40)) as pilot:
        await until(pilot, lambda: app.tabs_mounted, "the first view on every tab")
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen) and app.screen.query(Markdown), "the help")
        await pilot.pause()
        assert "resume a stopped, crashed or finished run" in app.screen.query_one(Markdown).source
