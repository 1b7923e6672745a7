"""BigVGAN (Lee et al., 2023): HiFi-GAN's generator with anti-aliased periodic activations.

Each residual block of HiFi-GAN becomes an AMP block (anti-aliased multi-periodicity composition):
its leaky ReLUs are replaced by Snake (x + 1/α · sin²(αx), Liu Ziyin et al., 2020) or SnakeBeta
(x + 1/β · sin²(αx)), with a learnt α (and β) per channel, each applied at twice the sampling rate
(``trainer.alias_free.Activation1d``) so that the harmonics it makes do not alias. As in BigVGAN v2, the
output is clamped to [-1, 1] rather than squashed by tanh unless ``use_tanh_at_final`` is set.

Module, parameter and buffer names follow NVIDIA's ``bigvgan`` package (2.4), so the state_dict of
its ``BigVGAN`` loads into ours as it is (strict). ``load_release`` reads a release folder as that
package saves and publishes it (``config.json`` + ``bigvgan_generator.pt``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer.alias_free import Activation1d
from trainer.checkpoint import load_file
from trainer.config import BIGVGAN_ONLY
from trainer.errors import UserError
from trainer.models import WeightNorm, WNConv1d, WNConvTranspose1d, get_padding

SNAKE_EPS = 1e-9  # keeps 1/α finite where α reaches 0

RELEASE_CONFIG = "config.json"
RELEASE_WEIGHTS = "bigvgan_generator.pt"
RELEASE_AUDIO_KEYS = ("sampling_rate", "n_fft", "num_mels", "hop_size", "win_size", "fmin", "fmax", "fmax_for_loss")
RELEASE_GENERATOR_KEYS = ("resblock", "upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel",
                          "resblock_kernel_sizes", "resblock_dilation_sizes", "activation", "snake_logscale")
# Keys the v1 releases predate: the package then keeps v1's tanh and output bias.
RELEASE_OPTIONAL_KEYS = {"use_tanh_at_final": True, "use_bias_at_final": True}


class Snake(nn.Module):
    """x + 1/α · sin²(αx) with α per channel, on [B, C, T]. With ``alpha_logscale`` the parameter is log α
    (initialised to 0, i.e. α = 1), otherwise α itself (initialised to ``alpha``)."""

    def __init__(self, channels: int, alpha: float = 1.0, alpha_logscale: bool = False):
        super().__init__()
        self.alpha_logscale = alpha_logscale
        self.alpha = nn.Parameter(torch.zeros(channels) if alpha_logscale else torch.full((channels,), alpha))

    def _scale(self, parameter: torch.Tensor) -> torch.Tensor:
        p = parameter[None, :, None]
        return p.exp() if self.alpha_logscale else p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In the parameters' precision: under autocast, bf16 activations meet fp32 α and are promoted.
        alpha = self._scale(self.alpha)
        return x + (1.0 / (alpha + SNAKE_EPS)) * torch.sin(x * alpha).pow(2)


class SnakeBeta(Snake):
    """x + 1/β · sin²(αx): Snake with the magnitude of the periodic part (β) learnt apart from its
    frequency (α), both per channel and both on a log scale with ``alpha_logscale``."""

    def __init__(self, channels: int, alpha: float = 1.0, alpha_logscale: bool = False):
        super().__init__(channels, alpha, alpha_logscale)
        self.beta = nn.Parameter(torch.zeros(channels) if alpha_logscale else torch.full((channels,), alpha))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha, beta = self._scale(self.alpha), self._scale(self.beta)
        return x + (1.0 / (beta + SNAKE_EPS)) * torch.sin(x * alpha).pow(2)


SNAKES = {"snake": Snake, "snakebeta": SnakeBeta}


def anti_aliased_snake(activation: str, channels: int, logscale: bool) -> Activation1d:
    if activation not in SNAKES:
        raise ValueError(f"activation must be one of {', '.join(SNAKES)}, got {activation!r}")
    return Activation1d(SNAKES[activation](channels, alpha_logscale=logscale))


class AMPBlock1(nn.Module):
    """BigVGAN's residual block: per dilation, anti-aliased snake → dilated conv → anti-aliased snake →
    undilated conv, plus the input (ResBlock1 of HiFi-GAN with its leaky ReLUs replaced)."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: tuple[int, ...] = (1, 3, 5),
                 activation: str = "snakebeta", snake_logscale: bool = True):
        super().__init__()
        self.convs1 = nn.ModuleList(
            [WNConv1d(channels, channels, kernel_size, 1, dilation=d, padding=get_padding(kernel_size, d))
             for d in dilation]
        )
        self.convs2 = nn.ModuleList(
            [WNConv1d(channels, channels, kernel_size, 1, dilation=1, padding=get_padding(kernel_size, 1))
             for _ in dilation]
        )
        # one activation before each conv, in the order they run: before convs1[0], convs2[0], convs1[1], ...
        self.activations = nn.ModuleList(
            [anti_aliased_snake(activation, channels, snake_logscale) for _ in range(2 * len(dilation))]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acts1, acts2 = self.activations[0::2], self.activations[1::2]
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, acts1, acts2):
            x = c2(a2(c1(a1(x)))) + x
        return x


