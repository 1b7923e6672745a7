"""Dashboard first frame: from launching `vocodertui monitor` to its newest step on the screen.

    python bench/first_frame.py [--lines 1000000] [--launches 5] [--idle-seconds 30] [--against main]

Writes three cases into a temporary logs folder: an empty run (no metrics line), a run with a
`--lines`-line metrics.jsonl, and 4 copies of it compared in one dashboard. Each launch is a new
process of the real `vocodertui monitor` in a private tmux server (a 120x40 pseudo-terminal): the
clock starts when tmux is told to run the command (`respawn-pane`; the server is already up) and
stops when `tmux capture-pane` first shows the newest step as the progress panel writes it
("step 10,000,000 / …"; for the empty run the header's "no metrics yet"), polled every few ms.

`--against REV` also times the code at that git revision (extracted with `git archive`), launches
alternating with this tree's, so that the ratio of the two is measured under the same load. The idle
CPU of the 4-run dashboard (its process's CPU time over `--idle-seconds`, from 10 s after it has
indexed, as a share of one core) is measured for both too, `--idle-repeats` times each, alternating,
and so is that of a bare Textual app that updates one label a second (BASELINE_APP): the floor a
dashboard refreshing once a second stands on, measured under the same conditions. Prints the CPU,
the load before and after, and one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dashboard import write_run  # noqa: E402
from bench.machine import cpu_name  # noqa: E402
from trainer.rundir import JsonlWriter, RunPaths  # noqa: E402

BASELINE_APP = """
import time
from textual.app import App
from textual.widgets import Footer, Static

class Baseline(App):
    def compose(self):
        yield Static(id="label")
        yield Footer()

    def on_mount(self):
        self.set_interval(1.0, lambda: self.query_one("#label", Static).update(f"{time.time():.1f}"))

