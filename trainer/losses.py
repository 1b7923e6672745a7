"""HiFi-GAN's least-squares GAN losses and feature matching, as the reference sums them.

The reference multiplies feature matching by 2 inside ``feature_loss``; here that factor is the
config's ``lambda_fm`` and is applied by the training step.
"""

from __future__ import annotations

import torch


def feature_loss(fmap_r: list[list[torch.Tensor]], fmap_g: list[list[torch.Tensor]]) -> torch.Tensor:
    loss = 0
    for dr, dg in zip(fmap_r, fmap_g):
        for rl, gl in zip(dr, dg):
            loss = loss + torch.mean(torch.abs(rl - gl))
    return loss


def discriminator_loss(real_outputs: list[torch.Tensor], generated_outputs: list[torch.Tensor]) -> torch.Tensor:
    loss = 0
    for dr, dg in zip(real_outputs, generated_outputs):
        loss = loss + (torch.mean((1 - dr) ** 2) + torch.mean(dg**2))
    return loss


def generator_loss(generated_outputs: list[torch.Tensor]) -> torch.Tensor:
    loss = 0
    for dg in generated_outputs:
        loss = loss + torch.mean((1 - dg) ** 2)
    return loss
