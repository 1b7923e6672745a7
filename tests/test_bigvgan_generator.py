"""BigVGAN's generator against NVIDIA's ``bigvgan`` package (2.4): same state_dict, same waveform."""

from __future__ import annotations

import json
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

bigvgan_package = pytest.importorskip("bigvgan.bigvgan")
from bigvgan import activations as ref_activations  # noqa: E402
from bigvgan.alias_free_activation.torch import filter as ref_filter  # noqa: E402
from bigvgan.alias_free_activation.torch import resample as ref_resample  # noqa: E402
from bigvgan.env import AttrDict  # noqa: E402

from trainer.alias_free import Activation1d, DownSample1d, UpSample1d, kaiser_sinc_filter1d  # noqa: E402
from trainer.bigvgan import RELEASE_AUDIO_KEYS, RELEASE_GENERATOR_KEYS, BigVGAN, Snake, SnakeBeta, load_release  # noqa: E402
from trainer.config import AudioConfig, GeneratorConfig, config_from_dict, load_config  # noqa: E402
from trainer.plan import StartRequest, make_plan  # noqa: E402

from conftest import write_config  # noqa: E402
from trainer.export import export  # noqa: E402
from trainer.synth import synthesize  # noqa: E402
from trainer.errors import UserError  # noqa: E402
from trainer.mel import input_mel  # noqa: E402

LJSPEECH_WAVS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ljspeech-mini" / "wavs"
SEGMENT_SECONDS = 0.4  # 34 mel frames at 22050 Hz, hop 256: a forward of the small model takes ~0.1 s


def small_hparams(activation: str = "snakebeta", resblock: str = "1", tanh: bool = False, bias: bool = False,
                  logscale: bool = True) -> dict:
    return dict(
        resblock=resblock, upsample_rates=[8, 8, 2, 2], upsample_kernel_sizes=[16, 16, 4, 4],
        upsample_initial_channel=64, resblock_kernel_sizes=[3, 7, 11],
        resblock_dilation_sizes=[[1, 3, 5]] * 3 if resblock == "1" else [[1, 3]] * 3,
        activation=activation, snake_logscale=logscale, use_tanh_at_final=tanh, use_bias_at_final=bias,
        num_mels=80, sampling_rate=22050, n_fft=1024, hop_size=256, win_size=1024, fmin=0, fmax=8000,
        fmax_for_loss=None,
    )


def reference_model(hparams: dict, seed: int = 0) -> torch.nn.Module:
    """The package's BigVGAN with every parameter moved off its initial value (seeded): its init leaves
    α = β = 1 and a bias-free conv_post, which would hide mistakes in how they are used."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.nn.utils.weight_norm is deprecated
        model = bigvgan_package.BigVGAN(AttrDict(hparams), use_cuda_kernel=False).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def ours_for(hparams: dict) -> BigVGAN:
    return BigVGAN(types.SimpleNamespace(**hparams), hparams["num_mels"]).eval()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are small: a second thread gains nothing, and on a busy machine costs 10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def real_mel() -> torch.Tensor:
    """[1, 80, frames] from speech: an LJSpeech clip where ../shared has one, else the demo corpus's
    synthetic speech, through the project's own mel (22050 Hz, fmax 8 kHz)."""
    wavs = sorted(LJSPEECH_WAVS.glob("*.wav"))
    if wavs:
        import soundfile as sf
        import soxr

        rate = sf.info(str(wavs[0])).samplerate
        audio, _ = sf.read(str(wavs[0]), start=int(0.5 * rate), frames=int(SEGMENT_SECONDS * rate), dtype="float32")
        audio = soxr.resample(audio, rate, 22050).astype(np.float32)
    else:
        from trainer.demo_corpus import synthesize_clip

        audio = synthesize_clip(np.random.default_rng(0), 1.0)[int(0.3 * 22050):][: int(SEGMENT_SECONDS * 22050)]
    mel = input_mel(AudioConfig())(torch.from_numpy(audio)[None])
    assert mel.shape[1] == 80 and mel.shape[2] >= 30 and mel.std() > 0.5  # not silence
    return mel


