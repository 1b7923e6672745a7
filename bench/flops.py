"""How close a training step comes to the machine's limit: FLOPs per step against measured peak rates.

    python bench/flops.py --config v2 --batch 16 [--segment 8192] [--steps 2] [--reference PATH]

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one real ``Gan.step``
(convolutions, transposed convolutions, matmuls; forward and the backward passes autograd actually
runs, so the work the fast step skips is not counted), with a corrected formula for convolution
backward (see ``conv_backward_flops``). Our step is counted with the MSD's FFT path off (docs/benchmarks.md,
lever 8), as the direct convolutions it replaces: the work of the same sums, so that the achieved
rate compares with the reference's and with the peak (where the FFT does less work than that, the
"achieved" rate is an effective one and may pass the peak). With ``--reference`` (a jik876/hifi-gan
checkout, see compare_reference.py) the reference's train.py step is counted too. The peak is
measured here: a large fp32 matmul and the discriminators' largest convolution shape, best of a few
runs. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.config import load_config  # noqa: E402
from trainer.gan import Gan  # noqa: E402
from trainer.launch import setup_process  # noqa: E402
from trainer.mel import input_mel  # noqa: E402


def best_rate(fn, flops: float, repeats: int = 5) -> float:
    fn()
    best = min(timed(fn) for _ in range(repeats))
    return flops / best / 1e9


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def peak_rates() -> dict[str, float]:
    """The best rates this CPU reaches in fp32: a matmul (MKL), the discriminators' largest convolution,
    and the generator's commonest one in the channels-last layout it runs in (oneDNN; on AMD CPUs
    oneDNN's AVX-512 kernels outrun MKL's matmul by 2x or more)."""
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    x, w = torch.randn(16, 1024, 128), torch.randn(1024, 1024, 5)
    conv_flops = 2 * 16 * 1024 * 128 * 1024 * 5
    # [1, 128, 1, 27520] channels-last as the generator makes it (the size-1 dim's stride decides
    # whether oneDNN sees the layout: this form runs 1.3x faster than a permuted [1, 27520, 1, 128])
    g_x = torch.randn(1, 27_520, 128).transpose(1, 2).unsqueeze(2)
    g_w, g_b = torch.randn(128, 128, 1, 11), torch.randn(128)
    g_flops = 2 * 27_520 * 128 * 128 * 11
    return {
        "matmul_2048_gflops": round(best_rate(lambda: a @ b, 2 * n**3), 1),
        "conv1d_1024x1024_k5_gflops": round(best_rate(lambda: F.conv1d(x, w, padding=2), conv_flops), 1),
        "conv1d_128x128_k11_channels_last_gflops": round(
            best_rate(lambda: F.conv2d(g_x, g_w, g_b, padding=(0, 5)), g_flops), 1),
    }


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape, **_kwargs) -> int:
    """Input and weight gradients cost one forward convolution each. (torch's own formula counts a
    grouped convolution's weight gradient as if it were dense: 4 to 16 times too many here.)"""
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def count_flops(step) -> int:
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops}) as counter:
        step()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="v2", choices=["v1", "v2", "v3"], help="HiFi-GAN V1, V2 or V3")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--segment", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=2, help="timed steps after the counted one")
    parser.add_argument("--reference", type=Path, default=None, help="a jik876/hifi-gan checkout")
    args = parser.parse_args()

    cfg = load_config(f"hifigan_{args.config}")
    cfg.training.batch_size = args.batch
    cfg.training.segment_size = args.segment
    gan = Gan(cfg, setup_process(cfg))
    audio = (torch.rand(args.batch, args.segment, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.5
    mel = input_mel(cfg.audio)(audio)
    with mock.patch("trainer.msd_convs.MIN_MACS", math.inf):
        ours_flops = count_flops(lambda: gan.step(mel, audio, measure_grads=False))
    times = sorted(timed(lambda: gan.step(mel, audio, measure_grads=False)) for _ in range(args.steps))
    step_s = times[len(times) // 2]
    peaks = peak_rates()
    peak = max(peaks.values())
    result = {
        "config": cfg.name, "batch": args.batch, "segment": args.segment, "threads": torch.get_num_threads(),
        "gflop_per_step": round(ours_flops / 1e9, 1), "s_per_step": round(step_s, 3),
        "achieved_gflops": round(ours_flops / step_s / 1e9, 1), **peaks,
        "share_of_peak": round(ours_flops / step_s / 1e9 / peak, 3),
        "lower_bound_s_per_step": round(ours_flops / peak / 1e9, 3),
    }
    if args.reference is not None:
        from compare_reference import Reference, import_reference

        R, M, env = import_reference(args.reference.resolve())
        h = env.AttrDict(json.loads((args.reference / f"config_{args.config}.json").read_text()))
        ref = Reference(R, M, h)
        batch = ref.batch(audio)
        ref_flops = count_flops(lambda: ref.train_step(*batch))
        result["reference_gflop_per_step"] = round(ref_flops / 1e9, 1)
        result["flop_ratio_reference_over_ours"] = round(ref_flops / ours_flops, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
