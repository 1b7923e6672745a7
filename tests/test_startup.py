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
