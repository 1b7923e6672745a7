"""Typed configuration: YAML files in ``config/`` (read with ``yaml.safe_load``) or a jik876 ``config.json``.

Every problem is raised as a ``UserError`` whose message is one line naming the file and the key.
This module does not import torch, so the dashboard and the control commands can use it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from trainer.cqt_layout import cqt_problem
from trainer.errors import UserError
from trainer.records import QUALITY_METRICS, RANKINGS
from trainer.rundir import plain_name, run_name_problem

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
# The kinds the engine can build (trainer/registry.py maps each name to its module).
GENERATOR_TYPES = ("hifigan", "bigvgan")
DISCRIMINATOR_KINDS = ("msd", "mpd", "mrd", "cqt")
GAN_LOSSES = ("lsgan", "hinge", "bce")
MEL_LOSSES = ("single", "multi_scale")
STFT_LOSSES = ("none", "multi_resolution")
LR_SCHEDULES = ("exponential_per_epoch", "exponential_per_step", "cosine", "constant")
SNAKES = ("snake", "snakebeta")
DEVICES = ("auto", "cpu", "cuda")
PITCH_MODELS = ("full", "tiny")  # torchcrepe's two


@dataclass
class AudioConfig:
    sampling_rate: int = 22050
    n_fft: int = 1024
    num_mels: int = 80
    hop_size: int = 256
    win_size: int = 1024
    fmin: float = 0.0
    fmax: Optional[float] = 8000.0
    # None means Nyquist, as in the reference, where the loss mel spans the full band.
    fmax_for_loss: Optional[float] = None


@dataclass
class GeneratorConfig:
    type: str = "hifigan"
    resblock: str = "1"
    upsample_rates: list[int] = field(default_factory=lambda: [8, 8, 2, 2])
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 16, 4, 4])
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(default_factory=lambda: [[1, 3, 5]] * 3)
    # BigVGAN only (type: bigvgan); null under HiFi-GAN. Unset, they take BigVGAN v2's values:
    # snakebeta, log-scale alphas, no tanh (a clamp to [-1, 1]) and no bias at the output.
    activation: Optional[str] = None
    snake_logscale: Optional[bool] = None
    use_tanh_at_final: Optional[bool] = None
    use_bias_at_final: Optional[bool] = None


BIGVGAN_ONLY = {"activation": "snakebeta", "snake_logscale": True, "use_tanh_at_final": False, "use_bias_at_final": False}


@dataclass
class DiscriminatorConfig:
    kinds: list[str] = field(default_factory=lambda: ["msd", "mpd"])
    periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    scales: int = 3
    # MRD: [n_fft, hop_size, win_size] per sub-discriminator, BigVGAN's by default.
    mrd_resolutions: list[list[int]] = field(default_factory=lambda: [[1024, 120, 600], [2048, 240, 1200], [512, 50, 240]])
    # CQT (multi-scale sub-band CQT discriminator, BigVGAN v2): one sub-discriminator per entry.
    cqt_hop_lengths: list[int] = field(default_factory=lambda: [512, 256, 256])
    cqt_n_octaves: list[int] = field(default_factory=lambda: [9, 9, 9])
    cqt_bins_per_octaves: list[int] = field(default_factory=lambda: [24, 36, 48])
    cqt_filters: int = 32
    cqt_max_filters: int = 1024
    cqt_dilations: list[int] = field(default_factory=lambda: [1, 2, 4])
    # Divides every discriminator width; 1 is the reference. Only small demo runs change it.
    channel_divisor: int = 1


@dataclass
class TrainingConfig:
    batch_size: int = 16
    segment_size: int = 8192
    learning_rate_g: float = 2e-4
    learning_rate_d: float = 2e-4
    adam_b1: float = 0.8
    adam_b2: float = 0.99
    # ExponentialLR factor applied once per epoch, as the reference does.
    lr_decay: float = 0.999
    lambda_mel: float = 45.0
    lambda_adv: float = 1.0
    lambda_fm: float = 2.0
    lambda_stft: float = 1.0  # weight of loss.stft in the generator loss
    # The learning rate's shape (trainer/schedules.py). exponential_per_epoch multiplies it by
    # lr_decay after each epoch, as the reference; exponential_per_step after each step; cosine
    # falls from the learning rate to min_learning_rate at target_step. A warm-up rises linearly
    # from 0 over warmup_steps first.
    lr_schedule: str = "exponential_per_epoch"
    warmup_steps: int = 0
    min_learning_rate: float = 0.0
    # Before this step the generator learns from the reconstruction losses alone and the
    # discriminators do not train (Parallel WaveGAN's discriminator_train_start_steps).
    discriminator_start_step: int = 0
    # A checkpoint (ours, a jik876 g_ file, or a BigVGAN release folder) whose weights a new run
    # starts from, with fresh optimisers and schedule; the discriminators too when it has them
    # and finetune_discriminators is true.
    finetune_from: Optional[str] = None
    finetune_discriminators: bool = True
    seed: int = 1234
    target_step: int = 500_000
    grad_clip: Optional[float] = None
    precision: str = "fp32"
    device: str = "auto"
    threads: Optional[int] = None
    num_workers: int = 2


@dataclass
class LossConfig:
    """Which losses train the generator and the discriminators (their weights: training.lambda_*)."""

    gan: str = "lsgan"  # lsgan (HiFi-GAN's), hinge, or bce (the non-saturating loss)
    # single: L1 between log-mel spectrograms (the reference's); multi_scale: BigVGAN v2's sum over
    # mel_scales n_mels at mel_windows window lengths (from DAC).
    mel: str = "single"
    mel_scales: list[int] = field(default_factory=lambda: [5, 10, 20, 40, 80, 160, 320])
    mel_windows: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512, 1024, 2048])
    # multi_resolution: spectral convergence + log STFT magnitude (Parallel WaveGAN), the mean
    # over stft_resolutions ([n_fft, hop_size, win_size] each).
    stft: str = "none"
    stft_resolutions: list[list[int]] = field(default_factory=lambda: [[1024, 120, 600], [2048, 240, 1200], [512, 50, 240]])
    stft_sc_weight: float = 1.0
    stft_mag_weight: float = 1.0


@dataclass
class ScheduleConfig:
    log_every: int = 100
    validate_every: int = 1000
    checkpoint_every: int = 5000
    keep_last: int = 3
    val_samples: int = 3
    milestones: list[int] = field(default_factory=list)
    # Objective quality of the validation output (trainer/quality.py): None scores at every
    # validation, N every N steps, 0 never. Checkpoints are also scored when best_by needs it.
    quality_every: Optional[int] = None
    quality_files: int = 8
    quality_metrics: list[str] = field(default_factory=lambda: list(QUALITY_METRICS))
    pitch_model: str = "full"
    # Which checkpoint retention keeps as the best: val_mel_l1 or a quality metric.
    best_by: str = "val_mel_l1"

    def quality_due(self, step: int, validating: bool, checkpointing: bool) -> bool:
        """Whether the validation output at ``step`` is scored (a validation runs for it if so)."""
        if self.quality_every == 0 or not self.quality_metrics:
            return False
        if checkpointing and self.best_by in QUALITY_METRICS:
            return True
        return validating if self.quality_every is None else step % self.quality_every == 0


@dataclass
class DataConfig:
    path: Optional[str] = None
    val_count: int = 150
    # Peak-normalise training audio to 0.95 as the reference does (it skips this when fine-tuning).
    normalize: bool = True
    # Fine-tuning: a folder of {stem}.npy teacher-forced mels from an acoustic model.
    mels_dir: Optional[str] = None
    cache_dir: Optional[str] = None


# What `vocodertui status` and the dashboard warn about (vocodertui/alerts.py), in the order they are shown.
ALERT_KINDS = ("stalled", "nan_rollback", "loss_spike", "d_collapse", "lr_floor", "rss_growth", "disk_low", "val_worsening")


@dataclass
class AlertsConfig:
    """Thresholds of the run's warnings (vocodertui/alerts.py), read by `status` and the dashboard from
    the run's config.yaml; the trainer ignores them, so they may be edited while it runs."""

    ignore: list[str] = field(default_factory=list)  # alert kinds never raised for this run
    # stalled: the trainer lives but wrote nothing for stall_intervals log intervals, and at least stall_min_seconds
    stall_intervals: int = 3
    stall_min_seconds: float = 300.0
    # nan_rollback and loss_spike look at the last recent_logs metrics lines
    recent_logs: int = 100
    # loss_spike: loss_g or loss_mel this many robust deviations (1.4826 MAD) above the median of the
    # recent_logs lines before it
    spike_z: float = 6.0
    # d_collapse: loss_d below collapse_loss_d for collapse_logs lines in a row while loss_adv rises over them
    collapse_loss_d: float = 0.1
    collapse_logs: int = 10
    # lr_floor: the generator's learning rate below this fraction of training.learning_rate_g
    lr_floor_fraction: float = 0.01
    # rss_growth: the trainer's memory rising this fast (Theil-Sen slope, % of its size per hour) over the
    # last rss_window_minutes, not counting the first rss_warmup_minutes after a start or resume
    rss_growth_percent_per_hour: float = 10.0
    rss_window_minutes: float = 60.0
    rss_warmup_minutes: float = 15.0
    # disk_low: disk free below (disk_checkpoints + 1) times the newest checkpoint's size
    disk_checkpoints: int = 2
    # val_worsening: the validation mel-L1 worse than the one before it this many times in a row
    val_worsening: int = 5


