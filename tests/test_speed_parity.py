"""The fast training step makes the same parameter updates as the reference's plain-autograd step.

The reference (jik876/hifi-gan's train.py) runs its generator step with trainable discriminators,
back-propagating through the real-audio branch and computing discriminator weight gradients that
it then discards. Ours skips that work; this test re-implements the reference's step and checks
that both leave the same weights after two steps from the same weights and batches.
"""

import copy
import itertools

import torch
import torch.nn.functional as F

from trainer.config import load_config
from trainer.gan import Gan
from trainer.losses import LeastSquares, feature_loss

discriminator_loss, generator_loss = LeastSquares.discriminator, LeastSquares.generator
from trainer.mel import input_mel, loss_mel


def reference_step(g, mpd, msd, optim_g, optim_d, mel_fn, mel, audio, lam):
    y = audio.unsqueeze(1)
    y_g_hat = g(mel)
    y_g_hat_mel = mel_fn(y_g_hat.squeeze(1))
    y_mel = mel_fn(audio)

    optim_d.zero_grad()
    p_real, p_fake, _, _ = mpd(y, y_g_hat.detach())
    s_real, s_fake, _, _ = msd(y, y_g_hat.detach())
    loss_d = discriminator_loss(s_real, s_fake) + discriminator_loss(p_real, p_fake)
    loss_d.backward()
    optim_d.step()

    optim_g.zero_grad()
    loss_mel_l1 = F.l1_loss(y_mel, y_g_hat_mel) * lam.lambda_mel
    _, p_fake, p_fmap_r, p_fmap_g = mpd(y, y_g_hat)
    _, s_fake, s_fmap_r, s_fmap_g = msd(y, y_g_hat)
    loss_g = (generator_loss(s_fake) * lam.lambda_adv + generator_loss(p_fake) * lam.lambda_adv
              + feature_loss(s_fmap_r, s_fmap_g) * lam.lambda_fm + feature_loss(p_fmap_r, p_fmap_g) * lam.lambda_fm
              + loss_mel_l1)
    loss_g.backward()
    optim_g.step()
    return loss_g.detach(), loss_d.detach()


def test_fast_step_updates_parameters_like_the_reference_step(tmp_path):
    torch.manual_seed(0)
    cfg = load_config("demo")
    cfg.training.batch_size = 2
    cfg.training.segment_size = 2048
    t = cfg.training
    gan = Gan(cfg, torch.device("cpu"))
    ours_mpd, ours_msd = gan.discriminators["mpd"], gan.discriminators["msd"]
    g, mpd, msd = (copy.deepcopy(m) for m in (gan.generator, ours_mpd, ours_msd))
    betas = (t.adam_b1, t.adam_b2)
    optim_g = torch.optim.AdamW(g.parameters(), t.learning_rate_g, betas=betas)
    optim_d = torch.optim.AdamW(itertools.chain(msd.parameters(), mpd.parameters()), t.learning_rate_d, betas=betas)
    mel_fn = loss_mel(cfg.audio)

    for _ in range(2):
        audio = (torch.rand(2, 2048) * 2 - 1) * 0.5
        mel = input_mel(cfg.audio)(audio)
        ref_loss_g, ref_loss_d = reference_step(g, mpd, msd, optim_g, optim_d, mel_fn, mel, audio, t)
        out = gan.step(mel, audio, measure_grads=True)
        # a few float32 ulps: G's loss is about 200 here, where one ulp is 1.5e-5, and CPUs
        # differ in how their kernels order a sum
        torch.testing.assert_close(out.losses[0], ref_loss_g, rtol=4e-7, atol=1e-5)
        torch.testing.assert_close(out.losses[1], ref_loss_d, rtol=4e-7, atol=1e-6)

    for name, ref, ours in [("generator", g, gan.generator), ("mpd", mpd, ours_mpd), ("msd", msd, ours_msd)]:
        theirs = ref.state_dict()
        for key, value in ours.state_dict().items():
            torch.testing.assert_close(value, theirs[key], rtol=0, atol=1e-6, msg=f"{name}.{key}")
    assert all(p.requires_grad for p in itertools.chain(ours_mpd.parameters(), ours_msd.parameters()))
