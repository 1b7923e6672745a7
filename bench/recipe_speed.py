"""Our BigVGAN training step against NVIDIA's ``bigvgan`` package (2.4.1): same config, same weights, same batch.

    python bench/recipe_speed.py [--configs demo_bigvgan,demo_bigvgan_44k] [--batch N] [--segment N]
        [--steps 5] [--warmup 2] [--threads 2] [--torchaudio PATH]

``--batch`` and ``--segment`` default to each config's own. The reference is the body of the training
loop of the package's ``bigvgan/train.py`` (``Reference.train_step`` below: its generator, its
discriminators, its ``discriminator_loss`` / ``generator_loss`` / ``feature_loss``, its single-scale
``mel_spectrogram`` or ``MultiScaleMelSpectrogramLoss``, two AdamW optimisers, per-network
``clip_grad_norm_``, per-step ``ExponentialLR``), fp32, on the CPU. Ours is ``Gan.step``.

Config translation (our YAML -> the package's hyper-parameters): the generator's keys as they are;
MPD + MRD for ``discriminator.kinds: [mpd, mrd]``, MPD + CQTD (``use_cqtd_instead_of_mrd``) for
``[mpd, cqt]``; ``discriminator.channel_divisor`` d as ``discriminator_channel_mult = 1/d`` (the
package's MPD and MRD both scale every width by it, ``int(32 * mult)``, as ours ``32 // d``) and as
``cqtd_filters`` / ``cqtd_max_filters`` divided by d; ``loss.mel: multi_scale`` as
``use_multiscale_melloss``; ``lambda_mel`` as ``lambda_melloss``; ``grad_clip`` as ``clip_grad_norm``
(the package always clips: without ``grad_clip`` it clips at its default, 1000, and ours does not
clip). What the package cannot express (another GAN loss, lambda_fm != 2, lambda_adv != 1, an STFT
loss, other mel scales, a discriminator start step, different G and D learning rates) is refused.

``bigvgan.discriminators`` imports torchaudio, which does not load with this torch: as in
tests/test_bigvgan_discriminators.py a stand-in ``torchaudio`` module is put in ``sys.modules`` while
it is imported, whose ``Resample`` is torchaudio's own class compiled from its Python source, read
from a torchaudio wheel (``--torchaudio``, else ``$TORCHAUDIO_SRC``, else /tmp/ta_whl/torchaudio-*.whl;
get one with ``pip download --no-deps torchaudio==2.11.1 -d /tmp/ta_whl``). The CQT discriminator
also needs ``nnaudio`` (0.3.4).

Each side runs in a worker process of its own (ours changes process-wide settings, such as the
allocator's), and the parent asks them for one step at a time, alternately, so that both see the same
machine load. The reference's worker builds the package's networks from the config's seed and writes
their weights and the batch (uniform noise in [-0.5, 0.5], its input mel and loss mel from the
package's ``mel_spectrogram``, as its data loader would yield them: outside the timing); ours loads
both, ``load_state_dict(strict=True)`` for every network.

- Parity: the first step of each, from the same weights on the same batch. Per network, the largest
  absolute parameter difference after it and how many elements differ by more than 1e-6 (AdamW's first
  update moves every element by about ±lr, the sign of its gradient, so an element whose gradient is
  zero within rounding can move either way: up to 2·lr apart), with both sides' first losses and the
  reference's gradient norms (which say whether its clipping was active).
- Timing: ``--warmup`` steps each, not counted (the first of them is the parity step), then
  ``--steps`` timed steps each, alternating; the medians.

Prints a header line, one JSON line per config (``speedup`` = their s/step / our s/step: > 1 means
ours is faster) and a table at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import itertools
import json
import os
import sys
import tempfile
import time
import types
import warnings
from datetime import date
from pathlib import Path
from statistics import median

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import cpu_name  # noqa: E402
from bench.workers import Worker, noise_audio  # noqa: E402
from trainer.config import Config, config_from_dict, load_config  # noqa: E402

DEFAULT_CONFIGS = "demo_bigvgan,demo_bigvgan_44k"
PACKAGE_MEL_SCALES = ([5, 10, 20, 40, 80, 160, 320], [32, 64, 128, 256, 512, 1024, 2048])
PACKAGE_CLIP_DEFAULT = 1000.0  # train.py: h.get("clip_grad_norm", 1000.0)


def default_torchaudio_source() -> str | None:
    if os.environ.get("TORCHAUDIO_SRC"):
        return os.environ["TORCHAUDIO_SRC"]
    wheels = sorted(Path("/tmp/ta_whl").glob("torchaudio-*.whl"))
    return str(wheels[-1]) if wheels else None


# -------------------------------------------------------------------------------------- config


def bench_config(name: str, batch: int | None, segment: int | None, threads: int) -> Config:
    """Our config, at ``batch`` x ``segment`` (when given), on the CPU in fp32, validated again."""
    raw = load_config(name).to_dict()
    t = raw["training"]
    if batch:
        t["batch_size"] = batch
    if segment:
        t["segment_size"] = segment
    t.update(threads=threads, device="cpu", precision="fp32", num_workers=0)
    return config_from_dict(raw, source=f"{name} (bench)")


def second_kind(cfg: Config) -> str:
    """``mrd`` or ``cqt``: the discriminator the package's train.py runs next to its MPD."""
    kinds = cfg.discriminator.kinds
    if sorted(kinds) not in (["mpd", "mrd"], ["cqt", "mpd"]):
        raise SystemExit(f"{cfg.name}: discriminator.kinds {kinds}: the package trains MPD + MRD or MPD + CQTD only")
    return "mrd" if "mrd" in kinds else "cqt"


