"""Multi-scale sub-band constant-Q transform discriminator (MS-SB-CQTD) of Gu et al. (2024), as
BigVGAN v2 uses it: the waveform is resampled to twice its rate, turned into a complex CQT, each
octave gets its own first conv (the "sub-band" part), then a dilated 2-D conv stack scores it;
several CQT resolutions (hop, bins per octave) make the "multi-scale" part.

Plain torch: the reference builds on nnAudio's ``CQT2010v2`` and torchaudio's ``Resample``; both are
re-implemented here, ``ConstantQTransform`` and ``SincResample``, computing the same thing.
Module, parameter and buffer names follow NVIDIA/BigVGAN's ``DiscriminatorCQT`` /
``MultiScaleSubbandCQTDiscriminator`` (nnAudio's buffers included, its ``lenghts`` spelling too), so
its state dicts load strict.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import firwin2, get_window
from torch import nn

from trainer.cqt_layout import CQT_FMIN, early_downsample_count, top_octave
from trainer.models import LRELU_SLOPE, WNConv2d, judge

LOWPASS_TAPS = 256  # nnAudio's half-band filter between octaves


def _lowpass_filter(band_center: float, transition: float) -> np.ndarray:
    """nnAudio's FIR low-pass: flat to band_center / (1 + t), zero from band_center · (1 + t)
    (frequencies relative to Nyquist), by the frequency-sampling method."""
    pass_max, stop_min = band_center / (1 + transition), band_center * (1 + transition)
    return firwin2(LOWPASS_TAPS, [0.0, pass_max, stop_min, 1.0], [1.0, 1.0, 0.0, 0.0]).astype(np.float32)


class SincResample(nn.Module):
    """Band-limited resampling by orig_freq -> new_freq with a Hann-windowed sinc: torchaudio's
    ``Resample`` with its defaults (``sinc_interp_hann``, 6 zero crossings, roll-off 0.99).

    Output sample j sits at input time j · orig / new; it is the sum over input samples i of
    x[i] · r · sinc(π r (i - j · orig / new)) · cos²(π r (i - j · orig / new) / 12) over |r (...)| ≤ 6,
    with r = 0.99 · min(orig, new) / orig and zeros beyond the ends; done as one strided conv
    whose output channels are the new / orig phases (``kernel``, [new, 1, 2 · width + orig]).
    """

    def __init__(self, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6, rolloff: float = 0.99):
        super().__init__()
        gcd = math.gcd(int(orig_freq), int(new_freq))
        self.orig, self.new = int(orig_freq) // gcd, int(new_freq) // gcd
        base = min(self.orig, self.new) * rolloff  # cut-off, in units of the reduced rates
        self.width = math.ceil(lowpass_filter_width * self.orig / base)
        # t: [phase, tap], the input-sample offset of each tap from its output sample, times the cut-off
        taps = np.arange(-self.width, self.width + self.orig, dtype=np.float64) / self.orig
        # the phases' offsets p / new in float32, as torchaudio computes them (exact for 2x)
        phases = (np.arange(self.new, dtype=np.float32) / np.float32(self.new)).astype(np.float64)
        t = (taps[None, :] - phases[:, None]) * base
        t = np.clip(t, -lowpass_filter_width, lowpass_filter_width)
        window = np.cos(t * math.pi / lowpass_filter_width / 2) ** 2
        t = t * math.pi
        sinc = np.divide(np.sin(t), t, out=np.ones_like(t), where=t != 0)
        kernel = sinc * (window * (base / self.orig))
        self.register_buffer("kernel", torch.from_numpy(kernel).float().unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., T] -> [..., ceil(T · new / orig)], in the kernel's dtype."""
        shape = x.shape
        x = F.pad(x.reshape(-1, 1, shape[-1]).to(self.kernel.dtype), (self.width, self.width + self.orig))
        y = F.conv1d(x, self.kernel, stride=self.orig)  # [N, new, blocks]
        y = y.transpose(1, 2).reshape(y.shape[0], -1)
        return y[:, : math.ceil(self.new * shape[-1] / self.orig)].reshape(*shape[:-1], -1)


