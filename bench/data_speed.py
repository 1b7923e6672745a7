"""Data pipeline throughput: training batches per second with the feature cache cold and warm.

    python bench/data_speed.py [--data ../shared/data/ljspeech-mini | @demo] [--config hifigan_v1]
        [--batch 16] [--epochs 5] [--workers 0]

Cold: an empty cache, so every file is decoded, resampled, peak-normalised and turned into its input
mel once, then one epoch of batches. Warm: the cache is there (its index is checked against the
files), then ``--epochs`` epochs of batches: frame-aligned crops read from memory-mapped ``.npy``
files, no STFT. The batches are what ``Trainer.fit`` consumes. Prints one JSON line per figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.config import load_config  # noqa: E402
from trainer.data import VocoderData  # noqa: E402
from trainer.demo_corpus import ensure_demo_corpus  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ljspeech-mini"


def run_epochs(data: VocoderData, epochs: int) -> int:
    batches = 0
    for epoch in range(epochs):
        for _mel, _audio in data.loader(epoch, 0):
            batches += 1
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="a dataset folder, or @demo")
    parser.add_argument("--config", default="hifigan_v1")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()

    cfg = load_config(args.config)
    cfg.training.batch_size = args.batch
    cfg.training.num_workers = args.workers
    cfg.data.val_count = 1
    scratch = Path(tempfile.mkdtemp())
    data_dir = ensure_demo_corpus(scratch / "corpus") if args.data == "@demo" else Path(args.data)
    cache = scratch / "cache"

    started = time.perf_counter()
    data = VocoderData(cfg, data_dir, cache)
    prepared = time.perf_counter()
    batches = run_epochs(data, 1)
    done = time.perf_counter()
    audio_min = data.cache.duration_s(data.train + data.val) / 60
    common = {"data": str(data_dir), "files": len(data.train) + len(data.val), "audio_min": round(audio_min, 2),
              "batch": args.batch, "segment": cfg.training.segment_size, "workers": args.workers}
    print(json.dumps({"cache": "cold", **common, "preprocess_s": round(prepared - started, 3),
                      "batches": batches, "batches_per_s": round(batches / (done - started), 2)}), flush=True)

    started = time.perf_counter()
    data = VocoderData(cfg, data_dir, cache)
    opened = time.perf_counter()
    batches = run_epochs(data, args.epochs)
    done = time.perf_counter()
    print(json.dumps({"cache": "warm", **common, "open_s": round(opened - started, 3), "batches": batches,
                      "batches_per_s": round(batches / (done - started), 2)}), flush=True)


if __name__ == "__main__":
    main()
