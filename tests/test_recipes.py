"""Recipes beyond the 2020 one: the losses (loss.gan, loss.mel, loss.stft) held to reference
libraries, the learning-rate schedules, the discriminator's late start, and fine-tuning."""

from __future__ import annotations

import math
from pathlib import Path

import auraloss
import numpy as np
import pytest
import torch
import yaml

from trainer.checkpoint import load_file
from trainer.config import CONFIG_DIR, config_from_dict, load_config
from trainer.errors import UserError
from trainer.gan import Gan
from trainer.losses import GAN_LOSSES
from trainer.mel import input_mel
from trainer.mrstft import MultiResolutionSTFT, Resolution
from trainer.multiscale_mel import MultiScaleMelLoss
from trainer.plan import StartRequest, make_plan
from trainer.rundir import read_jsonl

from conftest import write_config
from test_training import train


@pytest.fixture(scope="module")
def speech(demo_corpus) -> torch.Tensor:
    """Two seconds of the demo corpus's speech-like audio, and a noisy, quieter copy: [2, T]."""
    import soundfile

    audio, _ = soundfile.read(sorted((demo_corpus / "wavs").glob("*.wav"))[0], dtype="float32")
    clean = torch.from_numpy(audio[:44100].copy())
    noisy = 0.7 * clean + 0.02 * torch.from_numpy(np.random.default_rng(0).standard_normal(len(clean)).astype(np.float32))
    return torch.stack([clean, noisy])


def test_multi_resolution_stft_loss_equals_auralosss_with_the_configs_resolutions_and_weights(speech):
    resolutions = [[2048, 240, 1200], [512, 64, 256]]
    generated, reference = speech[[1, 0]], speech[[0, 1]]
    ours = MultiResolutionSTFT(tuple(Resolution(*r) for r in resolutions), sc_weight=0.5, mag_weight=2.0)(generated, reference)
    theirs = auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=[r[0] for r in resolutions], hop_sizes=[r[1] for r in resolutions], win_lengths=[r[2] for r in resolutions],
        w_sc=0.5, w_log_mag=2.0, w_lin_mag=0.0, w_phs=0.0)(generated[:, None], reference[:, None])
    assert abs(ours.item() - theirs.item()) <= 1e-5 * abs(theirs.item())


def test_multi_scale_mel_loss_equals_bigvgans(speech):
    bigvgan_loss = pytest.importorskip("bigvgan.loss")
    generated, reference = speech[[1, 0]][:, None], speech[[0, 1]][:, None]
    ours = MultiScaleMelLoss(22050, [5, 10, 20, 40, 80, 160, 320], [32, 64, 128, 256, 512, 1024, 2048])(generated, reference)
    theirs = bigvgan_loss.MultiScaleMelSpectrogramLoss(sampling_rate=22050)(generated, reference)
    assert abs(ours.item() - theirs.item()) <= 1e-5 * abs(theirs.item())


def test_gan_losses_are_their_textbook_forms():
    rng = torch.Generator().manual_seed(0)
    real = [torch.randn(2, 30, generator=rng), torch.randn(2, 11, generator=rng)]
    fake = [torch.randn(2, 30, generator=rng), torch.randn(2, 11, generator=rng)]
    r, f = [x.double().numpy() for x in real], [x.double().numpy() for x in fake]
    softplus = lambda x: np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)  # noqa: E731  -log(sigmoid(-x))
    expected = {
        "lsgan": (sum(np.mean((1 - a) ** 2) + np.mean(b**2) for a, b in zip(r, f)), sum(np.mean((1 - b) ** 2) for b in f)),
        "hinge": (sum(np.mean(np.maximum(0, 1 - a)) + np.mean(np.maximum(0, 1 + b)) for a, b in zip(r, f)),
                  sum(-np.mean(b) for b in f)),
        "bce": (sum(np.mean(softplus(-a)) + np.mean(softplus(b)) for a, b in zip(r, f)), sum(np.mean(softplus(-b)) for b in f)),
    }
    for name, (d_loss, g_loss) in expected.items():
        loss = GAN_LOSSES[name]
        assert loss.discriminator(real, fake).item() == pytest.approx(d_loss, rel=1e-6, abs=1e-6), name
        assert loss.generator(fake).item() == pytest.approx(g_loss, rel=1e-6, abs=1e-6), name
    bigvgan_loss = pytest.importorskip("bigvgan.loss")
    assert GAN_LOSSES["lsgan"].discriminator(real, fake).item() == pytest.approx(bigvgan_loss.discriminator_loss(real, fake)[0].item(), rel=1e-7)


