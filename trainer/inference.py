"""The one inference path: ``Vocoder`` turns mels (or audio) into waveforms with any checkpoint that
``load_generator_state`` reads (ours, jik876's ``g_########``, a BigVGAN release folder).

``synth`` (one file or a thousand) and ``eval`` vocode through it, and so can Python code::

    from vocodertui import Vocoder

    v = Vocoder.from_checkpoint("logs/run/checkpoints/ckpt_00100000.pt")
    audio = v(mel)                      # [num_mels, frames] -> [frames * v.hop_size], float32
    audio = v.from_audio(wav, 44100)    # resampled to v.sampling_rate, its mel, vocoded

Batches of different lengths are padded and run at once with each item's padded tail neutralised
before every layer that looks past it (zeroed before a convolution, the last valid value repeated
before BigVGAN's replicate-padded filters), so each comes back as it would alone (``_tails_neutralised``).
"""

from __future__ import annotations

import math
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from trainer import checkpoint as ckpt
from trainer import registry
from trainer.alias_free import LowPassFilter1d, UpSample1d
from trainer.allocator import keep_freed_memory
from trainer.config import Config, config_from_dict, load_config, signature_mismatch
from trainer.errors import UserError
from trainer.inference_input import (  # noqa: F401  (BadInput and the precision names are part of this API)
    INFERENCE_PRECISIONS, BadInput, check_mel_shape, check_precision, checked_audio, checked_mel,
    expected_mel, non_finite, resampled_for_mel,
)
from trainer.mel import input_mel
from trainer.models import Generator
from trainer.rundir import plain_name

# what ``choose_precision`` times: at most this much of the first batch, each precision twice after a warm-up
AUTO_TIMING_SECONDS = 2.0
AUTO_TIMING_RUNS = 2

MelLike = Union[np.ndarray, torch.Tensor]


@dataclass
class GeneratorState:
    weights: dict
    cfg: Config
    step: Optional[int]  # None for a jik876 file whose name carries no step, and for a BigVGAN release


