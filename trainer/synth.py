"""Inference from any checkpoint (ours, jik876's, or a BigVGAN release), and export to the reference's generator format."""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from trainer import checkpoint as ckpt
from trainer import registry
from trainer.allocator import keep_freed_memory
from trainer.audio import load_audio, load_mel_npy, output_format, write_wav
from trainer.config import Config, config_from_dict, load_config, signature_mismatch
from trainer.errors import UserError
from trainer.mel import input_mel
from trainer.models import Generator
from trainer.rundir import plain_name, write_text_atomic


@dataclass
class GeneratorState:
    weights: dict
    cfg: Config
    step: Optional[int]  # None for a jik876 file whose name carries no step


def load_generator_state(checkpoint: Path, config: Optional[str]) -> GeneratorState:
    """The generator's weights, the config they belong to and the step they were saved at.

    Our checkpoints carry their config (``config``, if given, must describe the same model); a
    jik876 ``g_########`` needs ``config`` or the ``config.json`` beside it; a BigVGAN release (its
    folder, or the ``bigvgan_generator.pt`` in it) carries its own ``config.json``.
    """
    if checkpoint.is_dir() or checkpoint.name == "bigvgan_generator.pt":
        from trainer.bigvgan import load_release

        folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
        raw, weights = load_release(folder)
        release = config_from_dict({**raw, "name": plain_name(folder.resolve().name)}, source=f"{folder / 'config.json'}")
        if config:
            mismatch = signature_mismatch(release.model_signature(), load_config(config).model_signature())
            if mismatch:
                raise UserError(f"--config does not match {checkpoint}: {mismatch}")
        return GeneratorState(weights, load_config(config) if config else release, None)
    state = ckpt.load_file(checkpoint)
    if ckpt.is_ours(state):
        cfg = config_from_dict(state["config"], source=f"{checkpoint} (saved config)")
        if config:
            given = load_config(config)
            mismatch = signature_mismatch(state["signature"], given.model_signature())
            if mismatch:
                raise UserError(f"--config does not match {checkpoint}: {mismatch}")
            cfg = given
        return GeneratorState(state["generator"], cfg, int(state["step"]))
    if "generator" not in state:
        raise UserError(f"{checkpoint} is neither a vocodertui checkpoint nor a jik876 generator file")
    if config is None:
        beside = checkpoint.parent / "config.json"
        if not beside.is_file():
            raise UserError(f"{checkpoint} is a jik876 generator: pass --config (no config.json beside it)")
        config = str(beside)
    step = re.fullmatch(r"g_0*(\d+)", checkpoint.name)
    return GeneratorState(state["generator"], load_config(config), int(step[1]) if step else None)


