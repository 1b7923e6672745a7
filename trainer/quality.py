"""Objective quality of generated speech: the metrics the vocoder papers report, each computed by
the library the field uses for it.

| metric | better | how |
|---|---|---|
| ``pesq_wb`` | higher | ITU-T P.862.2 wide-band PESQ (the ``pesq`` package) on both signals resampled to 16 kHz (soxr) and quantised to int16, as BigVGAN validates |
| ``mstft`` | lower | the multi-resolution STFT distance with auraloss's defaults (``trainer.mrstft``), BigVGAN's M-STFT |
| ``periodicity`` | lower | CARGAN's periodicity RMSE between torchcrepe's periodicity of the two signals |
| ``vuv_f1`` | higher | CARGAN's voiced/unvoiced F1 of the generated signal's voicing against the reference's |
| ``mel_l1`` | lower | the validation mel-L1 (the config's loss mel) over the whole file |
| ``dnsmos_ovrl``, ``dnsmos_sig``, ``dnsmos_bak`` | higher | DNSMOS P.835 (the ONNX models inside ``speechmos``, run by onnxruntime), no reference needed |

Each family below is a function of the reference, the generated signal (float arrays in [-1, 1])
and their rate; a file a metric cannot score raises ``Unscored`` with the reason. The libraries are
imported when first used, so a machine without one still scores the other metrics and is told how
to get it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
import warnings
from dataclasses import astuple, dataclass, field
from typing import Callable, Optional

import numpy as np
import scipy.stats
import soxr
import torch
import torch.nn.functional as F

from trainer.config import AudioConfig
from trainer.errors import UserError
from trainer.mel import loss_mel
from trainer.mrstft import MultiResolutionSTFT
from trainer.records import QUALITY_METRICS, Summary, UnscoredFile

PESQ_RATE = 16_000  # P.862.2 wide band
CREPE_RATE = 16_000  # the rate torchcrepe's models take
PITCH_HOP = CREPE_RATE // 100  # 10 ms
PITCH_FMIN, PITCH_FMAX = 50.0, 550.0  # CARGAN's speech range
PITCH_DITHER_SEED = 0
DNSMOS_RATE = 16_000


class Unscored(Exception):
    """This file gets no score for this metric; the message says why."""


class MissingLibrary(UserError):
    pass


def _library(module: str, metric: str, install: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingLibrary(f"{metric} needs the {module} package, which is not installed ({exc}): {install}") from None


def _pesq() -> types.ModuleType:
    return _library("pesq", "pesq_wb", "pip install pesq (a source package: it builds with the machine's C "
                                       "compiler; on Debian or Ubuntu, apt install build-essential first)")


def _speechmos() -> types.ModuleType:
    return _library("speechmos.dnsmos", "dnsmos", "pip install speechmos onnxruntime librosa requests")


def resample(audio: np.ndarray, rate: int, to: int) -> np.ndarray:
    return audio if rate == to else soxr.resample(audio, rate, to).astype(np.float32)


def aligned(reference: np.ndarray, generated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both signals cut to the shorter (a generator's output is a whole number of hops long)."""
    n = min(len(reference), len(generated))
    return np.asarray(reference[:n], dtype=np.float32), np.asarray(generated[:n], dtype=np.float32)


# ----------------------------------------------------------------------------------------- PESQ


def to_int16(audio: np.ndarray) -> np.ndarray:
    """BigVGAN's quantisation (scale by 32768, truncate), clipped so that a full-scale sample does not wrap."""
    return np.clip(audio * 32768.0, -32768, 32767).astype(np.int16)


def pesq_wb(reference: np.ndarray, generated: np.ndarray, rate: int) -> float:
    pesq = _pesq()
    reference, generated = aligned(reference, generated)
    ref16, gen16 = (to_int16(resample(x, rate, PESQ_RATE)) for x in (reference, generated))
    try:
        return float(pesq.pesq(PESQ_RATE, ref16, gen16, "wb"))
    except pesq.NoUtterancesError:
        raise Unscored("PESQ found no utterance in the reference") from None
    except pesq.BufferTooShortError:
        raise Unscored(f"too short for PESQ ({len(ref16) / PESQ_RATE:.2f} s)") from None


# --------------------------------------------------------------------------------------- M-STFT

_mstft = MultiResolutionSTFT()


def mstft(reference: np.ndarray, generated: np.ndarray, rate: int) -> float:
    reference, generated = aligned(reference, generated)
    if len(reference) <= max(r.n_fft for r in _mstft.resolutions) // 2:
        raise Unscored(f"too short for the M-STFT's 2048-point frames ({len(reference)} samples)")
    with torch.no_grad():
        return float(_mstft(torch.from_numpy(generated)[None], torch.from_numpy(reference)[None]))


# ---------------------------------------------------------------------------------------- pitch


@dataclass(frozen=True)
class PitchErrors:
    periodicity: float  # RMSE of the two periodicity curves, silent frames counted as 0
    vuv_f1: float  # F1 of the generated voicing, the reference's taken as the truth