@dataclass
class LoggingConfig:
    # Also write TensorBoard event files under logs/<run>/tensorboard/ (trainer/tensorboard_log.py).
    tensorboard: bool = False


@dataclass
class Config:
    name: str = "hifigan"
    audio: AudioConfig = field(default_factory=AudioConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    data: DataConfig = field(default_factory=DataConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_signature(self) -> dict[str, Any]:
        """What a checkpoint must share with a config to be loaded into it."""
        return {
            "audio": dataclasses.asdict(self.audio),
            "generator": dataclasses.asdict(self.generator),
            "discriminator": dataclasses.asdict(self.discriminator),
        }


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "name"}

# jik876 config.json key -> (section, field). Keys mapped to None are accepted and ignored.
JIK876_KEYS: dict[str, Optional[tuple[str, str]]] = {
    "resblock": ("generator", "resblock"),
    "upsample_rates": ("generator", "upsample_rates"),
    "upsample_kernel_sizes": ("generator", "upsample_kernel_sizes"),
    "upsample_initial_channel": ("generator", "upsample_initial_channel"),
    "resblock_kernel_sizes": ("generator", "resblock_kernel_sizes"),
    "resblock_dilation_sizes": ("generator", "resblock_dilation_sizes"),
    "batch_size": ("training", "batch_size"),
    "segment_size": ("training", "segment_size"),
    "adam_b1": ("training", "adam_b1"),
    "adam_b2": ("training", "adam_b2"),
    "lr_decay": ("training", "lr_decay"),
    "seed": ("training", "seed"),
    "num_workers": ("training", "num_workers"),
    "num_mels": ("audio", "num_mels"),
    "n_fft": ("audio", "n_fft"),
    "hop_size": ("audio", "hop_size"),
    "win_size": ("audio", "win_size"),
    "sampling_rate": ("audio", "sampling_rate"),
    "fmin": ("audio", "fmin"),
    "fmax": ("audio", "fmax"),
    "fmax_for_loss": ("audio", "fmax_for_loss"),
    "learning_rate": None,  # both optimisers, handled below
    "num_gpus": None,
    "num_freq": None,
    "dist_config": None,
}


def resolve_config_path(name_or_path: str) -> Path:
    """A path, or the bare name of a file in the project's ``config/`` folder (``demo``, ``hifigan_v1``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / name_or_path, CONFIG_DIR / f"{name_or_path}.yaml"):
        if candidate.is_file():
            return candidate
    raise UserError(f"config file not found: {name_or_path}")


def load_config(name_or_path: str | Path) -> Config:
    path = resolve_config_path(str(name_or_path))
    text = read_config_text(path)
    if path.suffix == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno})") from None
        raw = _from_jik876(raw, path)
        raw.setdefault("name", plain_name(path.parent.name or path.stem))
    else:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "malformed YAML"
            raise UserError(f"{path}: malformed YAML{where}: {problem}") from None
        if raw is None:
            raise UserError(f"{path} is empty: a config names its sections (audio, generator, training, ...); "
                            f"start from {CONFIG_DIR / 'demo.yaml'}")
        if isinstance(raw, dict):
            raw.setdefault("name", plain_name(path.stem))
    return config_from_dict(raw, source=str(path))


def read_config_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}): save it as UTF-8") from None


def config_from_dict(raw: Any, source: str = "config") -> Config:
    """Build and validate a Config from plain data (a parsed file, or a checkpoint's saved config)."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of sections at the top level (audio:, training:, ...), got {_type_name(raw)}")
    cfg = Config()
    for key, value in raw.items():
        if key == "name":
            cfg.name = _check_type(value, str, source, "name")
        elif key in SECTIONS:
            section_cls = typing.get_type_hints(Config)[key]
            setattr(cfg, key, _section_from_dict(section_cls, value, source, key))
        else:
            raise UserError(f"{source}: unknown key {_shown(key)}{_suggest(key, ['name', *SECTIONS])}")
    validate(cfg, source)
    return cfg


def _from_jik876(raw: Any, path: Path) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a JSON object")
    out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in raw.items():
        if key not in JIK876_KEYS:
            raise UserError(f"{path}: unknown key {_shown(key)}{_suggest(key, list(JIK876_KEYS))}")
        target = JIK876_KEYS[key]
        if key == "learning_rate":
            out["training"]["learning_rate_g"] = value
            out["training"]["learning_rate_d"] = value
        elif target is not None:
            section, name = target
            out[section][name] = value
    return out


def _section_from_dict(cls: type, value: Any, source: str, section: str) -> Any:
    if not isinstance(value, dict):
        raise UserError(f"{source}: '{section}' must be a mapping of keys, got {_type_name(value)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, item in value.items():
        if key not in hints:
            raise UserError(f"{source}: unknown key {_shown(f'{section}.{key}')}{_suggest(key, list(hints))}")
        kwargs[key] = _check_type(item, hints[key], source, f"{section}.{key}")
    return cls(**kwargs)


LARGEST_INTEGER = 2**53  # the largest a float holds exactly: steps, rates and sizes stay far below it


def _check_type(value: Any, hint: Any, source: str, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _check_type(value, inner, source, where)
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"{source}: '{where}' must be a list, got {_type_name(value)}")
        return [_check_type(v, args[0], source, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > LARGEST_INTEGER:
        raise UserError(f"{source}: '{where}' is about {'-' if value < 0 else ''}2**{value.bit_length() - 1}, "
                        f"beyond any sensible setting (at most 2**53)")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise UserError(f"{source}: '{where}' must be a finite number, got {value!r}")
            return float(value)
        if isinstance(value, str) and _is_number(value):
            # YAML 1.1 reads 2e-4 (no dot) as text
            raise UserError(f"{source}: '{where}' must be a number, got the string {value!r}: "
                            f"YAML reads it as text; write {_yaml_float(value)}")
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is str:
        # jik876 writes resblock as "1"; accept a bare 1 from YAML as the same thing
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return str(value)
    elif hint is bool:
        if isinstance(value, bool):
            return value
    raise UserError(f"{source}: '{where}' must be {_type_word(hint)}, got {_type_name(value)} {value!r}")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _yaml_float(text: str) -> str:
    """``text`` as YAML 1.1 reads a float: a dot in the mantissa and a signed exponent."""
    mantissa, _, exponent = text.strip().lower().partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    if exponent and exponent[0] not in "+-":
        exponent = "+" + exponent
    return f"{mantissa}e{exponent}" if exponent else mantissa


def _type_word(hint: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def _shown(key: Any) -> str:
    """A key as the user wrote it, quoted, on one line and not too long."""
    text = str(key)
    return repr(text if len(text) <= 60 else text[:60] + "…")


def _suggest(key: Any, valid: list[str]) -> str:
    match = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else f" (valid: {', '.join(valid)})"


def validate(cfg: Config, source: str) -> None:
    def fail(message: str) -> None:
        raise UserError(f"{source}: {message}")

    a, g, d, t, s, loss = cfg.audio, cfg.generator, cfg.discriminator, cfg.training, cfg.schedule, cfg.loss
    problem = run_name_problem(cfg.name)
    if problem:
        fail(f"name {cfg.name[:40]!r} cannot begin a run name: {problem}")
    nyquist = a.sampling_rate / 2
    for name in ("sampling_rate", "n_fft", "num_mels", "hop_size", "win_size"):
        if getattr(a, name) <= 0:
            fail(f"audio.{name} must be positive")
    if a.win_size > a.n_fft:
        fail(f"audio.win_size ({a.win_size}) must not exceed audio.n_fft ({a.n_fft})")
    if a.hop_size > a.n_fft:
        fail(f"audio.hop_size ({a.hop_size}) must not exceed audio.n_fft ({a.n_fft})")
    for name in ("fmax", "fmax_for_loss"):
        value = getattr(a, name)
        if value is not None and value > nyquist:
            fail(f"audio.{name} ({value:g} Hz) is above Nyquist ({nyquist:g} Hz for {a.sampling_rate} Hz audio)")
        if value is not None and value <= a.fmin:
            fail(f"audio.{name} ({value:g} Hz) must be above audio.fmin ({a.fmin:g} Hz)")
    if a.fmin < 0:
        fail("audio.fmin must not be negative")

    if g.type not in GENERATOR_TYPES:
        fail(f"generator.type must be one of {', '.join(GENERATOR_TYPES)}, got {g.type!r}")
    unknown = [k for k in d.kinds if k not in DISCRIMINATOR_KINDS]
    if unknown or not d.kinds or len(set(d.kinds)) != len(d.kinds):
        fail(f"discriminator.kinds must list some of {', '.join(DISCRIMINATOR_KINDS)}, each once, got {d.kinds}")
    if g.resblock not in ("1", "2"):
        fail(f"generator.resblock must be '1' or '2', got {g.resblock!r}")
    if not g.upsample_rates:
        fail("generator.upsample_rates must not be empty")
    if len(g.upsample_rates) != len(g.upsample_kernel_sizes):
        fail("generator.upsample_rates and generator.upsample_kernel_sizes must have the same length")
    if math.prod(g.upsample_rates) != a.hop_size:
        fail(
            f"product of generator.upsample_rates ({'x'.join(map(str, g.upsample_rates))} = "
            f"{math.prod(g.upsample_rates)}) must equal audio.hop_size ({a.hop_size})"
        )
    for u, k in zip(g.upsample_rates, g.upsample_kernel_sizes):
        if k < u or (k - u) % 2:
            fail(f"generator.upsample_kernel_sizes: kernel {k} for rate {u} must be >= the rate and differ by an even number")
    if len(g.resblock_kernel_sizes) != len(g.resblock_dilation_sizes) or not g.resblock_kernel_sizes:
        fail("generator.resblock_kernel_sizes and generator.resblock_dilation_sizes must have the same, non-zero length")
    expected_dilations = 3 if g.resblock == "1" else 2
    for dil in g.resblock_dilation_sizes:
        if len(dil) != expected_dilations:
            fail(f"generator.resblock_dilation_sizes: resblock {g.resblock} takes {expected_dilations} dilations per kernel, got {dil}")
    if g.upsample_initial_channel % (2 ** len(g.upsample_rates)):
        fail("generator.upsample_initial_channel must be divisible by 2 ** len(generator.upsample_rates)")
    if g.type == "bigvgan":
        for key, default in BIGVGAN_ONLY.items():
            if getattr(g, key) is None:
                setattr(g, key, default)
        if g.activation not in SNAKES:
            fail(f"generator.activation must be one of {', '.join(SNAKES)}, got {g.activation!r}")
    else:
        given = [key for key in BIGVGAN_ONLY if getattr(g, key) is not None]
        if given:
            fail(f"generator.{given[0]} is a BigVGAN option, but generator.type is {g.type}: "
                 f"remove it, or set generator.type: bigvgan")

    if d.channel_divisor not in (1, 2, 4, 8):
        fail(f"discriminator.channel_divisor must be 1, 2, 4 or 8, got {d.channel_divisor}")
    if not d.periods or any(p < 2 for p in d.periods):
        fail("discriminator.periods must be a non-empty list of periods >= 2")
    if d.scales < 1:
        fail("discriminator.scales must be at least 1")
    if "mrd" in d.kinds:
        _check_resolutions(d.mrd_resolutions, "discriminator.mrd_resolutions", fail, t.segment_size)
    if "cqt" in d.kinds:
        lengths = {len(d.cqt_hop_lengths), len(d.cqt_n_octaves), len(d.cqt_bins_per_octaves)}
        if len(lengths) != 1 or not d.cqt_hop_lengths:
            fail("discriminator.cqt_hop_lengths, cqt_n_octaves and cqt_bins_per_octaves must have the same, non-zero length")
        for scale in zip(d.cqt_hop_lengths, d.cqt_n_octaves, d.cqt_bins_per_octaves):
            problem = cqt_problem(a.sampling_rate, *scale)
            if problem:
                fail(f"discriminator.cqt_*: the scale of hop {scale[0]}, {scale[1]} octaves, {scale[2]} bins per octave: {problem}")
        if d.cqt_filters < d.channel_divisor or d.cqt_max_filters < d.cqt_filters or not d.cqt_dilations:
            fail("discriminator.cqt_filters must be at least channel_divisor and at most cqt_max_filters, with some cqt_dilations")

    if loss.gan not in GAN_LOSSES:
        fail(f"loss.gan must be one of {', '.join(GAN_LOSSES)}, got {loss.gan!r}")
    if loss.mel not in MEL_LOSSES:
        fail(f"loss.mel must be one of {', '.join(MEL_LOSSES)}, got {loss.mel!r}")
    if loss.stft not in STFT_LOSSES:
        fail(f"loss.stft must be one of {', '.join(STFT_LOSSES)}, got {loss.stft!r}")
    if loss.mel == "multi_scale":
        if len(loss.mel_scales) != len(loss.mel_windows) or not loss.mel_scales:
            fail("loss.mel_scales and loss.mel_windows must have the same, non-zero length")
        for n_mels, window in zip(loss.mel_scales, loss.mel_windows):
            if n_mels < 1 or window < 4 or n_mels > window // 2 + 1:
                fail(f"loss.mel_scales/mel_windows: {n_mels} mel bands need a window of at least {2 * n_mels - 2} "
                     f"samples, got {window}")
    if loss.stft == "multi_resolution":
        _check_resolutions(loss.stft_resolutions, "loss.stft_resolutions", fail, t.segment_size)
        if min(loss.stft_sc_weight, loss.stft_mag_weight) < 0:
            fail("loss.stft_sc_weight and loss.stft_mag_weight must not be negative")

    if t.segment_size <= 0 or t.segment_size % a.hop_size:
        fail(f"training.segment_size ({t.segment_size}) must be a positive multiple of audio.hop_size ({a.hop_size})")
    if t.batch_size < 1:
        fail("training.batch_size must be at least 1")
    if t.precision not in PRECISIONS:
        fail(f"training.precision must be one of {', '.join(PRECISIONS)}, got {t.precision!r}")
    if t.device not in DEVICES:
        fail(f"training.device must be one of {', '.join(DEVICES)}, got {t.device!r}")
    if t.threads is not None and t.threads < 1:
        fail("training.threads must be at least 1")
    if t.num_workers < 0:
        fail("training.num_workers must not be negative")
    if t.target_step < 1:
        fail("training.target_step must be at least 1")
    if t.grad_clip is not None and t.grad_clip <= 0:
        fail("training.grad_clip must be positive")
    for name in ("learning_rate_g", "learning_rate_d"):
        if getattr(t, name) <= 0:
            fail(f"training.{name} must be positive")
    if t.lr_schedule not in LR_SCHEDULES:
        fail(f"training.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {t.lr_schedule!r}")
    if not 0 < t.lr_decay <= 1:
        fail(f"training.lr_decay must be in (0, 1], got {t.lr_decay}")
    if t.warmup_steps < 0 or t.discriminator_start_step < 0:
        fail("training.warmup_steps and training.discriminator_start_step must not be negative")
    if not 0 <= t.min_learning_rate < min(t.learning_rate_g, t.learning_rate_d):
        fail("training.min_learning_rate must be at least 0 and below the learning rates")
    if min(t.lambda_mel, t.lambda_adv, t.lambda_fm, t.lambda_stft) < 0:
        fail("training.lambda_* must not be negative")
    for name in ("log_every", "validate_every", "checkpoint_every", "keep_last"):
        if getattr(s, name) < 1:
            fail(f"schedule.{name} must be at least 1")
    if s.val_samples < 0:
        fail("schedule.val_samples must not be negative")
    if s.quality_every is not None and s.quality_every < 0:
        fail("schedule.quality_every must be 0 (never), a number of steps, or null (every validation)")
    if s.quality_files < 1:
        fail("schedule.quality_files must be at least 1")
    for name in s.quality_metrics:
        if name not in QUALITY_METRICS:
            fail(f"schedule.quality_metrics: unknown metric '{name}'{_suggest(name, list(QUALITY_METRICS))}")
    if s.pitch_model not in PITCH_MODELS:
        fail(f"schedule.pitch_model must be one of {', '.join(PITCH_MODELS)}, got {s.pitch_model!r}")
    if s.best_by not in RANKINGS:
        fail(f"schedule.best_by: unknown metric '{s.best_by}'{_suggest(s.best_by, list(RANKINGS))}")
    if s.best_by in QUALITY_METRICS and (s.quality_every == 0 or s.best_by not in s.quality_metrics):
        fail(f"schedule.best_by is {s.best_by}, which is not scored: add it to schedule.quality_metrics "
             "and leave schedule.quality_every above 0")
    if cfg.data.val_count < 1:
        fail("data.val_count must be at least 1")
    _check_alerts(cfg.alerts, fail)


def _check_alerts(al: AlertsConfig, fail) -> None:
    for kind in al.ignore:
        if kind not in ALERT_KINDS:
            fail(f"alerts.ignore: unknown alert '{kind}'{_suggest(kind, list(ALERT_KINDS))}")
    for name in ("stall_intervals", "recent_logs", "collapse_logs", "val_worsening"):
        if getattr(al, name) < 1:
            fail(f"alerts.{name} must be at least 1")
    for name in ("stall_min_seconds", "spike_z", "collapse_loss_d", "rss_growth_percent_per_hour", "rss_window_minutes"):
        if getattr(al, name) <= 0:
            fail(f"alerts.{name} must be positive")
    if al.rss_warmup_minutes < 0 or al.disk_checkpoints < 0:
        fail("alerts.rss_warmup_minutes and alerts.disk_checkpoints must not be negative")
    if not 0 < al.lr_floor_fraction < 1:
        fail(f"alerts.lr_floor_fraction must be between 0 and 1, got {al.lr_floor_fraction}")


def _check_resolutions(resolutions: list[list[int]], where: str, fail, segment_size: int) -> None:
    """Each [n_fft, hop_size, win_size] is an STFT that a training segment can be padded and framed for."""
    if not resolutions:
        fail(f"{where} must list at least one [n_fft, hop_size, win_size]")
    for r in resolutions:
        if len(r) != 3:
            fail(f"{where}: each resolution is [n_fft, hop_size, win_size], got {r}")
        n_fft, hop, win = r
        if min(r) < 1:
            fail(f"{where}: {r} must be positive")
        if win > n_fft:
            fail(f"{where}: {r} has a window of {win} samples, longer than its n_fft {n_fft}: make n_fft >= win_size")
        if hop > win:
            fail(f"{where}: {r} hops {hop} samples, more than its window {win}: make hop_size <= win_size")
        if n_fft // 2 >= segment_size:
            fail(f"{where}: {r} needs segments longer than {n_fft // 2} samples to pad them, "
                 f"training.segment_size is {segment_size}")


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)


# What a resume may change of the config its checkpoint was trained with, without asking.
FREE_ON_RESUME = ("name", "schedule", "alerts", "logging", "training.target_step")


def config_changes(saved: dict[str, Any], current: Config) -> list[str]:
    """Each key ``current`` changes of a checkpoint's saved config, as 'key: old → new', except
    those in FREE_ON_RESUME. A key the saved config lacks counts as its default."""
    defaults = Config().to_dict()
    changes = []
    for section, values in current.to_dict().items():
        if section in FREE_ON_RESUME or not isinstance(values, dict):
            continue
        old_section = saved.get(section) if isinstance(saved.get(section), dict) else {}
        for key, value in values.items():
            if f"{section}.{key}" in FREE_ON_RESUME:
                continue
            old = old_section.get(key, defaults[section][key])
            if old != value:
                changes.append(f"{section}.{key}: {old!r} → {value!r}")
    return changes


def signature_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> Optional[str]:
    """The first difference between two model signatures, as 'key: saved vs current', or None.

    A key the saved signature lacks (written before the key existed) counts as its default."""
    defaults = Config().model_signature()
    for section in current:
        for key, value in current[section].items():
            old = saved.get(section, {}).get(key, defaults[section][key])
            if old != value:
                return f"{section}.{key} is {old!r} in the checkpoint but {value!r} in the config"
    return None