def build_generator(state_dict: dict, cfg: Config, source: Path) -> Generator:
    generator = registry.build_generator(cfg)
    try:
        generator.load_state_dict(state_dict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{source} does not fit config {cfg.name}: {first[:200]}") from None
    return generator.eval().fold_weight_norm()


def read_input_mel(path: Path, cfg: Config) -> torch.Tensor:
    """[1, num_mels, frames] from a mel ``.npy`` or from any audio file (resampled to the config's rate)."""
    if path.suffix.lower() == ".npy":
        return torch.from_numpy(load_mel_npy(path, cfg.audio.num_mels)).unsqueeze(0)
    loaded = load_audio(path, cfg.audio.sampling_rate)
    if len(loaded.samples) < cfg.audio.n_fft:
        raise UserError(f"{path} is too short: {len(loaded.samples)} samples, need at least {cfg.audio.n_fft}")
    with torch.no_grad():
        return input_mel(cfg.audio)(torch.from_numpy(loaded.samples).unsqueeze(0))


def check_output_file(out: Path, example_name: str) -> None:
    """Refuse an ``--out`` that is a folder or cannot be written, before any slow work; creates nothing."""
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; name a file in it, e.g. {out / example_name}")
    nearest = next(folder for folder in out.parents if folder.exists())
    if not nearest.is_dir():
        raise UserError(f"cannot write --out {out}: {nearest} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=nearest):
            pass
    except OSError as exc:
        raise UserError(f"cannot write --out {out}: {exc.strerror} in {nearest}; choose another folder") from None


INFERENCE_PRECISIONS = ("fp32", "bf16")


def vocode(generator: Generator, mel: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """Waveform [B, 1, frames · hop] from mel [B, num_mels, frames], with a generator from ``build_generator``.

    ``bf16`` runs the generator under bf16 autocast (an option, not the default: about twice as fast
    on CPUs with native bf16, such as avx512_bf16 or AMX, and ~45–50 dB SNR against fp32); the
    waveform comes back in fp32 either way.
    """
    keep_freed_memory()
    with torch.autocast(mel.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        return generator(mel).float()


def synthesize(checkpoint: Path, input_path: Path, out: Path, config: Optional[str] = None,
               precision: str = "fp32") -> float:
    """Write the waveform for ``input_path`` to ``out`` (format from its extension, replacing any
    file there only once the whole new one is written); returns its duration in seconds."""
    if precision not in INFERENCE_PRECISIONS:
        raise UserError(f"precision {precision!r} is not one of {', '.join(INFERENCE_PRECISIONS)}")
    if input_path.is_dir():
        raise UserError(f"--input {input_path} is a folder; name an audio file or a .npy mel in it")
    if not input_path.is_file():
        raise UserError(f"input file not found: {input_path}")
    if out.exists() and out.samefile(input_path):
        raise UserError(f"--out {out} is the --input file; choose another --out so the input is kept")
    check_output_file(out, "out.wav")
    output_format(out)
    loaded = load_generator_state(checkpoint, config)
    cfg = loaded.cfg
    mel = read_input_mel(input_path, cfg)
    generator = build_generator(loaded.weights, cfg, checkpoint)
    with torch.inference_mode():
        audio = vocode(generator, mel, precision)[0, 0].numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_wav(out, audio, cfg.audio.sampling_rate)
    return len(audio) / cfg.audio.sampling_rate


def jik876_config(cfg: Config) -> dict:
    a, g, t = cfg.audio, cfg.generator, cfg.training
    return {
        "resblock": g.resblock, "num_gpus": 0, "batch_size": t.batch_size, "learning_rate": t.learning_rate_g,
        "adam_b1": t.adam_b1, "adam_b2": t.adam_b2, "lr_decay": t.lr_decay, "seed": t.seed,
        "upsample_rates": g.upsample_rates, "upsample_kernel_sizes": g.upsample_kernel_sizes,
        "upsample_initial_channel": g.upsample_initial_channel, "resblock_kernel_sizes": g.resblock_kernel_sizes,
        "resblock_dilation_sizes": g.resblock_dilation_sizes, "segment_size": t.segment_size,
        "num_mels": a.num_mels, "num_freq": a.n_fft // 2 + 1, "n_fft": a.n_fft, "hop_size": a.hop_size,
        "win_size": a.win_size, "sampling_rate": a.sampling_rate, "fmin": a.fmin, "fmax": a.fmax,
        "fmax_for_loss": a.fmax_for_loss, "num_workers": t.num_workers,
        "dist_config": {"dist_backend": "nccl", "dist_url": "tcp://localhost:54321", "world_size": 1},
    }


def export(checkpoint: Path, out: Path, config: Optional[str] = None) -> list[str]:
    """Write ``out`` as a jik876 generator file and ``config.json`` beside it (both or neither); returns warnings."""
    check_output_file(out, "g_00000000")
    if out.exists():
        raise UserError(f"{out} exists; remove it or choose another --out")
    loaded = load_generator_state(checkpoint, config)
    state_dict, cfg = loaded.weights, loaded.cfg
    if cfg.generator.type != "hifigan":
        raise UserError(f"{checkpoint} holds a {cfg.generator.type} generator: the jik876 format holds HiFi-GAN's only")
    build_generator(state_dict, cfg, checkpoint)  # refuses weights that do not fit the config
    config_path = out.parent / "config.json"
    config_text = json.dumps(jik876_config(cfg), indent=4) + "\n"
    config_exists = config_path.exists()
    if config_exists and config_path.read_text(encoding="utf-8") != config_text:
        raise UserError(f"{config_path} exists and describes another model; export into another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt.save_atomic({"generator": {k: v.clone() for k, v in state_dict.items()}}, out)
    if not config_exists:
        write_config_or_undo(config_path, config_text, out)
    warnings = []
    if cfg.audio.num_mels != 80:
        warnings.append(
            f"the reference's Generator is built for 80 mels (its conv_pre is fixed); this model takes "
            f"{cfg.audio.num_mels}, so jik876's own code cannot load it without that one change"
        )
    return warnings


def write_config_or_undo(config_path: Path, config_text: str, generator_file: Path) -> None:
    """Write the exported generator's config.json; if that fails, remove the generator file too."""
    try:
        write_text_atomic(config_path, config_text)
    except OSError as exc:
        generator_file.unlink(missing_ok=True)
        raise UserError(f"cannot write {config_path}: {exc.strerror or exc}; nothing was exported") from None
