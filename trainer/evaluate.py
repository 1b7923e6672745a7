"""``vocodertui eval``: vocode a dataset with one or more checkpoints and score each against the
ground truth with ``trainer.quality``.

Files are taken one at a time (a dataset need not fit in memory) and vocoded by every checkpoint
in turn, so each reference's pitch track is computed once for all of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from trainer.audio import load_audio, write_wav
from trainer.config import Config, load_config, signature_mismatch
from trainer.data import Utterance, discover, load_finetune_mel
from trainer.errors import UserError
from trainer.inference import Vocoder, load_generator_state
from trainer.mel import input_mel
from trainer.quality import Scorer, Scores, summarize
from trainer.records import QUALITY_METRICS, Summary, UnscoredFile

GROUND_TRUTH = "ground truth"


@dataclass
class Candidate:
    path: Path
    step: Optional[int]
    label: str  # the folder name of its WAVs under --out
    vocoder: Vocoder
    scored: list[tuple[str, Scores]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Evaluation:
    path: str
    step: Optional[int]
    files: int
    seconds: float
    metrics: dict[str, Summary]
    unscored: list[UnscoredFile]


@dataclass
class Report:
    checkpoints: list[Evaluation]
    ground_truth: Optional[Evaluation]  # the references' own scores of the metrics that need none (DNSMOS)
    skipped: list[UnscoredFile]  # files no checkpoint could vocode: unreadable, too short, no mel
    missing: dict[str, str]  # metric -> how to install the library it needs
    metrics: tuple[str, ...]

    def as_json(self) -> dict:
        def one(e: Evaluation) -> dict:
            return {"path": e.path, "step": e.step, "files": e.files, "seconds": round(e.seconds, 3),
                    "metrics": {n: {"mean": s.mean, "ci95": s.ci95, "n": s.n} for n, s in e.metrics.items()},
                    "unscored": [{"file": u.file, "metric": u.metric, "reason": u.reason} for u in e.unscored]}
        return {"checkpoints": [one(e) for e in self.checkpoints],
                "ground_truth": one(self.ground_truth) if self.ground_truth else None,
                "skipped": [{"file": u.file, "reason": u.reason} for u in self.skipped],
                "missing": self.missing}


def parse_metrics(text: Optional[str]) -> tuple[str, ...]:
    if not text:
        return tuple(QUALITY_METRICS)
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if name not in QUALITY_METRICS:
            raise UserError(f"--metrics: unknown metric {name!r}; choose from {','.join(QUALITY_METRICS)}")
    return names


def load_candidates(paths: list[Path], config: Optional[str]) -> tuple[list[Candidate], Config]:
    """The generators, and the config whose mels they all take (``config``, else the first checkpoint's)."""
    loaded = [load_generator_state(p, config) for p in paths]
    cfg = load_config(config) if config else loaded[0].cfg
    for path, state in zip(paths, loaded):
        mismatch = signature_mismatch({"audio": vars(state.cfg.audio)}, {"audio": vars(cfg.audio)})
        if mismatch:
            raise UserError(f"{path} takes other mels than {config or paths[0]}: {mismatch}; evaluate it separately")
    labels = [p.stem for p in paths]
    if len(set(labels)) < len(labels):
        labels = [f"{i + 1}-{label}" for i, label in enumerate(labels)]
    return [Candidate(p, s.step, label, Vocoder.from_state(s, p)) for p, s, label in zip(paths, loaded, labels)], cfg


def reference_and_mel(utt: Utterance, cfg: Config, mels_dir: Optional[Path]) -> tuple[np.ndarray, torch.Tensor]:
    """The file's audio at the config's rate and the mel the generators take for it; UserError if unusable."""
    audio = load_audio(utt.audio_path, cfg.audio.sampling_rate).samples
    if len(audio) < cfg.audio.n_fft:
        raise UserError(f"too short: {len(audio)} samples, a mel frame needs {cfg.audio.n_fft}")
    if mels_dir is not None:
        mel = load_finetune_mel(mels_dir, utt, cfg.audio.num_mels, len(audio), cfg.audio.hop_size)
        return audio, torch.from_numpy(mel)[None]
    with torch.no_grad():
        return audio, input_mel(cfg.audio)(torch.from_numpy(audio)[None])


def evaluate(checkpoints: list[Path], data_dir: Path, mels_dir: Optional[Path] = None, config: Optional[str] = None,
             metrics: tuple[str, ...] = tuple(QUALITY_METRICS), pitch_model: str = "full", out: Optional[Path] = None,
             advance: Callable[[str], None] = lambda _: None, started: Callable[[int], None] = lambda _: None) -> Report:
    """Scores of every checkpoint on every file of ``data_dir``. ``started(total)`` is called once with the
    number of (file, checkpoint) pairs, ``advance(file)`` after each."""
    if not checkpoints:
        raise UserError("no checkpoint given: pass --checkpoint CKPT (more than once to compare)")
    if mels_dir is not None and not mels_dir.is_dir():
        raise UserError(f"--mels-dir is not a directory: {mels_dir}")
    utterances = discover(data_dir)
    candidates, cfg = load_candidates(checkpoints, config)
    scorer, missing = Scorer.available(cfg.audio, metrics, pitch_model)
    scorable = scorer.names
    if not scorable:
        raise UserError("none of the metrics can be scored here: " + "; ".join(sorted(set(missing.values()))))
    if out is not None:
        if out.exists() and any(out.iterdir()):
            raise UserError(f"--out {out} is not empty; choose a new folder (nothing in it was changed)")
        for candidate in candidates:
            (out / candidate.label).mkdir(parents=True, exist_ok=True)
    no_reference = tuple(n for n in scorable if not QUALITY_METRICS[n].needs_reference)
    ground_truth = Scorer(cfg.audio, no_reference, pitch_model) if no_reference else None
    truth_scored: list[tuple[str, Scores]] = []
    truth_seconds = 0.0
    skipped = []
    started(len(utterances) * len(candidates))
    for utt in utterances:
        try:
            reference, mel = reference_and_mel(utt, cfg, mels_dir)
        except UserError as why:
            skipped.append(UnscoredFile(utt.id, "*", str(why)))
            for _ in candidates:
                advance(utt.id)
            continue
        if ground_truth:
            began = time.perf_counter()
            truth_scored.append((utt.id, ground_truth.score(None, reference)))
            truth_seconds += time.perf_counter() - began
        for candidate in candidates:
            began = time.perf_counter()
            generated = candidate.vocoder(mel)[0]
            if out is not None:
                write_wav(out / candidate.label / f"{utt.id}.wav", generated, cfg.audio.sampling_rate)
            candidate.scored.append((utt.id, scorer.score(reference, generated, key=utt.id)))
            candidate.seconds += time.perf_counter() - began
            advance(utt.id)
    if len(skipped) == len(utterances):
        raise UserError(f"no file of {data_dir} could be scored; the first: {skipped[0].file}: {skipped[0].reason}")
    evaluations = []
    for c in candidates:
        summaries, unscored = summarize(c.scored, scorable)
        evaluations.append(Evaluation(str(c.path), c.step, len(c.scored), c.seconds, summaries, unscored))
    truth = None
    if ground_truth:
        summaries, unscored = summarize(truth_scored, no_reference)
        truth = Evaluation(GROUND_TRUTH, None, len(truth_scored), truth_seconds, summaries, unscored)
    return Report(evaluations, truth, skipped, missing, scorable)
