"""The log-mel must be the reference's: checked against librosa's filterbank and STFT."""

import librosa
import numpy as np
import pytest
import torch

from trainer.config import AudioConfig, load_config
from trainer.mel import MelSpectrogram, input_mel, loss_mel, mel_filterbank


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [
    (22050, 1024, 80, 0, 8000), (22050, 1024, 80, 0, None), (48000, 2048, 128, 0, None), (16000, 512, 40, 55, 7600),
])
def test_filterbank_matches_librosa_default(sr, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)


def reference_log_mel(y: np.ndarray, a: AudioConfig, fmax) -> np.ndarray:
    """The reference's recipe spelled out with librosa and numpy."""
    pad = (a.n_fft - a.hop_size) // 2
    padded = np.pad(y, (pad, pad), mode="reflect")
    spec = librosa.stft(padded, n_fft=a.n_fft, hop_length=a.hop_size, win_length=a.win_size,
                        window="hann", center=False)
    magnitude = np.sqrt(spec.real.astype(np.float64) ** 2 + spec.imag ** 2 + 1e-9)
    basis = librosa.filters.mel(sr=a.sampling_rate, n_fft=a.n_fft, n_mels=a.num_mels, fmin=a.fmin, fmax=fmax)
    return np.log(np.clip(basis @ magnitude, 1e-5, None))


@pytest.mark.parametrize("config", ["hifigan_v1", "hifigan_48k"])
def test_log_mel_matches_reference_recipe(config):
    a = load_config(config).audio
    rng = np.random.default_rng(0)
    t = np.arange(a.sampling_rate) / a.sampling_rate
    y = (0.5 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    ours = input_mel(a)(torch.from_numpy(y)[None])[0].numpy()
    ref = reference_log_mel(y, a, a.fmax)
    assert ours.shape == ref.shape == (a.num_mels, len(y) // a.hop_size)
    np.testing.assert_allclose(ours, ref, atol=2e-4)


def test_loss_mel_spans_the_full_band_when_fmax_for_loss_is_null():
    a = load_config("hifigan_v1").audio
    assert a.fmax == 8000 and a.fmax_for_loss is None
    t = torch.arange(22050) / 22050
    tone = torch.sin(2 * torch.pi * 10000 * t)[None]  # above fmax, below Nyquist
    # only window leakage reaches the band-limited input mel; the full-band loss mel sees the tone itself
    assert loss_mel(a)(tone).max() - input_mel(a)(tone).max() > 3


def test_filterbank_is_built_once_and_follows_the_module():
    a = load_config("hifigan_v1").audio
    mel = MelSpectrogram(a, a.fmax)
    basis = mel.basis
    y = torch.randn(2, 8192) * 0.1
    first = mel(y)
    assert mel.basis is basis  # no rebuild per call (the reference rebuilds on every call)
    assert torch.equal(first, mel(y))
    assert not any(name == "basis" for name in mel.state_dict())  # not saved into checkpoints
