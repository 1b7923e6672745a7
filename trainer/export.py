"""``vocodertui export --format jik876``: a checkpoint's generator as jik876/hifi-gan's ``g_########`` file
and the ``config.json`` beside it (``--format onnx`` is ``trainer.onnx_export``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from trainer import checkpoint as ckpt
from trainer.config import Config
from trainer.errors import UserError
from trainer.inference import build_generator, load_generator_state
from trainer.rundir import write_text_atomic
from trainer.synth import check_output_file


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
        raise UserError(f"{checkpoint} holds a {cfg.generator.type} generator: the jik876 format holds HiFi-GAN's only "
                        f"(export --format onnx takes either)")
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
