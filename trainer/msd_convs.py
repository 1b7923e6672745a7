"""The multi-scale discriminator's slowest convolutions, made fast on CPU with the same math.

Both classes are ``nn.Conv1d``s (same parameters, same state-dict keys, same results within float
rounding) with a CPU path of their own; elsewhere (CUDA, float64, small inputs) they are plain
``nn.Conv1d``s.

``FFTConv1d``, for layers 2–6 (kernel 41, stride 1–4, 4–16 groups of 8–64 channels): oneDNN runs
these at 46–71 % of a CPU's peak, and its weight gradients at far less, where through the FFT a
41-tap kernel costs little more than a short one. This path computes them by overlap-save:

- A stride-s convolution is a stride-1 correlation over s phases of the zero-padded input: with
  ``x_r[m] = x[s·m + r]`` and ``w_r[q] = w[s·q + r]``, ``y[n] = Σ_r Σ_q w_r[q] · x_r[n + q]``, so
  each group has s × in-channels "phase channels" and ⌈kernel / s⌉ taps.
- The phase channels are cut into blocks of N samples, M = N − taps + 1 apart. A block's circular
  correlation with the taps (zero-padded to N) is exact in its first M outputs, and in frequency it
  is one matrix product per frequency and group: ``Y(f) = conj(W(f)) · X(f)``.
- The input gradient is the transposed product ``W(f)ᵀ · GY(f)`` of the output gradient's blocks
  (M outputs, zero-padded to N), added back where the blocks overlap; the weight gradient is
  ``Σ conj(GY(f)) · X(f)ᵀ`` over blocks and batch, transformed back to the taps.

It computes in fp32 under bf16 autocast too and rounds its output to autocast's dtype: faster there
than oneDNN's bf16 kernels for these shapes (which run the grouped layers through im2col + GEMM on a
CPU without AMX), and more accurate.

``WaveformConv1d``, for layer 1 (one input channel, the waveform): one matrix product of the
unfolded waveform (kernel-size floats per output position) with the weight, whose result is the
channels-last layout the next layer wants, where oneDNN runs a slow one-channel kernel and the
layout change costs as much again.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MIN_SAMPLES = 32768  # batch × input length below which the waveform path's fixed costs outweigh its gain
MIN_MACS = 2**27  # multiply-adds of the direct convolution below which the FFT's fixed costs outweigh its gain


def output_length(length: int, kernel: int, stride: int, padding: int) -> int:
    return (length + 2 * padding - kernel) // stride + 1


def block_size(taps: int, out_length: int) -> int:
    """The overlap-save FFT length: a power of two at least 2 (taps − 1), so that a block's tail
    overlaps only the next block, costing least for this many outputs (⌈outputs / (N − taps + 1)⌉
    blocks of N log N each; ties go to the longer block)."""
    best_cost, best, n = math.inf, 0, 8
    while True:
        if n >= 2 * (taps - 1):
            blocks = math.ceil(out_length / (n - taps + 1))
            cost = blocks * n * math.log2(n)
            if cost <= best_cost:
                best_cost, best = cost, n
            if blocks == 1:
                return best
        n *= 2


class _Blocks:
    """How one convolution's input, output and weight are cut and laid out for the FFT."""

    def __init__(self, x_shape, w_shape, stride: int, padding: int, groups: int):
        self.batch, self.in_channels, self.length = x_shape
        self.out_channels, self.cin, self.kernel = w_shape
        self.stride, self.padding, self.groups = stride, padding, groups
        self.cout = self.out_channels // groups
        self.phase_channels = self.cin * stride  # per group, ordered (input channel, phase)
        self.taps = math.ceil(self.kernel / stride)
        self.out_length = output_length(self.length, self.kernel, stride, padding)
        self.n = block_size(self.taps, self.out_length)
        self.m = self.n - self.taps + 1  # outputs per block
        self.count = math.ceil(self.out_length / self.m)
        self.phase_length = self.count * self.m + self.taps - 1  # phase samples the blocks read
        self.frequencies = self.n // 2 + 1

    def split_phases(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, in, length] → zero-padded [batch, groups, phase channels, phase length]."""
        padded = x.new_zeros(self.batch, self.in_channels, self.phase_length * self.stride)
        n = max(0, min(self.length, padded.shape[-1] - self.padding))
        padded[..., self.padding:self.padding + n] = x[..., :n]
        phases = padded.view(self.batch, self.groups, self.cin, self.phase_length, self.stride).transpose(3, 4)
        return phases.reshape(self.batch, self.groups, self.phase_channels, self.phase_length)

    def merge_phases(self, phases: torch.Tensor) -> torch.Tensor:
        """The adjoint of ``split_phases``: [batch, groups, phase channels, phase length] → [batch, in, length]."""
        x = phases.view(self.batch, self.groups, self.cin, self.stride, self.phase_length).transpose(3, 4)
        x = x.reshape(self.batch, self.in_channels, -1)[..., self.padding:self.padding + self.length]
        return F.pad(x, (0, self.length - x.shape[-1]))

    def to_matrices(self, spectrum: torch.Tensor) -> torch.Tensor:
        """[batch, groups, channels, blocks, frequencies] → [groups × frequencies, channels, batch × blocks]."""
        channels = spectrum.shape[2]
        return spectrum.permute(1, 4, 2, 0, 3).reshape(self.groups * self.frequencies, channels, -1)

    def to_blocks(self, matrices: torch.Tensor) -> torch.Tensor:
        """The inverse of ``to_matrices``, back in time: [batch, groups, channels, blocks, n]."""
        channels = matrices.shape[1]
        spectrum = matrices.view(self.groups, self.frequencies, channels, self.batch, self.count)
        return torch.fft.irfft(spectrum.permute(3, 0, 2, 4, 1), n=self.n)

    def input_spectrum(self, x: torch.Tensor) -> torch.Tensor:
        blocks = self.split_phases(x).unfold(-1, self.n, self.m)
        return self.to_matrices(torch.fft.rfft(blocks))

    def output_spectrum(self, grad_y: torch.Tensor) -> torch.Tensor:
        blocks = F.pad(grad_y, (0, self.count * self.m - self.out_length))
        blocks = blocks.reshape(self.batch, self.groups, self.cout, self.count, self.m)
        return self.to_matrices(torch.fft.rfft(blocks, n=self.n))

    def weight_spectrum(self, weight: torch.Tensor) -> torch.Tensor:
        """[out, in per group, kernel] → [groups × frequencies, out per group, phase channels]."""
        w = F.pad(weight, (0, self.taps * self.stride - self.kernel))
        w = w.view(self.groups, self.cout, self.cin, self.taps, self.stride).transpose(3, 4)
        w = w.reshape(self.groups, self.cout, self.phase_channels, self.taps)
        w = torch.fft.rfft(w, n=self.n).permute(0, 3, 1, 2)
        return w.reshape(self.groups * self.frequencies, self.cout, self.phase_channels)

    def output(self, matrices: torch.Tensor) -> torch.Tensor:
        y = self.to_blocks(matrices)[..., :self.m]
        return y.reshape(self.batch, self.out_channels, -1)[..., :self.out_length]

    def input_gradient(self, matrices: torch.Tensor) -> torch.Tensor:
        blocks = self.to_blocks(matrices)
        total = blocks.new_zeros(self.batch, self.groups, self.phase_channels, (self.count + 1) * self.m)
        shape = (self.batch, self.groups, self.phase_channels, self.count, self.m)
        total[..., :self.count * self.m].view(shape).add_(blocks[..., :self.m])
        total[..., self.m:].view(shape)[..., :self.taps - 1].add_(blocks[..., self.m:])
        return self.merge_phases(total[..., :self.phase_length])

    def weight_gradient(self, matrices: torch.Tensor) -> torch.Tensor:
        spectrum = matrices.view(self.groups, self.frequencies, self.cout, self.phase_channels).permute(0, 2, 3, 1)
        w = torch.fft.irfft(spectrum, n=self.n)[..., :self.taps]
        w = w.reshape(self.groups, self.cout, self.cin, self.stride, self.taps).transpose(3, 4)
        return w.reshape(self.out_channels, self.cin, -1)[..., :self.kernel].contiguous()


class _FFTConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride: int, padding: int, groups: int):
        blocks = _Blocks(x.shape, weight.shape, stride, padding, groups)
        x_f, w_f = blocks.input_spectrum(x), blocks.weight_spectrum(weight)
        y = blocks.output(torch.bmm(w_f.conj(), x_f))
        ctx.blocks = blocks
        ctx.save_for_backward(x_f if ctx.needs_input_grad[1] else None, w_f)
        return y if bias is None else y + bias[:, None]

    @staticmethod
    def backward(ctx, grad_y):
        x_f, w_f = ctx.saved_tensors
        blocks = ctx.blocks
        gy_f = blocks.output_spectrum(grad_y)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = blocks.input_gradient(torch.bmm(w_f.transpose(1, 2), gy_f))
        if ctx.needs_input_grad[1]:
            grad_w = blocks.weight_gradient(torch.bmm(gy_f.conj(), x_f.transpose(1, 2)))
        if ctx.needs_input_grad[2]:
            grad_b = grad_y.sum((0, 2))
        return grad_x, grad_w, grad_b, None, None, None


def compute_dtype() -> torch.dtype:
    """What a CPU convolution computes in here: autocast's dtype where it is on, else fp32."""
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32


