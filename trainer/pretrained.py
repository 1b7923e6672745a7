"""Weights a new run starts from (``training.finetune_from``): one of our checkpoints, a jik876
``g_`` file (with its ``do_`` pair), or a BigVGAN release, and which of its networks a fine-tune takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.bigvgan import RELEASE_WEIGHTS, load_release
from trainer.checkpoint import is_ours, load_file, load_jik876_pair


def load_pretrained(path: Path) -> dict[str, Any]:
    """Weights to fine-tune from (``training.finetune_from``): one of our checkpoints, a jik876
    ``g_`` file (with its ``do_`` pair), or a BigVGAN release (its folder, or the
    ``bigvgan_generator.pt`` in it, with ``config.json`` beside). Keys: ``generator`` and, where the
    source has them, the discriminators by kind."""
    if path.is_dir() or path.name == RELEASE_WEIGHTS:
        _, generator = load_release(path if path.is_dir() else path.parent)
        return {"generator": generator}
    state = load_file(path)
    if is_ours(state):
        return state
    return load_jik876_pair(path)


def pretrained_parts(state: dict[str, Any], kinds: list[str], with_discriminators: bool) -> list[str]:
    """The networks a fine-tune takes from ``state``: the generator, and the discriminators of
    ``kinds`` that it holds when ``with_discriminators``."""
    return ["generator", *(k for k in kinds if with_discriminators and k in state)]