def load_generator_state(checkpoint: Path, config: Optional[str]) -> GeneratorState:
    """The generator's weights, the config they belong to and the step they were saved at.

    Our checkpoints carry their config (``config``, if given, must describe the same model); a
    jik876 ``g_########`` needs ``config`` or the ``config.json`` beside it; a BigVGAN release (its
    folder, or the ``bigvgan_generator.pt`` in it) carries its own ``config.json``.
    """
    if checkpoint.is_dir() or checkpoint.name == "bigvgan_generator.pt":
        from trainer.bigvgan import RELEASE_CONFIG, RELEASE_WEIGHTS, load_release

        if checkpoint.is_dir() and not any((checkpoint / name).exists() for name in (RELEASE_CONFIG, RELEASE_WEIGHTS)):
            raise UserError(f"checkpoint {checkpoint} is a folder; pass a checkpoint file, e.g. a ckpt_########.pt in "
                            f"it, or a BigVGAN release folder ({RELEASE_CONFIG} and {RELEASE_WEIGHTS})")

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
    """The config's generator with ``state_dict`` loaded, in eval mode, weight norm folded."""
    generator = registry.build_generator(cfg)
    try:
        generator.load_state_dict(state_dict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{source} does not fit config {cfg.name}: {first[:200]}") from None
    return generator.eval().fold_weight_norm()


def vocode(generator: nn.Module, mel: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """Waveform [B, 1, frames · hop] from mel [B, num_mels, frames], with a generator from ``build_generator``.

    ``bf16`` runs the generator under bf16 autocast (an option, not the default: about twice as fast
    on CPUs with native bf16, such as avx512_bf16 or AMX, and ~45–50 dB SNR against fp32); the
    waveform comes back in fp32 either way.
    """
    keep_freed_memory()
    with torch.autocast(mel.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        return generator(mel).float()


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``precision="auto"`` measured and picked (times in seconds).

    ``run_s``: the best of ``AUTO_TIMING_RUNS`` runs on ``audio_s`` seconds of audio, per precision;
    ``shape_s``: what the first run on that shape cost on top (on a CPU, oneDNN preparing its kernels,
    which grows with the length); ``predicted_s``: both, for the job it was asked about (``shapes``
    batch shapes, ``job_audio_s`` seconds of padded audio). ``precision``: the one predicted to finish first.
    """

    precision: str
    run_s: dict[str, float]
    shape_s: dict[str, float]
    predicted_s: dict[str, float]
    audio_s: float
    shapes: int
    job_audio_s: float

    def line(self) -> str:
        def each(times: dict[str, float], digits: int, sign: str = "") -> str:
            return ", ".join(f"{p} {sign}{times[p]:.{digits}f} s" for p in INFERENCE_PRECISIONS)

        shapes = f" in {self.shapes} batch shape{'s' if self.shapes != 1 else ''}" if self.shapes else ""
        return (f"precision auto: {self.precision} (predicted for {self.job_audio_s:.0f} s of audio{shapes}: "
                f"{each(self.predicted_s, 1)}; timed on {self.audio_s:.1f} s: {each(self.run_s, 3)}, "
                f"its first run {each(self.shape_s, 2, '+')})")


BUCKET_BITS = 4  # a CPU batch's length is padded up to a number with at most this many significant bits


def bucketed(frames: int) -> int:
    """``frames`` rounded up to at most ``BUCKET_BITS`` significant bits (at most 1/8 more for 4 bits):
    ..., 16, 18, 20, ..., 30, 32, 36, 40, ... 480, 512, 576, 640, ..."""
    drop = max(0, frames.bit_length() - BUCKET_BITS)
    return -(-frames >> drop) << drop


class _Unmaskable(Exception):
    """A layer's length is not a whole multiple of the mel's: the batch runs one mel at a time instead."""


@contextmanager
def _tails_neutralised(generator: nn.Module, frames: Sequence[int], length: int) -> Iterator[None]:
    """While active, every layer of ``generator`` that pads its input sees, in each batch item, what it
    would see if that item ran alone: the item's padded tail is zeroed before a zero-padded convolution
    (``nn.Conv1d``, ``nn.ConvTranspose1d``) and filled with the item's last valid value before a
    replicate-padded filter (BigVGAN's ``UpSample1d``, ``LowPassFilter1d``). Everything else the
    generators do is pointwise, so the first ``frames[i] · hop`` samples of item ``i`` equal its
    one-by-one output. ``length``: the frames of the padded batch. Only tails are written, in place
    (they hold nothing anyone reads).
    """

    def valid(x: torch.Tensor) -> list[int]:
        if x.dim() != 3 or x.shape[0] != len(frames) or x.shape[-1] % length:
            raise _Unmaskable
        scale = x.shape[-1] // length
        return [n * scale for n in frames]

    def zero(module: nn.Module, args: tuple) -> None:
        x = args[0]
        for i, n in enumerate(valid(x)):
            if n < x.shape[-1]:
                x[i, :, n:] = 0

    def replicate(module: nn.Module, args: tuple) -> None:
        x = args[0]
        for i, n in enumerate(valid(x)):
            if n < x.shape[-1]:
                x[i, :, n:] = x[i, :, n - 1 : n]

    handles = []
    try:
        for module in generator.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                if module.padding_mode != "zeros":
                    raise _Unmaskable
                handles.append(module.register_forward_pre_hook(zero))
            elif isinstance(module, (UpSample1d, LowPassFilter1d)):
                handles.append(module.register_forward_pre_hook(replicate))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def _true_fp32(device: torch.device) -> Iterator[None]:
    """cuDNN convolutions in fp32, not TF32 (torch's default on CUDA, ~1e-4 off and not the same in a batch
    as alone); nothing to change on a CPU."""
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                     allow_tf32=False):
        yield


class Vocoder:
    """A generator ready to vocode: mel spectrograms in, float32 waveforms in [-1, 1] out.

    Make one with ``Vocoder.from_checkpoint(path)``. Calling it takes

    - a mel ``[num_mels, frames]`` and returns the waveform ``[frames * hop_size]``;
    - a batch ``[batch, num_mels, frames]`` and returns ``[batch, frames * hop_size]``;
    - a list of mels ``[num_mels, frames_i]`` of any lengths, and returns a list of waveforms
      ``[frames_i * hop_size]``: they are padded to the longest and run as one batch, each trimmed back,
      equal to vocoding them one by one (within float rounding, ~1e-7).

    Mels may be numpy arrays or torch tensors, of any float or integer dtype (converted to float32).
    A mel of the wrong shape, bin count or dtype, or holding NaN, raises ``BadInput`` (a ``ValueError``
    and a ``UserError``) with a one-line message. Inference runs under ``torch.inference_mode``.

    Attributes: ``sampling_rate``, ``hop_size``, ``num_mels``, ``config`` (the checkpoint's ``Config``),
    ``step`` (the training step it was saved at, or None), ``precision`` (``fp32`` or ``bf16``; ``auto``
    until the first call resolves it), ``precision_choice`` (what ``auto`` measured), ``device``.
    """

    def __init__(self, generator: nn.Module, config: Config, precision: str = "fp32", device: str = "cpu",
                 step: Optional[int] = None, source: Optional[Path] = None):
        """Wrap a generator from ``build_generator`` (eval mode, weight norm folded) and its config."""
        self.precision = check_precision(precision)
        self.device = torch.device(device)
        self.generator = generator.to(self.device)
        self.config = config
        self.step = step
        self.source = source
        self.precision_choice: Optional[PrecisionChoice] = None
        self._mel = input_mel(config.audio)

    @classmethod
    def from_checkpoint(cls, path: Union[str, Path], config: Optional[str] = None, precision: str = "fp32",
                        device: str = "cpu") -> "Vocoder":
        """Load the generator of ``path``: our ``ckpt_########.pt``, a jik876 ``g_########`` (its
        ``config.json`` from beside it unless ``config`` names one), or a BigVGAN release folder.

        ``config`` (a YAML file, a jik876 ``config.json`` or a name from ``config/``) must describe the
        checkpoint's model. ``precision``: ``fp32`` (default), ``bf16`` (bf16 autocast: faster on CPUs
        with avx512_bf16 or AMX and on GPUs, ~45–50 dB SNR against fp32) or ``auto`` (time both on the
        first call and keep the faster). ``device``: ``cpu``, ``cuda``, ``cuda:1``… (on CUDA, fp32 runs
        cuDNN without TF32, so that it is fp32: within 1e-7 of the CPU and of itself in a batch).
        Raises ``UserError`` (one line) for a checkpoint that is missing, corrupt or does not fit.
        """
        check_precision(precision)
        path = Path(path)
        return cls.from_state(load_generator_state(path, config), path, precision, device)

    @classmethod
    def from_state(cls, state: GeneratorState, source: Path, precision: str = "fp32", device: str = "cpu") -> "Vocoder":
        """A vocoder from what ``load_generator_state`` read from ``source``."""
        return cls(build_generator(state.weights, state.cfg, source), state.cfg, precision, device, state.step, source)

    @property
    def sampling_rate(self) -> int:
        """The waveform's sampling rate in Hz (and the rate ``from_audio`` resamples to)."""
        return self.config.audio.sampling_rate

    @property
    def hop_size(self) -> int:
        """Waveform samples per mel frame."""
        return self.config.audio.hop_size

    @property
    def num_mels(self) -> int:
        """Mel bins the generator takes."""
        return self.config.audio.num_mels

    @property
    def n_fft(self) -> int:
        """The mel's FFT size: the fewest samples that make a frame."""
        return self.config.audio.n_fft

    def padded_frames(self, frames: int) -> int:
        """The length a batch of ``frames`` frames runs at (see ``_run``)."""
        return bucketed(frames) if self.device.type == "cpu" else frames

    def __repr__(self) -> str:
        return (f"Vocoder({self.config.name}, {self.config.generator.type}, {self.sampling_rate} Hz, hop {self.hop_size}, "
                f"{self.num_mels} mels, {self.precision}, {self.device})")

    def __call__(self, mel: Union[MelLike, Sequence[MelLike]]) -> Union[np.ndarray, list[np.ndarray]]:
        """Vocode a mel [num_mels, frames], a batch [batch, num_mels, frames] or a list of mels (see the class)."""
        if isinstance(mel, (list, tuple)):
            return self.vocode_list(mel)
        tensor = self._checked(mel, "mel", batched=True)
        if tensor.dim() == 2:
            return self._run(tensor[None])[0]
        return self._run(tensor)

    def vocode_list(self, mels: Sequence[MelLike]) -> list[np.ndarray]:
        """Waveforms [frames_i · hop] of mels [num_mels, frames_i] of any lengths, run as one padded batch."""
        if not mels:
            return []
        tensors = [self._checked(m, f"mel {i}" if len(mels) > 1 else "mel", batched=False) for i, m in enumerate(mels)]
        frames = [t.shape[-1] for t in tensors]
        longest = max(frames)
        batch = tensors[0].new_zeros((len(tensors), self.num_mels, longest))
        for i, t in enumerate(tensors):
            batch[i, :, : t.shape[-1]] = t
        if min(frames) == longest:
            return list(self._run(batch))
        try:
            audio = self._run(batch, frames)
        except _Unmaskable:  # a generator whose lengths do not scale with the mel's: one at a time
            return [self._run(t[None])[0] for t in tensors]
        hop = audio.shape[-1] // longest
        return [audio[i, : n * hop] for i, n in enumerate(frames)]

    def mel(self, wav: MelLike, sr: int) -> np.ndarray:
        """The mel [num_mels, len // hop_size] the generator takes for mono samples ``wav`` [samples] in
        [-1, 1] at ``sr`` Hz (resampled to ``sampling_rate`` first, as ``synth`` reads audio files)."""
        return self._mel_of(wav, sr).cpu().numpy()

    def from_audio(self, wav: MelLike, sr: int) -> np.ndarray:
        """Resynthesise mono samples ``wav`` [samples] at ``sr`` Hz: its mel (``mel``), vocoded; the
        waveform is at ``sampling_rate``, ``len // hop_size * hop_size`` samples long after resampling."""
        return self._run(self._mel_of(wav, sr)[None])[0]

    def choose_precision(self, mels: Union[MelLike, Sequence[MelLike]], shapes: Sequence[int] = (),
                         audio_seconds: Optional[float] = None) -> PrecisionChoice:
        """Time fp32 and bf16 on ``mels`` (on a CPU at most ``AUTO_TIMING_SECONDS`` of them) and keep, as
        ``precision``, the one that would sooner vocode ``audio_seconds`` of (padded) audio (default: as
        much as ``mels``) in batches of the lengths ``shapes`` (frames, one per distinct batch shape;
        default: none new, the speed of a run once its shape has been seen). What ``precision="auto"``
        does on the first call, and ``synth --precision auto`` on its first batch, for its whole run.

        Each precision's speed is the best of ``AUTO_TIMING_RUNS`` runs after one on a shape it had not
        seen, whose extra time, per frame of length, prices each new shape: on a CPU, oneDNN prepares
        kernels for every input shape, in bf16 for ~3 ms per frame on the demo model (20 times the run
        itself), which can make bf16 the slower choice for a job although each run is faster.
        """
        if isinstance(mels, (list, tuple)):
            tensors = [self._checked(m, "mel", batched=False) for m in mels]
        else:
            tensor = self._checked(mels, "mel", batched=True)
            tensors = list(tensor) if tensor.dim() == 3 else [tensor]
        given_audio = sum(t.shape[-1] for t in tensors) * self.hop_size / self.sampling_rate
        # on a CPU at most AUTO_TIMING_SECONDS of it (each run costs about what it times); a GPU runs it whole,
        # since a short slice would time its kernel launches rather than its arithmetic
        seconds = AUTO_TIMING_SECONDS if self.device.type == "cpu" else math.inf
        budget = max(1, int(min(seconds * self.sampling_rate / self.hop_size, 2**62)))
        tensors = tensors[: max(1, budget // max(1, tensors[0].shape[-1]))]
        frames = min(max(t.shape[-1] for t in tensors), max(1, budget // len(tensors)))
        batch = torch.stack([torch.nn.functional.pad(t[:, :frames], (0, frames - t[:, :frames].shape[-1]))
                             for t in tensors]).to(self.device)
        other = batch[..., : frames // 2] if frames > 1 else torch.cat([batch, batch], dim=-1)
        cold, best = {}, {p: math.inf for p in INFERENCE_PRECISIONS}
        with torch.inference_mode():
            for precision in INFERENCE_PRECISIONS:  # first use in this process: allocations, thread pools
                self._timed(other, precision)
            for precision in INFERENCE_PRECISIONS:  # a shape not seen before
                cold[precision] = self._timed(batch, precision)
            for _ in range(AUTO_TIMING_RUNS):
                for precision in INFERENCE_PRECISIONS:
                    best[precision] = min(best[precision], self._timed(batch, precision))
        timed_audio = batch.shape[0] * frames * self.hop_size / self.sampling_rate
        job_audio = given_audio if audio_seconds is None else audio_seconds
        shape_s = {p: max(0.0, cold[p] - best[p]) for p in INFERENCE_PRECISIONS}
        predicted = {p: shape_s[p] * sum(shapes) / frames + best[p] * job_audio / timed_audio
                     for p in INFERENCE_PRECISIONS}
        self.precision = min(INFERENCE_PRECISIONS, key=lambda p: predicted[p])
        self.precision_choice = PrecisionChoice(self.precision, best, shape_s, predicted, timed_audio,
                                                len(shapes), job_audio)
        return self.precision_choice

    def _timed(self, batch: torch.Tensor, precision: str) -> float:
        began = time.perf_counter()
        with _true_fp32(self.device):
            vocode(self.generator, batch, precision).cpu()  # .cpu() waits for a GPU to finish
        return time.perf_counter() - began

    def _run(self, batch: torch.Tensor, frames: Optional[Sequence[int]] = None) -> np.ndarray:
        """[B, T · hop] float32 from a checked batch [B, num_mels, T]; ``frames``: each item's own length.

        On a CPU the batch is padded up to ``bucketed(T)`` frames: oneDNN prepares its kernels anew for
        every input shape it has not seen, which on the demo model costs 1.4 times a 400-frame run in
        fp32 and 18 times in bf16, so a few dozen lengths in all keep it from paying that at every call.
        """
        if self.precision == "auto":
            self.choose_precision(batch)
        length = batch.shape[-1]
        padded = self.padded_frames(length)
        with torch.inference_mode(), _true_fp32(self.device):
            batch = batch.to(self.device)
            if padded > length:
                batch = torch.nn.functional.pad(batch, (0, padded - length))
                frames = frames or [length] * batch.shape[0]
            if frames is None:
                return vocode(self.generator, batch, self.precision)[:, 0].cpu().numpy()
            try:
                with _tails_neutralised(self.generator, frames, padded):
                    audio = vocode(self.generator, batch, self.precision)[:, 0]
            except _Unmaskable:
                if padded == length:
                    raise
                return self._run_unpadded(batch[..., :length], frames)
            return audio[:, : length * (audio.shape[-1] // padded)].cpu().numpy()

    def _run_unpadded(self, batch: torch.Tensor, frames: Sequence[int]) -> np.ndarray:
        """For a generator ``_tails_neutralised`` cannot follow: the batch as it is, or one mel at a time."""
        if min(frames) == batch.shape[-1]:
            return vocode(self.generator, batch, self.precision)[:, 0].cpu().numpy()
        raise _Unmaskable

    def _checked(self, mel: MelLike, what: str, batched: bool) -> torch.Tensor:
        """``mel`` as a float32 tensor on the device [num_mels, frames] (or [B, num_mels, frames] when
        ``batched``), or BadInput naming what is wrong with it (``trainer.inference_input``)."""
        if not isinstance(mel, torch.Tensor):
            return torch.from_numpy(checked_mel(mel, self.num_mels, what, batched)).to(self.device)
        tensor = mel.detach()
        if tensor.is_complex() or tensor.dtype == torch.bool:
            raise BadInput(f"{what} ({tensor.dtype}) holds {'complex numbers' if tensor.is_complex() else 'booleans'}; "
                           f"{expected_mel(self.num_mels, batched)}")
        check_mel_shape(tuple(tensor.shape), self.num_mels, what, batched)
        tensor = tensor.to(self.device, torch.float32)
        if not torch.isfinite(tensor).all():
            raise non_finite(what, tuple(mel.shape))
        return tensor

    def _mel_of(self, wav: MelLike, sr: int) -> torch.Tensor:
        samples = checked_audio(wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav), sr)
        samples = resampled_for_mel(samples, sr, self.sampling_rate, self.n_fft)
        with torch.inference_mode():
            return self._mel(torch.from_numpy(samples)[None])[0].to(self.device)
