"""Side by side with jik876/hifi-gan: same configs, same weights, same inputs, alternating in one run.

    python bench/compare_reference.py --reference PATH/TO/hifi-gan [--train v2,v1] [--batch 16]
        [--segment 8192] [--steps 3] [--infer v1,v2,v3] [--seconds 5,60] [--infer-repeats 3]
        [--bf16 v2] [--infer-bf16 v1] [--data ../shared/data/ljspeech-mini] [--threads N]

PATH is a checkout of https://github.com/jik876/hifi-gan that you fetched yourself; none of its code
is part of this repository. Its modules are imported from PATH with two run-time patches so that
2020 code runs on today's libraries: ``librosa.filters.mel`` accepts positional arguments again, and
``torch.stft`` without ``return_complex`` returns the old real view.

The reference and ours each run in a worker process of their own (ours changes process-wide
settings, such as the allocator's, that must not leak into the reference), and the parent asks them
for one step or one synthesis at a time, alternately, so that both see the same machine load.
Both workers build the reference's models from the same seed, so they start from the same weights;
ours loads them into its own models.

- Training step (per config in ``--train``): the reference's train.py loop body against
  ``Gan.step``, fp32, on the same random batch (the reference's input and target mels are
  prepared outside the timing, as its data workers would; ours computes its target mel inside the
  step). The first step of each is the parity check: per network, the largest absolute parameter
  difference after one step from the same weights and how many elements differ by more than 1e-6. Then ``--steps`` timed steps each.
- Inference (per config in ``--infer``): the reference's inference.py path (weight norm removed,
  ``no_grad``) against ``trainer.inference.vocode``, from the same waveform, input mel included.
- Data: batches per second from the reference's ``MelDataset`` (its train.py settings: a mel and a
  target mel computed per item, every epoch) against our warm feature cache, one loader process
  each, on the ``--data`` clips resampled to the config's rate.
- bf16 inference (per config in ``--infer-bf16``): the reference in fp32 against ours under bf16
  autocast (``synth --precision bf16``), and the SNR of our output against the reference's.
- bf16 (per config in ``--bf16``): our step under bf16 autocast against our fp32 step, and how far
  the first step's losses and updates move.

Prints one JSON line per figure (medians; ``ratio`` > 1 means ours is faster) and a table at the end.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import sys
import tempfile
import time
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
from trainer.config import load_config
from trainer.records import LOSSES

DEFAULT_DATA = REPO.parent / "shared" / "data" / "ljspeech-mini"
NETWORKS = ("generator", "mpd", "msd")


def our_network(gan, name: str) -> torch.nn.Module:
    """Our module for one of ``NETWORKS``: the generator, or a discriminator by its jik876 name."""
    return gan.generator if name == "generator" else gan.discriminators[name]


# ------------------------------------------------------------------------------------ reference


def import_reference(path: Path):
    """The reference's ``models``, ``meldataset`` and ``env`` modules, patched to run on current libraries."""
    import librosa.filters

    original_mel = librosa.filters.mel

    def mel_with_positional_args(sr, n_fft, n_mels=128, fmin=0.0, fmax=None, **kwargs):
        return original_mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, **kwargs)

    librosa.filters.mel = mel_with_positional_args
    original_stft = torch.stft

    def stft_returning_real_view(*args, **kwargs):
        if kwargs.get("return_complex") is None:
            kwargs["return_complex"] = True
            return torch.view_as_real(original_stft(*args, **kwargs))
        return original_stft(*args, **kwargs)

    torch.stft = stft_returning_real_view
    sys.path.insert(0, str(path))
    try:
        return tuple(importlib.import_module(name) for name in ("models", "meldataset", "env"))
    finally:
        sys.path.remove(str(path))


