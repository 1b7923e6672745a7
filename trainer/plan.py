"""The start plan: one pure decision, from what the user asked for to exactly what will be trained.

``make_plan`` resolves the request (config, data, run, resume, target) and runs every check that can
fail before a trainer is launched, each reported as one line. ``vocodertui check`` renders the plan,
``vocodertui start`` refuses it unless every check passed and hands it, as a file, to the trainer
(``python -m trainer PLAN``), which executes it without deciding anything again. So ``check`` ✓ ⇔
``start`` starts, and a resume trains with the config that was checked.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import psutil
import yaml
from rich.filesize import decimal as format_bytes

from trainer import pidfile
from trainer.config import Config, config_changes, config_from_dict, load_config, read_config_text, signature_mismatch
from trainer.errors import UserError
from trainer.rundir import RunPaths, run_in

DEMO_DATA = "@demo"  # data.path value: the corpus vocodertui synthesises itself
DEPENDENCIES = ("torch", "numpy", "soundfile", "soxr", "yaml", "psutil", "msgspec")


@dataclass
class StartRequest:
    config: Optional[str] = None  # default: the run's own config when continuing it, else the demo
    data: Optional[str] = None
    run: Optional[str] = None
    logs_dir: str = "logs"
    resume: Optional[str] = None  # "latest" or a checkpoint path
    target_step: Optional[int] = None
    mels_dir: Optional[str] = None


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # passed, with something to see before training starts (shown as ⚠)


class Warned(str):
    """The detail of a check that passed with a warning."""


@dataclass
class ResumeSource:
    """The checkpoint a resume continues from, loaded once; ``path`` is None when ``--resume
    latest`` found no valid checkpoint (the run starts again from step 0)."""

    path: Optional[Path]
    state: dict[str, Any]
    passed_over: list[str]


@dataclass
class StartPlan:
    """What will be trained: the effective config (data path, mels, target step filled in), the run
    directory, and the checkpoint to continue from (None: from step 0)."""

    logs_dir: Path
    run: Optional[RunPaths] = None
    config: Optional[Config] = None
    continuing: bool = False  # the run has history and goes on from it
    resume_from: Optional[Path] = None
    checks: list[Check] = field(default_factory=list)
    # What the config changes of the resumed checkpoint's own config ('key: old → new'): a start
    # needs the user's confirmation for them.
    config_changes: list[str] = field(default_factory=list)
    resume: Optional[ResumeSource] = field(default=None, repr=False)  # not part of the plan file

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def refuse_unless_ok(self) -> None:
        failed = [c for c in self.checks if not c.ok]
        if failed:
            more = f" (and {len(failed) - 1} more failed checks)" if len(failed) > 1 else ""
            raise UserError(f"{failed[0].detail}{more}; nothing was started")

    def to_json(self) -> str:
        return json.dumps({
            "logs_dir": str(self.logs_dir.resolve()), "run": str(self.run.root.resolve()),
            "config": self.config.to_dict(), "continuing": self.continuing,
            "resume_from": str(self.resume_from.resolve()) if self.resume_from else None,
            "checks": [c.__dict__ for c in self.checks], "config_changes": self.config_changes,
        }, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str) -> StartPlan:
        try:
            raw = json.loads(text)
            return cls(
                logs_dir=Path(raw["logs_dir"]), run=RunPaths(Path(raw["run"])),
                config=config_from_dict(raw["config"], source=f"{source} config"), continuing=bool(raw["continuing"]),
                resume_from=Path(raw["resume_from"]) if raw["resume_from"] else None,
                checks=[Check(**c) for c in raw["checks"]], config_changes=[str(c) for c in raw["config_changes"]],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{source} is not a start plan that vocodertui wrote ({exc})") from None


def make_plan(req: StartRequest) -> StartPlan:
    """Resolve ``req`` and check everything that can be known to fail before training starts."""
    plan = StartPlan(logs_dir=Path(req.logs_dir))
    steps: list[tuple[str, Callable[[StartRequest, StartPlan], str]]] = [
        ("configuration", _resolve_config),
        ("run directory", _resolve_run_dir),
        ("data", _check_data),
        ("resume checkpoint", _resolve_resume),
        ("fine-tuning weights", _check_finetune),
        ("dependencies", _check_dependencies),
        ("disk", _check_disk),
        ("memory", _check_memory),
        ("CPU threads", _check_threads),
    ]
    for name, step in steps:
        try:
            detail = step(req, plan)
            plan.checks.append(Check(name, True, detail, warning=isinstance(detail, Warned)))
        except UserError as exc:
            plan.checks.append(Check(name, False, str(exc)))
            if name == "configuration":
                break  # nothing else can be judged without a config
    return plan


def named_run(req: StartRequest) -> Optional[RunPaths]:
    """The run named by --run, or the run whose checkpoint --resume names; None for a new run."""
    if req.run:
        return run_in(Path(req.logs_dir), req.run)
    if req.resume == "latest":
        raise UserError("--resume latest needs --run NAME (the run to continue)")
    if req.resume and Path(req.resume).resolve().parent.name == "checkpoints":
        return RunPaths(Path(req.resume).resolve().parent.parent)
    return None


def has_history(run: RunPaths) -> bool:
    return run.events.exists() or bool(run.checkpoint_files())


def _resolve_config(req: StartRequest, plan: StartPlan) -> str:
    """--config; else, resuming, the config the checkpoint was trained with; else the demo (a new run)."""
    run = named_run(req)
    plan.continuing = req.resume is not None and run is not None and has_history(run)
    plan.resume = _find_resume(req, run) if req.resume else None
    if req.config:
        cfg, origin = load_config(req.config), ""
    elif req.resume:
        cfg, origin = _config_of_resume(req, run, plan.resume)
    else:
        cfg, origin = load_config("demo"), " (the demo: no --config)"
    if req.mels_dir:
        cfg.data.mels_dir = req.mels_dir
    if req.target_step:
        cfg.training.target_step = req.target_step
    if cfg.training.precision == "fp16" and not _cuda_available(cfg):
        raise UserError("training.precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    plan.config = cfg
    g, d = _model_sizes(cfg)
    a = cfg.audio
    return (f"{cfg.name}{origin}: {a.sampling_rate} Hz, {a.num_mels} mels, hop {a.hop_size}; generator {g / 1e6:.2f} M, "
            f"discriminators {d / 1e6:.2f} M parameters; batch {cfg.training.batch_size}, target step {cfg.training.target_step}")


def _find_resume(req: StartRequest, run: Optional[RunPaths]) -> ResumeSource:
    from trainer import checkpoint as ckpt

    if req.resume != "latest":
        path = Path(req.resume)
        return ResumeSource(path, load_resume_state(path), [])
    passed_over: list[str] = []
    found = ckpt.latest_valid(run, passed_over)
    return ResumeSource(None, {}, passed_over) if found is None else ResumeSource(found[0], found[1], passed_over)


def _config_of_resume(req: StartRequest, run: Optional[RunPaths], source: ResumeSource) -> tuple[Config, str]:
    """The config a resume without --config trains with: the checkpoint's own, the config.json
    beside a jik876 file, or (no valid checkpoint yet) the run's config.yaml."""
    if source.path is not None and "config" in source.state:
        return (config_from_dict(source.state["config"], source=f"{source.path} (its saved config)"),
                f" (the config {source.path.name} was trained with)")
    if source.path is not None:
        beside = source.path.parent / "config.json"
        if not beside.is_file():
            raise UserError(f"{source.path} is a jik876 checkpoint and carries no config: pass --config "
                            "(or put its config.json beside it)")
        return load_config(beside), f" (from {beside})"
    if run is not None and run.config.is_file():
        try:
            raw = yaml.safe_load(read_config_text(run.config))
        except yaml.YAMLError:
            raise UserError(f"{run.config} is malformed YAML: pass --config") from None
        return config_from_dict(raw, source=str(run.config)), f" (the run's {run.config.name}: it has no valid checkpoint)"
    if run is None or not has_history(run):
        raise _nothing_to_resume(run)
    raise UserError(f"run {run.name} has no valid checkpoint and no config.yaml that says what it was trained with: "
                    "pass --config")


