"""The multi-scale discriminator's slowest convolutions, made fast on CPU with the same math.

Both classes are ``nn.Conv1d``s (same parameters, same state-dict keys, same results within float
rounding) with a CPU path of their own; elsewhere (CUDA, other dtypes, small inputs) they are plain
``nn.Conv1d``s. ``StridedGroupedConv1d``'s path also runs under bf16 autocast, where it computes what
autocast's convolution computes (bf16 operands, a bf16 output) except that the weight gradient is
summed and returned in fp32: left to autocast, oneDNN runs these shapes through its im2col + GEMM
fallback on the channels-first layout, up to 2.3× slower per layer (forward and both gradients) on a
CPU with avx512_bf16 and no AMX. ``WaveformConv1d``'s path is fp32 only: under autocast oneDNN's own
bf16 kernel is faster.

``StridedGroupedConv1d``, for layers 2–4 (kernel 41, stride 2–4, 4–16 groups of 8–32 channels): on
a CPU, oneDNN computes their weight gradient at 17–43 GFLOP/s against 200 for a dense convolution,
and runs their forward on the channels-first layout at half the speed it reaches channels-last.
This path runs forward and input gradient through oneDNN on the channels-last layout, and computes
the weight gradient as blocked matrix products over a strided view of the input: group g's input
is laid out as rows of ``stride × in_channels_per_group`` floats, one row per output position,
padded so every batch item has the same number of rows. Then taps ``q·stride … q·stride + stride −
1`` of every output position are one row of a matrix that starts ``q`` rows further on, so for
each q: dW[taps of q] = grad_outputᵀ · (that matrix), a plain matrix product over a strided view
with no unfolding; rows are taken in chunks that stay in cache.

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

ROWS_PER_PRODUCT = 2048  # output positions per matrix product: its operands stay in a core's L2
MIN_SAMPLES = 32768  # batch × input length below which these paths' fixed costs outweigh their gain


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def conv_weight_grad(x: torch.Tensor, grad_y: torch.Tensor, kernel_size: int, stride: int, padding: int,
                     groups: int) -> torch.Tensor:
    """∂loss/∂weight of ``conv1d(x, weight, stride=stride, padding=padding, groups=groups)``, in fp32
    whatever the dtype of ``x`` and ``grad_y`` (they are converted while being laid out)."""
    batch, channels, length = x.shape
    out_channels, out_length = grad_y.shape[1], grad_y.shape[2]
    cin, cout = channels // groups, out_channels // groups
    rows_per_item = math.ceil((length + 2 * padding) / stride)
    rows = batch * rows_per_item
    width = stride * cin  # one row: the inputs under ``stride`` consecutive taps
    row_groups = math.ceil(kernel_size / stride)
    block = rows * width  # one group's input

    # the tail keeps the last group's views in bounds
    xs = x.new_empty(groups * block + row_groups * width, dtype=torch.float32)
    padded = xs[: groups * block].view(groups, batch, rows_per_item * stride, cin)
    padded[:, :, padding:padding + length] = x.reshape(batch, groups, cin, length).permute(1, 0, 3, 2)
    padded[:, :, :padding] = 0
    padded[:, :, padding + length:] = 0
    xs[groups * block:] = 0
    gy = grad_y.new_empty(batch, rows_per_item, groups, cout, dtype=torch.float32)
    gy[:, :out_length] = grad_y.reshape(batch, groups, cout, out_length).permute(0, 3, 1, 2)
    gy[:, out_length:] = 0  # rows past the output read past the item's input: they must count for nothing
    gy = gy.view(rows, groups, cout)

    dw = xs.new_zeros(groups, row_groups, cout, width)
    for g in range(groups):
        for r in range(0, rows, ROWS_PER_PRODUCT):
            n = min(ROWS_PER_PRODUCT, rows - r)
            taps = xs.as_strided((row_groups, n, width), (width, width, 1), g * block + r * width)
            dw[g].baddbmm_(gy[r:r + n, g].t().expand(row_groups, cout, n), taps)
    dw = dw.view(groups, row_groups, cout, stride, cin).permute(0, 2, 4, 1, 3)
    return dw.reshape(out_channels, cin, row_groups * stride)[..., :kernel_size].contiguous()


class _StridedGroupedConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride: int, padding: int, groups: int, dtype: torch.dtype):
        ctx.input_dtype = x.dtype
        x = _channels_last(x.to(dtype))
        weight = weight.to(dtype).unsqueeze(2)
        ctx.save_for_backward(x, weight)
        ctx.conf = stride, padding, groups
        return F.conv2d(x, weight, None if bias is None else bias.to(dtype), (1, stride), (0, padding), 1,
                        groups).squeeze(2)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        stride, padding, groups = ctx.conf
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                _channels_last(grad_y.to(x.dtype)), x, weight, None, [1, stride], [0, padding], [1, 1], False,
                [0, 0], groups, [True, False, False])[0].squeeze(2).to(ctx.input_dtype)
        if ctx.needs_input_grad[1]:
            grad_w = conv_weight_grad(x.squeeze(2), grad_y, weight.shape[-1], stride, padding, groups)
        if ctx.needs_input_grad[2]:
            grad_b = grad_y.sum((0, 2), dtype=torch.float32)
        return grad_x, grad_w, grad_b, None, None, None, None


def compute_dtype() -> torch.dtype:
    """What a CPU convolution computes in here: autocast's dtype where it is on, else fp32."""
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32


def fast_path_applies(conv: nn.Conv1d, x: torch.Tensor, weight: torch.Tensor) -> bool:
    """CPU, fp32 weights computing in fp32 or bf16 (the input in fp32 or that dtype), zero padding given
    as a number, no dilation, enough work."""
    dtype = compute_dtype()
    return (x.device.type == "cpu" and weight.dtype == torch.float32 and dtype in (torch.float32, torch.bfloat16)
            and x.dtype in (torch.float32, dtype) and x.shape[0] * x.shape[-1] >= MIN_SAMPLES
            and conv.padding_mode == "zeros" and not isinstance(conv.padding, str) and conv.dilation == (1,))


class StridedGroupedConv1d(nn.Conv1d):
    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not fast_path_applies(self, x, weight):
            return super()._conv_forward(x, weight, bias)
        return _StridedGroupedConv.apply(x, weight, bias, self.stride[0], self.padding[0], self.groups, compute_dtype())


class WaveformConv1d(nn.Conv1d):
    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (self.in_channels != 1 or self.groups != 1 or compute_dtype() != torch.float32
                or not fast_path_applies(self, x, weight)):
            return super()._conv_forward(x, weight, bias)
        (k,), (stride,), (padding,) = self.kernel_size, self.stride, self.padding
        taps = F.pad(x, (padding, padding)).unfold(-1, k, stride)  # [B, 1, T, k]
        batch, _, length, _ = taps.shape
        taps = taps.reshape(batch * length, k)
        w = weight.view(self.out_channels, k).t()
        y = torch.mm(taps, w) if bias is None else torch.addmm(bias, taps, w)
        return y.view(batch, length, self.out_channels).transpose(1, 2)
