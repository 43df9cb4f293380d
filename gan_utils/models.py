"""Generators and discriminators of the book.

Discriminators return logits (any real number). A probability D(x) = sigmoid(logit) is computed only
where one is shown or where the article's `nn.BCELoss` form is reproduced: the logits form is the
numerically stable one (see `losses`). Generators end in Tanh: images live in [-1, 1].
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize


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
    """The book's conv G: the article's (section 4) with DCGAN's rules applied (`ArticleConvGenerator` is
    the article's as written). Linear -> BN -> ReLU -> reshape (256, s/4, s/4) -> ConvT -> (128, s/2, s/2)
    -> BN -> ReLU -> ConvT -> (C, s, s) -> Tanh. For MNIST s = 28: 7x7x256 -> 14x14x128 -> 28x28x1.

    Where it departs from the article: ReLU (not Tanh) after the projection, no BatchNorm before the
    output Tanh, and ConvTranspose2d where the article writes Conv2d (which cannot upsample). Any image
    size divisible by 4 works (28, 32, 64 ...): the start grid is derived from it.
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


class ArticleConvGenerator(ConvGenerator):
    """The article's conv G exactly as its section 4 writes it, kept to measure what the book's fixes buy.

    Tanh(BN(Linear(z))) -> reshape (256, 7, 7) -> BN(ConvT) (128, 14, 14) -> ReLU -> BN(ConvT) (1, 28, 28)
    -> Tanh. Two choices differ from `ConvGenerator` and break DCGAN's rules: a Tanh (not ReLU) after the
    projection, and a BatchNorm right before the output Tanh. Only the article's `Conv2d` is replaced by
    `ConvTranspose2d`, since a `Conv2d` cannot upsample (chapter 4). Same start grid and forward as the
    book's generator; only the layers differ.
    """

    def __init__(self, latent_dim: int = 100, img_shape: Sequence[int] = (1, 28, 28)):
        super().__init__(latent_dim, img_shape)
        channels = self.img_shape[0]
        self.project = nn.Sequential(
            nn.Linear(latent_dim, math.prod(self.start)),  # (B, 256*7*7), with the bias the article keeps
            nn.BatchNorm1d(math.prod(self.start)),
            nn.Tanh(),                                     # the article's choice; DCGAN uses ReLU inside G
        )
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(256, 128, 4, 2, 1),        # (B, 128, 14, 14)
            nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(128, channels, 4, 2, 1),   # (B, 1, 28, 28)
            nn.BatchNorm2d(channels),                     # BN on G's output layer: DCGAN leaves it out
            nn.Tanh(),
        )


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # per-sample normalisation: what a WGAN-GP critic may use (BN mixes the samples)
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'layer' or 'none', got {kind!r}")


class MinibatchStd(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018): append one feature map that holds how varied the
    batch is, the standard deviation of every feature over the batch, averaged to one number.

    A generator that draws one image for every z makes batches with a small value here, which a D can then
    reject: it sees a statistic of the whole batch, not only one image at a time. (B, C, H, W) ->
    (B, C + 1, H, W). D sees real and fake batches separately (train.update_D), so each batch is one kind.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std = (x.float().var(dim=0, unbiased=False) + 1e-8).sqrt().mean().to(x.dtype)  # one number
        return torch.cat([x, std.expand(x.shape[0], 1, *x.shape[2:])], dim=1)  # (B, C + 1, H, W)


