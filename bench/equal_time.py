"""Which recipe trains better per hour: the demo-sized recipes trained side by side for the same wall
time on the same data, then scored on the files none of them trained on with ``vocodertui eval``.

    python bench/equal_time.py [--minutes 30] [--data ../shared/data/ljspeech-mini] [--workdir DIR]

The three recipes share the demo's 22.05 kHz / 80-band mel, so one eval table compares them:

- ``hifigan``: config/demo.yaml, the 2020 recipe (MSD + MPD, mel L1, LSGAN);
- ``mrstft_mrd``: the same generator with MPD + MRD and the multi-resolution STFT loss (weight 2.5)
  beside the mel loss, as config/hifigan_48k_mrstft.yaml trains at 48 kHz;
- ``bigvgan``: config/demo_bigvgan.yaml (a small BigVGAN, MPD + MRD).

They run at the same time, one thread each, so they share the machine's load alike; each is
stopped (``vocodertui stop``, which checkpoints) when the time is up. The validation split is the
same for all three (same files, same seed), and eval scores exactly those held-out files.
Prints the CPU, each run's steps, and the eval table; ``--json`` writes the eval's JSON beside.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import cpu_name  # noqa: E402
from trainer.config import CONFIG_DIR, load_config  # noqa: E402
from trainer.data import discover, split  # noqa: E402
from trainer.rundir import RunPaths, read_jsonl  # noqa: E402

RECIPES = {
    "hifigan": ("demo", {}),
    "mrstft_mrd": ("demo", {"discriminator": {"kinds": ["mpd", "mrd"]},
                            "loss": {"stft": "multi_resolution"}, "training": {"lambda_stft": 2.5}}),
    "bigvgan": ("demo_bigvgan", {}),
}


def recipe_config(name: str, folder: Path) -> Path:
    base, changes = RECIPES[name]
    raw = yaml.safe_load((CONFIG_DIR / f"{base}.yaml").read_text())
    for section, values in changes.items():
        raw.setdefault(section, {}).update(values)
    raw["name"] = name
    raw["training"].update(threads=1, num_workers=0, target_step=10_000_000)
    raw["schedule"].update(quality_every=0, milestones=[], checkpoint_every=1000, validate_every=500)
    raw["data"]["val_count"] = 16  # the split takes at most a tenth of the files
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def held_out(data: Path, folder: Path, config: Path) -> Path:
    """The validation files of ``data`` under ``config``'s split, as an LJSpeech-layout folder."""
    cfg = load_config(config)
    _, val = split(discover(data), cfg.data.val_count, cfg.training.seed)
    (folder / "wavs").mkdir(parents=True)
    lines = []
    for utt in val:
        shutil.copy(utt.audio_path, folder / "wavs" / utt.audio_path.name)
        lines.append(f"{utt.id}|")
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    return folder


def vocodertui(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vocodertui.cli", *args], cwd=REPO, check=True, text=True, **kwargs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ljspeech-mini")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--pitch-model", default="tiny")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="equal-time-"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    print(f"CPU: {cpu_name()}; {args.minutes:g} min each, side by side, 1 thread each; work in {work}", flush=True)

    configs = {name: recipe_config(name, work) for name in RECIPES}
    for name, config in configs.items():
        vocodertui("start", "--yes", "--config", str(config), "--data", str(args.data), "--run", name,
                   "--logs-dir", str(logs), stdout=subprocess.DEVNULL)
    time.sleep(args.minutes * 60)  # the trainers run detached; this process only waits for the time to pass
    for name in RECIPES:
        vocodertui("stop", "--run", name, "--logs-dir", str(logs), stdout=subprocess.DEVNULL)

    checkpoints = []
    for name in RECIPES:
        run = RunPaths(logs / name)
        steps = read_jsonl(run.metrics)[-1]["step"]
        step, path = run.checkpoint_files()[-1]
        checkpoints.append(path)
        print(f"{name}: {steps} steps logged, last checkpoint at step {step}", flush=True)

    test_set = held_out(args.data, work / "held-out", configs["hifigan"])
    eval_args = [arg for path in checkpoints for arg in ("--checkpoint", str(path))]
    vocodertui("eval", *eval_args, "--data", str(test_set), "--pitch-model", args.pitch_model,
               "--json", "--out", str(work / "eval-audio"), stdout=open(work / "eval.json", "w"))
    result = json.loads((work / "eval.json").read_text())
    evaluated = result["checkpoints"]
    print(f"\nheld-out files: {evaluated[0]['files']} (mean ± 95 % interval)")
    print(f"{'metric':<14}" + "".join(f"{name:>22}" for name in RECIPES) + f"{'ground truth':>22}")
    for metric in evaluated[0]["metrics"]:
        cells = [e["metrics"].get(metric) for e in evaluated] + [result["ground_truth"]["metrics"].get(metric)]
        print(f"{metric:<14}" + "".join(f"{c['mean']:>14.4f} ± {c['ci95'] or 0:<5.3f}" if c else f"{'':>22}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
