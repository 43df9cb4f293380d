"""Augmenting a classifier's few labels: affine maps, and a cGAN of the same digits.

Chapter 16's protocol, in five calls:

    from gan_utils import augment
    index = augment.labelled_subset(labels, per_class=10, seed=0)  # 100 digits
    net_G, _ = augment.fit_cgan(images[index], labels[index], augment.CGANConfig())
    fakes, fake_labels = augment.generate(net_G, per_class=500, seed=1)
    cfg = augment.ClassifierConfig(affine=True, gan_ratio=0.5, seed=0)
    net = augment.train_classifier(images[index], labels[index], cfg,
                                   extra=(fakes, fake_labels))
    print(augment.accuracy(net, test_images, test_labels))

The cGAN sees the labelled subset only, never the other digits: otherwise its samples
would carry labels the classifier was not given. Images are float in [-1, 1], shape
(N, 1, 28, 28), as everywhere in the book.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoints, data, losses, models, train

__all__ = ["labelled_subset", "AffineConfig", "affine_matrices", "apply_affine",
           "random_affine", "diff_augment", "SmallCNN", "ClassifierConfig",
           "train_classifier", "accuracy", "CGANConfig", "build_cgan", "fit_cgan",
           "generate", "save_generator", "load_generator", "load_pretrained",
           "pretrained_names", "PRETRAINED_DIR"]

NUM_CLASSES = 10
AUGMENT_FORMAT = "gan_utils.augment.generator.v1"
PRETRAINED_DIR = checkpoints.PRETRAINED_DIR / "augment"


def _check_images(images: torch.Tensor, name: str = "images") -> None:
    if images.dim() != 4 or images.shape[1:] != (1, 28, 28):
        raise ValueError(f"expected {name} of shape (N, 1, 28, 28), "
                         f"got {tuple(images.shape)}")
    if len(images) == 0:  # e.g. a filter that kept no generated digit
        raise ValueError(f"{name} is empty: nothing to train or score on")
    data.check_pixel_range(images, name)


def _check_labels(labels: torch.Tensor, n: int, name: str = "labels") -> None:
    if labels.shape != (n,) or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"expected {name} of shape ({n},) and an integer dtype, "
                         f"got {tuple(labels.shape)} {labels.dtype}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= NUM_CLASSES):
        raise ValueError(f"{name} must be digits 0-9, got [{int(labels.min())}, "
                         f"{int(labels.max())}]")


# --- the labelled subset ------------------------------------------------------------

def labelled_subset(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of `per_class` random digits of each class: (10 * per_class,), sorted.

    Balanced on purpose: from 100 labels drawn at random some digits would get 5 and
    others 15, and every comparison would also measure that draw.
    """
    if not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be an int >= 1, got {per_class!r}")
    _check_labels(labels, len(labels))
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for digit in range(NUM_CLASSES):
        members = (labels == digit).nonzero().flatten()  # (n_digit,)
        if len(members) < per_class:
            raise ValueError(f"only {len(members)} digits of class {digit}, "
                             f"cannot take {per_class}")
        order = torch.randperm(len(members), generator=gen)
        picks.append(members[order[:per_class]])
    return torch.cat(picks).sort().values


# --- classic augmentation: a random affine map per image ----------------------------

@dataclass
class AffineConfig:
    """The range of each random transform; every image draws its own, uniformly."""
    degrees: float = 10.0    # rotation in [-degrees, degrees]
    shift: float = 2.0       # translation in pixels, each axis in [-shift, shift]
    scale: float = 0.1       # zoom factor in [1 - scale, 1 + scale]

    def validate(self) -> "AffineConfig":
        if not 0 <= self.degrees <= 180:
            raise ValueError(f"degrees must be in [0, 180], got {self.degrees!r}")
        if self.shift < 0:
            raise ValueError(f"shift must be >= 0 pixels, got {self.shift!r}")
        if not 0 <= self.scale < 1:
            raise ValueError(f"scale must be in [0, 1), got {self.scale!r}")
        return self


