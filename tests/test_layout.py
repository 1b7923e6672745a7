"""The one direction of the house: the product (vocodertui/) uses the engine (trainer/), never the
other way; the dashboard and the read-only commands never load torch; the trainer never loads textual."""

import ast
import subprocess
import sys

import pytest

from conftest import REPO


def imported_modules(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted((REPO / "trainer").rglob("*.py")), ids=lambda p: p.name)
def test_no_engine_module_imports_the_product_or_textual(path):
    roots = {name.split(".")[0] for name in imported_modules(path)}
    assert not roots & {"vocodertui", "textual", "textual_plotext", "plotext"}


@pytest.mark.parametrize("modules", [
    "vocodertui.dashboard.app",
    "vocodertui.runstate, vocodertui.control, vocodertui.follow, trainer.records, trainer.rundir, trainer.pidfile",
])
def test_the_dashboard_and_the_run_readers_never_load_torch(modules):
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout == "False\n"


def test_status_runs_without_loading_torch(tmp_path):
    code = ("import sys; from vocodertui.cli import main; main(['status', '--logs-dir', sys.argv[1]]); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")