def _torchcrepe():
    """torchcrepe imports torchaudio only for its file loader (``torchcrepe.load.audio``), which is
    not used here, and no torchaudio release is built for this project's torch: while torchcrepe is
    imported, an empty module stands in for an absent torchaudio."""
    install = "pip install --no-deps torchcrepe==0.0.24 && pip install resampy librosa tqdm"
    if "torchcrepe" in sys.modules or importlib.util.find_spec("torchaudio") is not None:
        return _library("torchcrepe", "periodicity and vuv_f1", install)
    sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        return _library("torchcrepe", "periodicity and vuv_f1", install)
    finally:
        del sys.modules["torchaudio"]


@contextlib.contextmanager
def seeded_dither():
    """torchcrepe dithers the decoded pitch with scipy, which draws from numpy's global generator,
    and the hysteresis threshold sees the dithered pitch: seeded, one signal always gets the same
    voicing; the caller's numpy state is put back afterwards."""
    state = np.random.get_state()
    np.random.seed(PITCH_DITHER_SEED)
    try:
        yield
    finally:
        np.random.set_state(state)


@dataclass(frozen=True)
class PitchTrack:
    periodicity: torch.Tensor  # per 10 ms frame, 0 in silent frames
    voiced: torch.Tensor  # bool per frame


def pitch_track(audio: np.ndarray, rate: int, model: str = "full") -> PitchTrack:
    """torchcrepe's pitch and periodicity as CARGAN takes them (Morrison et al., 2022): a 10 ms hop
    between 50 and 550 Hz, periodicity zeroed in frames below -60 dB (A-weighted), voicing by
    torchcrepe's hysteresis threshold. One signal at a time: a batch would round differently.
    The dither torchcrepe adds to the pitch is seeded, so one signal always gets the same track,
    and the caller's random state is left as it was."""
    crepe = _torchcrepe()
    x = torch.from_numpy(resample(np.asarray(audio, dtype=np.float32), rate, CREPE_RATE))[None]
    if x.shape[1] < PITCH_HOP:
        raise Unscored(f"too short for pitch tracking ({x.shape[1] / CREPE_RATE * 1000:.0f} ms)")
    with seeded_dither():
        pitch, periodicity = crepe.predict(x, CREPE_RATE, PITCH_HOP, PITCH_FMIN, PITCH_FMAX, model, return_periodicity=True)
    periodicity = crepe.threshold.Silence()(periodicity, x, CREPE_RATE, PITCH_HOP)
    with warnings.catch_warnings():  # an all-unvoiced signal: torchcrepe's whitening takes the mean of nothing
        warnings.simplefilter("ignore", RuntimeWarning)
        voiced = ~torch.isnan(crepe.threshold.Hysteresis()(pitch, periodicity))
    return PitchTrack(periodicity, voiced)


def compare_pitch(reference: PitchTrack, generated: PitchTrack) -> PitchErrors:
    rmse = torch.sqrt(torch.mean((reference.periodicity - generated.periodicity) ** 2)).item()
    true_voiced, generated_voiced = reference.voiced, generated.voiced
    true_positives = (true_voiced & generated_voiced).sum().item()
    false_positives = (~true_voiced & generated_voiced).sum().item()
    false_negatives = (true_voiced & ~generated_voiced).sum().item()
    if true_positives == 0:
        if false_positives + false_negatives == 0:
            raise Unscored("no voiced frame in either signal")
        return PitchErrors(rmse, 0.0)
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / (true_positives + false_negatives)
    return PitchErrors(rmse, 2 * precision * recall / (precision + recall))


def pitch_errors(reference: np.ndarray, generated: np.ndarray, rate: int, model: str = "full") -> PitchErrors:
    """CARGAN's periodicity RMSE and V/UV F1 of ``generated`` against ``reference``."""
    reference, generated = aligned(reference, generated)
    return compare_pitch(pitch_track(reference, rate, model), pitch_track(generated, rate, model))


# --------------------------------------------------------------------------------------- mel-L1


def mel_l1(reference: np.ndarray, generated: np.ndarray, mel: torch.nn.Module) -> float:
    reference, generated = aligned(reference, generated)
    if len(reference) < mel.n_fft:
        raise Unscored(f"shorter than one {mel.n_fft}-point mel frame")
    with torch.no_grad():
        return F.l1_loss(mel(torch.from_numpy(generated)[None]), mel(torch.from_numpy(reference)[None])).item()


# --------------------------------------------------------------------------------------- DNSMOS


@dataclass(frozen=True)
class Dnsmos:
    ovrl: float
    sig: float
    bak: float


def dnsmos(generated: np.ndarray, rate: int) -> Dnsmos:
    """DNSMOS P.835 (Reddy et al., 2022) of one signal; speechmos tiles a clip shorter than 9 s."""
    speechmos = _speechmos()
    audio = np.clip(resample(np.asarray(generated, dtype=np.float32), rate, DNSMOS_RATE), -1.0, 1.0)
    if len(audio) < DNSMOS_RATE // 10:
        raise Unscored(f"too short for DNSMOS ({len(audio) / DNSMOS_RATE * 1000:.0f} ms)")
    scores = speechmos.run(audio, DNSMOS_RATE)
    return Dnsmos(float(scores["ovrl_mos"]), float(scores["sig_mos"]), float(scores["bak_mos"]))


