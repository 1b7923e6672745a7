"""``vocodertui export --format onnx``: a checkpoint's generator (HiFi-GAN or BigVGAN) as an ONNX model that
``trainer.onnx_vocoder.OnnxVocoder`` runs through onnxruntime without torch.

The graph comes from torch's own exporter (``torch.onnx.export(dynamo=True)``: ``torch.export`` traces the
generator with symbolic batch and frame sizes, onnxscript translates it), with weight norm folded
(``build_generator``) and the batch and frame axes dynamic. The settings a runtime needs (rate, hop, the
mel's parameters) and where the model came from go into the model's metadata (``METADATA_KEYS``).

Before the file takes its name, onnxruntime vocodes a real mel at two lengths and the result is
compared with ``Vocoder`` (torch, fp32); a model off by more than ``PARITY_TOLERANCE`` is refused.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from trainer.config import Config
from trainer.errors import UserError
from trainer.inference import Vocoder, build_generator, load_generator_state
from trainer.onnx_vocoder import INPUT_NAME, METADATA_KEYS, OUTPUT_NAME, OnnxVocoder, is_onnx_file
from trainer.synth import check_output_file, read_input_mel

PARITY_TOLERANCE = 1e-4  # max abs difference between onnxruntime's and torch's waveforms
VERIFY_MAX_FRAMES = 400  # the verification mel is cut to this (about 4.6 s at 22 kHz, hop 256)
VERIFY_SEED = 20240601  # of the synthetic clip used when no --verify-input is given
VERIFY_SECONDS = 2.5


@dataclass(frozen=True)
class OnnxExport:
    path: Path
    opset: int
    generator: str
    max_abs: float  # onnxruntime against torch, over both verification lengths
    lengths: tuple[int, ...]  # frames of the verification mels
    verified_on: str  # what the verification mel was made from


def export_onnx(checkpoint: Path, out: Path, config: Optional[str] = None,
                verify_input: Optional[Path] = None) -> OnnxExport:
    """Write ``out`` as an ONNX model of ``checkpoint``'s generator, verified against torch (see the module).
    The file appears whole or not at all; an existing ``out`` is refused."""
    check_output_file(out, "model.onnx")
    if not is_onnx_file(out):  # synth --backend onnxruntime knows a model by its suffix
        raise UserError(f"--out {out}: an ONNX model's name ends in .onnx, e.g. {out.with_name(out.name + '.onnx')}")
    if out.exists():
        raise UserError(f"{out} exists; remove it or choose another --out")
    if verify_input is not None and not verify_input.is_file():
        raise UserError(f"--verify-input {verify_input} is not a file; name an audio file or a .npy mel")
    state = load_generator_state(checkpoint, config)
    generator = build_generator(state.weights, state.cfg, checkpoint)
    reference = Vocoder(generator, state.cfg, step=state.step, source=checkpoint)
    mel, verified_on = verification_mel(reference, verify_input)
    model = onnx_model(generator, state.cfg)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    metadata = {
        "sampling_rate": state.cfg.audio.sampling_rate, "hop_size": state.cfg.audio.hop_size,
        "num_mels": state.cfg.audio.num_mels, "n_fft": state.cfg.audio.n_fft, "win_size": state.cfg.audio.win_size,
        "fmin": state.cfg.audio.fmin, "fmax": state.cfg.audio.fmax, "generator": state.cfg.generator.type,
        "config_name": state.cfg.name, "step": state.step, "opset": opset, "source_checkpoint": checkpoint.name,
        "vocodertui_version": package_version(),
    }
    for key in METADATA_KEYS:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(metadata[key])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(model.SerializeToString())
        lengths = tuple(sorted({mel.shape[-1], max(1, mel.shape[-1] * 3 // 5)}, reverse=True))
        max_abs = parity(OnnxVocoder(tmp), reference, [mel[:, :n] for n in lengths])
        if not max_abs <= PARITY_TOLERANCE:
            raise UserError(f"onnxruntime's output differs from torch's by {max_abs:.2e} (max abs, over "
                            f"{' and '.join(map(str, lengths))} frames), above {PARITY_TOLERANCE:g}; nothing was written")
        os.replace(tmp, out)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}; nothing was written") from None
    finally:
        tmp.unlink(missing_ok=True)
    return OnnxExport(out, opset, state.cfg.generator.type, max_abs, lengths, verified_on)


def onnx_model(generator: torch.nn.Module, cfg: Config):
    """The generator as an ``onnx.ModelProto``: input ``mel`` [batch, num_mels, frames], output ``audio``
    [batch, 1, frames · hop], batch and frames dynamic, at the exporter's default opset."""
    example = torch.zeros(1, cfg.audio.num_mels, 50)
    dynamic = torch.export.Dim.AUTO  # HiFi-GAN's CPU layout switch is a branch on the size: AUTO lets it guard
    quiet = io.StringIO()
    with torch.no_grad(), warnings.catch_warnings(), _quiet_loggers("torch.onnx", "torch.export", "torch._dynamo"), \
            contextlib.redirect_stdout(quiet):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(generator, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=({0: dynamic, 2: dynamic},), dynamo=True, verbose=False)
    model = program.model_proto
    _name_dynamic_axes(model)
    return model


def _name_dynamic_axes(model) -> None:
    """Call the exporter's symbolic sizes (``s77``, ``256*s53``) ``batch`` and ``frames`` wherever they appear."""
    mel_dims = model.graph.input[0].type.tensor_type.shape.dim
    names = {mel_dims[0].dim_param: "batch", mel_dims[2].dim_param: "frames"}
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in names if n) + r")\b")
    for value in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.dim_param = pattern.sub(lambda m: names[m[1]], dim.dim_param)


def verification_mel(vocoder: Vocoder, verify_input: Optional[Path]) -> tuple[np.ndarray, str]:
    """A real mel [num_mels, frames <= VERIFY_MAX_FRAMES]: of ``verify_input`` (audio or .npy) when given,
    else of a clip of the synthetic demo corpus (trainer/demo_corpus.py) at the vocoder's rate."""
    if verify_input is not None:
        return read_input_mel(verify_input, vocoder)[:, :VERIFY_MAX_FRAMES], str(verify_input)
    from trainer.demo_corpus import SAMPLING_RATE, synthesize_clip

    clip = synthesize_clip(np.random.default_rng(VERIFY_SEED), VERIFY_SECONDS)
    return vocoder.mel(clip, SAMPLING_RATE)[:, :VERIFY_MAX_FRAMES], "a synthetic demo-corpus clip"


def parity(onnx: OnnxVocoder, torch_vocoder: Vocoder, mels: list[np.ndarray]) -> float:
    """The largest absolute difference between the two vocoders' waveforms over ``mels``."""
    return max(float(np.abs(onnx(mel) - torch_vocoder(mel)).max()) for mel in mels)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vocodertui")
    except PackageNotFoundError:
        return "unknown"


@contextlib.contextmanager
def _quiet_loggers(*names: str):
    """The exporter logs each stage and every torchvision op it cannot find at WARNING: errors only, meanwhile."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
