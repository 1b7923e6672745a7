"""Dashboard speed: cold start on a 1,000,000-line metrics.jsonl, line-to-screen latency, idle CPU.

    python bench/dashboard.py [--lines 1000000] [--runs 1] [--latency-samples 20] [--idle-seconds 30]

Writes a run directory with a huge metrics file (in a temporary folder; with --runs N, N copies of
it, compared in one dashboard), then
- cold start: `MonitorApp` headless (Textual's `run_test`, 120x40) from construction to the first
  complete render (header, progress, plots of the last step of every run), and until the older
  lines are indexed;
- latency: appends metrics lines with the trainer's writer and times each until the dashboard shows
  its step (median and worst);
- idle CPU: the real `vocodertui monitor` in a private tmux server, CPU time of its process over
  `--idle-seconds` once it has settled, as a share of one core (skipped without tmux).
Prints one JSON object. No torch is imported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vocodertui.dashboard.app import MonitorApp  # noqa: E402
from vocodertui.dashboard.panes import LossesPane  # noqa: E402
from trainer.rundir import JsonlWriter, RunPaths  # noqa: E402

LINE = ('{"time":%.3f,"step":%d,"epoch":%d,"loss_g":%.6f,"loss_d":%.6f,"loss_mel":%.6f,"loss_adv":%.6f,'
        '"loss_fm":%.6f,"lr":0.0002,"steps_per_s":4.0,"grad_norm_g":123.4,"grad_norm_d":5.6}\n')


def write_run(root: Path, lines: int, every: int = 10) -> RunPaths:
    run = RunPaths(root)
    run.checkpoints.mkdir(parents=True)
    run.config.write_text(f"schedule:\n  log_every: {every}\n")
    start = time.time() - lines * every / 4.0 - 3600
    JsonlWriter(run.events).write({"time": start, "event": "start", "step": 0, "pid": 1, "target_step": lines * every,
                                   "milestones": [lines * every // 2]})
    with open(run.metrics, "w") as f:
        for i in range(1, lines + 1):
            step = i * every
            decay = 1.0 / (1.0 + step / 20000)
            f.write(LINE % (start + step / 4.0, step, step // 1000, 30 + 40 * decay, 3 + 2 * decay, 0.3 + decay,
                            2 + 3 * decay, 1 + decay))
    JsonlWriter(run.events).write({"time": time.time() - 3600, "event": "finished", "step": lines * every})
    return run


async def measure_app(runs: list[RunPaths], samples: int) -> dict:
    run = runs[0]
    constructed = time.perf_counter()
    app = MonitorApp(runs, run.root.parent)
    last_step = None
    async with app.run_test(size=(120, 40)) as pilot:
        while not app.tabs_mounted or len(app.query_one(LossesPane).curves) < len(runs):
            await pilot.pause(0.001)
        first_render = time.perf_counter() - constructed
        last_step = int(app.view.status.step)
        while any(v.indexing for v in app.views.values()):
            await pilot.pause(0.01)
        indexed = time.perf_counter() - constructed
        writer = JsonlWriter(run.metrics)
        latencies = []
        for k in range(samples):
            await pilot.pause(0.2)  # let the dashboard go idle between lines
            step = last_step + 10 * (k + 1)
            written = time.perf_counter()
            writer.write({"time": time.time(), "step": step, "epoch": 1, "loss_g": 31.0, "loss_d": 3.1, "loss_mel": 0.31,
                          "loss_adv": 2.1, "loss_fm": 1.1, "lr": 0.0002, "steps_per_s": 4.0})
            while app.view.curves.rows[-1, 1] != step or app.query_one(LossesPane).curves[0] != app.view.curves:
                await pilot.pause(0.001)
            latencies.append(time.perf_counter() - written)
        writer.close()
    latencies.sort()
    return {"cold_start_first_render_s": round(first_render, 3), "older_lines_indexed_s": round(indexed, 3),
            "line_to_screen_median_s": round(latencies[len(latencies) // 2], 4),
            "line_to_screen_max_s": round(latencies[-1], 4)}


def measure_idle_cpu(runs: list[RunPaths], seconds: float) -> dict:
    if seconds <= 0:
        return {}
    if shutil.which("tmux") is None:
        return {"idle_cpu_percent_of_one_core": None, "idle_note": "tmux not installed"}
    tmux = ["tmux", "-L", f"vocodertui-bench-{os.getpid()}", "-f", os.devnull]
    named = " ".join(f"--run {run.name}" for run in runs)
    command = f"{sys.executable} -m vocodertui.cli monitor {named} --logs-dir {runs[0].root.parent}"
    subprocess.run([*tmux, "new-session", "-d", "-s", "b", "-x", "120", "-y", "40", command], check=True,
                   cwd=Path(__file__).resolve().parent.parent)
    try:
        pane_pid = int(subprocess.run([*tmux, "display", "-p", "-t", "b", "#{pane_pid}"], capture_output=True,
                                      text=True, check=True).stdout)
        pane = psutil.Process(pane_pid)
        app = next((p for p in [pane, *pane.children(recursive=True)] if "monitor" in p.cmdline()), pane)
        deadline = time.monotonic() + 120
        while "indexing" in screen(tmux) or "mel-L1" not in screen(tmux):
            assert time.monotonic() < deadline, "the dashboard did not settle"
            time.sleep(0.5)
        time.sleep(2.0)
        before = sum(app.cpu_times()[:2])
        time.sleep(seconds)
        used = sum(app.cpu_times()[:2]) - before
        return {"idle_cpu_percent_of_one_core": round(100 * used / seconds, 2), "idle_seconds": seconds}
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def screen(tmux: list[str]) -> str:
    return subprocess.run([*tmux, "capture-pane", "-p", "-t", "b"], capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1, help="compare this many runs (copies of the first)")
    parser.add_argument("--latency-samples", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        runs = [write_run(Path(tmp) / "huge", args.lines)]
        for i in range(1, args.runs):
            runs.append(RunPaths(Path(tmp) / f"huge-{i}"))
            shutil.copytree(runs[0].root, runs[-1].root)
        result = {"lines": args.lines, "runs": args.runs, "metrics_mb": round(runs[0].metrics.stat().st_size / 1e6, 1),
                  "write_s": round(time.perf_counter() - t, 1)}
        result.update(asyncio.run(measure_app(runs, args.latency_samples)))
        result.update(measure_idle_cpu(runs, args.idle_seconds))
        result["cpu"] = f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
