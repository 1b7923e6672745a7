"""The quality metrics, each held to the library it stands on, called here directly on the same audio."""

from __future__ import annotations

import sys

import auraloss
import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from trainer import quality
from trainer.config import AudioConfig
from trainer.errors import UserError
from trainer.mrstft import MultiResolutionSTFT

RATE = 22050


@pytest.fixture(scope="module")
def speech(ljspeech_mini) -> np.ndarray:
    """3 s of a real LJSpeech clip at 22.05 kHz."""
    audio, rate = sf.read(sorted((ljspeech_mini / "wavs").glob("*.wav"))[0], dtype="float32")
    return soxr.resample(audio, rate, RATE).astype(np.float32)[RATE // 2: RATE // 2 + 3 * RATE]


def with_noise(audio: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    power = np.mean(audio ** 2) / 10 ** (snr_db / 10)
    return (audio + np.random.default_rng(seed).normal(0, np.sqrt(power), len(audio))).astype(np.float32)


def test_mstft_equals_auraloss_on_the_same_signals(speech):
    rng = np.random.default_rng(1)
    generated = torch.from_numpy(np.stack([with_noise(speech, 20, 1), with_noise(speech, 5, 2)]))
    reference = torch.from_numpy(np.stack([speech, speech + 0.01 * rng.standard_normal(len(speech)).astype(np.float32)]))
    ours = MultiResolutionSTFT()(generated, reference)
    theirs = auraloss.freq.MultiResolutionSTFTLoss()(generated[:, None], reference[:, None])
    assert abs(ours.item() - theirs.item()) <= 1e-5 * abs(theirs.item())
    one = quality.mstft(speech, generated[0].numpy(), RATE)
    assert one == pytest.approx(auraloss.freq.MultiResolutionSTFTLoss()(generated[:1, None], reference[:1, None]).item(), rel=1e-5)


def test_pesq_is_the_pesq_package_on_16k_int16(speech):
    import pesq

    generated = with_noise(speech, 25)
    truncated = [(soxr.resample(x, RATE, 16000) * 32768).astype(np.int16) for x in (speech, generated)]
    assert quality.pesq_wb(speech, generated, RATE) == pesq.pesq(16000, truncated[0], truncated[1], "wb")


def crepe_single(audio: np.ndarray, model: str):
    """torchcrepe on one signal at a time, CARGAN's settings, as its repository calls it."""
    crepe = quality._torchcrepe()
    x = torch.from_numpy(soxr.resample(audio, RATE, 16000).astype(np.float32))[None]
    np.random.seed(0)  # torchcrepe's pitch dither draws from numpy's global generator
    pitch, periodicity = crepe.predict(x, 16000, 160, 50.0, 550.0, model, return_periodicity=True)
    periodicity = crepe.threshold.Silence(-60)(periodicity, x, 16000, 160)
    voiced = ~torch.isnan(crepe.threshold.Hysteresis()(pitch, periodicity))
    return periodicity, voiced


def test_pitch_errors_are_cargans_from_torchcrepe(speech):
    generated = with_noise(speech, 15)
    p_true, v_true = crepe_single(speech, "tiny")
    p_gen, v_gen = crepe_single(generated, "tiny")
    tp = (v_true & v_gen).sum().item()
    precision, recall = tp / v_gen.sum().item(), tp / v_true.sum().item()
    errors = quality.pitch_errors(speech, generated, RATE, "tiny")
    assert errors.periodicity == pytest.approx(torch.sqrt(torch.mean((p_true - p_gen) ** 2)).item(), rel=1e-4, abs=1e-6)
    assert errors.vuv_f1 == pytest.approx(2 * precision * recall / (precision + recall), abs=1e-6)


def test_pitch_tracking_is_repeatable_and_leaves_the_random_state_alone(speech):
    """Unseeded, torchcrepe's pitch dither flips a voicing frame of this clip under some of these
    numpy states (so a clip scored against itself would not be perfect)."""
    tracks = []
    for seed in range(6):
        np.random.seed(seed)
        tracks.append(quality.pitch_track(speech, RATE, "tiny"))
        assert np.random.randint(1 << 30) == np.random.RandomState(seed).randint(1 << 30)
    first = tracks[0]
    assert all(torch.equal(t.voiced, first.voiced) and torch.equal(t.periodicity, first.periodicity) for t in tracks)


def test_pitch_errors_run_the_full_model_by_default(speech):
    clip = speech[RATE // 2: RATE]
    p_true, v_true = crepe_single(clip, "full")
    p_gen, _ = crepe_single(clip * 0.5, "full")
    errors = quality.pitch_errors(clip, clip * 0.5, RATE)
    assert errors.periodicity == pytest.approx(torch.sqrt(torch.mean((p_true - p_gen) ** 2)).item(), rel=1e-4, abs=1e-6)


def test_dnsmos_is_speechmos_on_16k(speech):
    from speechmos import dnsmos

    generated = with_noise(speech, 20)
    theirs = dnsmos.run(np.clip(soxr.resample(generated, RATE, 16000), -1, 1), 16000)
    ours = quality.dnsmos(generated, RATE)
    assert (ours.ovrl, ours.sig, ours.bak) == pytest.approx((theirs["ovrl_mos"], theirs["sig_mos"], theirs["bak_mos"]), rel=1e-6)


def scorer(pitch_model: str = "tiny") -> quality.Scorer:
    return quality.Scorer(AudioConfig(), pitch_model=pitch_model)


def test_a_diverged_generators_audio_is_unscored_not_fatal(speech):
    diverged = speech.copy()
    diverged[1000:1100] = np.nan
    scores = scorer().score(speech, diverged)
    assert scores.values == {}
    assert scores.unscored == {n: "the generated audio has non-finite samples" for n in quality.QUALITY_METRICS}


def test_a_clip_against_itself_scores_perfectly(speech):
    scores = scorer().score(speech, speech)
    assert scores.unscored == {}
    v = scores.values
    assert v["pesq_wb"] >= 4.5 and v["mstft"] == 0 and v["vuv_f1"] == 1 and v["periodicity"] == 0 and v["mel_l1"] == 0
    assert set(v) == set(quality.QUALITY_METRICS)


def test_more_noise_makes_every_reference_metric_worse_in_order(speech):
    s = scorer()
    runs = [s.score(speech, with_noise(speech, snr)).values for snr in (40, 20, 10)]
    for name, metric in quality.QUALITY_METRICS.items():
        values = [r[name] for r in runs]
        better_first = values if not metric.higher_is_better else [-v for v in values]
        if metric.needs_reference:
            assert better_first[0] < better_first[1] < better_first[2], (name, values)
    assert runs[0]["dnsmos_bak"] > runs[2]["dnsmos_bak"]  # the no-reference predictor hears the noise too


def test_what_cannot_be_scored_gets_a_reason_not_a_crash(speech):
    silent = np.zeros(2 * RATE, dtype=np.float32)
    scores = scorer().score(silent, speech[: 2 * RATE])
    assert "no utterance" in scores.unscored["pesq_wb"]
    assert "mstft" in scores.values  # the others still score

    tiny = scorer().score(speech[:100], speech[:100])
    assert set(tiny.unscored) == set(quality.QUALITY_METRICS) and all(tiny.unscored.values())

    no_reference = scorer().score(None, speech)
    assert set(no_reference.values) == {"dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak"}
    assert no_reference.unscored["pesq_wb"] == "no reference audio"


def test_an_unknown_metric_is_refused_with_the_choices():
    with pytest.raises(UserError, match="unknown quality metric 'pesq': choose from pesq_wb, mstft"):
        quality.Scorer(AudioConfig(), names=("pesq",))


def test_a_missing_library_says_how_to_get_it(speech, monkeypatch):
    monkeypatch.setitem(sys.modules, "pesq", None)  # import pesq now raises ImportError
    with pytest.raises(quality.MissingLibrary, match=r"pesq_wb needs the pesq package.*pip install pesq"):
        quality.pesq_wb(speech, speech, RATE)