def cpu_path_applies(conv: nn.Conv1d, x: torch.Tensor, weight: torch.Tensor) -> bool:
    """A batched input on the CPU, fp32 weights computing in fp32 or bf16 (the input in fp32 or that
    dtype), zero padding given as a number, no dilation."""
    dtype = compute_dtype()
    return (x.device.type == "cpu" and x.dim() == 3 and weight.dtype == torch.float32
            and dtype in (torch.float32, torch.bfloat16) and x.dtype in (torch.float32, dtype)
            and conv.padding_mode == "zeros" and not isinstance(conv.padding, str) and conv.dilation == (1,))


class FFTConv1d(nn.Conv1d):
    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        (k,), (stride,), (padding,) = self.kernel_size, self.stride, self.padding
        if not cpu_path_applies(self, x, weight):
            return super()._conv_forward(x, weight, bias)
        out_length = output_length(x.shape[-1], k, stride, padding)
        if out_length < 1 or x.shape[0] * out_length * weight.shape[0] * weight.shape[1] * k < MIN_MACS:
            return super()._conv_forward(x, weight, bias)  # and its error for an input shorter than the kernel
        dtype = compute_dtype()
        with torch.autocast("cpu", enabled=False):
            y = _FFTConv.apply(x.float(), weight, bias, stride, padding, self.groups)
        return y.to(dtype)


class WaveformConv1d(nn.Conv1d):
    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (self.in_channels != 1 or self.groups != 1 or compute_dtype() != torch.float32
                or not cpu_path_applies(self, x, weight) or x.shape[0] * x.shape[-1] < MIN_SAMPLES):
            return super()._conv_forward(x, weight, bias)
        (k,), (stride,), (padding,) = self.kernel_size, self.stride, self.padding
        taps = F.pad(x, (padding, padding)).unfold(-1, k, stride)  # [B, 1, T, k]
        batch, _, length, _ = taps.shape
        taps = taps.reshape(batch * length, k)
        w = weight.view(self.out_channels, k).t()
        y = torch.mm(taps, w) if bias is None else torch.addmm(bias, taps, w)
        return y.view(batch, length, self.out_channels).transpose(1, 2)