def lrs(cfg, steps: int, epoch_every: int = 1000) -> list[float]:
    gan = Gan(cfg, torch.device("cpu"))
    out = []
    for step in range(steps):
        gan.scheduler_g.before_step(step, step // epoch_every)
        out.append(gan.lr)
        if (step + 1) % epoch_every == 0:
            gan.end_epoch()
    return out


def small(**training):
    cfg = load_config("demo")
    for key, value in training.items():
        setattr(cfg.training, key, value)
    return cfg


def test_learning_rate_schedules_with_warmup():
    warm = lrs(small(lr_schedule="constant", warmup_steps=4), 6)
    assert warm == pytest.approx([5e-5, 1e-4, 1.5e-4, 2e-4, 2e-4, 2e-4])
    cosine = lrs(small(lr_schedule="cosine", warmup_steps=2, target_step=12, min_learning_rate=2e-5), 13)
    assert cosine[:2] == pytest.approx([1e-4, 2e-4]) and cosine[12] == pytest.approx(2e-5)
    assert cosine[7] == pytest.approx(2e-5 + 1.8e-4 * (1 + math.cos(math.pi * 0.5)) / 2)
    assert all(a >= b for a, b in zip(cosine[1:], cosine[2:]))
    per_step = lrs(small(lr_schedule="exponential_per_step", lr_decay=0.9), 4)
    assert per_step == pytest.approx([2e-4 * 0.9**k for k in range(4)])
    # the reference's: decayed after each epoch by torch's ExponentialLR (bit for bit), warmed up or not
    per_epoch = lrs(small(), 9, epoch_every=3)
    assert per_epoch == [2e-4] * 3 + [2e-4 * 0.999] * 3 + [2e-4 * 0.999 * 0.999] * 3
    warmed = lrs(small(warmup_steps=4), 9, epoch_every=3)
    assert warmed == pytest.approx([5e-5, 1e-4, 1.5e-4, 2e-4 * 0.999, 2e-4 * 0.999, 2e-4 * 0.999, 2e-4 * 0.999**2,
                                    2e-4 * 0.999**2, 2e-4 * 0.999**2])


def test_before_the_discriminator_start_step_only_the_generator_learns():
    cfg = small(discriminator_start_step=1, batch_size=2, segment_size=2048)
    gan = Gan(cfg, torch.device("cpu"))
    audio = (torch.rand(2, 2048, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.5
    mel = input_mel(cfg.audio)(audio)
    d_before = [p.detach().clone() for d in gan.discriminators.values() for p in d.parameters()]
    g_before = [p.detach().clone() for p in gan.generator.parameters()]
    out = gan.step(mel, audio, measure_grads=True, step=0)
    loss_g, loss_d, loss_mel, loss_adv, loss_fm, _ = out.losses.tolist()
    assert loss_d == loss_adv == loss_fm == 0 and loss_g == pytest.approx(cfg.training.lambda_mel * loss_mel)
    assert all(torch.equal(a, p) for a, p in zip(d_before, (p for d in gan.discriminators.values() for p in d.parameters())))
    assert not all(torch.equal(a, p) for a, p in zip(g_before, gan.generator.parameters()))
    out = gan.step(mel, audio, measure_grads=True, step=1)
    assert out.losses[1] > 0 and out.losses[3] > 0
    assert not all(torch.equal(a, p) for a, p in zip(d_before, (p for d in gan.discriminators.values() for p in d.parameters())))


def test_an_mr_stft_recipe_trains_logs_its_loss_and_resumes_bit_identically(quick_config, demo_corpus, tmp_path):
    recipe = write_config(tmp_path / "mrstft.yaml", loss={"stft": "multi_resolution", "gan": "hinge"},
                          training={"lr_schedule": "cosine", "warmup_steps": 3, "target_step": 8, "lambda_stft": 2.5},
                          schedule={"log_every": 2, "validate_every": 3, "checkpoint_every": 2, "keep_last": 2,
                                    "val_samples": 1, "milestones": []})
    straight = train(recipe, demo_corpus, tmp_path / "a", target_step=6)
    metrics = read_jsonl(straight.metrics)
    assert all(m["loss_stft"] > 0 for m in metrics)
    assert metrics[0]["lr"] < metrics[1]["lr"]  # warming up
    interrupted = train(recipe, demo_corpus, tmp_path / "b", target_step=3)
    train(recipe, demo_corpus, tmp_path / "b", resume="latest", target_step=6)
    a, b = load_file(straight.checkpoints / "ckpt_00000006.pt"), load_file(interrupted.checkpoints / "ckpt_00000006.pt")
    for key in ("generator", "mpd", "msd"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name}"
    assert a["optim_g"]["param_groups"][0]["lr"] == b["optim_g"]["param_groups"][0]["lr"]


def test_finetuning_starts_from_the_checkpoints_weights_with_fresh_optimisers(quick_config, demo_corpus, tmp_path):
    base = train(quick_config, demo_corpus, tmp_path, run="base", target_step=2)
    pretrained = base.checkpoints / "ckpt_00000002.pt"
    tuned = write_config(tmp_path / "tuned.yaml", training={"finetune_from": str(pretrained), "learning_rate_g": 5e-5,
                                                            "finetune_discriminators": False},
                         schedule={"log_every": 1, "validate_every": 100, "checkpoint_every": 100, "val_samples": 1,
                                   "milestones": []})
    plan = make_plan(StartRequest(config=str(tuned), data=str(demo_corpus), run="tuned", logs_dir=str(tmp_path), target_step=1))
    check = next(c for c in plan.checks if c.name == "fine-tuning weights")
    assert check.ok and "generator; fresh optimisers" in check.detail
    run = train(tuned, demo_corpus, tmp_path, run="tuned", target_step=1)
    start = read_jsonl(run.events)[0]
    assert start["event"] == "start" and start["finetuned_from"] == f"{pretrained.resolve()} (generator)"
    after = load_file(run.checkpoints / "ckpt_00000001.pt")
    assert after["step"] == 1 and read_jsonl(run.metrics)[0]["lr"] == 5e-5
    assert all(s["step"] == 1 for s in after["optim_g"]["state"].values())  # fresh AdamW: one update so far
    before = load_file(pretrained)["generator"]
    moved = [name for name in before if not torch.equal(before[name], after["generator"][name])]
    assert moved and len(moved) <= len(before)  # one small step away from the pretrained weights
    assert max((before[n] - after["generator"][n]).abs().max().item() for n in before) < 1e-3

    wider = write_config(tmp_path / "wider.yaml", generator={"upsample_initial_channel": 128},
                         training={"finetune_from": str(pretrained)})
    plan = make_plan(StartRequest(config=str(wider), data=str(demo_corpus), run="wider", logs_dir=str(tmp_path)))
    check = next(c for c in plan.checks if c.name == "fine-tuning weights")
    assert not check.ok and "does not fit this config: it has generator.conv_pre.bias of shape [64], where this config has [128]" in check.detail


@pytest.mark.parametrize("section,message", [
    ({"discriminator": {"kinds": ["mpd", "mrd"], "mrd_resolutions": [[512, 50, 600]]}},
     r"discriminator.mrd_resolutions: \[512, 50, 600\] has a window of 600 samples, longer than its n_fft 512"),
    ({"discriminator": {"kinds": ["mpd", "gan"]}}, "discriminator.kinds must list some of msd, mpd, mrd, cqt"),
    ({"audio": {"sampling_rate": 16000, "fmax": None}, "discriminator": {"kinds": ["mpd", "cqt"]}},
     "the scale of hop 512, 9 octaves, 24 bins per octave: 9 octaves from 32.7 Hz reach 16266 Hz, above the Nyquist"),
    ({"loss": {"stft": "multi_resolution", "stft_resolutions": [[32768, 512, 2048]]}},
     r"loss.stft_resolutions: \[32768, 512, 2048\] needs segments longer than 16384 samples"),
    ({"generator": {"activation": "snake"}}, "generator.activation is a BigVGAN option, but generator.type is hifigan"),
    ({"generator": {"type": "bigvgan", "activation": "relu"}}, "generator.activation must be one of snake, snakebeta"),
    ({"loss": {"stfft": "multi_resolution"}}, r"unknown key 'loss.stfft' \(did you mean 'stft'\?\)"),
    ({"loss": {"gan": "wasserstein"}}, "loss.gan must be one of lsgan, hinge, bce"),
    ({"loss": {"mel": "multi_scale", "mel_scales": [80], "mel_windows": [64]}}, "80 mel bands need a window of at least 158"),
    ({"training": {"lr_schedule": "linear"}}, "training.lr_schedule must be one of exponential_per_epoch"),
])
def test_bad_recipes_are_one_line_errors(section, message):
    with pytest.raises(UserError, match=message):
        config_from_dict(section)


def test_a_changed_recipe_is_refused_on_resume_naming_the_key(quick_config, demo_corpus, tmp_path):
    train(quick_config, demo_corpus, tmp_path, target_step=2)
    other = write_config(tmp_path / "mrd.yaml", discriminator={"kinds": ["mpd", "mrd"]})
    with pytest.raises(UserError, match=r"discriminator.kinds is \['msd', 'mpd'\] in the checkpoint but \['mpd', 'mrd'\]"):
        train(other, demo_corpus, tmp_path, resume="latest", target_step=4)


def demo_sized(name: str, folder: Path) -> Path:
    """The shipped config ``name`` shrunk to a few seconds of CPU: narrow networks, batch 2 of short
    segments, every bookkeeping event within two steps, no quality scoring."""
    raw = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    g, a = raw["generator"], raw["audio"]
    g["upsample_initial_channel"] = min(g["upsample_initial_channel"], 4 * 2 ** len(g["upsample_rates"]))
    raw["discriminator"]["channel_divisor"] = 8
    raw["training"].update(batch_size=2, segment_size=16 * a["hop_size"], num_workers=0, threads=2)
    raw["schedule"] = {"log_every": 1, "validate_every": 2, "checkpoint_every": 2, "val_samples": 1, "quality_every": 0,
                       "milestones": []}
    raw["data"] = {"val_count": 1}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_every_shipped_recipe_trains_at_demo_size(name, demo_corpus, tmp_path):
    run = train(demo_sized(name, tmp_path), demo_corpus, tmp_path, target_step=2)
    metrics = read_jsonl(run.metrics)
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        assert all(math.isfinite(m[k]) for k in ("loss_g", "loss_d", "loss_mel", "loss_adv", "loss_fm"))
        assert (m["loss_stft"] is not None) == (load_config(name).loss.stft != "none")
    saved = load_file(run.checkpoints / "ckpt_00000002.pt")
    assert set(load_config(name).discriminator.kinds) <= saved.keys()


def test_check_estimates_the_training_memory_of_each_recipe(demo_corpus, tmp_path):
    from trainer.plan import _training_memory

    cfg = load_config("demo_bigvgan")
    state, activations = _training_memory(cfg)
    params_g, params_d = Gan(cfg, torch.device("cpu")).parameter_counts()
    assert state == 16 * (params_g + params_d)  # fp32 weights, gradients and AdamW's two moments
    cfg.training.batch_size *= 2
    assert 1.8 * activations < _training_memory(cfg)[1] < 2 * activations  # the weights saved for backward stay
    # BigVGAN v2's whole batch of 32 × 65536 samples needs hundreds of GB in one process: a warning, not a refusal
    plan = make_plan(StartRequest(config="bigvgan_44k_128band", data=str(demo_corpus), logs_dir=str(tmp_path)))
    memory = next(c for c in plan.checks if c.name == "memory")
    assert memory.ok and memory.warning and "activations for a batch of 32 × 65536 samples" in memory.detail