Baseline().run()
"""
POLL_S = 0.005
TIMEOUT_S = 60.0
SETTLE_S = 10.0


class Terminal:
    """A private tmux server with one 120x40 pane that each launch replaces."""

    def __init__(self) -> None:
        self.tmux = ["tmux", "-L", f"vocodertui-first-frame-{os.getpid()}", "-f", os.devnull]
        subprocess.run([*self.tmux, "new-session", "-d", "-s", "b", "-x", "120", "-y", "40", "sleep 3600"], check=True)

    def launch(self, command: str, cwd: Path) -> float:
        """Start ``command`` in the pane (killing what ran there); returns when tmux was told to."""
        t = time.perf_counter()
        subprocess.run([*self.tmux, "respawn-pane", "-k", "-t", "b", "-c", str(cwd), command], check=True)
        return t

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", "b"], capture_output=True, text=True).stdout

    def pane_processes(self) -> list[psutil.Process]:
        pid = int(subprocess.run([*self.tmux, "display", "-p", "-t", "b", "#{pane_pid}"], capture_output=True,
                                 text=True, check=True).stdout)
        pane = psutil.Process(pid)
        return [pane, *pane.children(recursive=True)]

    def app_process(self) -> psutil.Process:
        processes = self.pane_processes()
        return next((p for p in processes if "monitor" in " ".join(p.cmdline())), processes[0])

    def wait_for(self, text: str, started: float) -> float:
        while text not in self.screen():
            if time.perf_counter() - started > TIMEOUT_S:
                raise RuntimeError(f"{text!r} did not appear in {TIMEOUT_S:.0f} s:\n{self.screen()}")
            time.sleep(POLL_S)
        return time.perf_counter() - started

    def idle(self) -> None:
        subprocess.run([*self.tmux, "respawn-pane", "-k", "-t", "b", "sleep 3600"], check=True)

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


def monitor_command(source: Path, runs: list[RunPaths]) -> str:
    named = " ".join(f"--run {run.name}" for run in runs)
    # -u PYTHONDONTWRITEBYTECODE: the warm-up launch leaves .pyc files, as a user's first launch does
    return f"env -u PYTHONDONTWRITEBYTECODE PYTHONPATH={source} {sys.executable} -m vocodertui.cli monitor {named} --logs-dir {runs[0].root.parent}"


def first_frame(term: Terminal, source: Path, runs: list[RunPaths], shows: str) -> float:
    took = term.wait_for(shows, term.launch(monitor_command(source, runs), source))
    term.idle()
    return took


def idle_cpu(term: Terminal, source: Path, runs: list[RunPaths], seconds: float) -> float:
    started = term.launch(monitor_command(source, runs), source)
    term.wait_for("mel-L1", started)
    deadline = time.monotonic() + 120
    while "indexing" in term.screen():
        assert time.monotonic() < deadline, "the dashboard did not finish indexing"
        time.sleep(0.5)
    time.sleep(SETTLE_S)  # the compared runs are read (and indexed) after the steered one
    return cpu_share(term, term.app_process(), seconds)


def baseline_idle_cpu(term: Terminal, folder: Path, seconds: float) -> float:
    script = folder / "baseline_app.py"
    script.write_text(BASELINE_APP)
    term.launch(f"env -u PYTHONDONTWRITEBYTECODE {sys.executable} {script}", folder)
    time.sleep(SETTLE_S)
    return cpu_share(term, next(p for p in term.pane_processes() if str(script) in " ".join(p.cmdline())), seconds)


def cpu_share(term: Terminal, app: psutil.Process, seconds: float) -> float:
    """The CPU time ``app`` uses over ``seconds``, in percent of one core; then the pane is emptied."""
    before = sum(app.cpu_times()[:2])
    time.sleep(seconds)
    used = sum(app.cpu_times()[:2]) - before
    term.idle()
    return round(100 * used / seconds, 2)


def empty_run(root: Path) -> RunPaths:
    run = RunPaths(root)
    run.checkpoints.mkdir(parents=True)
    run.config.write_text("schedule:\n  log_every: 10\n")
    JsonlWriter(run.events).write({"time": time.time(), "event": "start", "step": 0, "pid": 1, "target_step": 1000,
                                   "milestones": []})
    run.metrics.touch()
    return run


def extract(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def summary(times: list[float]) -> dict:
    return {"min_s": round(min(times), 3), "median_s": round(statistics.median(times), 3),
            "all_s": [round(t, 3) for t in times]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--launches", type=int, default=5, help="launches of each case (and of each tree)")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--against", metavar="REV", help="also time the code at this git revision, alternating")
    parser.add_argument("--idle-repeats", type=int, default=2, help="idle measurements of each tree, alternating")
    parser.add_argument("--cases", default="empty,1run,4runs", help="which first frames to time (comma-separated)")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("first_frame.py needs tmux")
    print(f"cpu: {cpu_name()}, {os.cpu_count()} cores", file=sys.stderr)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp) / "logs"
        big = write_run(logs / "huge", args.lines)
        compared = [big]
        for i in range(1, 4):
            compared.append(RunPaths(logs / f"huge-{i}"))
            shutil.copytree(big.root, compared[-1].root)
        last_step = f"step {args.lines * 10:,} /"
        cases = {"empty": ([empty_run(logs / "empty")], "no metrics yet"), "1run": ([big], last_step),
                 "4runs": (compared, last_step)}
        trees = {"this": ROOT}
        if args.against:
            trees[args.against] = extract(args.against, Path(tmp) / "against")
        term = Terminal()
        result: dict = {"lines": args.lines, "launches": args.launches, "cpu": cpu_name(), "cores": os.cpu_count()}
        try:
            for case in filter(None, args.cases.split(",")):
                runs, shows = cases[case]
                for source in trees.values():  # warm the file cache and .pyc of both trees
                    first_frame(term, source, runs, shows)
                times: dict[str, list[float]] = {name: [] for name in trees}
                for _ in range(args.launches):
                    for name, source in trees.items():
                        times[name].append(first_frame(term, source, runs, shows))
                result[case] = {name: summary(t) for name, t in times.items()}
                if args.against:
                    ratios = [new / old for new, old in zip(times["this"], times[args.against])]
                    result[case]["ratio_this_to_against_median"] = round(statistics.median(ratios), 3)
                print(json.dumps({case: result[case]}), file=sys.stderr)
            if args.idle_seconds > 0:
                idle: dict[str, list[float]] = {name: [] for name in trees}
                baseline: list[float] = []
                for _ in range(args.idle_repeats):
                    for name, source in trees.items():
                        idle[name].append(idle_cpu(term, source, compared, args.idle_seconds))
                    baseline.append(baseline_idle_cpu(term, Path(tmp), args.idle_seconds))
                result["idle_cpu_percent_of_one_core_4runs"] = idle
                result["idle_cpu_percent_of_one_core_bare_textual_1hz"] = baseline
        finally:
            term.close()
    result["load_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