def _nothing_to_resume(run: RunPaths) -> UserError:
    if not run.root.is_dir():
        return UserError(f"run {run.name} not found in {run.root.parent}")
    return UserError(f"run {run.name} has nothing to resume: no events and no checkpoints")


def _cuda_available(cfg: Config) -> bool:
    import torch

    return cfg.training.device != "cpu" and torch.cuda.is_available()


def _model_sizes(cfg: Config) -> tuple[int, int]:
    """Parameter counts of G and of the discriminators, built on the meta device (no memory, no time)."""
    import torch

    from trainer.registry import build_discriminators, build_generator

    with torch.device("meta"):
        g = sum(p.numel() for p in build_generator(cfg).parameters())
        d = sum(p.numel() for m in build_discriminators(cfg).values() for p in m.parameters())
    return g, d


def _resolve_run_dir(req: StartRequest, plan: StartPlan) -> str:
    run = named_run(req) or RunPaths(Path(req.logs_dir) / f"{plan.config.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    plan.run = run
    live = pidfile.check(run)
    if live.alive:
        raise UserError(f"run {run.name} is being trained right now by process {live.record.pid}: "
                        f"stop it first (vocodertui stop --run {run.name})")
    if req.resume is None and has_history(run):
        raise UserError(f"run {run.name} already exists in {run.root.parent}: continue it with --resume latest, "
                        "or pick another --run")
    if req.resume == "latest" and not has_history(run):
        raise _nothing_to_resume(run)
    probe_dir = run.root if run.root.is_dir() else _nearest_existing(run.root)
    try:
        with tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".write-test"):
            pass
    except OSError as exc:
        raise UserError(f"cannot write in {probe_dir}: {exc.strerror}") from None
    note = f"; a stale PID file will be replaced ({live.reason})" if live.record is not None else ""
    return f"{'continue' if plan.continuing else 'new run'} {run.root} (writable){note}"