def package_hparams(cfg: Config) -> dict:
    """The package's hyper-parameters (its config.json keys) for our config; refuses what it cannot express."""
    a, g, d, t, loss = cfg.audio, cfg.generator, cfg.discriminator, cfg.training, cfg.loss
    problems = []
    if cfg.generator.type != "bigvgan":
        problems.append(f"generator.type {g.type} (the package trains BigVGAN)")
    if loss.gan != "lsgan":
        problems.append(f"loss.gan {loss.gan} (the package's is lsgan)")
    if loss.stft != "none":
        problems.append(f"loss.stft {loss.stft} (the package has none)")
    if loss.mel == "multi_scale" and (loss.mel_scales, loss.mel_windows) != PACKAGE_MEL_SCALES:
        problems.append("loss.mel_scales / mel_windows other than the package's")
    if t.lambda_fm != 2 or t.lambda_adv != 1:
        problems.append(f"lambda_fm {t.lambda_fm}, lambda_adv {t.lambda_adv} (the package's are 2 and 1)")
    if t.learning_rate_g != t.learning_rate_d:
        problems.append("learning_rate_g != learning_rate_d (the package has one learning_rate)")
    if t.discriminator_start_step or t.warmup_steps:
        problems.append("discriminator_start_step / warmup_steps (not in the package's step)")
    if problems:
        raise SystemExit(f"{cfg.name}: the package's train.py cannot express " + "; ".join(problems))
    kind = second_kind(cfg)
    h = {
        # audio
        "sampling_rate": a.sampling_rate, "n_fft": a.n_fft, "num_mels": a.num_mels, "hop_size": a.hop_size,
        "win_size": a.win_size, "fmin": a.fmin, "fmax": a.fmax, "fmax_for_loss": a.fmax_for_loss,
        # generator
        "resblock": g.resblock, "upsample_rates": g.upsample_rates, "upsample_kernel_sizes": g.upsample_kernel_sizes,
        "upsample_initial_channel": g.upsample_initial_channel, "resblock_kernel_sizes": g.resblock_kernel_sizes,
        "resblock_dilation_sizes": g.resblock_dilation_sizes, "activation": g.activation,
        "snake_logscale": g.snake_logscale, "use_tanh_at_final": g.use_tanh_at_final,
        "use_bias_at_final": g.use_bias_at_final,
        # discriminators
        "mpd_reshapes": d.periods, "use_spectral_norm": False, "discriminator_channel_mult": 1 / d.channel_divisor,
        "resolutions": d.mrd_resolutions, "use_cqtd_instead_of_mrd": kind == "cqt",
        "cqtd_filters": d.cqt_filters // d.channel_divisor, "cqtd_max_filters": d.cqt_max_filters // d.channel_divisor,
        "cqtd_filters_scale": 1, "cqtd_dilations": d.cqt_dilations, "cqtd_hop_lengths": d.cqt_hop_lengths,
        "cqtd_n_octaves": d.cqt_n_octaves, "cqtd_bins_per_octaves": d.cqt_bins_per_octaves,
        # training
        "batch_size": t.batch_size, "segment_size": t.segment_size, "learning_rate": t.learning_rate_g,
        "adam_b1": t.adam_b1, "adam_b2": t.adam_b2, "lr_decay": t.lr_decay, "seed": t.seed,
        "use_multiscale_melloss": loss.mel == "multi_scale", "lambda_melloss": t.lambda_mel,
    }
    if t.grad_clip is not None:
        h["clip_grad_norm"] = t.grad_clip
    return h