# --------------------------------------------------------------------------------------- scoring


@dataclass
class Scores:
    values: dict[str, float] = field(default_factory=dict)
    unscored: dict[str, str] = field(default_factory=dict)  # metric -> why this file has no score


# What each library scores (its loader says how to install it when it does not import).
LIBRARIES: dict[str, tuple[Callable[[], types.ModuleType], tuple[str, ...]]] = {
    "pesq": (_pesq, ("pesq_wb",)),
    "torchcrepe": (_torchcrepe, ("periodicity", "vuv_f1")),
    "speechmos": (_speechmos, ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak")),
}


def missing_libraries(names: tuple[str, ...]) -> dict[str, str]:
    """Of the metrics ``names``, those whose library does not import here: metric -> how to get it."""
    missing = {}
    for load, metrics in LIBRARIES.values():
        wanted = [m for m in metrics if m in names]
        if wanted:
            try:
                load()
            except MissingLibrary as exc:
                missing.update((m, str(exc)) for m in wanted)
    return missing


class Scorer:
    """Scores generated audio against its reference with the chosen metrics, at the config's rate.

    A ``key`` names a reference that will be scored again (a validation file at every validation):
    its pitch track, the dearest part of the scoring, is then computed once."""

    def __init__(self, audio: AudioConfig, names: tuple[str, ...] = tuple(QUALITY_METRICS), pitch_model: str = "full"):
        unknown = [n for n in names if n not in QUALITY_METRICS]
        if unknown:
            raise UserError(f"unknown quality metric {unknown[0]!r}: choose from {', '.join(QUALITY_METRICS)}")
        self.names = names
        self.rate = audio.sampling_rate
        self.pitch_model = pitch_model
        self.mel = loss_mel(audio)
        self._reference_pitch: dict[tuple[str, int], PitchTrack] = {}

    @classmethod
    def available(cls, audio: AudioConfig, names: tuple[str, ...], pitch_model: str) -> tuple[Scorer, dict[str, str]]:
        """A scorer of those of ``names`` whose library imports here, and the others: metric -> how to get it."""
        missing = missing_libraries(names)
        return cls(audio, tuple(n for n in names if n not in missing), pitch_model), missing

    def _pitch_errors(self, reference: np.ndarray, generated: np.ndarray, key: Optional[str]) -> PitchErrors:
        reference, generated = aligned(reference, generated)
        cache_key = (key, len(reference)) if key is not None else None
        track = self._reference_pitch.get(cache_key) if cache_key else None
        if track is None:
            track = pitch_track(reference, self.rate, self.pitch_model)
            if cache_key:
                self._reference_pitch[cache_key] = track
        return compare_pitch(track, pitch_track(generated, self.rate, self.pitch_model))

    def score(self, reference: Optional[np.ndarray], generated: np.ndarray, key: Optional[str] = None) -> Scores:
        """``reference`` may be None (audio vocoded from an acoustic model's mels): then only the
        metrics that need no reference are scored."""
        families: list[tuple[tuple[str, ...], Callable[[], tuple[float, ...]]]] = [
            (("pesq_wb",), lambda: (pesq_wb(reference, generated, self.rate),)),
            (("mstft",), lambda: (mstft(reference, generated, self.rate),)),
            (("periodicity", "vuv_f1"), lambda: astuple(self._pitch_errors(reference, generated, key))),
            (("mel_l1",), lambda: (mel_l1(reference, generated, self.mel),)),
            (("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak"), lambda: astuple(dnsmos(generated, self.rate))),
        ]
        scores = Scores()
        for signal, audio in (("generated", generated), ("reference", reference)):
            if audio is not None and not np.isfinite(audio).all():
                scores.unscored.update((n, f"the {signal} audio has non-finite samples") for n in self.names)
                return scores
        for names, compute in families:
            wanted = [n for n in names if n in self.names]
            if not wanted:
                continue
            if reference is None and QUALITY_METRICS[names[0]].needs_reference:
                scores.unscored.update((n, "no reference audio") for n in wanted)
                continue
            try:
                values = compute()
            except Unscored as why:
                scores.unscored.update((n, str(why)) for n in wanted)
                continue
            scores.values.update((n, v) for n, v in zip(names, values) if n in wanted)
        return scores


def summarize(scored: list[tuple[str, Scores]], names: tuple[str, ...]) -> tuple[dict[str, Summary], list[UnscoredFile]]:
    """Per metric, the mean over the files that it scored with its 95 % confidence interval
    (Student's t), and every (file, metric) it could not score."""
    summaries = {}
    for name in names:
        values = np.array([s.values[name] for _, s in scored if name in s.values], dtype=np.float64)
        if len(values):
            ci95 = (float(scipy.stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
                    if len(values) > 1 else None)
            summaries[name] = Summary(mean=float(values.mean()), ci95=ci95, n=len(values))
    unscored = [UnscoredFile(file=f, metric=m, reason=why) for f, s in scored for m, why in s.unscored.items()]
    return summaries, unscored