def _uniform(n: int, half_width: float,
             generator: Optional[torch.Generator]) -> torch.Tensor:
    return (torch.rand(n, generator=generator) * 2 - 1) * half_width  # (n,)


def affine_matrices(n: int, cfg: AffineConfig = AffineConfig(),
                    generator: Optional[torch.Generator] = None,
                    side: int = 28) -> torch.Tensor:
    """n random maps (rotation, zoom, shift) as affine_grid's matrices: (n, 2, 3).

    affine_grid maps each output position to the input position it reads, in
    coordinates where the image spans [-1, 1]: one pixel is 2 / side.
    """
    cfg.validate()
    angle = _uniform(n, math.radians(cfg.degrees), generator)  # (n,)
    zoom = 1 + _uniform(n, cfg.scale, generator)                # (n,)
    shift_x = _uniform(n, cfg.shift, generator) * 2 / side      # (n,)
    shift_y = _uniform(n, cfg.shift, generator) * 2 / side      # (n,)
    # reading at (x / zoom) draws the digit zoom times larger
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    return torch.stack([torch.stack([cos, -sin, shift_x], 1),
                        torch.stack([sin, cos, shift_y], 1)], 1)  # (n, 2, 3)


def apply_affine(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample each image through its matrix (bilinear): (N, C, H, W) -> same shape.

    Pixels read from outside the image are background (-1). Differentiable in images.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got {tuple(images.shape)}")
    if theta.shape != (len(images), 2, 3):
        raise ValueError(f"expected one (2, 3) matrix per image, got "
                         f"{tuple(theta.shape)} for {len(images)} images")
    theta = theta.to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (N, H, W, 2)
    # grid_sample pads with 0: sample images + 1, so that the padding is background
    moved = F.grid_sample(images + 1, grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)
    return moved - 1


def random_affine(images: torch.Tensor, cfg: AffineConfig = AffineConfig(),
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Each image rotated, zoomed and shifted by its own random draw (from `generator`,
    a CPU one, so that a seed fixes them on every device); shape kept."""
    if images.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got {tuple(images.shape)}")
    theta = affine_matrices(len(images), cfg, generator, side=images.shape[-1])
    return apply_affine(images, theta)  # (N, C, H, W)


def diff_augment(images: torch.Tensor, generator: Optional[torch.Generator] = None,
                 shift: int = 3, cutout: int = 8) -> torch.Tensor:
    """DiffAugment's translation and cutout (Zhao et al. 2020), for what D sees.

    Applied to real and generated images alike, and differentiable, so G's gradient
    passes through it: D cannot memorise a few hundred digits pixel for pixel, and
    since both sides are augmented G is not taught to draw shifted or cut digits.
    Shifts are whole pixels in [-shift, shift]; the cutout is a `cutout` x `cutout`
    square of background at a random place. Milder than the paper's defaults on 28
    pixels (shift 4, cutout 14), and without its colour transform; both fill with
    background (-1), where the paper pads with 0. (N, C, H, W) -> same shape.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got {tuple(images.shape)}")
    n, _, height, width = images.shape
    moved = images
    if shift:  # whole pixels: bilinear sampling at integer offsets copies them exactly
        offsets = torch.randint(-shift, shift + 1, (2, n), generator=generator)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1
        theta[:, 0, 2] = offsets[0] * 2 / width
        theta[:, 1, 2] = offsets[1] * 2 / height
        moved = apply_affine(images, theta)
    if cutout:
        top = torch.randint(0, height - cutout + 1, (n, 1, 1), generator=generator)
        left = torch.randint(0, width - cutout + 1, (n, 1, 1), generator=generator)
        rows = torch.arange(height)[None, :, None]  # (1, H, 1)
        cols = torch.arange(width)[None, None, :]   # (1, 1, W)
        hole = ((rows >= top) & (rows < top + cutout)
                & (cols >= left) & (cols < left + cutout))  # (N, H, W)
        keep = (~hole).unsqueeze(1).to(images.device, images.dtype)  # (N, 1, H, W)
        moved = moved * keep - (1 - keep)  # the hole becomes background (-1)
    return moved


# --- the classifier and its training loop -------------------------------------------

class SmallCNN(nn.Module):
    """conv-pool-conv-pool-fc-fc on (N, 1, 28, 28) images in [-1, 1]: logits (N, 10).

    Not the book's MNISTClassifier, which saw all 60,000 labels and only judges GAN
    samples here. About 0.2 million parameters: seconds per hundred steps on a CPU.
    """

    def __init__(self, width: int = 16, dropout: float = 0.3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(inplace=True),  # (N, w, 28, 28)
            nn.MaxPool2d(2),                                           # (N, w, 14, 14)
            nn.Conv2d(width, 2 * width, 3, padding=1),                 # (N, 2w, 14, 14)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),                                           # (N, 2w, 7, 7)
            nn.Flatten(), nn.Dropout(dropout),                         # (N, 2w * 49)
            nn.Linear(2 * width * 49, 128), nn.ReLU(inplace=True),     # (N, 128)
            nn.Dropout(dropout), nn.Linear(128, NUM_CLASSES))          # (N, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"expected images (N, 1, 28, 28), got {tuple(x.shape)}")
        return self.net(x)


@dataclass
class ClassifierConfig:
    """How `train_classifier` trains. Every arm takes the same steps, so that an arm
    with more (augmented or generated) images does not also get more updates."""
    num_steps: int = 500
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    affine: bool = False     # a fresh random affine map on every image of every batch
    gan_ratio: float = 0.0   # share of each batch drawn from `extra` (generated digits)
    seed: int = 0            # initial weights, batches and augmentation draws

    def validate(self) -> "ClassifierConfig":
        if not isinstance(self.num_steps, int) or self.num_steps < 1:
            raise ValueError(f"num_steps must be an int >= 1, got {self.num_steps!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ValueError(f"batch_size must be an int >= 2, got {self.batch_size!r}")
        if not 0 <= self.gan_ratio < 1:
            raise ValueError(f"gan_ratio must be in [0, 1) (some real digits in every "
                             f"batch), got {self.gan_ratio!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        return self


def train_classifier(images: torch.Tensor, labels: torch.Tensor,
                     cfg: ClassifierConfig,
                     extra: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                     affine_cfg: AffineConfig = AffineConfig()) -> SmallCNN:
    """A SmallCNN trained with cross-entropy on (images, labels), with `extra`
    (generated images, their labels) as cfg.gan_ratio of every batch; in eval mode.

    Batches are drawn with replacement by a generator seeded with cfg.seed, so the
    arms of one seed start from the same weights and draw the same real digits.
    """
    cfg.validate()
    _check_images(images)
    _check_labels(labels, len(images))
    if (extra is None) != (cfg.gan_ratio == 0):
        raise ValueError("gan_ratio > 0 needs extra=(images, labels) of generated "
                         "digits, and extra needs gan_ratio > 0")
    if extra is not None:
        _check_images(extra[0], "extra images")
        _check_labels(extra[1], len(extra[0]), "extra labels")
    device = images.device
    torch.manual_seed(cfg.seed)  # the initial weights
    net = SmallCNN().to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)  # the real batches
    # a second stream for generated digits and affine draws: the real batches of
    # every arm stay the same
    gen_extra = torch.Generator().manual_seed(cfg.seed + 10_000)
    num_fake = round(cfg.batch_size * cfg.gan_ratio)
    num_real = cfg.batch_size - num_fake
    for _ in range(cfg.num_steps):
        idx = torch.randint(len(images), (num_real,), generator=gen).to(device)
        x, y = images[idx], labels[idx]  # (num_real, 1, 28, 28), (num_real,)
        if num_fake:
            jdx = torch.randint(len(extra[0]), (num_fake,), generator=gen_extra)
            x = torch.cat([x, extra[0][jdx.to(device)]])  # (B, 1, 28, 28)
            y = torch.cat([y, extra[1][jdx.to(device)]])  # (B,)
        if cfg.affine:
            x = random_affine(x, affine_cfg, gen_extra)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 1000) -> float:
    """Share of images whose most likely class is their label (net in eval mode)."""
    _check_images(images)
    _check_labels(labels, len(images))
    net.eval()
    correct = 0
    for x, y in zip(images.split(batch_size), labels.split(batch_size)):
        correct += (net(x).argmax(1) == y.to(x.device)).sum().item()
    return correct / len(images)


# --- the conditional GAN, trained on the subset only --------------------------------

@dataclass
class CGANConfig:
    """The subset's cGAN: chapter 8's conditional DCGAN pair (projection D), narrower,
    with DiffAugment and an EMA of G; DCGAN's Adam (2e-4, beta1 0.5)."""
    num_steps: int = 1500
    batch_size: int = 32
    latent_dim: int = 32       # 100 in chapter 8: a few hundred digits need fewer
    width: int = 16            # 32 in chapter 8: a quarter of the compute and bytes
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    diff_augment: bool = True  # translation and cutout before D, on real and fake
    ema: float = 0.999         # decay of the EMA of G's weights; 0 = off
    seed: int = 0

    def validate(self) -> "CGANConfig":
        if not isinstance(self.num_steps, int) or self.num_steps < 1:
            raise ValueError(f"num_steps must be an int >= 1, got {self.num_steps!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ValueError(f"batch_size must be an int >= 2 (BatchNorm), "
                             f"got {self.batch_size!r}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema!r}")
        return self


def build_cgan(cfg: CGANConfig) -> tuple[models.DCGANGenerator,
                                         models.DCGANDiscriminator]:
    """Chapter 8's conditional DCGAN pair at cfg's width and latent size, DCGAN init."""
    net_G = models.DCGANGenerator(cfg.latent_dim, width=cfg.width,
                                  num_classes=NUM_CLASSES)
    net_D = models.DCGANDiscriminator(width=cfg.width, num_classes=NUM_CLASSES)
    net_G.apply(models.dcgan_init)
    net_D.apply(models.dcgan_init)
    return net_G, net_D


def fit_cgan(images: torch.Tensor, labels: torch.Tensor,
             cfg: CGANConfig) -> tuple[models.DCGANGenerator, dict]:
    """A cGAN trained on (images, labels) alone: (EMA of G in eval mode, history).

    Each step: one D step and one G step with chapter 5's non-saturating loss. G is
    asked for the labels of the real batch, so each class is drawn as often as the
    subset holds it. History: mean loss_D and loss_G every 50 steps, seconds.
    """
    cfg.validate()
    _check_images(images)
    _check_labels(labels, len(images))
    device = images.device
    torch.manual_seed(cfg.seed)
    net_G, net_D = build_cgan(cfg)
    net_G, net_D = net_G.to(device).train(), net_D.to(device).train()
    ema_G = train.make_ema(net_G)
    opt_G = torch.optim.Adam(net_G.parameters(), lr=cfg.lr, betas=cfg.betas)
    opt_D = torch.optim.Adam(net_D.parameters(), lr=cfg.lr, betas=cfg.betas)
    gen = torch.Generator().manual_seed(cfg.seed)

    def look(x: torch.Tensor) -> torch.Tensor:  # what D sees of an image
        return diff_augment(x, gen) if cfg.diff_augment else x

    def noise() -> torch.Tensor:
        return torch.randn(cfg.batch_size, cfg.latent_dim, generator=gen).to(device)

    history = {"step": [], "loss_D": [], "loss_G": []}
    sums, count = [0.0, 0.0], 0
    start = time.perf_counter()
    for step in range(1, cfg.num_steps + 1):
        idx = torch.randint(len(images), (cfg.batch_size,), generator=gen).to(device)
        real, y = images[idx], labels[idx]  # (B, 1, 28, 28), (B,)
        with torch.no_grad():  # D's step must not update G
            fake = net_G(noise(), y)  # (B, 1, 28, 28)
        loss_D = losses.d_loss(net_D(look(real), y), net_D(look(fake), y))
        opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        opt_D.step()

        net_D.requires_grad_(False)  # G's step need not compute D's weight gradients
        loss_G = losses.g_loss_nonsaturating(net_D(look(net_G(noise(), y)), y))
        opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        opt_G.step()
        net_D.requires_grad_(True)
        decay = train.ema_decay(cfg.ema, step - 1) if cfg.ema else 0.0
        train.ema_update(ema_G, net_G, decay)

        sums[0] += loss_D.item()
        sums[1] += loss_G.item()
        count += 1
        if not math.isfinite(sums[0] + sums[1]):
            raise FloatingPointError(f"a loss became NaN or infinite at step {step}")
        if step % 50 == 0 or step == cfg.num_steps:
            history["step"].append(step)
            history["loss_D"].append(sums[0] / count)
            history["loss_G"].append(sums[1] / count)
            sums, count = [0.0, 0.0], 0
    seconds = time.perf_counter() - start
    history.update(seconds=seconds, config=asdict(cfg),
                   images_per_second=cfg.num_steps * cfg.batch_size / seconds)
    return ema_G.eval(), history


@torch.no_grad()
def generate(net_G: nn.Module, per_class: int, seed: int = 0,
             batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` samples of each digit from a conditional G, on G's device: images
    (10 * per_class, 1, 28, 28) in [-1, 1] and labels (10 * per_class,)."""
    if not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be an int >= 1, got {per_class!r}")
    device = next(net_G.parameters()).device
    net_G.eval()
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same z on every device
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)  # (10 * per_class,)
    z = torch.randn(len(labels), net_G.latent_dim, generator=gen)
    images = torch.cat([net_G(zb.to(device), yb.to(device)) for zb, yb in
                        zip(z.split(batch_size), labels.split(batch_size))])
    return images, labels.to(device)


# --- saving the subset generators ---------------------------------------------------

def save_generator(path: Path | str, net_G: models.DCGANGenerator, cfg: CGANConfig,
                   **info) -> Path:
    """Write G's weights at fp16 (half the bytes) with its config and `info`."""
    if not isinstance(net_G, models.DCGANGenerator) or net_G.num_classes is None:
        raise TypeError(f"save_generator stores a conditional DCGANGenerator, "
                        f"got {type(net_G).__name__}")
    reserved = {"format", "config", "state_dict"} & set(info)
    if reserved:
        raise ValueError(f"{sorted(reserved)} are written by save_generator itself")
    weights = checkpoints.cpu_weights(net_G.state_dict(), half=True)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return checkpoints.save_checkpoint(path, {"format": AUGMENT_FORMAT,
                                              "config": asdict(cfg),
                                              "state_dict": weights, **info})


def load_generator(path: Path | str, map_location: str | torch.device = "cpu"
                   ) -> tuple[models.DCGANGenerator, dict]:
    """A generator written by `save_generator`, fp32, in eval mode: (net_G, info)."""
    path = Path(path)
    if not path.is_file():
        raise checkpoints.CheckpointError(f"no generator file at {path}")
    state = checkpoints._load_ours(
        path, AUGMENT_FORMAT, "cpu",
        unreadable="{path} is unreadable ({error}); write it again with "
                   "augment.save_generator",
        foreign="{path} is not a gan_utils.augment generator file")
    config = dict(state["config"])
    config["betas"] = tuple(config["betas"])
    net_G, _ = build_cgan(CGANConfig(**config))
    checkpoints.load_weights(net_G, checkpoints.float_weights(state["state_dict"]),
                             path, "DCGANGenerator")
    info = {k: v for k, v in state.items() if k != "state_dict"}
    return net_G.to(map_location).eval(), info


def pretrained_names() -> list[str]:
    """The shipped subset generators, e.g. 'cgan-10-per-class'."""
    return checkpoints.shipped_names(PRETRAINED_DIR)


def load_pretrained(name: str, map_location: str | torch.device = "cpu"
                    ) -> tuple[models.DCGANGenerator, dict]:
    """A shipped generator by name: the seed-0 subset cGANs of chapter 16's full run."""
    path = checkpoints.shipped_file(PRETRAINED_DIR, name, "shipped generator")
    return load_generator(path, map_location)