def step_differences(cfg: Config) -> list[str]:
    """How the package's step differs from ours on this config (beyond the order of floating-point sums)."""
    t, kind = cfg.training, second_kind(cfg)
    out = []
    theirs_clip = t.grad_clip if t.grad_clip is not None else PACKAGE_CLIP_DEFAULT
    ours_clip = f"at {t.grad_clip:g}, all discriminators' gradients as one vector" if t.grad_clip is not None else "none (no grad_clip)"
    out.append(f"clipping: theirs clip_grad_norm_ at {theirs_clip:g} on MPD, on {kind.upper()} separately and on G, "
               f"every step; ours {ours_clip}" + ("" if t.grad_clip is None else ", and G's"))
    if t.lr_schedule != "exponential_per_step":
        out.append(f"lr: theirs ExponentialLR({t.lr_decay}) stepped after every step; ours {t.lr_schedule}")
    out.append("G step: theirs backpropagates into the discriminators' weights too (gradients it discards) and "
               "through their real branch; ours freezes them")
    if cfg.loss.mel == "multi_scale":
        out.append("theirs also computes the single-scale mel of the output every step (unused by its multi-scale "
                   "loss) and a zero-weighted second L1 per scale (mag_weight 0)")
    else:
        out.append("theirs takes the loss mel of the real audio from its data loader (untimed here); ours computes it "
                   "in the step")
    out.append("theirs .item()s every sub-discriminator's loss (discriminator_loss)")
    return out


# ------------------------------------------------------------------------------------- package


def import_package(torchaudio_source: str):
    """``bigvgan.bigvgan``, ``bigvgan.discriminators``, ``bigvgan.loss``, ``bigvgan.meldataset``, ``bigvgan.env``,
    the discriminators imported with a stand-in ``torchaudio`` whose ``Resample`` is torchaudio's own
    (compiled from its source by the discriminator tests' helper), removed again after."""
    os.environ["TORCHAUDIO_SRC"] = torchaudio_source
    from tests.test_bigvgan_discriminators import _torchaudio_resample_class

    resample = _torchaudio_resample_class()
    if resample is None:
        raise SystemExit(f"no torchaudio source at {torchaudio_source}")
    stand_in = types.ModuleType("torchaudio")
    stand_in.transforms = types.ModuleType("torchaudio.transforms")
    stand_in.transforms.Spectrogram = None  # only the MBD, not used here, needs it
    stand_in.transforms.Resample = resample
    saved = {name: sys.modules.get(name) for name in ("torchaudio", "torchaudio.transforms")}
    sys.modules.update({"torchaudio": stand_in, "torchaudio.transforms": stand_in.transforms})
    sys.modules.pop("bigvgan.discriminators", None)
    try:
        discriminators = importlib.import_module("bigvgan.discriminators")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return types.SimpleNamespace(
        bigvgan=importlib.import_module("bigvgan.bigvgan"), discriminators=discriminators,
        loss=importlib.import_module("bigvgan.loss"), meldataset=importlib.import_module("bigvgan.meldataset"),
        env=importlib.import_module("bigvgan.env"))