def add_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) on every Conv2d and Linear inside `module`, in place.

    Each weight W is used as W / sigma(W), with sigma its largest singular value, estimated by one step of
    power iteration per training forward: every layer is then 1-Lipschitz, which bounds how sharply D can
    change between nearby images. Returns `module`.
    """
    for layer in list(module.modules()):
        if isinstance(layer, (nn.Conv2d, nn.Linear)) and not parametrize.is_parametrized(layer, "weight"):
            nn.utils.parametrizations.spectral_norm(layer)
    return module


# Square sizes the DCGAN family makes. 28: the book's MNIST layout (a 7x7 start, two stride-2 layers and a
# 3x3 conv). Powers of two: Radford et al.'s layout, a 4x4 start and one stride-2 layer per doubling.
DCGAN_SIZES = (28, 32, 64, 128)


def dcgan_layout(img_shape: Sequence[int], who: str) -> tuple[int, int, int]:
    """(channels, size, stride-2 layers after a 4x4 start; 0 for 28) of a shape the DCGAN family makes."""
    channels, height, width_px = img_shape
    if height != width_px or height not in DCGAN_SIZES:
        raise ValueError(f"{who} makes square images of {', '.join(map(str, DCGAN_SIZES))} pixels, not "
                         f"{height}x{width_px}; choose one of these sizes (CLI: --image-size)")
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"{who} needs a positive channel count (1 grey, 3 colour), got {channels!r}")
    return channels, height, 0 if height == 28 else int(math.log2(height // 4))


class DCGANGenerator(nn.Module):
    """DCGAN G (Radford et al. 2015): all convolutional, BN + ReLU inside, Tanh out, no Linear.

    28x28 (MNIST, width w = 32): z -> ConvT -> (4w, 7, 7) -> (2w, 14, 14) -> (w, 28, 28) -> Conv -> (C, 28, 28).
    32 and 64 (the paper's layout, width w = 64): z -> ConvT -> (8w, 4, 4) -> ... doubling the side and halving
    the channels ... -> (w, S/2, S/2) -> ConvT -> (C, S, S); at 64: 512x4x4 -> 256x8x8 -> 128x16x16 -> 64x32x32.
    The paper's w is 128 at 64x64; 64 (the PyTorch tutorial's) trains 4x faster and is enough for small sets.
    """

    def __init__(self, latent_dim: int = 100, img_shape: Sequence[int] = (1, 28, 28), width: Optional[int] = None,
                 num_classes: Optional[int] = None):
        super().__init__()
        channels, size, doublings = dcgan_layout(img_shape, "DCGANGenerator")
        self.latent_dim, self.img_shape, self.num_classes = latent_dim, tuple(img_shape), num_classes
        in_dim = latent_dim
        if num_classes is not None:  # conditional: the class enters as a learned vector beside z
            self.embed = nn.Embedding(num_classes, 50)
            in_dim += 50
        if doublings:
            self.net = _radford_generator(in_dim, channels, doublings, width or 64)
            return
        w = width or 32
        self.net = nn.Sequential(
            nn.ConvTranspose2d(in_dim, 4 * w, 7, 1, 0, bias=False),  # (B, 4w, 7, 7)
            nn.BatchNorm2d(4 * w), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False),  # (B, 2w, 14, 14)
            nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False),      # (B, w, 28, 28)
            nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, channels, 3, 1, 1),                         # (B, C, 28, 28)
            nn.Tanh(),
        )

    def forward(
        self, z: torch.Tensor, labels: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        _check_latent(z, self.latent_dim)
        if self.num_classes is not None:
            y = _check_labels(labels, z.shape[0], self.num_classes)  # (B,)
            z = torch.cat([z, self.embed(y)], dim=1)  # (B, latent_dim + embed_dim)
        elif labels is not None:
            raise ValueError("this generator is unconditional: call it without labels")
        return self.net(z[:, :, None, None])  # (B, C, H, W)


def _radford_generator(in_dim: int, channels: int, doublings: int, w: int) -> nn.Sequential:
    widths = [w * 2 ** (doublings - 1 - i) for i in range(doublings)]  # at 64: [8w, 4w, 2w, w]
    layers = [nn.ConvTranspose2d(in_dim, widths[0], 4, 1, 0, bias=False),  # (B, 8w, 4, 4)
              nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
    for c_in, c_out in zip(widths, widths[1:]):  # each layer: (B, c_in, s, s) -> (B, c_in / 2, 2s, 2s)
        layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]  # (B, C, S, S): no BN on the output
    return nn.Sequential(*layers)


class DCGANDiscriminator(nn.Module):
    """DCGAN D: strided convs (no pooling), LeakyReLU(0.2), BN except on the input layer, one logit out.

    The mirror of DCGANGenerator at each size: at 64, (C, 64, 64) -> 64x32x32 -> 128x16x16 -> 256x8x8 ->
    512x4x4 -> logit. norm='layer' (or 'none') for a WGAN-GP critic; with `num_classes`, a projection
    discriminator (Miyato & Koyama 2018): logit = w.h + embed(y).h. Two stabilisers that chapter 10
    measures: `minibatch_std` adds a MinibatchStd map before the last layer (at 28: before the 3x3 conv),
    `spectral_norm` normalises every conv and linear weight (add_spectral_norm; usually with norm='none').
    """

    def __init__(self, img_shape: Sequence[int] = (1, 28, 28), width: Optional[int] = None, norm: str = "batch",
                 num_classes: Optional[int] = None, minibatch_std: bool = False, spectral_norm: bool = False):
        super().__init__()
        channels, size, doublings = dcgan_layout(img_shape, "DCGANDiscriminator")
        self.img_shape, self.num_classes = tuple(img_shape), num_classes
        self.width, self.norm = width, norm  # so a variant can be built with the same layout
        extra = int(minibatch_std)  # the one map MinibatchStd appends
        if doublings:
            self.features, feat = _radford_features(channels, doublings, width or 64, norm, minibatch_std)
        else:
            w = width or 32
            self.features = nn.Sequential(
                nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),  # (B, w, 14, 14)
                nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), _norm2d(norm, 2 * w), nn.LeakyReLU(0.2, inplace=True),
                # (B, 2w, 7, 7)
                *([MinibatchStd()] if minibatch_std else []),                      # (B, 2w + 1, 7, 7)
                nn.Conv2d(2 * w + extra, 4 * w, 3, 1, 1, bias=False), _norm2d(norm, 4 * w),
                nn.LeakyReLU(0.2, inplace=True),                                    # (B, 4w, 7, 7)
                nn.Flatten(),                                                       # (B, 4w*7*7)
            )
            feat = 4 * w * 7 * 7
        self.head = nn.Linear(feat, 1)  # (B, 1) logit or critic score, never a Sigmoid
        if num_classes is not None:
            self.embed = nn.Embedding(num_classes, feat)
        if spectral_norm:
            add_spectral_norm(self)  # convs and linears; a class table (Embedding) is left as it is

    def forward(
        self, x: torch.Tensor, labels: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        _check_images(x, self.img_shape)
        h = self.features(x)  # (B, feat)
        out = self.head(h).view(-1)  # (B,)
        if self.num_classes is not None:
            y = _check_labels(labels, x.shape[0], self.num_classes)  # (B,)
            out = out + (self.embed(y) * h).sum(dim=1)  # projection D: + <embed(y), h>
        elif labels is not None:
            raise ValueError("this discriminator is unconditional: call it without labels")
        return out


def _radford_features(channels: int, doublings: int, w: int, norm: str,
                      minibatch_std: bool = False) -> tuple[nn.Sequential, int]:
    widths = [w * 2 ** i for i in range(doublings)]  # at 64: [w, 2w, 4w, 8w]
    layers = [nn.Conv2d(channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]  # (B, w, S/2, S/2), no BN
    for c_in, c_out in zip(widths, widths[1:]):  # each layer: (B, c_in, s, s) -> (B, 2 c_in, s/2, s/2)
        layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), _norm2d(norm, c_out), nn.LeakyReLU(0.2, inplace=True)]
    if minibatch_std:
        layers.append(MinibatchStd())  # (B, 8w + 1, 4, 4)
    layers.append(nn.Flatten())  # (B, 8w*4*4): the head's Linear is the paper's last 4x4 conv to one logit
    return nn.Sequential(*layers), (widths[-1] + int(minibatch_std)) * 4 * 4


def check_label_range(labels: torch.Tensor, num_classes: int) -> None:
    """Raise unless every label is in [0, num_classes). Reads the values: a host sync on a GPU, so the
    training loop calls it once, on the first batch, not in every forward."""
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")


def _check_labels(labels: Optional[torch.Tensor], batch: int, num_classes: int) -> torch.Tensor:
    # Shape and dtype are known without reading the tensor: no sync, no graph break under torch.compile.
    if labels is None:
        raise ValueError(f"this model is conditional: pass labels, a LongTensor of shape ({batch},) in [0, {num_classes})")
    if labels.shape != (batch,) or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"expected labels of shape ({batch},) and an integer dtype, got {tuple(labels.shape)} {labels.dtype}")
    if labels.device.type == "cpu" and not torch.compiler.is_compiling():
        check_label_range(labels, num_classes)  # free on the CPU; on a GPU fit checks its first batch once
    return labels.long()


def dcgan_init(module: nn.Module) -> None:
    """DCGAN weight init (Radford et al. 2015): conv/linear weights ~ N(0, 0.02), BN weights ~ N(1, 0.02).

    Label tables (`nn.Embedding`) get N(0, 0.02) too. PyTorch's default N(0, 1) makes the projection
    e_y . phi(x) of the cGAN's D dominate its first logits and G's label vector as loud as z; a cGAN
    started that way learned one image per class (chapter 8 measures it).
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        if parametrize.is_parametrized(module, "weight"):  # spectral norm: initialise the stored weight
            nn.init.normal_(module.parametrizations.weight.original, 0.0, 0.02)
            _refit_power_iteration(module)
        else:
            nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:  # an Embedding has none
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _refit_power_iteration(module: nn.Module, steps: int = 15) -> None:
    """After a new weight, SN's singular-vector estimates belong to the old one: refit them, so sigma is
    right from the first training step (the parametrisation does one iteration per training forward)."""
    for sn in module.parametrizations.weight:
        if hasattr(sn, "_power_method") and hasattr(sn, "_reshape_weight_to_matrix"):
            with torch.no_grad():
                sn._power_method(sn._reshape_weight_to_matrix(module.parametrizations.weight.original), steps)


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


def _dcgan_pair(norm: str = "batch", num_classes: Optional[int] = None):
    def builder(latent_dim, img_shape):
        net_G = DCGANGenerator(latent_dim, img_shape, num_classes=num_classes)
        net_D = DCGANDiscriminator(img_shape, norm=norm, num_classes=num_classes)
        net_G.apply(dcgan_init)
        net_D.apply(dcgan_init)
        return net_G, net_D
    return builder


# The names of the command line. lsgan and wgan train the DCGAN pair with another loss (see train.RECIPES);
# the WGAN-GP critic normalises per sample, since the penalty is a per-sample gradient.
BUILDERS = {"mlp": _mlp, "conv": _conv, "dcgan": _dcgan_pair(), "cgan": _dcgan_pair(num_classes=10),
            "lsgan": _dcgan_pair(), "wgan": _dcgan_pair(), "wgan-gp": _dcgan_pair(norm="layer")}
