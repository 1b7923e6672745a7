"""What training leaves in the run directory: metrics and events, validation scores and samples,
checkpoints and their retention. Rank 0 alone writes; every rank passes the same barriers."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from trainer import checkpoint as ckpt
from trainer.audio import write_wav
from trainer.config import Config
from trainer.data import VocoderData
from trainer.distributed import World
from trainer.gan import Gan
from trainer.quality import Scorer, summarize
from trainer.records import (RANKINGS, Checkpoint, Event, Metrics, Quality, Record, ReopenedFile, Validation, best_checkpoint,
                             checkpoint_scores)
from trainer.rundir import JsonlWriter, RunPaths, checkpoint_name, read_records, sample_dir_name
from trainer.spectrogram_png import write_comparison

log = logging.getLogger("trainer")


class Artifacts:
    def __init__(self, cfg: Config, run: RunPaths, world: World):
        self.cfg = cfg
        self.run = run
        self.world = world
        self.metrics = JsonlWriter(run.metrics, on_reopen=self._reopened) if world.is_main else None
        self.events = JsonlWriter(run.events, on_reopen=self._reopened) if world.is_main else None
        self.tensorboard = None
        if cfg.logging.tensorboard and world.is_main:
            from trainer.tensorboard_log import LiveTensorBoard  # imported by the runs that ask for it alone

            self.tensorboard = LiveTensorBoard(run)
        self.last_validation: Optional[tuple[int, Optional[float]]] = None  # (step, val mel-L1)
        self.last_quality: Optional[tuple[int, dict[str, float]]] = None  # (step, metric -> mean)
        self.checkpoint_scores: dict[int, dict[str, float]] = {}  # the checkpoints retention knows of
        self.best_by = RANKINGS[cfg.schedule.best_by]
        self._scorer: Optional[Scorer] = None
        self._references_written: set[str] = set()  # by this process: a resume rewrites them from its own data

    def event(self, kind: type[Event], step: int, **fields: Any) -> None:
        if self.events is not None:
            record = kind(time=time.time(), step=step, **fields)
            self.events.write(record)
            if self.tensorboard is not None:
                self.tensorboard.record(record)

    def write_metrics(self, record: Metrics | Quality) -> None:
        if self.metrics is not None:
            self.metrics.write(record)
            if self.tensorboard is not None:
                self.tensorboard.record(record)

    def _reopened(self, path: Path, reason: str, record: Record) -> None:
        """A writer found its file deleted or replaced and opened the path again; ``record`` is the
        first it writes there. When that file is events.jsonl, the event is the new file's first line."""
        log.warning("%s was %s; reopened it, writing there from step %d on (earlier lines are in the old file only)",
                    path.name, reason, record.step)
        self.event(ReopenedFile, record.step, file=path.name, reason=reason)

    def val_at(self, step: int) -> Optional[float]:
        if self.last_validation and self.last_validation[0] == step:
            return self.last_validation[1]
        return None

    def quality_at(self, step: int) -> Optional[dict[str, float]]:
        if self.last_quality and self.last_quality[0] == step:
            return self.last_quality[1]
        return None

    def known_checkpoints(self) -> None:
        """Scores of the checkpoints already on disk, from the events log (at a resume)."""
        on_disk = {step for step, _ in self.run.checkpoint_files()}
        for e in read_records(self.run.events, Event).records:
            if isinstance(e, Checkpoint) and e.step in on_disk:
                self.checkpoint_scores[e.step] = checkpoint_scores(e.val_mel, e.quality)

    # ---------------------------------------------------------------------------- validation

    def validate(self, gan: Gan, data: VocoderData, step: int, score: bool = False) -> None:
        """Validation mel-L1 over the validation set, samples, and (``score``) the quality of the
        first ``schedule.quality_files`` files' output."""
        if self.world.is_main:
            scored = self._validate(gan, data, step, keep=self.cfg.schedule.quality_files if score else 0)
            if score:
                self._score(step, scored)
        self.world.barrier()

    @torch.no_grad()
    def _validate(self, gan: Gan, data: VocoderData, step: int, keep: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Returns (file, reference, generated) of the first ``keep`` files."""
        started = time.time()
        gan.generator.eval()
        errors = []
        kept = []
        n_samples = self.cfg.schedule.val_samples
        final_dir = self.run.samples / sample_dir_name(step)
        tmp_dir = self.run.samples / f".{final_dir.name}.tmp"
        if n_samples:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            tmp_dir.mkdir(parents=True)
        for i, utt in enumerate(data.val):
            mel, audio = data.validation_item(utt)
            y_g_hat = gan.generator(mel.to(gan.device)).squeeze(1).float()
            real = gan.loss_mel(audio.to(gan.device))
            fake = gan.loss_mel(y_g_hat)
            errors.append(F.l1_loss(real, fake).item())
            if i < keep:
                kept.append((utt.id, audio[0].numpy(), y_g_hat[0].cpu().numpy()))
            if i < n_samples:
                write_wav(tmp_dir / f"{utt.id}.wav", y_g_hat[0].cpu().numpy(), self.cfg.audio.sampling_rate)
                self._write_reference(utt.id, audio[0].numpy())
                write_comparison(tmp_dir / f"{utt.id}.png", real[0].cpu().numpy(), fake[0].cpu().numpy())
        gan.generator.train()
        if n_samples:
            shutil.rmtree(final_dir, ignore_errors=True)
            os.replace(tmp_dir, final_dir)
        val_mel = sum(errors) / len(errors)
        self.last_validation = (step, val_mel)
        self.event(Validation, step, val_mel=val_mel, seconds=round(time.time() - started, 3),
                   samples=str(final_dir.relative_to(self.run.root)) if n_samples else None)
        log.info("step %d: validation mel-L1 %.4f", step, val_mel)
        return kept

    def _write_reference(self, utt_id: str, audio: np.ndarray) -> None:
        if utt_id in self._references_written:
            return
        self.run.references.mkdir(parents=True, exist_ok=True)
        tmp = self.run.references / f".{utt_id}.tmp.wav"
        write_wav(tmp, audio, self.cfg.audio.sampling_rate)
        os.replace(tmp, self.run.references / f"{utt_id}.wav")
        self._references_written.add(utt_id)

    def _score(self, step: int, outputs: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
        """One ``quality`` record of the files kept from this validation."""
        started = time.time()
        scorer = self._scorer or self._make_scorer()
        scored = [(name, scorer.score(reference, generated, key=name)) for name, reference, generated in outputs]
        metrics, unscored = summarize(scored, scorer.names)
        self.last_quality = (step, {name: s.mean for name, s in metrics.items()})
        self.write_metrics(Quality(time=time.time(), step=step, files=len(outputs), seconds=round(time.time() - started, 3),
                                   pitch_model=scorer.pitch_model, metrics=metrics, unscored=unscored,
                                   per_file={name: scores.values for name, scores in scored}))
        log.info("step %d: quality %s (%.1f s)", step,
                 "  ".join(f"{name} {s.mean:.4g}" for name, s in metrics.items()), time.time() - started)

    def _make_scorer(self) -> Scorer:
        s = self.cfg.schedule
        self._scorer, missing = Scorer.available(self.cfg.audio, tuple(s.quality_metrics), s.pitch_model)
        for name, how in missing.items():
            log.warning("quality metric %s is not scored: %s", name, how)
        return self._scorer

    # --------------------------------------------------------------------------- checkpoints

    def save_checkpoint(self, state: dict[str, Any], reason: str) -> None:
        """Write ``state`` (the trainer's, with ``step``, ``epoch`` and ``val_mel``) atomically, then
        apply retention. Every rank waits for the file: a rollback may read it."""
        if self.world.is_main:
            step = state["step"]
            path = self.run.checkpoints / checkpoint_name(step)
            self.run.checkpoints.mkdir(exist_ok=True)
            size = ckpt.save_atomic(state, path)
            self.checkpoint_scores[step] = checkpoint_scores(state["val_mel"], state["quality"])
            self.event(Checkpoint, step, path=str(path.relative_to(self.run.root)), size=size, val_mel=state["val_mel"],
                       epoch=state["epoch"], reason=reason, quality=state["quality"])
            log.info("step %d: checkpoint %s (%s)", step, path.name, reason)
            self._prune_checkpoints()
        self.world.barrier()

    def _prune_checkpoints(self) -> None:
        """Keep the last ``keep_last`` checkpoints, the best by ``schedule.best_by``, and every milestone."""
        steps = sorted(self.checkpoint_scores)
        keep = set(steps[-self.cfg.schedule.keep_last:]) | set(self.cfg.schedule.milestones)
        best = best_checkpoint(self.checkpoint_scores, self.best_by)
        if best is not None:
            keep.add(best)
        for step in steps:
            if step not in keep:
                (self.run.checkpoints / checkpoint_name(step)).unlink(missing_ok=True)
                del self.checkpoint_scores[step]

    def close(self) -> None:
        for writer in (self.metrics, self.events, self.tensorboard):
            if writer is not None:
                writer.close()
