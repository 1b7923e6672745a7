"""onnxruntime against torch (fp32): ``vocodertui synth`` of the same mels with each backend, in one run.

    python bench/onnx_speed.py [--configs demo,hifigan_v1] [--clips 76] [--repeats 2] [--seconds 60]

For each config a freshly initialised generator (speed does not depend on the weights) is saved as a
checkpoint and exported with ``export --format onnx``. The inputs are the mels (``.npy``, so both backends
skip the mel and vocode the same arrays) of the ljspeech-mini clips when ../shared/data/ljspeech-mini is
there (the first ``--clips``; ``--data`` names another LJSpeech folder), else one ``--seconds`` mel of
the synthetic demo corpus. Each backend runs
``synthesize_many`` over them once to warm up, then ``--repeats`` times, the two backends taking turns, so
that a noisy machine slows both alike; the figure is the ratio of the medians. One JSON line per config.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np
import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import cpu_name  # noqa: E402
from trainer import checkpoint as ckpt  # noqa: E402
from trainer import registry  # noqa: E402
from trainer.audio import load_audio  # noqa: E402
from trainer.config import load_config  # noqa: E402
from trainer.inference import Vocoder  # noqa: E402
from trainer.onnx_export import export_onnx  # noqa: E402
from trainer.synth import synthesize_many  # noqa: E402

LJSPEECH_MINI = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ljspeech-mini"


def write_mels(vocoder: Vocoder, folder: Path, data: Path, clips: int, seconds: float) -> str:
    folder.mkdir()
    wavs = sorted((data / "wavs").glob("*.wav"))[:clips]
    if wavs:
        for wav in wavs:
            np.save(folder / f"{wav.stem}.npy", vocoder.mel(load_audio(wav, vocoder.sampling_rate).samples,
                                                           vocoder.sampling_rate))
        return f"{len(wavs)} ljspeech-mini clips"
    from trainer.demo_corpus import SAMPLING_RATE, synthesize_clip

    clip = synthesize_clip(np.random.default_rng(0), seconds)
    np.save(folder / "demo.npy", vocoder.mel(clip, SAMPLING_RATE))
    return f"one {seconds:.0f} s demo-corpus mel"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="demo,hifigan_v1")
    parser.add_argument("--clips", type=int, default=76)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--data", type=Path, default=LJSPEECH_MINI, help="an LJSpeech folder (default: ljspeech-mini)")
    args = parser.parse_args()
    print(f"# {cpu_name()}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"onnxruntime {onnxruntime.__version__}", flush=True)
    for name in args.configs.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            cfg = load_config(name)
            torch.manual_seed(0)
            checkpoint = root / "ckpt_00000001.pt"
            ckpt.save_atomic({"format": ckpt.FORMAT, "version": ckpt.VERSION, "step": 1, "config": cfg.to_dict(),
                              "signature": cfg.model_signature(),
                              "generator": registry.build_generator(cfg).state_dict()}, checkpoint)
            started = time.perf_counter()
            exported = export_onnx(checkpoint, root / "model.onnx")
            export_s = time.perf_counter() - started
            inputs = write_mels(Vocoder.from_checkpoint(checkpoint), root / "mels", args.data, args.clips, args.seconds)
            runs = {"torch": (checkpoint, []), "onnxruntime": (exported.path, [])}
            for repeat in range(1 + args.repeats):
                for backend, (model, times) in runs.items():
                    report = synthesize_many(model, [root / "mels"], root / backend, overwrite=True, backend=backend)
                    if repeat:
                        times.append(report.wall_seconds)
            audio_s = report.audio_seconds
            wall = {backend: median(times) for backend, (_, times) in runs.items()}
            print(json.dumps({
                "config": name, "inputs": inputs, "audio_s": round(audio_s, 1), "export_s": round(export_s, 1),
                "opset": exported.opset, "parity_max_abs": exported.max_abs,
                "wall_s": {b: round(w, 2) for b, w in wall.items()},
                "real_time": {b: round(audio_s / w, 1) for b, w in wall.items()},
                "onnxruntime_over_torch_time": round(wall["onnxruntime"] / wall["torch"], 2),
                "runs_s": {b: [round(t, 2) for t in times] for b, (_, times) in runs.items()},
            }), flush=True)


if __name__ == "__main__":
    main()