class AMPBlock2(nn.Module):
    """The lighter block (ResBlock2's shape): per dilation, anti-aliased snake → dilated conv, plus the input."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: tuple[int, ...] = (1, 3, 5),
                 activation: str = "snakebeta", snake_logscale: bool = True):
        super().__init__()
        self.convs = nn.ModuleList(
            [WNConv1d(channels, channels, kernel_size, 1, dilation=d, padding=get_padding(kernel_size, d))
             for d in dilation]
        )
        self.activations = nn.ModuleList(
            [anti_aliased_snake(activation, channels, snake_logscale) for _ in dilation]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c, a in zip(self.convs, self.activations):
            x = c(a(x)) + x
        return x


def _option(h: Any, name: str) -> Any:
    value = getattr(h, name, None)
    return BIGVGAN_ONLY[name] if value is None else value


class BigVGAN(nn.Module):
    """Mel [B, num_mels, frames] -> waveform [B, 1, frames · hop], hop = the product of ``upsample_rates``.

    Reads from ``h`` (a ``GeneratorConfig``): resblock, upsample_rates, upsample_kernel_sizes,
    upsample_initial_channel, resblock_kernel_sizes, resblock_dilation_sizes, activation,
    snake_logscale, use_tanh_at_final and use_bias_at_final (the last four take BigVGAN v2's values
    when None).
    """

    def __init__(self, h: Any, num_mels: int):
        super().__init__()
        activation, logscale = _option(h, "activation"), bool(_option(h, "snake_logscale"))
        self.use_tanh_at_final = bool(_option(h, "use_tanh_at_final"))
        if h.resblock not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {h.resblock!r}")
        resblock = AMPBlock1 if h.resblock == "1" else AMPBlock2
        self.num_kernels = len(h.resblock_kernel_sizes)
        self.num_upsamples = len(h.upsample_rates)
        self.conv_pre = WNConv1d(num_mels, h.upsample_initial_channel, 7, 1, padding=3)

        # The package wraps each transposed conv in a list of its own; kept, for its parameter names.
        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(h.upsample_rates, h.upsample_kernel_sizes)):
            self.ups.append(nn.ModuleList([
                WNConvTranspose1d(h.upsample_initial_channel // (2**i), h.upsample_initial_channel // (2 ** (i + 1)),
                                  k, u, padding=(k - u) // 2)
            ]))

        self.resblocks = nn.ModuleList()
        for i in range(self.num_upsamples):
            ch = h.upsample_initial_channel // (2 ** (i + 1))
            for k, d in zip(h.resblock_kernel_sizes, h.resblock_dilation_sizes):
                self.resblocks.append(resblock(ch, k, tuple(d), activation, logscale))

        self.activation_post = anti_aliased_snake(activation, ch, logscale)
        self.conv_post = WNConv1d(ch, 1, 7, 1, padding=3, bias=bool(_option(h, "use_bias_at_final")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(x)
        for i in range(self.num_upsamples):
            for up in self.ups[i]:
                x = up(x)  # no activation before it: the previous AMP blocks end in a conv
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            xs = blocks[0](x)
            for block in blocks[1:]:
                xs = xs + block(x)
            x = xs / self.num_kernels
        x = self.conv_post(self.activation_post(x))
        return torch.tanh(x) if self.use_tanh_at_final else torch.clamp(x, -1.0, 1.0)

    def fold_weight_norm(self) -> BigVGAN:
        """Freeze every weight-normalised layer to its plain weight (for inference)."""
        for module in self.modules():
            if isinstance(module, WeightNorm):
                module.fold()
        return self


def load_release(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A BigVGAN release folder as the ``bigvgan`` package saves and publishes it (``config.json`` and
    ``bigvgan_generator.pt``, a torch file {"generator": state_dict}) -> (its config in this project's
    shape, {"audio": {...}, "generator": {"type": "bigvgan", ...}}, and the generator's state_dict).

    The weights are read with ``torch.load(weights_only=True)``; anything wrong is a one-line UserError.
    A release saved without weight norm gets it back (weight_g = ‖weight‖, weight_v = weight), so the
    state_dict always loads into ``BigVGAN`` as it is.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"BigVGAN release {folder} is not a folder: pass the folder that holds "
                        f"{RELEASE_CONFIG} and {RELEASE_WEIGHTS}")
    config_path, weights_path = folder / RELEASE_CONFIG, folder / RELEASE_WEIGHTS
    for path in (config_path, weights_path):
        if not path.is_file():
            raise UserError(f"BigVGAN release {folder} lacks {path.name}: a release folder holds {RELEASE_CONFIG} "
                            f"and {RELEASE_WEIGHTS} (download both from the release's Hugging Face page)")
    return _release_config(config_path), _release_weights(weights_path)


def _release_config(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text: not a BigVGAN config") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a JSON object of hyperparameters, got {type(raw).__name__}")
    for key in (*RELEASE_AUDIO_KEYS, *RELEASE_GENERATOR_KEYS):
        if key not in raw:
            raise UserError(f"{path} lacks '{key}', which every BigVGAN release config has: add it with the value "
                            f"the model was trained with (see configs/ in github.com/NVIDIA/BigVGAN)")
    if raw["activation"] not in SNAKES:
        raise UserError(f"{path}: 'activation' must be one of {', '.join(SNAKES)}, got {raw['activation']!r}")
    audio = {key: raw[key] for key in RELEASE_AUDIO_KEYS}
    for key in ("fmin", "fmax", "fmax_for_loss"):  # JSON writes 0 and 8000 as integers
        if isinstance(audio[key], int) and not isinstance(audio[key], bool):
            audio[key] = float(audio[key])
    generator = {"type": "bigvgan", **{key: raw[key] for key in RELEASE_GENERATOR_KEYS}}
    generator["resblock"] = str(generator["resblock"])
    for key, default in RELEASE_OPTIONAL_KEYS.items():
        generator[key] = raw.get(key, default)
    return {"audio": audio, "generator": generator}


def _release_weights(path: Path) -> dict[str, torch.Tensor]:
    state = load_file(path)  # weights_only, with one-line errors
    if "generator" not in state:
        raise UserError(f"{path} has no 'generator' entry: not a BigVGAN generator file "
                        f"(the package saves {{'generator': state_dict}} as {RELEASE_WEIGHTS})")
    generator = state["generator"]
    if not isinstance(generator, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in generator.items()):
        raise UserError(f"{path}: its 'generator' entry is not a state_dict (names to tensors)")
    return _with_weight_norm(generator)


def _with_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Conv weights saved after ``remove_weight_norm`` (``X.weight``, 3-D) as ``X.weight_g`` / ``X.weight_v``,
    which give the same weight; a state that has weight norm is returned as it is."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        prefix = key[: -len(".weight")]
        if key.endswith(".weight") and value.dim() == 3 and f"{prefix}.weight_v" not in state:
            out[f"{prefix}.weight_g"] = torch.norm_except_dim(value, 2, 0)
            out[f"{prefix}.weight_v"] = value
        else:
            out[key] = value
    return out
