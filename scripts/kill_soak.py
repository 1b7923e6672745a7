"""Kill soak: SIGKILL a training run at random moments (some while a checkpoint is being written),
resume it with `--resume latest` each time, and check that it ends bit-identical to a run that was
never interrupted and that metrics.jsonl stayed parseable.

    python scripts/kill_soak.py --kills 30 [--seed 1] [--config demo] [--workdir DIR]

The test suite runs the same function with a few kills.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import torch
import watchfiles
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from trainer.checkpoint import load_file  # noqa: E402
from trainer.config import CONFIG_DIR  # noqa: E402
from trainer.demo_corpus import ensure_demo_corpus  # noqa: E402
from trainer.rundir import RunPaths, read_jsonl  # noqa: E402


def soak_config(path: Path, base: str = "demo") -> Path:
    raw = yaml.safe_load((CONFIG_DIR / f"{base}.yaml").read_text())
    raw["schedule"].update({"log_every": 1, "validate_every": 5, "checkpoint_every": 3, "keep_last": 2,
                            "val_samples": 1, "milestones": []})
    path.write_text(yaml.safe_dump(raw))
    return path


def start_args(config: Path, corpus: Path, logs: Path, run: str, target: int, resume: bool) -> list[str]:
    args = [sys.executable, "-m", "vocodertui.cli", "start", "--foreground", "--config", str(config),
            "--data", str(corpus), "--run", run, "--logs-dir", str(logs), "--target-step", str(target)]
    return args + (["--resume", "latest"] if resume else [])


def changes_while_running(proc: subprocess.Popen, folder: Path, timeout: float = math.inf) -> Iterator[None]:
    """Yields whenever something under ``folder`` changes, and every half second, until ``proc`` exits
    or ``timeout`` seconds have passed. Waits on inotify: no core is taken from the trainer being timed."""
    deadline = time.monotonic() + timeout
    # step and debounce in ms: a checkpoint's temporary file lives for well under a second
    for _ in watchfiles.watch(folder, watch_filter=None, step=5, debounce=50, rust_timeout=500, yield_on_timeout=True):
        if proc.poll() is not None or time.monotonic() > deadline:
            return
        yield


def kill_at_random(proc: subprocess.Popen, run: RunPaths, rng: random.Random, during_checkpoint: bool) -> str:
    """SIGKILL ``proc`` either while a checkpoint's temporary file exists or once a random number of
    further metrics lines has appeared. Returns what the moment was (or 'exited' if it finished first)."""
    if during_checkpoint:
        # a temporary file left by the previous kill is removed by the trainer at start-up: not this one
        leftovers = {name for name in os.listdir(run.checkpoints) if name.startswith(".ckpt_")}
        for _ in changes_while_running(proc, run.checkpoints):
            if any(name.startswith(".ckpt_") and name not in leftovers for name in os.listdir(run.checkpoints)):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return "while writing a checkpoint"
        return "exited"
    wanted = len(read_jsonl(run.metrics)) + rng.randint(2, 8)  # new lines of this launch: up to ~3 checkpoints
    # the run's folder may not exist yet at the first launch; its parent does
    for _ in changes_while_running(proc, run.root.parent, timeout=300):
        if len(read_jsonl(run.metrics)) >= wanted:
            time.sleep(rng.uniform(0, 0.3))  # a random moment inside the following step
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return f"{len(read_jsonl(run.metrics))} metrics lines in"
    return "exited"


def kill_soak(kills: int, seed: int, workdir: Path, target: int, log=print, base: str = "demo") -> dict:
    rng = random.Random(seed)
    corpus = ensure_demo_corpus(workdir / "corpus")
    config = soak_config(workdir / "soak.yaml", base)
    logs = workdir / "logs"
    subprocess.run(start_args(config, corpus, logs, "straight", target, False), cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = RunPaths(logs / "killed")
    moments = []
    launches = 0
    while True:
        resume = launches > 0
        proc = subprocess.Popen(start_args(config, corpus, logs, "killed", target, resume), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        launches += 1
        if len(moments) >= kills:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"final resume failed: {err.decode()[-2000:]}")
            break
        # mid-checkpoint kills once a checkpoint exists, so the run still makes progress between kills
        mid_checkpoint = bool(run.checkpoint_files()) and rng.random() < 0.4
        moment = kill_at_random(proc, run, rng, during_checkpoint=mid_checkpoint)
        if moment == "exited":
            if proc.returncode != 0:
                raise RuntimeError(f"trainer failed: {proc.stderr.read().decode()[-2000:]}")
            if read_jsonl(run.events)[-1]["event"] == "finished":
                raise RuntimeError(f"the run finished after {len(moments)} kills; raise --target")
            continue
        proc.stderr.close()
        moments.append(moment)
        lines = run.metrics.read_bytes().splitlines(keepends=True)
        unparsable = [line for line in lines[:-1] if line.strip() and not _is_json(line)]
        log(f"kill {len(moments)}/{kills} {moment}: {len(lines)} metrics lines, {len(unparsable)} unparsable")
        if unparsable:
            raise RuntimeError(f"metrics.jsonl has unparsable lines before its end: {unparsable[:2]}")

    straight = load_file(logs / "straight" / "checkpoints" / f"ckpt_{target:08d}.pt")
    killed = load_file(run.checkpoints / f"ckpt_{target:08d}.pt")
    mismatched = [k for k in straight["generator"] if not torch.equal(straight["generator"][k], killed["generator"][k])]
    return {"kills": len(moments), "launches": launches, "during_checkpoint": sum("checkpoint" in m for m in moments),
            "identical": not mismatched, "mismatched": mismatched[:5],
            "resumes": len([e for e in read_jsonl(run.events) if e["event"] == "resume"])}


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--target", type=int, default=None, help="steps of the run (default: 12 per kill)")
    parser.add_argument("--config", default="demo", help="the shipped config to train (default: demo)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kill-soak-"))
    started = time.time()
    result = kill_soak(args.kills, args.seed, workdir, args.target or 12 * args.kills, base=args.config)
    print(json.dumps(result))
    print(f"{result['kills']} kills ({result['during_checkpoint']} while writing a checkpoint), "
          f"{result['resumes']} resumes, generator bit-identical to the uninterrupted run: {result['identical']} "
          f"({time.time() - started:.0f} s, work in {workdir})")
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