# Each of activation, resblock, tanh, output bias and log-scale α on and off; v1 (tanh, bias) and v2 (neither).
CASES = [
    ("snakebeta", "1", False, False, True),
    ("snakebeta", "1", True, True, True),
    ("snakebeta", "2", False, True, False),
    ("snakebeta", "2", True, False, True),
    ("snake", "1", False, False, False),
    ("snake", "1", True, True, True),
    ("snake", "2", False, False, True),
    ("snake", "2", True, True, False),
]


@pytest.mark.parametrize("activation,resblock,tanh,bias,logscale", CASES)
def test_matches_the_package_on_a_real_mel(real_mel, activation, resblock, tanh, bias, logscale):
    hparams = small_hparams(activation, resblock, tanh, bias, logscale)
    ref = reference_model(hparams)
    ours = ours_for(hparams)
    ref_state = ref.state_dict()
    assert list(ours.state_dict()) == list(ref_state)  # same names, in the same order
    for key, value in ours.state_dict().items():  # the filters we compute are the package's
        if key.endswith("filter"):
            torch.testing.assert_close(value, ref_state[key], rtol=0, atol=1e-7)
    ours.load_state_dict(ref_state, strict=True)
    with torch.no_grad():
        expected = ref(real_mel)
        got = ours(real_mel)
        folded = ours.fold_weight_norm()(real_mel)
    assert got.shape == expected.shape == (1, 1, real_mel.shape[-1] * 256)
    # a meaningful comparison: a waveform, not a clamped constant
    assert expected.std() > 0.01 and (expected.abs() < 1).float().mean() > 0.9
    assert (got - expected).abs().max() <= 1e-4
    assert (folded - expected).abs().max() <= 1e-4


def test_default_options_are_v2s_and_a_generator_config_builds_it():
    h = GeneratorConfig(upsample_initial_channel=64)
    model = BigVGAN(h, 80)  # options left None take v2's values
    assert isinstance(model.activation_post.act, SnakeBeta) and model.activation_post.act.alpha_logscale
    assert model.conv_post.bias is None and not model.use_tanh_at_final


