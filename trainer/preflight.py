"""Pre-flight checks before a run starts (also ``vocodertui check``): everything that can be known
to fail before the trainer is launched, each reported as one line."""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import psutil
import soundfile as sf

from trainer.config import Config, signature_mismatch
from trainer.data import discover, split
from trainer.errors import UserError
from trainer.launch import StartRequest, choose_config, has_history, load_resume_state, resolve_data_dir, resolve_run
from vocodertui import pidfile
from vocodertui.units import format_bytes
from vocodertui.rundir import RunPaths

DEPENDENCIES = ("torch", "numpy", "soundfile", "soxr", "yaml", "psutil")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Plan:
    """What the checks resolved: the launcher starts exactly this."""

    config: Optional[Config] = None
    run: Optional[RunPaths] = None
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def _model_sizes(cfg: Config) -> tuple[int, int]:
    """Parameter counts of G and of both discriminators, built on the meta device (no memory, no time)."""
    import torch

    from trainer.models import Generator, MultiPeriodDiscriminator, MultiScaleDiscriminator

    with torch.device("meta"):
        g = sum(p.numel() for p in Generator(cfg.generator, cfg.audio.num_mels).parameters())
        d = sum(p.numel() for m in (MultiPeriodDiscriminator(cfg.discriminator), MultiScaleDiscriminator(cfg.discriminator))
                for p in m.parameters())
    return g, d


def run_preflight(req: StartRequest) -> Plan:
    plan = Plan()
    steps: list[tuple[str, Callable[[Plan], str]]] = [
        ("configuration", lambda p: _check_config(req, p)),
        ("run directory", lambda p: _check_run(req, p)),
        ("data", lambda p: _check_data(req, p)),
        ("resume checkpoint", lambda p: _check_resume(req, p)),
        ("dependencies", lambda p: _check_dependencies(p)),
        ("disk", lambda p: _check_disk(req, p)),
        ("memory", lambda p: _check_memory(p)),
        ("CPU threads", lambda p: _check_threads(p)),
    ]
    for name, step in steps:
        try:
            plan.checks.append(Check(name, True, step(plan)))
        except UserError as exc:
            plan.checks.append(Check(name, False, str(exc)))
        if name == "configuration" and not plan.checks[-1].ok:
            break  # nothing else can be judged without a config
    return plan


def _check_config(req: StartRequest, plan: Plan) -> str:
    run = resolve_run(req)
    continuing = req.resume is not None and run is not None and has_history(run)
    cfg = choose_config(req, run if continuing else None)
    if req.target_step:
        cfg.training.target_step = req.target_step
    if req.mels_dir:
        cfg.data.mels_dir = req.mels_dir
    plan.config = cfg
    g, d = _model_sizes(cfg)
    a = cfg.audio
    return (f"{cfg.name}: {a.sampling_rate} Hz, {a.num_mels} mels, hop {a.hop_size}; generator {g / 1e6:.2f} M, "
            f"discriminators {d / 1e6:.2f} M parameters; batch {cfg.training.batch_size}, target step {cfg.training.target_step}")


def _check_run(req: StartRequest, plan: Plan) -> str:
    run = resolve_run(req) or RunPaths(Path(req.logs_dir) / f"{plan.config.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    plan.run = run
    live = pidfile.check(run)
    if live.alive:
        raise UserError(f"run {run.name} is being trained right now by process {live.record.pid}: stop it first")
    if req.resume is None and has_history(run):
        raise UserError(f"run {run.name} already exists: continue it with --resume latest, or pick another --run")
    if req.resume == "latest" and not has_history(run):
        raise UserError(f"run {run.name} has nothing to resume in {run.root.parent}")
    probe_dir = run.root if run.root.is_dir() else _nearest_existing(run.root)
    try:
        with tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".write-test"):
            pass
    except OSError as exc:
        raise UserError(f"cannot write in {probe_dir}: {exc.strerror}") from None
    note = f"; a stale PID file will be replaced ({live.reason})" if live.record is not None else ""
    return f"{'continue' if run.root.is_dir() and has_history(run) else 'new run'} {run.root} (writable){note}"


def _nearest_existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    if not path.is_dir():
        raise UserError(f"cannot create the run directory: {path} is a file, not a folder")
    return path


