"""The adversarial losses (``loss.gan``) and feature matching.

Each GAN loss sums over the sub-discriminators' outputs, as the reference sums its least-squares
terms. The reference multiplies feature matching by 2 inside ``feature_loss``; here that factor is
the config's ``lambda_fm`` and is applied by the training step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def feature_loss(fmap_r: list[list[torch.Tensor]], fmap_g: list[list[torch.Tensor]]) -> torch.Tensor:
    loss = 0
    for dr, dg in zip(fmap_r, fmap_g):
        for rl, gl in zip(dr, dg):
            loss = loss + torch.mean(torch.abs(rl - gl))
    return loss


class LeastSquares:
    """LSGAN (Mao et al., 2017), HiFi-GAN's: D pulls real scores to 1 and generated ones to 0."""

    @staticmethod
    def discriminator(real_outputs: list[torch.Tensor], generated_outputs: list[torch.Tensor]) -> torch.Tensor:
        loss = 0
        for dr, dg in zip(real_outputs, generated_outputs):
            loss = loss + (torch.mean((1 - dr) ** 2) + torch.mean(dg**2))
        return loss

    @staticmethod
    def generator(generated_outputs: list[torch.Tensor]) -> torch.Tensor:
        loss = 0
        for dg in generated_outputs:
            loss = loss + torch.mean((1 - dg) ** 2)
        return loss


class Hinge:
    """Hinge loss (Lim & Ye, 2017; MelGAN): D's margin is 1 on both sides; G raises its score."""

    @staticmethod
    def discriminator(real_outputs: list[torch.Tensor], generated_outputs: list[torch.Tensor]) -> torch.Tensor:
        loss = 0
        for dr, dg in zip(real_outputs, generated_outputs):
            loss = loss + (torch.mean(F.relu(1 - dr)) + torch.mean(F.relu(1 + dg)))
        return loss

    @staticmethod
    def generator(generated_outputs: list[torch.Tensor]) -> torch.Tensor:
        loss = 0
        for dg in generated_outputs:
            loss = loss - torch.mean(dg)
        return loss


class CrossEntropy:
    """The original GAN loss on logits (Goodfellow et al., 2014), G in its non-saturating form."""

    @staticmethod
    def discriminator(real_outputs: list[torch.Tensor], generated_outputs: list[torch.Tensor]) -> torch.Tensor:
        loss = 0
        for dr, dg in zip(real_outputs, generated_outputs):
            loss = loss + (F.binary_cross_entropy_with_logits(dr, torch.ones_like(dr))
                           + F.binary_cross_entropy_with_logits(dg, torch.zeros_like(dg)))
        return loss

    @staticmethod
    def generator(generated_outputs: list[torch.Tensor]) -> torch.Tensor:
        loss = 0
        for dg in generated_outputs:
            loss = loss + F.binary_cross_entropy_with_logits(dg, torch.ones_like(dg))
        return loss


GAN_LOSSES = {"lsgan": LeastSquares, "hinge": Hinge, "bce": CrossEntropy}
