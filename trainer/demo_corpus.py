"""A small speech-like corpus that the project synthesises itself, so the demo needs no download.

Each clip is a sequence of "syllables": a voiced vowel (harmonics of a gliding pitch, shaped by
moving formants) preceded now and then by a fricative (shaped noise) or a plosive burst, with pauses
between words. It is not speech, but it has what a vocoder must learn: harmonics, formant
structure, pitch movement, noise and silence. The result is deterministic for a given seed and is
written in the LJSpeech layout, so it goes through the same loader as real data.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from trainer.audio import write_wav

SAMPLING_RATE = 22050
VOWEL_FORMANTS = np.array([  # F1, F2, F3 in Hz (a, e, i, o, u, schwa)
    [730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010],
    [570, 840, 2410], [300, 870, 2240], [500, 1500, 2500],
])
FORMANT_BANDWIDTHS = np.array([90.0, 110.0, 170.0])
CORPUS_VERSION = 1


def _formant_gain(freqs: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """Magnitude of a cascade of resonances at ``freqs`` [H, T] for formants [3, T]."""
    gain = np.ones_like(freqs)
    for k in range(3):
        f, bw = formants[k][None, :], FORMANT_BANDWIDTHS[k]
        gain *= 1.0 / np.sqrt((1 - (freqs / f) ** 2) ** 2 + (freqs * bw / f**2) ** 2)
    return gain


def _shaped_noise(rng: np.random.Generator, n: int, low_hz: float, high_hz: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLING_RATE)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.abs(noise).max() + 1e-9)


def _vowel(rng: np.random.Generator, n: int, f0_start: float, f0_end: float, v_from: int, v_to: int) -> np.ndarray:
    t = np.linspace(0, 1, n)
    f0 = f0_start + (f0_end - f0_start) * t + 3 * np.sin(2 * np.pi * 5.5 * t * n / SAMPLING_RATE)
    formants = (VOWEL_FORMANTS[v_from][:, None] * (1 - t) + VOWEL_FORMANTS[v_to][:, None] * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLING_RATE
    n_harmonics = int(SAMPLING_RATE / 2 / f0.max())
    k = np.arange(1, n_harmonics + 1)[:, None]
    freqs = k * f0[None, :]
    amps = _formant_gain(freqs, formants) / k  # glottal source falls off about 6 dB per octave
    amps[freqs > SAMPLING_RATE / 2 - 200] = 0
    voiced = (amps * np.sin(k * phase[None, :] + rng.uniform(0, 2 * np.pi, (n_harmonics, 1)))).sum(0)
    envelope = np.sin(np.pi * t) ** 0.6
    return voiced / (np.abs(voiced).max() + 1e-9) * envelope


def synthesize_clip(rng: np.random.Generator, seconds: float) -> np.ndarray:
    pieces = [np.zeros(int(rng.uniform(0.05, 0.15) * SAMPLING_RATE))]
    f0 = rng.uniform(95, 210)
    total = len(pieces[0])
    while total < seconds * SAMPLING_RATE:
        for _ in range(rng.integers(1, 4)):  # syllables of one word
            consonant = rng.random()
            if consonant < 0.3:
                n = int(rng.uniform(0.06, 0.14) * SAMPLING_RATE)
                pieces.append(0.3 * _shaped_noise(rng, n, 3000, 9000) * np.hanning(n))
            elif consonant < 0.5:
                n = int(0.012 * SAMPLING_RATE)
                burst = _shaped_noise(rng, n, 500, 6000) * np.exp(-np.linspace(0, 6, n))
                pieces.append(np.concatenate([np.zeros(int(0.03 * SAMPLING_RATE)), 0.5 * burst]))
            n = int(rng.uniform(0.12, 0.28) * SAMPLING_RATE)
            f0_next = np.clip(f0 * rng.uniform(0.85, 1.12), 80, 260)
            v_from, v_to = rng.integers(0, len(VOWEL_FORMANTS), 2)
            pieces.append(rng.uniform(0.5, 0.9) * _vowel(rng, n, f0, f0_next, v_from, v_to))
            f0 = f0_next * 0.98  # declination
        pieces.append(np.zeros(int(rng.uniform(0.08, 0.25) * SAMPLING_RATE)))
        total = sum(len(p) for p in pieces)
    audio = np.concatenate(pieces)
    audio += 0.002 * rng.standard_normal(len(audio))  # a quiet noise floor, as a room has
    return (audio / np.abs(audio).max() * 0.9).astype(np.float32)


def ensure_demo_corpus(root: Path, clips: int = 32, seed: int = 20201023) -> Path:
    """Write the corpus into ``root/demo-corpus-v{N}`` once; later calls return the folder as it is."""
    folder = root / f"demo-corpus-v{CORPUS_VERSION}"
    if (folder / "metadata.csv").is_file():
        return folder
    tmp = root / f".demo-corpus-v{CORPUS_VERSION}.tmp{os.getpid()}"
    (tmp / "wavs").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(clips):
        uid = f"DEMO-{i:04d}"
        write_wav(tmp / "wavs" / f"{uid}.wav", synthesize_clip(rng, rng.uniform(1.5, 3.5)), SAMPLING_RATE)
        lines.append(f"{uid}|synthetic utterance {i}|synthetic utterance {i}\n")
    (tmp / "metadata.csv").write_text("".join(lines), encoding="utf-8")
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