def _nearest_existing(path: Path) -> Path:
    wanted = path
    while not path.exists():
        path = path.parent
    if not path.is_dir():
        raise UserError(f"cannot create run directory {wanted}: {path} is a file, not a folder")
    return path


def _check_data(req: StartRequest, plan: StartPlan) -> str:
    from trainer.data import check_utterance, discover, split

    cfg = plan.config
    path = req.data or cfg.data.path
    if path is None:
        raise UserError(f"config {cfg.name} names no data: pass --data DIR (LJSpeech layout or a folder of audio files)")
    if path == DEMO_DATA:
        from trainer.demo_corpus import ensure_demo_corpus

        cache = Path(req.logs_dir) / ".cache"
        try:
            data_dir = ensure_demo_corpus(cache)
        except OSError as exc:
            raise UserError(f"cannot write the demo corpus into {cache}: {exc.strerror}") from None
    else:
        data_dir = Path(path)
    cfg.data.path = str(data_dir.resolve())
    utterances = discover(data_dir)
    train, _ = split(utterances, cfg.data.val_count, cfg.training.seed)
    if len(train) < cfg.training.batch_size:
        raise UserError(f"{len(train)} training files after the validation split, fewer than the batch size {cfg.training.batch_size}")
    if cfg.data.mels_dir and not Path(cfg.data.mels_dir).is_dir():
        raise UserError(f"--mels-dir {cfg.data.mels_dir} is not a folder (it should hold {{utterance id}}.npy mels)")
    facts = [check_utterance(cfg, utt) for utt in utterances]
    rate = cfg.audio.sampling_rate
    notes = [f"{len(utterances)} files, {sum(f.seconds for f in facts) / 3600:.2f} h"]
    down = sum(f.source_rate > rate for f in facts)
    up = [f.source_rate for f in facts if f.source_rate < rate]
    multichannel = sum(f.channels > 1 for f in facts)
    if down:
        notes.append(f"{down} will be resampled down to {rate} Hz")
    if multichannel:
        notes.append(f"{multichannel} will be downmixed to mono")
    if cfg.data.mels_dir:
        notes.append(f"every mel in {cfg.data.mels_dir} fits its audio")
    if up:
        lowest = min(up)
        notes.append(f"{len(up)} are only {lowest} Hz{' or more' if len(set(up)) > 1 else ''}: resampled UP to {rate} Hz, "
                     f"they hold nothing above {lowest / 2:g} Hz, and the vocoder would learn that empty band "
                     f"up to {rate / 2:g} Hz (use a config for {lowest} Hz, or data recorded at {rate} Hz)")
        return Warned(f"{data_dir}: " + ", ".join(notes))
    return f"{data_dir}: " + ", ".join(notes)


