"""The Python API, ``from vocodertui import Vocoder``: the one inference path of synth and eval."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from trainer import registry
from trainer.config import load_config
from trainer.errors import UserError
from trainer.inference import BadInput, Vocoder, bucketed, build_generator, load_generator_state
from trainer.synth import synthesize
from vocodertui import Vocoder as PublicVocoder

from conftest import REPO
from test_synth import trained  # noqa: F401  (the fixture: a checkpoint trained for 2 steps)

LENGTHS = (1, 2, 7, 33, 70)  # frames: the shortest pads by 69, the longest by none


@pytest.fixture(scope="module")
def vocoder(trained) -> Vocoder:
    return Vocoder.from_checkpoint(trained)


def random_mels(num_mels: int, lengths=LENGTHS, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(-5, 2, (num_mels, n)).astype(np.float32) for n in lengths]


def test_importing_vocodertui_loads_no_torch_and_vocoder_is_the_engines():
    code = ("import sys, vocodertui, vocodertui.cli; print('torch' in sys.modules); "
            "from vocodertui import Vocoder; print('torch' in sys.modules, Vocoder.__module__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "trainer.inference"]
    assert PublicVocoder is Vocoder
    with pytest.raises(AttributeError):
        import vocodertui
        vocodertui.NotAThing  # noqa: B018


def test_the_public_api_is_documented():
    for member in (Vocoder, Vocoder.from_checkpoint, Vocoder.__call__, Vocoder.from_audio, Vocoder.mel,
                   Vocoder.vocode_list, Vocoder.choose_precision, Vocoder.sampling_rate, Vocoder.hop_size):
        assert member.__doc__ and len(member.__doc__.split()) >= 5, member


def test_attributes_and_a_mel_give_what_synth_writes(vocoder, trained, demo_corpus, tmp_path):
    assert (vocoder.sampling_rate, vocoder.hop_size, vocoder.num_mels, vocoder.step) == (22050, 256, 80, 2)
    assert vocoder.precision == "fp32" and "hifigan" in repr(vocoder)
    wav = next((demo_corpus / "wavs").glob("*.wav"))
    samples, sr = sf.read(wav, dtype="float32")
    mel = vocoder.mel(samples, sr)
    assert mel.dtype == np.float32 and mel.shape == (80, len(samples) // 256)
    audio = vocoder(mel)
    assert audio.dtype == np.float32 and audio.shape == (mel.shape[1] * 256,)
    np.testing.assert_array_equal(audio, vocoder.from_audio(samples, sr))
    np.testing.assert_array_equal(audio, vocoder.from_audio(torch.from_numpy(samples), sr))
    synthesize(trained, wav, tmp_path / "synth.wav")
    written = sf.read(tmp_path / "synth.wav", dtype="float32")[0]
    np.testing.assert_allclose(written, np.clip(audio, -1, 1), rtol=0, atol=1 / 32768)


def test_a_list_of_mels_of_different_lengths_equals_one_by_one(vocoder):
    mels = random_mels(80)
    batched = vocoder(mels)
    alone = [vocoder(m) for m in mels]
    for mel, b, a in zip(mels, batched, alone):
        assert b.shape == a.shape == (mel.shape[1] * 256,)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    assert max(np.abs(a).max() for a in alone) > 1e-3  # not a trivially silent comparison


KIND_CONFIGS = ("demo", "demo_bigvgan")  # one config of each generator kind


def test_the_exactness_test_covers_every_generator_kind():
    assert {load_config(c).generator.type for c in KIND_CONFIGS} == set(registry.GENERATORS)


@pytest.mark.parametrize("config", KIND_CONFIGS)
def test_every_generator_kind_batches_exactly(config):
    """Padding alone would change each short item's last samples by up to ~0.2 (its receptive field
    reaches into the padding): the tails are neutralised before every padded layer, for each kind."""
    cfg = load_config(config)
    torch.manual_seed(0)
    generator = registry.build_generator(cfg).eval().fold_weight_norm()
    vocoder = Vocoder(generator, cfg)
    runs = []
    generator.register_forward_hook(lambda *_: runs.append(1))
    mels = random_mels(cfg.audio.num_mels, (1, 4, 17, 19))  # the batch runs at bucketed(19) = 20 frames
    batched = vocoder(mels)
    assert len(runs) == 1  # one batch, not the one-at-a-time fallback
    for mel, b in zip(mels, batched):
        with torch.inference_mode():
            alone = generator(torch.from_numpy(mel)[None])[0, 0].numpy()  # unpadded, as it is
        np.testing.assert_allclose(b, alone, rtol=0, atol=1e-5)
        np.testing.assert_allclose(vocoder(mel), alone, rtol=0, atol=1e-5)  # padded to its bucket alone


def test_cpu_batches_are_padded_to_a_few_lengths():
    assert [bucketed(n) for n in (1, 15, 16, 17, 19, 100, 400, 401, 1000)] == [1, 15, 16, 18, 20, 104, 416, 416, 1024]
    assert all(n <= bucketed(n) <= n * 9 / 8 for n in range(1, 5000))
    assert len({bucketed(n) for n in range(100, 1000)}) == 28  # 900 lengths, 28 shapes


def test_a_batch_array_and_torch_input(vocoder):
    mels = np.stack(random_mels(80, (20, 20, 20)))
    out = vocoder(mels)
    assert out.shape == (3, 20 * 256) and out.dtype == np.float32
    np.testing.assert_allclose(out[1], vocoder(mels[1]), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(vocoder(torch.from_numpy(mels)), out)
    assert vocoder([]) == []


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int16, torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes_vocode_as_their_float32_values(vocoder, dtype):
    mel = random_mels(80, (12,))[0].round()
    if isinstance(dtype, torch.dtype):
        given = torch.from_numpy(mel).to(dtype)
        expected = given.float().numpy()
    else:
        given = mel.astype(dtype)
        expected = given.astype(np.float32)
    np.testing.assert_array_equal(vocoder(given), vocoder(expected))


BAD = {
    "one-dimensional": (np.zeros(80, np.float32), r"mel of shape \(80,\) has the wrong shape; expected a mel of shape \[80, frames\]"),
    "wrong bins": (np.zeros((64, 10), np.float32), r"shape \(64, 10\) has the wrong shape"),
    "transposed": (np.zeros((10, 80), np.float32), r"transposed\? pass mel\.T"),
    "zero frames": (np.zeros((80, 0), np.float32), r"is empty"),
    "nan": (np.full((80, 4), np.nan, np.float32), r"NaN or infinite"),
    "beyond float32": (np.full((80, 4), 1e300), r"NaN or infinite values \(after conversion to float32\)"),
    "complex": (np.zeros((80, 4), np.complex64), r"complex64.*is not numbers"),
    "text": (np.array([["a"] * 4] * 80), r"is not numbers"),
    "4-D": (np.zeros((1, 1, 80, 4), np.float32), r"wrong shape"),
}


@pytest.mark.parametrize("mel,message", BAD.values(), ids=BAD.keys())
def test_a_bad_mel_is_a_one_line_value_error(vocoder, mel, message):
    with pytest.raises(BadInput, match=message) as caught:
        vocoder(mel)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, UserError)
    assert "\n" not in str(caught.value)


def test_a_bad_mel_in_a_list_is_named_by_its_index(vocoder):
    with pytest.raises(BadInput, match=r"^mel 1 of shape \(64, 3\)"):
        vocoder([np.zeros((80, 3), np.float32), np.zeros((64, 3), np.float32)])


def test_from_audio_resamples_and_refuses_what_it_cannot_take(vocoder):
    tone = (0.3 * np.sin(np.arange(16000) * 2 * np.pi * 220 / 16000)).astype(np.float32)
    audio = vocoder.from_audio(tone, 16000)
    assert audio.shape == (22050 // 256 * 256,)
    for wav, sr, message in ((np.zeros((2, 4000), np.float32), 16000, "expected mono samples"),
                             (np.zeros(500, np.float32), 22050, "too short: 500 samples"),
                             (np.zeros(4000, np.float32), 0, "not a positive whole number")):
        with pytest.raises(BadInput, match=message):
            vocoder.from_audio(wav, sr)


def test_auto_precision_times_both_and_keeps_the_faster(trained):
    v = Vocoder.from_checkpoint(trained, precision="auto")
    assert v.precision == "auto" and v.precision_choice is None
    audio = v(random_mels(80, (10,))[0])
    choice = v.precision_choice
    assert v.precision == choice.precision in ("fp32", "bf16") and audio.shape == (10 * 256,)
    assert min(choice.run_s.values()) > 0 and choice.shapes == 0
    assert choice.precision == min(choice.predicted_s, key=choice.predicted_s.get)
    assert choice.line().startswith(f"precision auto: {choice.precision} (predicted for ")


@pytest.mark.parametrize("shapes,chosen", [((), "bf16"), ([100] * 20, "fp32")])
def test_auto_prices_each_new_shape(vocoder, monkeypatch, shapes, chosen):
    """bf16 twice as fast a run, but its first run on a shape 20 times slower (as on a CPU's oneDNN):
    right once the shapes have been seen, wrong for a job of twenty new ones."""
    seen = set()

    def timed(self, batch, precision):
        cold = (precision, tuple(batch.shape)) not in seen
        seen.add((precision, tuple(batch.shape)))
        run = 0.1 if precision == "fp32" else 0.05
        return run + (0.1 if precision == "fp32" else 1.0) * cold

    monkeypatch.setattr(Vocoder, "_timed", timed)
    v = Vocoder(vocoder.generator, vocoder.config)
    choice = v.choose_precision(np.zeros((80, 100), np.float32), shapes, audio_seconds=100.0 if shapes else None)
    assert choice.precision == v.precision == chosen
    assert choice.run_s == {"fp32": 0.1, "bf16": 0.05} and choice.shape_s == pytest.approx({"fp32": 0.1, "bf16": 1.0})


def test_from_checkpoint_refuses_an_unknown_precision_before_loading(tmp_path):
    with pytest.raises(UserError, match="precision 'fp16' is not one of fp32, bf16, auto"):
        Vocoder.from_checkpoint(tmp_path / "missing.pt", precision="fp16")


def test_eval_vocodes_through_the_vocoder(trained):
    from trainer.evaluate import load_candidates

    candidates, _ = load_candidates([trained], None)
    assert isinstance(candidates[0].vocoder, Vocoder)
    state = load_generator_state(trained, None)
    generator = build_generator(state.weights, state.cfg, trained)
    mel = torch.from_numpy(random_mels(80, (30,))[0])
    with torch.inference_mode():
        expected = generator(mel[None])[0, 0].numpy()
    np.testing.assert_allclose(candidates[0].vocoder(mel), expected, rtol=0, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_fp32_is_fp32_alone_in_a_batch_and_against_the_cpu(trained):
    cpu, gpu = Vocoder.from_checkpoint(trained), Vocoder.from_checkpoint(trained, device="cuda")
    mels = random_mels(80)
    for mel, batched in zip(mels, gpu(mels)):
        alone = gpu(mel)
        np.testing.assert_allclose(batched, alone, rtol=0, atol=1e-5)  # with TF32 convolutions: ~2e-5 to 2e-4
        np.testing.assert_allclose(alone, cpu(mel), rtol=0, atol=1e-5)
    assert torch.backends.cudnn.allow_tf32  # torch's default, left as it was
