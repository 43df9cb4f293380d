"""Generators and discriminators of the book.

Discriminators return logits (any real number). A probability D(x) = sigmoid(logit) is computed only
where one is shown or where the article's `nn.BCELoss` form is reproduced: the logits form is the
numerically stable one (see `losses`). Generators end in Tanh: images live in [-1, 1].
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def _check_latent(z: torch.Tensor, latent_dim: int) -> None:
    if z.dim() != 2 or z.shape[1] != latent_dim:
        raise ValueError(f"expected noise z of shape (B, {latent_dim}), got {tuple(z.shape)}")


def _check_images(x: torch.Tensor, img_shape: Sequence[int]) -> None:
    if x.dim() != 4 or tuple(x.shape[1:]) != tuple(img_shape):
        raise ValueError(f"expected images of shape (B, {', '.join(map(str, img_shape))}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected float images in [-1, 1], got dtype {x.dtype}; "
                        "convert uint8 with gan_utils.data.to_unit_range")


class MLPGenerator(nn.Module):
    """The article's G (section 5): z (B, 100) -> 256 -> 512 -> 1024 -> 784 -> Tanh -> (B, 1, 28, 28)."""

    def __init__(self, latent_dim: int = 100, img_shape: Sequence[int] = (1, 28, 28)):
        super().__init__()
        self.latent_dim, self.img_shape = latent_dim, tuple(img_shape)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 256), nn.ReLU(inplace=True),   # (B, 256)
            nn.Linear(256, 512), nn.ReLU(inplace=True),          # (B, 512)
            nn.Linear(512, 1024), nn.ReLU(inplace=True),         # (B, 1024)
            nn.Linear(1024, math.prod(self.img_shape)), nn.Tanh(),  # (B, 784), pixels in [-1, 1]
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _check_latent(z, self.latent_dim)
        return self.net(z).view(-1, *self.img_shape)  # (B, 1, 28, 28)


class MLPDiscriminator(nn.Module):
    """The article's D (section 5): (B, 1, 28, 28) -> 784 -> 512 -> 256 -> 1 logit, LeakyReLU(0.2)."""

    def __init__(self, img_shape: Sequence[int] = (1, 28, 28)):
        super().__init__()
        self.img_shape = tuple(img_shape)
        self.net = nn.Sequential(
            nn.Flatten(),                                            # (B, 784)
            nn.Linear(math.prod(self.img_shape), 512), nn.LeakyReLU(0.2, inplace=True),  # (B, 512)
            nn.Linear(512, 256), nn.LeakyReLU(0.2, inplace=True),   # (B, 256)
            nn.Linear(256, 1),                                       # (B, 1) logit; the article adds Sigmoid
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.img_shape)
        return self.net(x).view(-1)  # (B,)


class ConvGenerator(nn.Module):
    """The article's conv G (section 4): Linear -> BN -> reshape (256, s/4, s/4) -> ConvT -> (128, s/2, s/2)
    -> BN -> ReLU -> ConvT -> (C, s, s) -> Tanh. For MNIST s = 28: 7x7x256 -> 14x14x128 -> 28x28x1.

    Any image size divisible by 4 works (28, 32, 64 ...): the start grid is derived from it.
    """

    def __init__(self, latent_dim: int = 100, img_shape: Sequence[int] = (1, 28, 28)):
        super().__init__()
        channels, height, width = img_shape
        if height % 4 or width % 4:
            raise ValueError(f"ConvGenerator needs height and width divisible by 4, got {height}x{width}")
        self.latent_dim, self.img_shape = latent_dim, tuple(img_shape)
        self.start = (256, height // 4, width // 4)
        self.project = nn.Sequential(
            nn.Linear(latent_dim, math.prod(self.start), bias=False),  # (B, 256*7*7)
            nn.BatchNorm1d(math.prod(self.start)),  # eps stays the default 1e-5 (BatchNorm1d(n, 0.8) sets eps!)
            nn.ReLU(inplace=True),
        )
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False),  # (B, 128, 14, 14)
            nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(128, channels, 4, 2, 1),          # (B, 1, 28, 28)
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _check_latent(z, self.latent_dim)
        h = self.project(z).view(-1, *self.start)  # (B, 256, 7, 7)
        return self.upsample(h)                     # (B, 1, 28, 28)


class ConvDiscriminator(nn.Module):
    """The article's conv D (section 4): Conv -> LeakyReLU -> Conv -> LeakyReLU -> Flatten -> Linear (logit)."""

    def __init__(self, img_shape: Sequence[int] = (1, 28, 28)):
        super().__init__()
        channels, height, width = img_shape
        if height % 4 or width % 4:
            raise ValueError(f"ConvDiscriminator needs height and width divisible by 4, got {height}x{width}")
        self.img_shape = tuple(img_shape)
        self.net = nn.Sequential(
            nn.Conv2d(channels, 64, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),  # (B, 64, 14, 14)
            nn.Conv2d(64, 128, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),       # (B, 128, 7, 7)
            nn.Flatten(),                                                        # (B, 6272)
            nn.Linear(128 * (height // 4) * (width // 4), 1),                    # (B, 1) logit
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.img_shape)
        return self.net(x).view(-1)  # (B,)


def dcgan_init(module: nn.Module) -> None:
    """DCGAN weight init (Radford et al. 2015): conv/linear weights ~ N(0, 0.02), BN weights ~ N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def build(name: str, latent_dim: int = 100, img_shape: Sequence[int] = (1, 28, 28)) -> tuple[nn.Module, nn.Module]:
    """(net_G, net_D) for a model name of the command line, with DCGAN init for the conv pairs."""
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(BUILDERS)}")
    if not isinstance(latent_dim, int) or latent_dim < 1:
        raise ValueError(f"latent_dim must be a positive int, got {latent_dim!r}")
    net_G, net_D = BUILDERS[name](latent_dim, tuple(img_shape))
    return net_G, net_D


def _mlp(latent_dim, img_shape):
    return MLPGenerator(latent_dim, img_shape), MLPDiscriminator(img_shape)


def _conv(latent_dim, img_shape):
    net_G, net_D = ConvGenerator(latent_dim, img_shape), ConvDiscriminator(img_shape)
    net_G.apply(dcgan_init)
    net_D.apply(dcgan_init)
    return net_G, net_D


BUILDERS = {"mlp": _mlp, "conv": _conv}