def load_resume_state(path: Path) -> dict[str, Any]:
    """A checkpoint to continue from: ours, or a jik876 g_ file (with its do_ pair when present)."""
    from trainer import checkpoint as ckpt

    state = ckpt.load_file(path)
    return state if ckpt.is_ours(state) else ckpt.load_jik876_pair(path)


def _resolve_resume(req: StartRequest, plan: StartPlan) -> str:
    """The checkpoint file to continue from, and the target step: --target-step, then the
    checkpoint's saved target, then the config's. What the effective config changes of the
    checkpoint's own (the data included, once resolved) is listed for the user to confirm."""
    source = plan.resume
    if source is None:
        return "none (a new run from step 0)"
    if source.path is None:
        return "; ".join([*source.passed_over, f"run {plan.run.name} has no valid checkpoint yet: it starts again from step 0"])
    path, state = source.path, source.state
    if "signature" in state:
        mismatch = signature_mismatch(state["signature"], plan.config.model_signature())
        if mismatch:
            raise UserError(f"{path} does not fit the config: {mismatch}")
    step = int(state.get("step", 0))
    saved = state.get("config") if isinstance(state.get("config"), dict) else None
    saved_target = (saved or {}).get("training", {}).get("target_step")
    target = req.target_step or saved_target or plan.config.training.target_step
    if step >= target:
        raise UserError(f"run {plan.run.name} already reached step {step} (target {target}) in {path}: "
                        f"pass --target-step N with N > {step} to train further")
    plan.config.training.target_step = target
    plan.resume_from = path.resolve()
    detail = "; ".join([*source.passed_over, f"{path} (step {step}, compatible; trains to step {target})"])
    if saved is not None:
        plan.config_changes = config_changes(saved, plan.config)
    if plan.config_changes:
        return Warned(f"{detail}; the config changes what it was trained with: {'; '.join(plan.config_changes)}")
    return detail


def _check_finetune(req: StartRequest, plan: StartPlan) -> str:
    """``training.finetune_from``: the file or folder exists, holds weights, and they fit the config's
    networks (names and shapes). Its path is made absolute, for the trainer and the saved config."""
    t = plan.config.training
    if t.finetune_from is None:
        return "none (networks initialised from training.seed)"
    if plan.resume_from is not None:
        return f"not used: the run continues from its checkpoint, not from {t.finetune_from}"
    import torch

    from trainer import checkpoint as ckpt
    from trainer import pretrained
    from trainer.registry import build_discriminators, build_generator

    path = Path(t.finetune_from).expanduser()
    if not path.exists():
        raise UserError(f"training.finetune_from: {path} does not exist: name one of our checkpoints, "
                        "a jik876 g_ file, or a BigVGAN release folder")
    state = pretrained.load_pretrained(path)
    cfg = plan.config
    parts = pretrained.pretrained_parts(state, cfg.discriminator.kinds, t.finetune_discriminators)
    with torch.device("meta"):
        networks = {"generator": build_generator(cfg), **build_discriminators(cfg)}
    for name in parts:
        problem = ckpt.fit_problem(networks[name].state_dict(), state[name], name)
        if problem:
            raise UserError(f"training.finetune_from: {path} does not fit this config: it {problem}")
    t.finetune_from = str(path.resolve())
    return (f"{path}: {', '.join(parts)}; fresh optimisers and schedule from learning rate "
            f"{t.learning_rate_g:g} (G), {t.learning_rate_d:g} (D)")