def _check_data(req: StartRequest, plan: Plan) -> str:
    cfg = plan.config
    data_dir = resolve_data_dir(req, cfg)
    utterances = discover(data_dir)
    train, _ = split(utterances, cfg.data.val_count, cfg.training.seed)
    if len(train) < cfg.training.batch_size:
        raise UserError(f"{len(train)} training files after the validation split, fewer than the batch size {cfg.training.batch_size}")
    seconds, resampled, multichannel = 0.0, 0, 0
    for utt in utterances:
        try:
            info = sf.info(str(utt.audio_path))
        except Exception as exc:
            raise UserError(f"cannot read audio file {utt.audio_path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
        if info.frames == 0:
            raise UserError(f"audio file {utt.audio_path} is empty (no samples)")
        if info.frames * cfg.audio.sampling_rate / info.samplerate < cfg.audio.n_fft:
            raise UserError(f"audio file {utt.audio_path} is too short ({info.frames} samples)")
        seconds += info.frames / info.samplerate
        resampled += info.samplerate != cfg.audio.sampling_rate
        multichannel += info.channels > 1
    notes = [f"{len(utterances)} files, {seconds / 3600:.2f} h"]
    if resampled:
        notes.append(f"{resampled} will be resampled to {cfg.audio.sampling_rate} Hz")
    if multichannel:
        notes.append(f"{multichannel} will be downmixed to mono")
    return f"{data_dir}: " + ", ".join(notes)


def _check_resume(req: StartRequest, plan: Plan) -> str:
    if req.resume is None:
        return "none (a new run from step 0)"
    found = load_resume_state(req, plan.run)
    if found is None:
        return f"run {plan.run.name} has no valid checkpoint yet: it starts again from step 0"
    path, state = found
    if "signature" in state:
        mismatch = signature_mismatch(state["signature"], plan.config.model_signature())
        if mismatch:
            raise UserError(f"{path} does not fit the config: {mismatch}")
    step = int(state.get("step", 0))
    target = req.target_step or state.get("config", {}).get("training", {}).get("target_step") or plan.config.training.target_step
    if step >= target:
        raise UserError(f"{path} is at step {step}, already at the target {target}: pass --target-step N > {step}")
    return f"{path} (step {step}, compatible)"


def _check_dependencies(plan: Plan) -> str:
    versions = []
    for name in DEPENDENCIES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise UserError(f"cannot import {name}: {exc}") from None
        versions.append(f"{name} {getattr(module, '__version__', '?')}")
    import torch

    device = plan.config.training.device
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("training.device is cuda but torch sees no CUDA device")
    accel = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU" if torch.cuda.is_available() else "CPU only"
    return ", ".join(versions) + f" ({accel})"


def _check_disk(req: StartRequest, plan: Plan) -> str:
    cfg = plan.config
    g, d = _model_sizes(cfg)
    checkpoint_bytes = 3 * 4 * (g + d)  # weights and AdamW's two moments, fp32
    kept = cfg.schedule.keep_last + 1 + len(cfg.schedule.milestones)
    validations = cfg.training.target_step // cfg.schedule.validate_every
    sample_bytes = validations * cfg.schedule.val_samples * (6 * cfg.audio.sampling_rate * 2 + 60_000)
    needed = kept * checkpoint_bytes + sample_bytes
    free = shutil.disk_usage(_nearest_existing(Path(req.logs_dir).resolve())).free
    detail = (f"{format_bytes(free)} free; about {format_bytes(needed)} needed "
              f"({kept} checkpoints of {format_bytes(checkpoint_bytes)}, samples {format_bytes(sample_bytes)})")
    if free < needed:
        raise UserError(detail)
    return detail


def _check_memory(plan: Plan) -> str:
    vm = psutil.virtual_memory()
    detail = f"{format_bytes(vm.available)} available of {format_bytes(vm.total)}"
    if vm.available < 1 << 30:
        raise UserError(detail + ": less than 1 GB")
    return detail


def _check_threads(plan: Plan) -> str:
    import torch

    cores = len(os.sched_getaffinity(0))
    threads = plan.config.training.threads or torch.get_num_threads()
    detail = f"{threads} torch threads on {cores} usable cores, {plan.config.training.num_workers} loader workers"
    if threads > cores:
        raise UserError(detail + ": more threads than cores slows training down")
    return detail