class Reference:
    """The reference's models, optimisers and train.py step for one config, built from its seed."""

    def __init__(self, R, M, h):
        self.R, self.M, self.h = R, M, h
        torch.manual_seed(h.seed)
        self.generator = R.Generator(h)
        self.mpd = R.MultiPeriodDiscriminator()
        self.msd = R.MultiScaleDiscriminator()
        betas = [h.adam_b1, h.adam_b2]
        self.optim_g = torch.optim.AdamW(self.generator.parameters(), h.learning_rate, betas=betas)
        self.optim_d = torch.optim.AdamW(itertools.chain(self.msd.parameters(), self.mpd.parameters()),
                                         h.learning_rate, betas=betas)

    def mel(self, audio: torch.Tensor, fmax) -> torch.Tensor:
        h = self.h
        return self.M.mel_spectrogram(audio, h.n_fft, h.num_mels, h.sampling_rate, h.hop_size, h.win_size, h.fmin, fmax)

    def batch(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What its data loader yields: input mel, waveform, target mel."""
        return self.mel(audio, self.h.fmax), audio, self.mel(audio, self.h.fmax_for_loss)

    def train_step(self, x, y, y_mel) -> tuple[float, float]:
        R, h = self.R, self.h
        generator, mpd, msd = self.generator, self.mpd, self.msd
        y = y.unsqueeze(1)
        y_g_hat = generator(x)
        y_g_hat_mel = self.mel(y_g_hat.squeeze(1), h.fmax_for_loss)
        self.optim_d.zero_grad()
        y_df_hat_r, y_df_hat_g, _, _ = mpd(y, y_g_hat.detach())
        loss_disc_f, _, _ = R.discriminator_loss(y_df_hat_r, y_df_hat_g)
        y_ds_hat_r, y_ds_hat_g, _, _ = msd(y, y_g_hat.detach())
        loss_disc_s, _, _ = R.discriminator_loss(y_ds_hat_r, y_ds_hat_g)
        loss_disc_all = loss_disc_s + loss_disc_f
        loss_disc_all.backward()
        self.optim_d.step()
        self.optim_g.zero_grad()
        loss_mel = F.l1_loss(y_mel, y_g_hat_mel) * 45
        y_df_hat_r, y_df_hat_g, fmap_f_r, fmap_f_g = mpd(y, y_g_hat)
        y_ds_hat_r, y_ds_hat_g, fmap_s_r, fmap_s_g = msd(y, y_g_hat)
        loss_fm_f = R.feature_loss(fmap_f_r, fmap_f_g)
        loss_fm_s = R.feature_loss(fmap_s_r, fmap_s_g)
        loss_gen_f, _ = R.generator_loss(y_df_hat_g)
        loss_gen_s, _ = R.generator_loss(y_ds_hat_g)
        loss_gen_all = loss_gen_s + loss_gen_f + loss_fm_s + loss_fm_f + loss_mel
        loss_gen_all.backward()
        self.optim_g.step()
        return loss_gen_all.item(), loss_disc_all.item()


# --------------------------------------------------------------------------------------- worker


def worker(kind: str, args, **options) -> Worker:
    extra = ["--reference", str(args.reference)] + (["--threads", str(args.threads)] if args.threads else [])
    return Worker(Path(__file__).resolve(), kind, extra, **options)


def worker_main(kind: str, reference: Path, threads: int | None) -> None:
    protocol = os.fdopen(os.dup(1), "w")
    sys.stdout = sys.stderr  # the reference prints progress; keep stdout for answers
    warnings.simplefilter("ignore")
    if threads:
        torch.set_num_threads(threads)
    R, M, env = import_reference(reference)
    side = ReferenceSide(R, M, env, reference) if kind == "ref" else OurSide(R, M, env, reference)
    for line in sys.stdin:
        request = json.loads(line)
        answer = getattr(side, request.pop("cmd"))(**request)
        protocol.write(json.dumps(answer or {}) + "\n")
        protocol.flush()


class ReferenceSide:
    def __init__(self, R, M, env, path: Path):
        self.R, self.M, self.env, self.path = R, M, env, path

    def h(self, config: str):
        return self.env.AttrDict(json.loads((self.path / f"config_{config}.json").read_text()))

    def setup(self, task: str, config: str, **options) -> None:
        self.ref = Reference(self.R, self.M, self.h(config))
        if task == "train":
            self.batch = self.ref.batch(noise_audio(options["batch"], options["segment"]))
        elif task == "infer":
            self.ref.generator.eval()
            self.ref.generator.remove_weight_norm()
        elif task == "data":
            h = self.ref.h
            files = sorted(str(p) for p in Path(options["wav_dir"]).glob("*.wav"))
            dataset = self.M.MelDataset(files, options["segment"], h.n_fft, h.num_mels, h.hop_size, h.win_size,
                                        h.sampling_rate, h.fmin, h.fmax, n_cache_reuse=0, shuffle=False,
                                        fmax_loss=h.fmax_for_loss)
            self.loader = torch.utils.data.DataLoader(dataset, batch_size=options["batch"], shuffle=False,
                                                      drop_last=True, num_workers=0)

    def step(self) -> dict:
        started = time.perf_counter()
        loss_g, loss_d = self.ref.train_step(*self.batch)
        return {"seconds": time.perf_counter() - started, "loss_g": loss_g, "loss_d": loss_d}

    def save(self, path: str) -> None:
        torch.save({n: getattr(self.ref, n).state_dict() for n in NETWORKS}, path)

    def infer(self, seconds: float, save: str | None = None) -> dict:
        h = self.ref.h
        wav = noise_audio(1, int(seconds * h.sampling_rate), seed=1)
        started = time.perf_counter()
        with torch.no_grad():
            audio = self.ref.generator(self.ref.mel(wav, h.fmax))
        elapsed = time.perf_counter() - started
        if save:
            torch.save(audio, save)
        return {"seconds": elapsed}

    def epoch(self) -> dict:
        started = time.perf_counter()
        batches = sum(1 for _ in self.loader)
        return {"seconds": time.perf_counter() - started, "batches": batches}


class OurSide(ReferenceSide):
    def setup(self, task: str, config: str, **options) -> None:
        from trainer.data import VocoderData
        from trainer.gan import Gan
        from trainer.launch import setup_process
        from trainer.inference import build_generator

        h = self.h(config)
        cfg = load_config(str(self.path / f"config_{config}.json"))
        if task == "data":
            cfg.training.batch_size = options["batch"]
            cfg.training.segment_size = options["segment"]
            cfg.training.num_workers = 0
            cfg.data.val_count = 1
            self.data = VocoderData(cfg, Path(options["wav_dir"]), Path(tempfile.mkdtemp()))
            self.epochs = 0
            return
        ref = Reference(self.R, self.M, h)
        if task == "infer":
            from trainer.mel import input_mel

            self.precision = options.get("precision", "fp32")
            self.generator = build_generator(ref.generator.state_dict(), cfg, self.path)
            self.mel = input_mel(cfg.audio)
            self.sampling_rate = h.sampling_rate
            return
        cfg.training.batch_size = options["batch"]
        cfg.training.segment_size = options["segment"]
        cfg.training.precision = options.get("precision", "fp32")
        self.gan = Gan(cfg, setup_process(cfg))
        for name in NETWORKS:
            our_network(self.gan, name).load_state_dict(getattr(ref, name).state_dict())
        x, self.audio, _ = ref.batch(noise_audio(options["batch"], options["segment"]))
        self.x = x

    def step(self) -> dict:
        started = time.perf_counter()
        out = self.gan.step(self.x, self.audio, measure_grads=False)
        elapsed = time.perf_counter() - started
        return {"seconds": elapsed, **dict(zip(LOSSES, out.losses.tolist()))}

    def save(self, path: str) -> None:
        torch.save({n: our_network(self.gan, n).state_dict() for n in NETWORKS}, path)

    def infer(self, seconds: float, save: str | None = None) -> dict:
        from trainer.inference import vocode

        wav = noise_audio(1, int(seconds * self.sampling_rate), seed=1)
        started = time.perf_counter()
        with torch.inference_mode():
            audio = vocode(self.generator, self.mel(wav), self.precision)
        elapsed = time.perf_counter() - started
        if save:
            torch.save(audio, save)
        return {"seconds": elapsed}

    def epoch(self) -> dict:
        started = time.perf_counter()
        batches = sum(1 for _ in self.data.loader(self.epochs, 0))
        self.epochs += 1
        return {"seconds": time.perf_counter() - started, "batches": batches}


# --------------------------------------------------------------------------------------- parent


def max_param_diff(a: dict, b: dict) -> float:
    return max((a[key] - value).abs().max().item() for key, value in b.items())


def param_parity(a: dict, b: dict) -> dict:
    """How far apart two state dicts are after one step: the largest difference, and how many elements
    differ by more than 1e-6. Adam's first update moves every element by ±lr (the sign of its
    gradient), so an element whose gradient is zero within rounding can move either way by up to 2·lr."""
    diffs = [(a[key] - value).abs().flatten() for key, value in b.items() if value.is_floating_point()]
    diffs = torch.cat(diffs)
    return {"max_abs_diff": diffs.max().item(), "elements_over_1e-6": int((diffs > 1e-6).sum()),
            "elements": diffs.numel()}


def alternate(first: Worker, second: Worker, cmd: str, rounds: int, **fields) -> tuple[list[dict], list[dict]]:
    a, b = [], []
    for _ in range(rounds):
        a.append(first.call(cmd, **fields))
        b.append(second.call(cmd, **fields))
    return a, b


def seconds_of(answers: list[dict]) -> list[float]:
    return [round(a["seconds"], 3) for a in answers]


def compare_training(name: str, args, scratch: Path) -> list[dict]:
    options = {"task": "train", "config": name, "batch": args.batch, "segment": args.segment}
    ref, ours = worker("ref", args, **options), worker("ours", args, **options)
    try:
        (ref_first,), (our_first,) = alternate(ref, ours, "step", 1)
        ref.call("save", path=str(scratch / "ref.pt"))
        ours.call("save", path=str(scratch / "ours.pt"))
        theirs, mine = torch.load(scratch / "ref.pt"), torch.load(scratch / "ours.pt")
        parity = {n: param_parity(theirs[n], mine[n]) for n in NETWORKS}
        ref_steps, our_steps = alternate(ref, ours, "step", args.steps)
    finally:
        ref.close()
        ours.close()
    h = json.loads((args.reference / f"config_{name}.json").read_text())
    audio_s = args.batch * args.segment / h["sampling_rate"]
    ref_s, our_s = median(seconds_of(ref_steps)), median(seconds_of(our_steps))
    return [{
        "figure": f"train step {name} b{args.batch} seg{args.segment} fp32",
        "unit": "s/step", "ref": round(ref_s, 3), "ours": round(our_s, 3), "ratio": round(ref_s / our_s, 3),
        "ref_audio_s_per_s": round(audio_s / ref_s, 3), "our_audio_s_per_s": round(audio_s / our_s, 3),
        "ref_times": seconds_of(ref_steps), "our_times": seconds_of(our_steps),
        "params_after_one_step": parity,
        "loss_g": {"ref": ref_first["loss_g"], "ours": our_first["loss_g"]},
        "loss_d": {"ref": ref_first["loss_d"], "ours": our_first["loss_d"]},
    }]


def compare_bf16(name: str, args, scratch: Path) -> list[dict]:
    options = {"task": "train", "config": name, "batch": args.batch, "segment": args.segment}
    fp32, bf16 = worker("ours", args, **options, precision="fp32"), worker("ours", args, **options, precision="bf16")
    try:
        (first32,), (first16,) = alternate(fp32, bf16, "step", 1)
        fp32.call("save", path=str(scratch / "fp32.pt"))
        bf16.call("save", path=str(scratch / "bf16.pt"))
        a, b = torch.load(scratch / "fp32.pt"), torch.load(scratch / "bf16.pt")
        steps32, steps16 = alternate(fp32, bf16, "step", args.steps)
    finally:
        fp32.close()
        bf16.close()
    losses = {k: {"fp32": round(first32[k], 5), "bf16": round(first16[k], 5),
                  "rel_diff": round(abs(first16[k] - first32[k]) / abs(first32[k]), 5) if first32[k] else None}
              for k in LOSSES}
    s32, s16 = median(seconds_of(steps32)), median(seconds_of(steps16))
    return [{
        "figure": f"train step {name} b{args.batch} seg{args.segment} bf16 vs fp32 (ours)",
        "unit": "s/step", "fp32": s32, "bf16": s16, "speedup": round(s32 / s16, 3),
        "fp32_times": seconds_of(steps32), "bf16_times": seconds_of(steps16),
        "losses_first_step": losses,
        "max_param_diff_after_one_step": {n: max_param_diff(a[n], b[n]) for n in NETWORKS},
    }]


def compare_inference(name: str, args, scratch: Path, precision: str = "fp32") -> list[dict]:
    ref = worker("ref", args, task="infer", config=name)
    ours = worker("ours", args, task="infer", config=name, precision=precision)
    rows = []
    try:
        for seconds in args.seconds:
            ref.call("infer", seconds=seconds, save=str(scratch / "ref_audio.pt"))
            ours.call("infer", seconds=seconds, save=str(scratch / "our_audio.pt"))
            theirs, mine = torch.load(scratch / "ref_audio.pt").double(), torch.load(scratch / "our_audio.pt").double()
            diff = (theirs - mine).abs().max().item()
            snr_db = 10 * torch.log10(theirs.pow(2).sum() / (theirs - mine).pow(2).sum()).item() if diff else None
            ref_runs, our_runs = alternate(ref, ours, "infer", args.infer_repeats, seconds=seconds)
            ref_rtf, our_rtf = median(seconds_of(ref_runs)) / seconds, median(seconds_of(our_runs)) / seconds
            rows.append({
                "figure": f"inference {name} {seconds:g} s" + (f", ours {precision}" if precision != "fp32" else ""),
                "unit": "RTF (wall s / audio s)",
                "ref": round(ref_rtf, 4), "ours": round(our_rtf, 4), "ratio": round(ref_rtf / our_rtf, 3),
                "ref_times": seconds_of(ref_runs), "our_times": seconds_of(our_runs), "max_abs_output_diff": diff,
                "output_snr_db": snr_db and round(snr_db, 1),
            })
    finally:
        ref.close()
        ours.close()
    return rows


def prepare_wavs(source: Path, sampling_rate: int, target: Path) -> Path:
    """The clips of ``source`` as 16-bit WAVs at ``sampling_rate``, the only input the reference reads."""
    from scipy.io import wavfile

    from trainer.audio import load_audio
    from trainer.data import discover

    target.mkdir(parents=True, exist_ok=True)
    for utt in discover(source):
        samples = load_audio(utt.audio_path, sampling_rate).samples
        wavfile.write(target / f"{utt.id}.wav", sampling_rate, (samples.clip(-1, 1) * 32767).astype("int16"))
    return target


def compare_data(args, scratch: Path) -> list[dict]:
    h = json.loads((args.reference / "config_v1.json").read_text())
    wav_dir = prepare_wavs(args.data, h["sampling_rate"], scratch / "wavs")
    options = {"task": "data", "config": "v1", "batch": args.batch, "segment": args.segment, "wav_dir": str(wav_dir)}
    ref, ours = worker("ref", args, **options), worker("ours", args, **options)
    try:
        alternate(ref, ours, "epoch", 1)
        ref_epochs, our_epochs = alternate(ref, ours, "epoch", args.steps)
    finally:
        ref.close()
        ours.close()
    ref_rate = median(e["batches"] / e["seconds"] for e in ref_epochs)
    our_rate = median(e["batches"] / e["seconds"] for e in our_epochs)
    return [{
        "figure": f"data b{args.batch} seg{args.segment}, 1 loader process", "unit": "batches/s",
        "ref": round(ref_rate, 2), "ours": round(our_rate, 2), "ratio": round(our_rate / ref_rate, 3),
        "clips": len(list(wav_dir.glob("*.wav"))),
    }]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="a jik876/hifi-gan checkout")
    parser.add_argument("--train", default="v2,v1", help="configs for the training step ('' for none)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--segment", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=3, help="timed steps (and data epochs) each, after the first")
    parser.add_argument("--infer", default="v1,v2,v3", help="configs for inference ('' for none)")
    parser.add_argument("--seconds", default="5,60", help="inference input lengths in seconds")
    parser.add_argument("--infer-repeats", type=int, default=3, help="timed runs each, after the first")
    parser.add_argument("--infer-bf16", default="", help="configs for reference fp32 vs our bf16 inference")
    parser.add_argument("--bf16", default="v2", help="configs for our bf16-vs-fp32 step ('' for none)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="clips for the data figure ('' for none)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both (default: torch's)")
    parser.add_argument("--worker", choices=["ref", "ours"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.reference = args.reference.resolve()
    if not (args.reference / "models.py").is_file() or not (args.reference / "meldataset.py").is_file():
        parser.error(f"{args.reference} does not look like a jik876/hifi-gan checkout (no models.py, meldataset.py)")
    if args.worker:
        worker_main(args.worker, args.reference, args.threads)
        return
    args.seconds = [float(s) for s in args.seconds.split(",")]

    print(json.dumps({"machine": cpu_name(), "cpus": os.cpu_count(), "threads": args.threads or torch.get_num_threads(),
                      "torch": torch.__version__, "date": date.today().isoformat(), "load_avg": os.getloadavg(),
                      "command": " ".join(sys.argv)}), flush=True)
    scratch = Path(tempfile.mkdtemp())
    plan = [lambda n=n: compare_training(n, args, scratch) for n in filter(None, args.train.split(","))]
    plan += [lambda n=n: compare_inference(n, args, scratch) for n in filter(None, args.infer.split(","))]
    plan += [lambda n=n: compare_inference(n, args, scratch, "bf16") for n in filter(None, args.infer_bf16.split(","))]
    if args.data:
        args.data = Path(args.data)
        plan.append(lambda: compare_data(args, scratch))
    plan += [lambda n=n: compare_bf16(n, args, scratch) for n in filter(None, args.bf16.split(","))]
    rows = []
    for figure in plan:
        for row in figure():
            print(json.dumps(row), flush=True)
            rows.append(row)

    print(f"\n{'figure':<52} {'reference':>10} {'ours':>10} {'ratio':>8}")
    for row in rows:
        if "ratio" in row:
            print(f"{row['figure']:<52} {row['ref']:>10} {row['ours']:>10} {row['ratio']:>7}x  {row['unit']}")
        else:
            print(f"{row['figure']:<52} {row['fp32']:>10} {row['bf16']:>10} {row['speedup']:>7}x  fp32 / bf16 s/step")


if __name__ == "__main__":
    main()