def _check_dependencies(req: StartRequest, plan: StartPlan) -> str:
    versions = []
    wanted = DEPENDENCIES + (("tensorboard", "PIL") if plan.config.logging.tensorboard else ())  # the live writer's
    for name in wanted:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise UserError(f"cannot import {name}: {exc}") from None
        versions.append(f"{name} {getattr(module, '__version__', '?')}")
    import torch

    if plan.config.training.device == "cuda" and not torch.cuda.is_available():
        raise UserError("training.device is 'cuda' but torch sees no CUDA device (CPU build or no GPU)")
    accel = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU" if torch.cuda.is_available() else "CPU only"
    return ", ".join(versions) + f" ({accel})"


def _check_disk(req: StartRequest, plan: StartPlan) -> str:
    cfg = plan.config
    g, d = _model_sizes(cfg)
    checkpoint_bytes = 3 * 4 * (g + d)  # weights and AdamW's two moments, fp32
    kept = cfg.schedule.keep_last + 1 + len(cfg.schedule.milestones)
    validations = cfg.training.target_step // cfg.schedule.validate_every
    wav_bytes = 6 * cfg.audio.sampling_rate * 2
    sample_bytes = cfg.schedule.val_samples * (validations * (wav_bytes + 60_000) + wav_bytes)  # + the references
    needed = kept * checkpoint_bytes + sample_bytes
    free = shutil.disk_usage(_nearest_existing(Path(req.logs_dir).resolve())).free
    detail = (f"{format_bytes(free)} free; about {format_bytes(needed)} needed "
              f"({kept} checkpoints of {format_bytes(checkpoint_bytes)}, samples {format_bytes(sample_bytes)})")
    if free < needed:
        raise UserError(detail)
    return detail


def _training_memory(cfg: Config) -> tuple[int, int]:
    """Bytes a training step holds, estimated without computing anything: the weights, gradients
    and AdamW moments (16 bytes a parameter, fp32), and the activations autograd keeps for the
    backward pass of the generator and of every discriminator on a real and a generated batch (the
    D step's graph, the larger of the two). The networks run on fake tensors, which have shapes and
    no storage."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from trainer.registry import build_discriminators, build_generator

    t, a = cfg.training, cfg.audio
    saved = 0

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    with FakeTensorMode(allow_non_fake_inputs=True), torch.autograd.graph.saved_tensors_hooks(keep, lambda x: x):
        generator, discriminators = build_generator(cfg), build_discriminators(cfg).values()
        params = sum(p.numel() for m in (generator, *discriminators) for p in m.parameters())
        audio = generator(torch.empty(t.batch_size, a.num_mels, t.segment_size // a.hop_size))
        for d in discriminators:
            d(torch.empty_like(audio), audio)
    return 16 * params, saved


def _check_memory(req: StartRequest, plan: StartPlan) -> str:
    vm = psutil.virtual_memory()
    detail = f"{format_bytes(vm.available)} available of {format_bytes(vm.total)}"
    if vm.available < 1 << 30:
        raise UserError(detail + ": less than 1 GB")
    cfg = plan.config
    state, activations = _training_memory(cfg)
    needed = state + activations
    estimate = (f"training needs about {format_bytes(needed)} ({format_bytes(state)} weights, gradients and AdamW, "
                f"{format_bytes(activations)} activations for a batch of {cfg.training.batch_size} × "
                f"{cfg.training.segment_size} samples in one process)")
    if _cuda_available(cfg):
        import torch

        gpu = torch.cuda.get_device_properties(0).total_memory
        if needed > gpu:
            return Warned(f"{estimate}: more than the {format_bytes(gpu)} of one GPU; spread the batch over GPUs "
                          "(--nproc-per-node) or lower training.batch_size")
        return f"{estimate}, of {format_bytes(gpu)} on the GPU"
    if needed > vm.available:
        return Warned(f"{estimate}: more than the {format_bytes(vm.available)} available; lower training.batch_size "
                      "or training.segment_size")
    return f"{estimate}; {detail}"


def _check_threads(req: StartRequest, plan: StartPlan) -> str:
    import torch

    cores = len(os.sched_getaffinity(0))
    threads = plan.config.training.threads or torch.get_num_threads()
    detail = f"{threads} torch threads on {cores} usable cores, {plan.config.training.num_workers} loader workers"
    if threads > cores:
        raise UserError(detail + ": more threads than cores slows training down")
    return detail