def test_filters_and_resamplers_match_the_package():
    for cutoff, half_width, size in [(0.25, 0.3, 12), (0.5 / 3, 0.2, 18), (0.2, 0.25, 11), (0.25, 0.05, 12)]:
        torch.testing.assert_close(kaiser_sinc_filter1d(cutoff, half_width, size),
                                   ref_filter.kaiser_sinc_filter1d(cutoff, half_width, size), rtol=0, atol=1e-7)
    assert not kaiser_sinc_filter1d(0.0, 0.3, 12).any()  # the package fails on a cutoff of 0 (UnboundLocalError)
    x = torch.randn(2, 3, 50, generator=torch.Generator().manual_seed(0))
    for ratio in (2, 3):
        torch.testing.assert_close(UpSample1d(ratio)(x), ref_resample.UpSample1d(ratio)(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(DownSample1d(ratio)(x), ref_resample.DownSample1d(ratio)(x), rtol=0, atol=1e-6)
    assert UpSample1d(2, 12)(x).shape[-1] == 100 and DownSample1d(2, 12)(x).shape[-1] == 25


@pytest.mark.parametrize("logscale", [False, True])
def test_snakes_match_the_package(logscale):
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(2, 4, 30, generator=g)
    for ours_cls, ref_cls in [(Snake, ref_activations.Snake), (SnakeBeta, ref_activations.SnakeBeta)]:
        ours, ref = ours_cls(4, alpha_logscale=logscale), ref_cls(4, alpha_logscale=logscale)
        with torch.no_grad():
            for p in ref.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
        ours.load_state_dict(ref.state_dict(), strict=True)
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)


def test_runs_under_bf16_autocast(real_mel):
    hparams = small_hparams()
    ours = ours_for(hparams)
    ours.load_state_dict(reference_model(hparams).state_dict())
    act = Activation1d(SnakeBeta(80, alpha_logscale=True))
    with torch.no_grad():
        full = ours(real_mel)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = ours(real_mel)
            acted = act(real_mel.bfloat16())
        acted_in_fp32 = act(real_mel.bfloat16().float())
    assert half.shape == full.shape and torch.isfinite(half).all() and torch.isfinite(acted).all()
    assert (half.float() - full).abs().max() < 0.05  # bf16 keeps ~3 significant digits
    assert (acted.float() - acted_in_fp32).abs().max() < 0.02 * acted_in_fp32.abs().max()  # a few bf16 roundings


def test_gradients_reach_every_parameter(real_mel):
    ours = ours_for(small_hparams(bias=True))
    ours.train()
    ours(real_mel[..., :8]).pow(2).mean().backward()
    assert all(p.grad is not None for p in ours.parameters())


def save_like_the_package(model: torch.nn.Module, folder: Path) -> None:
    """What ``BigVGAN.save_pretrained`` writes (its ``_save_pretrained``): weights and the hparams as JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    model._save_pretrained(folder)


def test_load_release_round_trip(tmp_path, real_mel):
    hparams = small_hparams("snakebeta", "1", tanh=False, bias=False)
    ref = reference_model(hparams, seed=3)
    save_like_the_package(ref, tmp_path / "release")
    assert {p.name for p in (tmp_path / "release").iterdir()} == {"config.json", "bigvgan_generator.pt"}

    config, state = load_release(tmp_path / "release")
    assert config["audio"] == {"sampling_rate": 22050, "n_fft": 1024, "num_mels": 80, "hop_size": 256,
                               "win_size": 1024, "fmin": 0.0, "fmax": 8000.0, "fmax_for_loss": None}
    g = config["generator"]
    assert g["type"] == "bigvgan" and g["resblock"] == "1" and g["upsample_rates"] == [8, 8, 2, 2]
    assert (g["activation"], g["snake_logscale"], g["use_tanh_at_final"], g["use_bias_at_final"]) == \
        ("snakebeta", True, False, False)
    ours = BigVGAN(types.SimpleNamespace(**g), config["audio"]["num_mels"]).eval()
    ours.load_state_dict(state, strict=True)
    with torch.no_grad():
        assert (ours(real_mel) - ref(real_mel)).abs().max() <= 1e-4

    cfg = config_from_dict(config, source="release")  # the project's loader takes it as it is
    assert BigVGAN(cfg.generator, cfg.audio.num_mels).state_dict().keys() == state.keys()


def test_synth_vocodes_with_a_release_folder_as_the_package_does(tmp_path, real_mel):
    ref = reference_model(small_hparams("snake", "2", tanh=True, bias=True), seed=4)
    save_like_the_package(ref, tmp_path / "release")
    np.save(tmp_path / "mel.npy", real_mel[0].numpy())
    seconds = synthesize(tmp_path / "release", tmp_path / "mel.npy", tmp_path / "out.wav")
    written, rate = soundfile.read(tmp_path / "out.wav", dtype="float32")
    with torch.no_grad():
        expected = ref(real_mel)[0, 0].numpy()
    assert rate == 22050 and seconds == pytest.approx(len(expected) / 22050)
    assert np.abs(written - expected).max() <= 1.5 / 32768  # 16-bit PCM
    with pytest.raises(UserError, match="holds a bigvgan generator: the jik876 format holds HiFi-GAN's only"):
        export(tmp_path / "release", tmp_path / "g_00000001")


def test_a_release_without_weight_norm_or_v2_keys_loads(tmp_path, real_mel):
    """A v1 release predates use_tanh_at_final / use_bias_at_final (the package then keeps tanh and
    the output bias), and a release may be saved after remove_weight_norm."""
    hparams = small_hparams("snake", "2", tanh=True, bias=True, logscale=False)
    ref = reference_model(hparams, seed=4)
    with torch.no_grad():
        expected = ref(real_mel)
    ref.remove_weight_norm()
    folder = tmp_path / "v1"
    save_like_the_package(ref, folder)
    raw = json.loads((folder / "config.json").read_text())
    del raw["use_tanh_at_final"], raw["use_bias_at_final"]
    (folder / "config.json").write_text(json.dumps(raw))

    config, state = load_release(folder)
    assert config["generator"]["use_tanh_at_final"] is True and config["generator"]["use_bias_at_final"] is True
    ours = BigVGAN(types.SimpleNamespace(**config["generator"]), 80).eval()
    ours.load_state_dict(state, strict=True)
    with torch.no_grad():
        assert (ours(real_mel) - expected).abs().max() <= 1e-4


class NotATensor:
    pass


@pytest.fixture
def release(tmp_path) -> Path:
    hparams = small_hparams(resblock="2")
    save_like_the_package(reference_model(hparams), tmp_path / "release")
    return tmp_path / "release"


def one_line_error(folder: Path) -> str:
    with pytest.raises(UserError) as info:
        load_release(folder)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_malformed_releases_give_one_line(release, tmp_path):
    config_path, weights_path = release / "config.json", release / "bigvgan_generator.pt"
    good_config, good_weights = config_path.read_text(), weights_path.read_bytes()

    raw = json.loads(good_config)
    del raw["hop_size"]
    config_path.write_text(json.dumps(raw))
    message = one_line_error(release)
    assert "config.json" in message and "'hop_size'" in message and "add it" in message

    config_path.write_text("{ not json")
    assert "not valid JSON" in one_line_error(release)
    config_path.write_text(json.dumps({**json.loads(good_config), "activation": "relu"}))
    assert "'activation'" in one_line_error(release)
    config_path.write_text(good_config)

    state = torch.load(weights_path, weights_only=True)
    torch.save({"generator": state["generator"], "extra": NotATensor()}, weights_path)
    message = one_line_error(release)
    assert "bigvgan_generator.pt" in message and "refused" in message and "NotATensor" in message
    torch.save({"generator": state["generator"], "h": AttrDict(json.loads(good_config))}, weights_path)
    assert "refused" in one_line_error(release)
    torch.save({"model": state["generator"]}, weights_path)
    assert "no 'generator' entry" in one_line_error(release)
    torch.save({"generator": {"conv_pre.bias": [1.0, 2.0]}}, weights_path)
    assert "not a state_dict" in one_line_error(release)
    weights_path.write_bytes(good_weights[: len(good_weights) // 2])
    assert "bigvgan_generator.pt" in one_line_error(release)

    weights_path.unlink()
    message = one_line_error(release)
    assert "lacks bigvgan_generator.pt" in message and "config.json and bigvgan_generator.pt" in message
    config_path.unlink()
    assert "lacks config.json" in one_line_error(release)
    assert "not a folder" in one_line_error(tmp_path / "nowhere")


def test_a_release_folder_seeds_a_fine_tuning_run_of_a_config_that_fits_it(tmp_path, demo_corpus):
    cfg = load_config("demo_bigvgan")
    hparams = {**{k: getattr(cfg.audio, k) for k in RELEASE_AUDIO_KEYS},
               **{k: getattr(cfg.generator, k) for k in (*RELEASE_GENERATOR_KEYS, "use_tanh_at_final", "use_bias_at_final")}}
    save_like_the_package(reference_model(hparams, seed=5), tmp_path / "release")
    config = write_config(tmp_path / "tune.yaml", "demo_bigvgan", training={"finetune_from": str(tmp_path / "release")})
    plan = make_plan(StartRequest(config=str(config), data=str(demo_corpus), run="tune", logs_dir=str(tmp_path / "logs")))
    check = next(c for c in plan.checks if c.name == "fine-tuning weights")
    assert check.ok and check.detail.endswith("release: generator; fresh optimisers and schedule from learning rate "
                                              "0.0001 (G), 0.0001 (D)")
    wider = write_config(tmp_path / "wider.yaml", "demo_bigvgan", generator={"upsample_initial_channel": 64},
                         training={"finetune_from": str(tmp_path / "release")})
    plan = make_plan(StartRequest(config=str(wider), data=str(demo_corpus), run="wider", logs_dir=str(tmp_path / "logs")))
    check = next(c for c in plan.checks if c.name == "fine-tuning weights")
    assert not check.ok and "does not fit this config: it has generator.conv_pre.bias of shape [32], where this config has [64]" in check.detail