class Reference:
    """The package's networks, optimisers, schedulers and train.py loop body for one config."""

    def __init__(self, P, h: dict):
        self.P = P
        self.h = h = P.env.AttrDict(h)
        torch.manual_seed(h.seed)
        self.generator = P.bigvgan.BigVGAN(h, use_cuda_kernel=False)
        self.mpd = P.discriminators.MultiPeriodDiscriminator(h)
        if h.get("use_cqtd_instead_of_mrd", False):
            self.mrd = P.discriminators.MultiScaleSubbandCQTDiscriminator(h)
        else:
            self.mrd = P.discriminators.MultiResolutionDiscriminator(h)
        if h.get("use_multiscale_melloss", False):
            self.fn_mel_loss_multiscale = P.loss.MultiScaleMelSpectrogramLoss(sampling_rate=h.sampling_rate)
        else:
            self.fn_mel_loss_singlescale = F.l1_loss
        self.optim_g = torch.optim.AdamW(self.generator.parameters(), h.learning_rate, betas=[h.adam_b1, h.adam_b2])
        self.optim_d = torch.optim.AdamW(itertools.chain(self.mrd.parameters(), self.mpd.parameters()),
                                         h.learning_rate, betas=[h.adam_b1, h.adam_b2])
        self.scheduler_g = torch.optim.lr_scheduler.ExponentialLR(self.optim_g, gamma=h.lr_decay, last_epoch=-1)
        self.scheduler_d = torch.optim.lr_scheduler.ExponentialLR(self.optim_d, gamma=h.lr_decay, last_epoch=-1)
        self.generator.train()
        self.mpd.train()
        self.mrd.train()

    def mel(self, audio: torch.Tensor, fmax) -> torch.Tensor:
        h = self.h
        return self.P.meldataset.mel_spectrogram(audio, h.n_fft, h.num_mels, h.sampling_rate, h.hop_size,
                                                 h.win_size, h.fmin, fmax, center=False)

    def batch(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What its MelDataset yields (less the file name): input mel, waveform, loss mel."""
        return self.mel(audio, self.h.fmax), audio, self.mel(audio, self.h.fmax_for_loss)

    def train_step(self, x, y, y_mel) -> dict:
        """bigvgan/train.py's loop body (2.4.1), freeze_step 0, without its logging, checkpoints and validation."""
        h, L = self.h, self.P.loss
        generator, mpd, mrd = self.generator, self.mpd, self.mrd
        y = y.unsqueeze(1)

        y_g_hat = generator(x)
        y_g_hat_mel = self.P.meldataset.mel_spectrogram(y_g_hat.squeeze(1), h.n_fft, h.num_mels, h.sampling_rate,
                                                        h.hop_size, h.win_size, h.fmin, h.fmax_for_loss)

        self.optim_d.zero_grad()
        # MPD
        y_df_hat_r, y_df_hat_g, _, _ = mpd(y, y_g_hat.detach())
        loss_disc_f, _, _ = L.discriminator_loss(y_df_hat_r, y_df_hat_g)
        # MRD (or CQTD)
        y_ds_hat_r, y_ds_hat_g, _, _ = mrd(y, y_g_hat.detach())
        loss_disc_s, _, _ = L.discriminator_loss(y_ds_hat_r, y_ds_hat_g)
        loss_disc_all = loss_disc_s + loss_disc_f
        clip_grad_norm = h.get("clip_grad_norm", PACKAGE_CLIP_DEFAULT)
        loss_disc_all.backward()
        grad_norm_mpd = torch.nn.utils.clip_grad_norm_(mpd.parameters(), clip_grad_norm)
        grad_norm_mrd = torch.nn.utils.clip_grad_norm_(mrd.parameters(), clip_grad_norm)
        self.optim_d.step()

        # Generator
        self.optim_g.zero_grad()
        lambda_melloss = h.get("lambda_melloss", 45.0)
        if h.get("use_multiscale_melloss", False):
            loss_mel = self.fn_mel_loss_multiscale(y, y_g_hat) * lambda_melloss
        else:
            loss_mel = self.fn_mel_loss_singlescale(y_mel, y_g_hat_mel) * lambda_melloss
        # MPD loss
        y_df_hat_r, y_df_hat_g, fmap_f_r, fmap_f_g = mpd(y, y_g_hat)
        loss_fm_f = L.feature_loss(fmap_f_r, fmap_f_g)
        loss_gen_f, _ = L.generator_loss(y_df_hat_g)
        # MRD loss
        y_ds_hat_r, y_ds_hat_g, fmap_s_r, fmap_s_g = mrd(y, y_g_hat)
        loss_fm_s = L.feature_loss(fmap_s_r, fmap_s_g)
        loss_gen_s, _ = L.generator_loss(y_ds_hat_g)
        loss_gen_all = loss_gen_s + loss_gen_f + loss_fm_s + loss_fm_f + loss_mel
        loss_gen_all.backward()
        grad_norm_g = torch.nn.utils.clip_grad_norm_(generator.parameters(), clip_grad_norm)
        self.optim_g.step()

        # BigVGAN-v2: the schedulers step after every step
        self.scheduler_g.step()
        self.scheduler_d.step()
        return {"loss_g": loss_gen_all.item(), "loss_d": loss_disc_all.item(), "loss_mel": loss_mel.item() / lambda_melloss,
                "grad_norm_g": grad_norm_g.item(), "grad_norm_mpd": grad_norm_mpd.item(),
                "grad_norm_" + ("cqt" if h.get("use_cqtd_instead_of_mrd", False) else "mrd"): grad_norm_mrd.item()}


# --------------------------------------------------------------------------------------- worker


def worker(kind: str, args, **options) -> Worker:
    extra = ["--threads", str(args.threads)] + (["--torchaudio", args.torchaudio] if args.torchaudio else [])
    return Worker(Path(__file__).resolve(), kind, extra, **options)


def worker_main(kind: str, args) -> None:
    protocol = os.fdopen(os.dup(1), "w")
    sys.stdout = sys.stderr  # the package prints (mpd_reshapes, mel range warnings); keep stdout for answers
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    side = ReferenceSide(args) if kind == "ref" else OurSide(args)
    for line in sys.stdin:
        request = json.loads(line)
        answer = getattr(side, request.pop("cmd"))(**request)
        protocol.write(json.dumps(answer or {}) + "\n")
        protocol.flush()


class ReferenceSide:
    def __init__(self, args):
        if not args.torchaudio:
            raise SystemExit("torchaudio's source is needed for the CQT discriminator's Resample: "
                             "pip download --no-deps torchaudio==2.11.1 -d /tmp/ta_whl (or --torchaudio PATH)")
        self.P = import_package(args.torchaudio)

    def setup(self, config: str, batch: int, segment: int, threads: int, scratch: str) -> dict:
        """Builds the package's networks; writes their weights and the batch to ``scratch``/init.pt."""
        cfg = bench_config(config, batch, segment, threads)
        self.kind = second_kind(cfg)
        with contextlib.redirect_stdout(io.StringIO()):
            self.ref = Reference(self.P, package_hparams(cfg))
        self.batch = self.ref.batch(noise_audio(cfg.training.batch_size, cfg.training.segment_size))
        nets = self.networks()
        x, audio, y_mel = self.batch
        torch.save({"networks": {n: m.state_dict() for n, m in nets.items()}, "x": x, "audio": audio, "y_mel": y_mel},
                   Path(scratch) / "init.pt")
        return {"parameters": {n: sum(p.numel() for p in m.parameters()) for n, m in nets.items()},
                "threads": torch.get_num_threads()}

    def networks(self) -> dict:
        return {"generator": self.ref.generator, "mpd": self.ref.mpd, self.kind: self.ref.mrd}

    def step(self) -> dict:
        started = time.perf_counter()
        out = self.ref.train_step(*self.batch)
        return {"seconds": time.perf_counter() - started, **out}

    def save(self, path: str) -> None:
        torch.save({n: m.state_dict() for n, m in self.networks().items()}, path)


class OurSide:
    def __init__(self, args):
        pass

    def setup(self, config: str, batch: int, segment: int, threads: int, scratch: str) -> dict:
        from trainer.gan import Gan
        from trainer.launch import setup_process

        cfg = bench_config(config, batch, segment, threads)
        self.gan = Gan(cfg, setup_process(cfg))
        init = torch.load(Path(scratch) / "init.pt")
        nets = self.networks()
        assert set(nets) == set(init["networks"]), (sorted(nets), sorted(init["networks"]))
        for name, module in nets.items():
            module.load_state_dict(init["networks"][name], strict=True)
        self.x, self.audio = init["x"], init["audio"]
        self.steps = 0
        return {"parameters": {n: sum(p.numel() for p in m.parameters()) for n, m in nets.items()},
                "threads": torch.get_num_threads()}

    def networks(self) -> dict:
        return {"generator": self.gan.generator, **self.gan.discriminators}

    def step(self) -> dict:
        from trainer.records import LOSSES

        started = time.perf_counter()
        out = self.gan.step(self.x, self.audio, measure_grads=False, step=self.steps, epoch=0)
        elapsed = time.perf_counter() - started
        self.steps += 1
        return {"seconds": elapsed, **dict(zip(LOSSES, out.losses.tolist()))}

    def save(self, path: str) -> None:
        torch.save({n: m.state_dict() for n, m in self.networks().items()}, path)


# --------------------------------------------------------------------------------------- parent


def param_parity(theirs: dict, ours: dict) -> dict:
    """The largest absolute difference between two state dicts after one step, and how many elements
    differ by more than 1e-6."""
    assert list(theirs) == list(ours), "state dict names differ"
    diffs = torch.cat([(theirs[k].double() - ours[k].double()).abs().flatten()
                       for k in theirs if theirs[k].is_floating_point()])
    return {"max_abs_diff": diffs.max().item(), "elements_over_1e-6": int((diffs > 1e-6).sum()), "elements": diffs.numel()}


def alternate(first: Worker, second: Worker, rounds: int) -> tuple[list[dict], list[dict]]:
    a, b = [], []
    for _ in range(rounds):
        a.append(first.call("step"))
        b.append(second.call("step"))
    return a, b


def seconds_of(answers: list[dict]) -> list[float]:
    return [round(a["seconds"], 3) for a in answers]


def compare(name: str, args, scratch: Path) -> dict:
    cfg = bench_config(name, args.batch, args.segment, args.threads)
    t = cfg.training
    options = {"config": name, "batch": t.batch_size, "segment": t.segment_size, "threads": args.threads,
               "scratch": str(scratch)}
    ref = worker("ref", args, **options)  # writes the weights and the batch ours loads
    ours = worker("ours", args, **options)
    try:
        assert ref.setup["parameters"] == ours.setup["parameters"], (ref.setup, ours.setup)
        (ref_first,), (our_first,) = alternate(ref, ours, 1)
        ref.call("save", path=str(scratch / "ref.pt"))
        ours.call("save", path=str(scratch / "ours.pt"))
        theirs, mine = torch.load(scratch / "ref.pt"), torch.load(scratch / "ours.pt")
        parity = {n: param_parity(theirs[n], mine[n]) for n in theirs}
        alternate(ref, ours, args.warmup - 1)
        ref_steps, our_steps = alternate(ref, ours, args.steps)
    finally:
        ref.close()
        ours.close()
    ref_s, our_s = median(seconds_of(ref_steps)), median(seconds_of(our_steps))
    audio_s = t.batch_size * t.segment_size / cfg.audio.sampling_rate
    parity["first_step"] = {
        "loss_g": {"theirs": ref_first["loss_g"], "ours": our_first["loss_g"]},
        "loss_d": {"theirs": ref_first["loss_d"], "ours": our_first["loss_d"]},
        "loss_mel": {"theirs": ref_first["loss_mel"], "ours": our_first["loss_mel"]},
        "theirs_grad_norms": {k: v for k, v in ref_first.items() if k.startswith("grad_norm")},
    }
    return {
        "config": name, "cpu": cpu_name(), "batch": t.batch_size, "segment": t.segment_size, "threads": args.threads,
        "ours_s": round(our_s, 3), "theirs_s": round(ref_s, 3), "speedup": round(ref_s / our_s, 3),
        "ours_audio_s_per_s": round(audio_s / our_s, 3), "theirs_audio_s_per_s": round(audio_s / ref_s, 3),
        "ours_times": seconds_of(our_steps), "theirs_times": seconds_of(ref_steps),
        "warmup": args.warmup, "steps": args.steps,
        "discriminators": ["mpd", second_kind(cfg)], "parameters": ref.setup["parameters"],
        "mel_loss": cfg.loss.mel, "lambda_mel": t.lambda_mel,
        "grad_clip": {"ours": t.grad_clip, "theirs": t.grad_clip if t.grad_clip is not None else PACKAGE_CLIP_DEFAULT},
        "parity": parity, "differences": step_differences(cfg), "load_avg": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="our configs (names in config/ or paths)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the config's)")
    parser.add_argument("--segment", type=int, default=None, help="segment in samples (default: the config's)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps each, after the warm-up")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps each first (>= 1; the first is the parity step)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for each side")
    parser.add_argument("--torchaudio", default=default_torchaudio_source(),
                        help="a torchaudio wheel, or a folder holding torchaudio/ (its Resample source)")
    parser.add_argument("--worker", choices=["ref", "ours"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker, args)
        return
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1")
    if not args.torchaudio:
        parser.error("no torchaudio source: pip download --no-deps torchaudio==2.11.1 -d /tmp/ta_whl, or --torchaudio PATH")
    names = [n for n in args.configs.split(",") if n]
    for name in names:  # fail before any worker starts
        package_hparams(bench_config(name, args.batch, args.segment, args.threads))

    import importlib.metadata

    print(json.dumps({"machine": cpu_name(), "cpus": os.cpu_count(), "threads": args.threads,
                      "torch": torch.__version__, "bigvgan": importlib.metadata.version("bigvgan"),
                      "torchaudio_source": args.torchaudio, "date": date.today().isoformat(),
                      "load_avg": os.getloadavg(), "command": " ".join(sys.argv)}), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            row = compare(name, args, Path(scratch))
            print(json.dumps(row), flush=True)
            rows.append(row)

    print(f"\n{'config':<20} {'batch':>5} {'segment':>7} {'theirs s':>9} {'ours s':>8} {'speed-up':>9}  max |Δparam| after one step")
    for row in rows:
        diffs = ", ".join(f"{n} {row['parity'][n]['max_abs_diff']:.1e}" for n in ("generator", *row["discriminators"]))
        print(f"{row['config']:<20} {row['batch']:>5} {row['segment']:>7} {row['theirs_s']:>9} {row['ours_s']:>8} "
              f"{row['speedup']:>8}x  {diffs}")
    print(f"CPU: {rows[0]['cpu'] if rows else cpu_name()}; {args.threads} threads each; medians of {args.steps} "
          f"alternating steps after {args.warmup} warm-up; speed-up = their s/step / our s/step")


if __name__ == "__main__":
    main()
