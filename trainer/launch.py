"""Setting up a training run: the run directory, the data, resuming, and the start/resume events."""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from trainer import checkpoint as ckpt
from trainer.config import Config, dump_config, load_config
from trainer.data import VocoderData, default_cache_root, describe
from trainer.demo_corpus import ensure_demo_corpus
from trainer.errors import UserError
from trainer.loop import Trainer, parameter_count
from vocodertui.rundir import RunPaths

log = logging.getLogger("trainer")

DEMO_DATA = "@demo"  # data.path value: the corpus vocodertui synthesises itself


@dataclass
class StartRequest:
    config: str
    data: Optional[str] = None
    run: Optional[str] = None
    logs_dir: str = "logs"
    resume: Optional[str] = None  # "latest" or a checkpoint path
    target_step: Optional[int] = None
    mels_dir: Optional[str] = None


def setup_logging(run: RunPaths, console: bool) -> None:
    """trainer.log always; the terminal too when training in the foreground."""
    log.handlers.clear()
    log.setLevel(logging.INFO)
    log.propagate = False
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.FileHandler(run.log, encoding="utf-8")]
    if console:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)


def resolve_run(req: StartRequest, cfg: Config) -> RunPaths:
    logs_dir = Path(req.logs_dir)
    if req.run:
        name = req.run
    elif req.resume and req.resume != "latest" and Path(req.resume).resolve().parent.name == "checkpoints":
        return RunPaths(Path(req.resume).resolve().parent.parent)
    elif req.resume == "latest":
        raise UserError("--resume latest needs --run NAME (the run to continue)")
    else:
        name = f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if "/" in name or name.startswith("."):
        raise UserError(f"invalid run name {name!r}: use a plain folder name")
    return RunPaths(logs_dir / name)


def prepare_run_dir(run: RunPaths, resuming: bool) -> None:
    if run.root.exists() and not resuming and (run.events.exists() or run.checkpoint_files()):
        raise UserError(
            f"run {run.name} already exists in {run.root.parent}: continue it with --resume latest, or pick another --run"
        )
    if resuming and not run.root.is_dir():
        raise UserError(f"run {run.name} not found in {run.root.parent}")
    try:
        run.root.mkdir(parents=True, exist_ok=True)
        run.checkpoints.mkdir(exist_ok=True)
        run.samples.mkdir(exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create run directory {run.root}: {exc.strerror}") from None
    if not os.access(run.root, os.W_OK):
        raise UserError(f"run directory {run.root} is not writable")


def resolve_data_dir(req: StartRequest, cfg: Config) -> Path:
    path = req.data or cfg.data.path
    if path is None:
        raise UserError(f"config {cfg.name} names no data: pass --data DIR (LJSpeech layout or a folder of audio files)")
    if path == DEMO_DATA:
        return ensure_demo_corpus(Path(req.logs_dir) / ".cache")
    return Path(path)


def load_resume_state(req: StartRequest, run: RunPaths) -> tuple[Path, dict[str, Any]]:
    if req.resume == "latest":
        found = ckpt.latest_valid(run)
        if found is None:
            raise UserError(f"run {run.name} has no valid checkpoint to resume from")
        return found
    path = Path(req.resume)
    state = ckpt.load_file(path)
    if ckpt.is_ours(state):
        return path, state
    return path, ckpt.load_jik876_pair(path)


def start_training(req: StartRequest, console: bool = True) -> str:
    """Train in this process; returns 'finished' or 'stopped'. Raises UserError for bad input."""
    cfg = load_config(req.config)
    if req.mels_dir:
        cfg.data.mels_dir = req.mels_dir
    run = resolve_run(req, cfg)
    prepare_run_dir(run, resuming=req.resume is not None)
    setup_logging(run, console)

    data_dir = resolve_data_dir(req, cfg)
    cfg.data.path = str(data_dir)
    data = VocoderData(cfg, data_dir, default_cache_root(Path(req.logs_dir), cfg))

    resume_from: Optional[Path] = None
    state: Optional[dict[str, Any]] = None
    if req.resume:
        resume_from, state = load_resume_state(req, run)
        saved_target = state.get("config", {}).get("training", {}).get("target_step")
        cfg.training.target_step = req.target_step or saved_target or cfg.training.target_step
    elif req.target_step:
        cfg.training.target_step = req.target_step

    trainer = Trainer(cfg, run, data, cfg.training.target_step)
    if state is not None:
        trainer.load_state(state, resume_from)
        if trainer.step >= cfg.training.target_step:
            trainer.close()
            raise UserError(
                f"run {run.name} already reached step {trainer.step} (target {cfg.training.target_step}); "
                f"pass --target-step N with N > {trainer.step} to train further"
            )
    run.config.write_text(dump_config(cfg), encoding="utf-8")

    common = {
        "config": cfg.name, "pid": os.getpid(), "target_step": cfg.training.target_step,
        "device": str(trainer.device), "precision": cfg.training.precision, "threads": torch.get_num_threads(),
        "milestones": cfg.schedule.milestones,
    }
    if resume_from is not None:
        trainer.event("resume", checkpoint=str(resume_from), epoch=trainer.epoch, **common)
        log.info("resumed %s from %s at step %d", run.name, resume_from, trainer.step)
    else:
        trainer.event(
            "start", data=str(data_dir), train_files=len(data.train), val_files=len(data.val),
            params_g=parameter_count(trainer.generator),
            params_d=parameter_count(trainer.mpd) + parameter_count(trainer.msd), **common,
        )
        log.info("started %s: %s", run.name, describe(data))
    log.info("run directory %s, %s on %s, %d threads", run.root, cfg.training.precision, trainer.device, torch.get_num_threads())
    try:
        return trainer.fit()
    except BaseException as exc:
        trainer.crashed(exc)
        raise
    finally:
        trainer.close()