class ConstantQTransform(nn.Module):
    """Complex CQT by octave-wise downsampling (Schörkhuber & Klapuri, 2010), as nnAudio's
    ``CQT2010v2`` computes it with BigVGAN's arguments (Hann window, L1-normalised kernels, zero
    padding, librosa-style √length scaling, fmin 32.70 Hz).

    One bank of time-domain kernels covers the top octave; each lower octave applies the same bank
    to the signal low-passed and decimated by 2 once more, with the hop halved. Waveform [B, 1, T]
    -> [B, 2 (real, imaginary), frames, n_bins], lowest bin first, always float32.
    """

    def __init__(self, sr: float, hop_length: int, n_bins: int, bins_per_octave: int, fmin: float = CQT_FMIN):
        super().__init__()
        self.n_bins = n_bins
        q = 1.0 / (2 ** (1 / bins_per_octave) - 1)
        self.n_octaves, fmin_t, fmax_t = top_octave(n_bins, bins_per_octave, fmin)
        if fmax_t > sr / 2:
            raise ValueError(f"the top CQT bin ({fmax_t:.0f} Hz) is above the Nyquist frequency ({sr / 2:.0f} Hz)")
        self.register_buffer("lowpass_filter", torch.from_numpy(_lowpass_filter(0.5, 0.001))[None, None])

        # early downsampling: BigVGAN's settings never do it
        count = early_downsample_count(sr, hop_length, self.n_octaves, fmax_t, q)
        self.downsample_factor = 2**count
        self.hop_length = hop_length // self.downsample_factor
        sr = sr / self.downsample_factor
        if count:  # only then does nnAudio have this buffer
            filt = _lowpass_filter(1 / self.downsample_factor, 0.03)
            self.register_buffer("early_downsample_filter", torch.from_numpy(filt)[None, None])

        # the top octave's kernels: a Hann-windowed complex exponential per bin, ceil(Q · sr / f)
        # samples long, L1-normalised, centred in a power-of-two frame
        n_filters = min(bins_per_octave, n_bins)
        freqs = fmin_t * 2.0 ** (np.arange(n_filters) / bins_per_octave)
        lengths = np.ceil(q * sr / freqs)
        self.n_fft = int(2 ** np.ceil(np.log2(lengths.max())))
        kernels = np.zeros((n_filters, self.n_fft), dtype=np.complex128)
        for k, (f, n) in enumerate(zip(freqs, lengths.astype(int))):
            start = math.ceil(self.n_fft / 2 - n / 2) - (n % 2)
            sig = get_window("hann", n, fftbins=True) * np.exp(np.arange(-n // 2, n // 2) * 2j * np.pi * f / sr)
            kernels[k, start : start + n] = sig / np.abs(sig).sum()
        kernels = kernels.astype(np.complex64)
        # every bin's window length, for the √length scaling (nnAudio's name, misspelt)
        all_freqs = fmin * 2.0 ** (np.arange(n_bins) / bins_per_octave)
        self.register_buffer("lenghts", torch.from_numpy(np.ceil(q * sr / all_freqs)).float())
        self.register_buffer("cqt_kernels_real", torch.from_numpy(kernels.real.copy()).unsqueeze(1))
        self.register_buffer("cqt_kernels_imag", torch.from_numpy(kernels.imag.copy()).unsqueeze(1))

    def _octave(self, x: torch.Tensor, kernels: torch.Tensor, hop: int) -> torch.Tensor:
        """[B, 1, T] -> [B, 2, bins of an octave, frames]: correlation with the kernels, zero-padded
        by n_fft/2 each side; the imaginary part is negated (correlation with the conjugate)."""
        x = F.pad(x, (self.n_fft // 2, self.n_fft // 2))
        z = F.conv1d(x, kernels, stride=hop)
        return z.unflatten(1, (2, -1)) * torch.tensor([1.0, -1.0], device=z.device)[:, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            if self.downsample_factor > 1:
                x = F.conv1d(x, self.early_downsample_filter, stride=self.downsample_factor,
                             padding=(LOWPASS_TAPS - 1) // 2)
            kernels = torch.cat([self.cqt_kernels_real, self.cqt_kernels_imag])
            hop = self.hop_length
            octaves = [self._octave(x, kernels, hop)]
            for _ in range(self.n_octaves - 1):
                hop //= 2
                x = F.conv1d(x, self.lowpass_filter, stride=2, padding=(LOWPASS_TAPS - 1) // 2)  # low-pass, decimate
                octaves.insert(0, self._octave(x, kernels, hop))
            z = torch.cat(octaves, dim=2)[:, :, -self.n_bins :]
            z = z * (self.downsample_factor * self.lenghts.sqrt())[:, None]
            return z.transpose(2, 3)


class DiscriminatorCQT(nn.Module):
    """Looks at one CQT resolution of the waveform (resampled to twice its rate) as a
    [2 (real, imaginary), frames, bins] image: a conv per octave, then convs dilated in time and
    strided in frequency."""

    def __init__(self, sampling_rate: int, hop_length: int, n_octaves: int, bins_per_octave: int,
                 filters: int = 32, max_filters: int = 1024, filters_scale: int = 1,
                 dilations: tuple[int, ...] = (1, 2, 4), channel_divisor: int = 1, normalize_volume: bool = False):
        super().__init__()
        self.n_octaves, self.bins_per_octave = n_octaves, bins_per_octave
        self.normalize_volume = normalize_volume
        filters, max_filters = filters // channel_divisor, max_filters // channel_divisor
        self.cqt_transform = ConstantQTransform(2 * sampling_rate, hop_length, n_octaves * bins_per_octave,
                                                bins_per_octave)
        k = (3, 9)
        # the reference leaves these first convs without weight norm
        self.conv_pres = nn.ModuleList([nn.Conv2d(2, 2, k, padding=(1, 4)) for _ in range(n_octaves)])
        # widths grow by filters_scale per dilated conv, capped at max_filters. The reference feeds the
        # first dilated conv min(filters_scale · filters, max_filters) channels, which only matches the
        # first conv's output when filters_scale is 1 (BigVGAN's): otherwise it fails at its first call.
        # Here the chain starts from the first conv's width, so that any filters_scale works.
        in_chs = min(filters, max_filters)
        self.convs = nn.ModuleList([nn.Conv2d(2, in_chs, k, padding=(1, 4))])
        for i, d in enumerate(dilations):
            out_chs = min(filters_scale ** (i + 1) * filters, max_filters)
            self.convs.append(WNConv2d(in_chs, out_chs, k, stride=(1, 2), dilation=(d, 1), padding=(d, 4)))
            in_chs = out_chs
        out_chs = min(filters_scale ** (len(dilations) + 1) * filters, max_filters)
        self.convs.append(WNConv2d(in_chs, out_chs, (3, 3), padding=(1, 1)))
        self.conv_post = WNConv2d(out_chs, 1, (3, 3), padding=(1, 1))
        self.resample = SincResample(sampling_rate, 2 * sampling_rate)  # last, as in the reference's state dict

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Waveform [B, 1, T] -> (score map [B, 1, frames, bins'], feature maps); unlike the other
        discriminators' scores, the reference's is not flattened."""
        if self.normalize_volume:  # BigVGAN's cqtd_normalize_volume: DC removed, peak at 0.8
            x = x - x.mean(dim=-1, keepdim=True)
            x = 0.8 * x / (x.abs().max(dim=-1, keepdim=True)[0] + 1e-9)
        with torch.autocast(x.device.type, enabled=False):
            z = self.cqt_transform(self.resample(x.float()))  # [B, 2, frames, bins]
        b = self.bins_per_octave
        z = torch.cat([conv(z[..., i * b : (i + 1) * b]) for i, conv in enumerate(self.conv_pres)], dim=-1)
        fmap = []
        for conv in self.convs:
            z = F.leaky_relu(conv(z), LRELU_SLOPE)
            fmap.append(z)
        return self.conv_post(z), fmap


class MultiScaleSubbandCQTDiscriminator(nn.Module):
    """One ``DiscriminatorCQT`` per (hop length, octaves, bins per octave)."""

    def __init__(self, sampling_rate: int, filters: int = 32, max_filters: int = 1024, filters_scale: int = 1,
                 dilations: tuple[int, ...] = (1, 2, 4), hop_lengths: tuple[int, ...] = (512, 256, 256),
                 n_octaves: tuple[int, ...] = (9, 9, 9), bins_per_octaves: tuple[int, ...] = (24, 36, 48),
                 channel_divisor: int = 1, normalize_volume: bool = False):
        super().__init__()
        self.discriminators = nn.ModuleList([
            DiscriminatorCQT(sampling_rate, hop, octaves, bins, filters, max_filters, filters_scale, tuple(dilations),
                             channel_divisor, normalize_volume)
            for hop, octaves, bins in zip(hop_lengths, n_octaves, bins_per_octaves, strict=True)
        ])

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor):
        return judge(self.discriminators, y, y_hat)
