"""Paired image-to-image learning with an optional adversary: super-resolution (SRGAN), translation.

A net G maps an input image x to an output G(x) that should match a target y. Its loss is a weighted sum

    L_G = w_pixel * pixel(G(x), y)                MSE (SRResNet) or L1 (pix2pix)
        + w_feature * |phi(G(x)) - phi(y)|^2      a "perceptual" loss in a feature net phi (SRGAN)
        + w_adv * softplus(-D(G(x)))              the non-saturating GAN loss of chapter 5

and, when w_adv > 0, a discriminator D learns to tell targets y from outputs G(x) with `losses.d_loss`
(a conditional D, as in pix2pix, sees the input x beside the image). w_adv = 0 is the plain supervised
net, the honest baseline every adversarial variant is measured against.

    from gan_utils import paired
    net_G = paired.SRNet(scale=4)
    history = paired.fit_paired(net_G, low, high, paired.PairedConfig(num_steps=2000))
    scores = paired.evaluate_upscaled(paired.upscale(net_G, low_test), high_test, labels, reference)

Images are float in [-1, 1] (the range of Tanh), shape (N, C, H, W), as everywhere in the book.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoints, data, losses, metrics, train

__all__ = ["SRNet", "SRDiscriminator", "PairedConfig", "fit_paired", "downsample", "bicubic", "psnr",
           "feature_loss", "train_step", "upscale", "evaluate_upscaled", "train_feature_net",
           "save_net", "load_net", "load_pretrained", "pretrained_names", "Residual", "UNet",
           "PatchDiscriminator", "outline", "erase_rows", "NETS"]


# --- the degradation and the interpolation baseline ------------------------------------------------------

def downsample(high: torch.Tensor, factor: int) -> torch.Tensor:
    """The low-resolution input: each pixel the mean of a factor x factor block, (N, C, H/f, W/f)."""
    if high.dim() != 4 or high.shape[-1] % factor or high.shape[-2] % factor:
        raise ValueError(f"expected images (N, C, H, W) with H and W divisible by {factor}, "
                         f"got {tuple(high.shape)}")
    return F.avg_pool2d(high, factor)


def outline(images: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """The edge map of each image: the pixels of its shape (brighter than
    `threshold`) that touch the background, white on black, in [-1, 1].
    The input of an outline-to-digit translation (pix2pix's edges-to-photo
    task): it fixes where every stroke is, so the answer is nearly unique.
    (N, C, H, W) -> same shape."""
    _check_images(images)
    shape = (images > threshold).float()
    # erosion: 1 where the whole 3x3 block is shape
    inner = -F.max_pool2d(-shape, 3, stride=1, padding=1)
    return (shape - inner) * 2 - 1


def erase_rows(images: torch.Tensor, start: int) -> torch.Tensor:
    """Each image with its rows from `start` on painted background (-1):
    the input of an inpainting task, where the erased part is ambiguous
    (the top of a 4 may continue as a 4 or a 9). (N, C, H, W) -> same shape."""
    _check_images(images)
    if not 0 < start < images.shape[-2]:
        raise ValueError(f"start must be a row inside the image "
                         f"(1 to {images.shape[-2] - 1}), got {start}")
    out = images.clone()
    out[..., start:, :] = -1.0
    return out


def _check_images(images: torch.Tensor, name: str = "images") -> None:
    if images.dim() != 4:
        raise ValueError(f"expected {name} (N, C, H, W), got shape {tuple(images.shape)}")
    data.check_pixel_range(images, name)


def bicubic(low: torch.Tensor, factor: int) -> torch.Tensor:
    """Bicubic upscaling by `factor`, clamped to [-1, 1] (bicubic overshoots at sharp edges)."""
    return F.interpolate(low, scale_factor=factor, mode="bicubic", align_corners=False).clamp(-1, 1)


def psnr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB, on pixels in [0, 1]: 10 log10(1 / MSE). Shape (N,)."""
    if estimate.shape != target.shape:
        raise ValueError(f"estimate {tuple(estimate.shape)} and target {tuple(target.shape)} differ")
    diff = data.to_pixel_range(estimate) - data.to_pixel_range(target)
    mse = diff.pow(2).flatten(1).mean(1)  # (N,)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


# --- the networks -----------------------------------------------------------------------------------------

class Residual(nn.Module):
    """SRResNet's block: conv-BN-PReLU-conv-BN plus the input; shape kept."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width),
            nn.PReLU(width),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)  # (B, width, h, w)


class SRNet(nn.Module):
    """SRResNet in miniature (Ledig et al. 2017): residual blocks at the low
    resolution, then log2(scale) sub-pixel stages that each double the side.
    Fully convolutional: any input size."""

    def __init__(self, scale: int = 4, channels: int = 1, width: int = 32,
                 num_blocks: int = 4):
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise ValueError(f"scale must be a power of two (2, 4, 8), got {scale}")
        self.scale, self.channels = scale, channels
        self.arch = {"scale": scale, "channels": channels, "width": width,
                     "num_blocks": num_blocks}  # what save_net records
        self.head = nn.Sequential(nn.Conv2d(channels, width, 5, padding=2),
                                  nn.PReLU(width))
        self.blocks = nn.Sequential(
            *[Residual(width) for _ in range(num_blocks)],
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))
        stages = []
        for _ in range(int(math.log2(scale))):  # 4x the channels -> 2x2 sub-pixels
            stages += [nn.Conv2d(width, 4 * width, 3, padding=1),
                       nn.PixelShuffle(2), nn.PReLU(width)]
        self.upsample = nn.Sequential(*stages)
        self.tail = nn.Sequential(nn.Conv2d(width, channels, 5, padding=2), nn.Tanh())

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        if low.dim() != 4 or low.shape[1] != self.channels:
            raise ValueError(f"expected low-resolution images (B, {self.channels}, "
                             f"h, w), got {tuple(low.shape)}")
        features = self.head(low)                    # (B, width, h, w)
        features = features + self.blocks(features)  # SRResNet's long skip
        features = self.upsample(features)           # (B, width, 4h, 4w) at 4x
        return self.tail(features)                   # (B, C, 4h, 4w) in [-1, 1]


class SRDiscriminator(nn.Module):
    """SRGAN's D in miniature: 3x3 convs, every second one strided, LeakyReLU(0.2),
    BN but on the first; then the mean over positions (any image size works) and
    a linear layer to one logit. `in_channels` counts a conditioning input too."""

    def __init__(self, in_channels: int = 1, width: int = 32):
        super().__init__()
        self.in_channels = in_channels

        def block(c_in, c_out, stride, norm=True):
            return [nn.Conv2d(c_in, c_out, 3, stride, 1),
                    *([nn.BatchNorm2d(c_out)] if norm else []),
                    nn.LeakyReLU(0.2, inplace=True)]

        self.features = nn.Sequential(
            *block(in_channels, width, 1, norm=False),  # (B, w, H, W)
            *block(width, width, 2),                   # (B, w, H/2, W/2)
            *block(width, 2 * width, 1),               # (B, 2w, H/2, W/2)
            *block(2 * width, 2 * width, 2),           # (B, 2w, H/4, W/4)
            *block(2 * width, 4 * width, 1))           # (B, 4w, H/4, W/4)
        self.head = nn.Linear(4 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images (B, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        pooled = self.features(x).mean((2, 3))  # (B, 4w)
        return self.head(pooled).squeeze(1)     # (B,) logits


class UNet(nn.Module):
    """pix2pix's generator in miniature (Isola et al. 2017): an encoder that halves the
    side `depth` times, a decoder that doubles it back, and skip connections that hand
    each decoder stage the encoder's map of the same size, so detail need not pass
    through the bottleneck. Any side divisible by 2**depth (28 at depth 2)."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 32,
                 depth: int = 2, dropout: float = 0.5):
        super().__init__()
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an int >= 1 (halvings of the side), "
                             f"got {depth!r}")
        self.in_channels, self.depth = in_channels, depth
        # what save_net records
        self.arch = {"net": "UNet", "in_channels": in_channels,
                     "out_channels": out_channels, "width": width, "depth": depth,
                     "dropout": dropout}
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1),
                                  nn.LeakyReLU(0.2))  # (B, w, H, W)
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        for i in range(depth):  # (B, w*2^i, H/2^i, ..) -> (B, w*2^(i+1), H/2^(i+1), ..)
            self.down.append(nn.Sequential(
                nn.Conv2d(width << i, width << (i + 1), 4, 2, 1),
                nn.BatchNorm2d(width << (i + 1)), nn.LeakyReLU(0.2)))
        for i in reversed(range(depth)):  # the input doubles: its own map and the skip
            c_in = (width << (i + 1)) * (1 if i == depth - 1 else 2)
            self.up.append(nn.Sequential(
                nn.ConvTranspose2d(c_in, width << i, 4, 2, 1),
                nn.BatchNorm2d(width << i),
                *([nn.Dropout(dropout)] if dropout and i == depth - 1 else []),
                nn.ReLU()))
        self.out = nn.Sequential(nn.Conv2d(2 * width, out_channels, 3, padding=1),
                                 nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images (B, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        if x.shape[-1] % (1 << self.depth) or x.shape[-2] % (1 << self.depth):
            raise ValueError(f"a UNet of depth {self.depth} needs sides divisible by "
                             f"{1 << self.depth}, got {tuple(x.shape[-2:])}; pad the "
                             "images or choose a smaller depth")
        skips = [self.stem(x)]                  # (B, w, H, W)
        for layer in self.down:
            skips.append(layer(skips[-1]))      # ... (B, w*2^d, H/2^d, W/2^d)
        h = skips.pop()
        for layer in self.up:
            h = torch.cat([layer(h), skips.pop()], dim=1)  # decoder map beside its skip
        return self.out(h)                      # (B, C_out, H, W) in [-1, 1]


class PatchDiscriminator(nn.Module):
    """pix2pix's PatchGAN D in miniature: strided 4x4 convs and no pooling, so it
    returns a map of logits, one per overlapping patch, each judging whether its patch
    looks real. `in_channels` counts the input image too when D is conditional."""

    def __init__(self, in_channels: int = 2, width: int = 32, num_strided: int = 2):
        super().__init__()
        if not isinstance(num_strided, int) or num_strided < 1:
            raise ValueError(f"num_strided must be an int >= 1, got {num_strided!r}")
        self.in_channels = in_channels
        layers, c = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2)], width
        for _ in range(num_strided - 1):  # halve the side, double the channels
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1), nn.BatchNorm2d(2 * c),
                       nn.LeakyReLU(0.2)]
            c *= 2
        layers += [nn.Conv2d(c, 1, 3, 1, 1)]  # one logit per position
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images (B, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        return self.net(x).squeeze(1)  # (B, H/2^n, W/2^n) logits, one per patch


# --- the feature ("perceptual") loss --------------------------------------------------------------

def feature_loss(feature_net: nn.Module, output: torch.Tensor,
                 target: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of the feature maps phi(output) and phi(target).
    phi: the conv part of an MNISTClassifier, (B, 64, 7, 7) flattened, or else
    the whole net. Gradients reach `output` only: the feature net is a judge."""
    phi = getattr(feature_net, "conv", feature_net)
    with torch.no_grad():
        wanted = phi(target)
    return F.mse_loss(phi(output), wanted)


def train_feature_net(images: torch.Tensor, labels: torch.Tensor, *, num_steps: int = 500, batch_size: int = 128,
                      lr: float = 2e-3, seed: int = 1) -> metrics.MNISTClassifier:
    """A second MNISTClassifier trained with cross-entropy, in eval mode with frozen weights.

    For the perceptual loss: SRGAN takes its features from a network trained for another task (VGG on
    ImageNet). Taking them from the book's own classifier would optimise the very features that FID and
    the accuracy are then measured in, so we train a separate one (other seed, fewer steps).
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = metrics.MNISTClassifier().to(images.device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(num_steps):
        idx = torch.randint(len(images), (batch_size,), generator=gen).to(images.device)
        loss = F.cross_entropy(net(images[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval().requires_grad_(False)


# --- training ---------------------------------------------------------------------------------------------

@dataclass
class PairedConfig:
    """How `fit_paired` trains. Defaults: SRGAN's optimiser (Adam 1e-4, betas (0.9, 0.999)), pixel loss only."""

    num_steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    pixel_loss: str = "mse"          # "mse" (SRResNet) or "l1" (pix2pix)
    pixel_weight: float = 1.0
    feature_weight: float = 0.0      # > 0 needs a feature_net
    adv_weight: float = 0.0          # > 0 needs a net_D
    conditional_D: bool = False      # D sees (input, image) side by side, as in pix2pix; sizes must match
    seed: int = 0
    log_every: int = 50

    def validate(self) -> "PairedConfig":
        if self.pixel_loss not in ("mse", "l1"):
            raise ValueError(f"pixel_loss must be 'mse' or 'l1', got {self.pixel_loss!r}")
        for name in ("num_steps", "batch_size", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        for name in ("lr", "pixel_weight", "feature_weight", "adv_weight"):
            if getattr(self, name) < 0 or not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        if self.lr == 0 or self.pixel_weight + self.feature_weight + self.adv_weight == 0:
            raise ValueError("lr and at least one of pixel_weight, feature_weight, adv_weight must be > 0")
        return self


def _d_input(inputs: torch.Tensor, images: torch.Tensor, conditional: bool) -> torch.Tensor:
    if not conditional:
        return images
    if inputs.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"conditional_D needs inputs and outputs of one size, got "
                         f"{tuple(inputs.shape)} and {tuple(images.shape)}; upsample the inputs "
                         "first or set conditional_D=False")
    return torch.cat([inputs, images], dim=1)  # (B, C_in + C, H, W)


def train_step(net_G: nn.Module, opt_G: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, cfg: PairedConfig, *, net_D: Optional[nn.Module] = None,
               opt_D: Optional[torch.optim.Optimizer] = None,
               feature_net: Optional[nn.Module] = None) -> dict[str, float]:
    """One update of D (when given), then one of G, on the pairs (x, y);
    returns the value of each loss term."""
    pixel = F.mse_loss if cfg.pixel_loss == "mse" else F.l1_loss
    terms = {"pixel": 0.0, "feature": 0.0, "adv_G": 0.0, "loss_D": 0.0}
    output = net_G(x)  # (B, C, H, W)
    if net_D is not None:  # D first, on the output detached from G's graph
        real = _d_input(x, y, cfg.conditional_D)
        fake = _d_input(x, output.detach(), cfg.conditional_D)
        loss_D = losses.d_loss(net_D(real), net_D(fake))
        opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        opt_D.step()
        terms["loss_D"] = loss_D.item()
    loss_pixel = pixel(output, y)
    loss_G = cfg.pixel_weight * loss_pixel
    terms["pixel"] = loss_pixel.item()
    if cfg.feature_weight > 0:  # distance in the feature net's eyes
        loss_feature = feature_loss(feature_net, output, y)
        loss_G = loss_G + cfg.feature_weight * loss_feature
        terms["feature"] = loss_feature.item()
    if net_D is not None:  # G wants D to call its output real
        fake = _d_input(x, output, cfg.conditional_D)
        loss_adv = losses.g_loss_nonsaturating(net_D(fake))
        loss_G = loss_G + cfg.adv_weight * loss_adv
        terms["adv_G"] = loss_adv.item()
    opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    opt_G.step()
    return terms


def log_terms(history: dict, running: dict, terms: dict, step: int, last: bool) -> None:
    """Add one step's loss terms to `running`; when `last`, append their means since the previous log to
    `history` (with the step) and start again. Shared by the paired and unpaired training loops."""
    for n, v in terms.items():
        running[n] += v
    if last:
        count = step - (history["step"][-1] if history["step"] else 0)
        history["step"].append(step)
        for n in running:
            history[n].append(running[n] / count)
            running[n] = 0.0


def fit_paired(net_G: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, cfg: PairedConfig, *,
               net_D: Optional[nn.Module] = None, feature_net: Optional[nn.Module] = None,
               evaluate: Optional[Callable[[nn.Module], dict]] = None, eval_every: int = 0) -> dict:
    """Train `net_G` (and `net_D` when cfg.adv_weight > 0) on the pairs (inputs[i], targets[i]).

    Batches are drawn with replacement by a generator seeded with cfg.seed, so a run is reproducible and
    two variants with one seed see the same batches. Returns the history: every `log_every` steps the mean
    of each loss term since the last record, plus `seconds` and `images_per_second`. With `evaluate` and
    `eval_every`, `evaluate(net_G)` (G in eval mode) is recorded every `eval_every` steps and at the end,
    in history["evals"] as {"step": ..., **scores}: the quality curve that budgets come from. Evaluation
    runs under a forked random state, so it does not change the run (dropout included). Nets end in
    eval mode.
    """
    cfg.validate()
    if len(inputs) != len(targets):
        raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets: the pairs must line up")
    data.check_pixel_range(targets, "targets")
    if cfg.adv_weight > 0 and net_D is None:
        raise ValueError("adv_weight > 0 needs a discriminator: pass net_D (e.g. paired.SRDiscriminator())")
    if cfg.feature_weight > 0 and feature_net is None:
        raise ValueError("feature_weight > 0 needs a feature network: pass feature_net "
                         "(e.g. paired.train_feature_net(images, labels))")
    device = targets.device
    if inputs.device != device:
        raise ValueError(f"inputs are on {inputs.device} but targets on {device}: move both to the "
                         "training device")
    if feature_net is not None:  # a fixed judge: no gradients into it, dropout off
        feature_net.to(device).eval().requires_grad_(False)
    if cfg.adv_weight > 0 and cfg.conditional_D and getattr(net_D, "in_channels", None) not in (
            None, inputs.shape[1] + targets.shape[1]):
        raise ValueError(f"a conditional D sees input and image side by side: it needs in_channels = "
                         f"{inputs.shape[1]} + {targets.shape[1]}, got {net_D.in_channels} "
                         f"(e.g. paired.PatchDiscriminator(in_channels={inputs.shape[1] + targets.shape[1]}))")
    gen = torch.Generator().manual_seed(cfg.seed)
    net_G.to(device).train()
    opt_G = torch.optim.Adam(net_G.parameters(), lr=cfg.lr, betas=cfg.betas)
    use_D = cfg.adv_weight > 0
    if use_D:
        net_D.to(device).train()
        opt_D = torch.optim.Adam(net_D.parameters(), lr=cfg.lr, betas=cfg.betas)
    if evaluate is not None and (not isinstance(eval_every, int) or eval_every < 1):
        raise ValueError(f"with evaluate, eval_every must be a positive number of steps, got {eval_every!r}")
    names = ["pixel", "feature", "adv_G", "loss_D"]
    history = {"step": [], **{n: [] for n in names}, "evals": []}
    eval_seconds = 0.0
    running = {n: 0.0 for n in names}
    start = time.perf_counter()
    for step in range(1, cfg.num_steps + 1):
        idx = torch.randint(len(inputs), (cfg.batch_size,), generator=gen).to(device)
        terms = train_step(net_G, opt_G, inputs[idx], targets[idx], cfg,
                           net_D=net_D if use_D else None, opt_D=opt_D if use_D else None,
                           feature_net=feature_net)
        if not all(math.isfinite(v) for v in terms.values()):
            raise FloatingPointError(f"a loss became NaN or infinite at step {step}: {terms}; "
                                     "lower lr or adv_weight")
        log_terms(history, running, terms, step,
                  last=step % cfg.log_every == 0 or step == cfg.num_steps)
        if evaluate is not None and (step % eval_every == 0 or step == cfg.num_steps):
            t0 = time.perf_counter()
            forked = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
            with train.eval_mode(net_G), forked:  # mode and RNG state restored afterwards
                history["evals"].append({"step": step, **evaluate(net_G)})
            eval_seconds += time.perf_counter() - t0
    seconds = time.perf_counter() - start - eval_seconds  # training time only
    history.update(seconds=seconds, images_per_second=cfg.num_steps * cfg.batch_size / seconds,
                   config=asdict(cfg))
    net_G.eval()
    if use_D:
        net_D.eval()
    return history


@torch.no_grad()
def upscale(net_G: nn.Module, low: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """net_G on `low` in eval mode, in batches: (N, C, h, w) -> (N, C, H, W)."""
    with train.eval_mode(net_G):
        return torch.cat([net_G(part) for part in low.split(batch_size)])


# --- evaluation -------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate_upscaled(outputs: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor,
                      reference: torch.Tensor, classifier: Optional[nn.Module] = None) -> dict[str, float]:
    """Fidelity and realism of restored MNIST digits, all on the book's classifier where a network is needed.

    psnr: mean dB against the true images `targets` (fidelity); fid: outputs against `reference`, *other*
    real test digits, so that the real-vs-real floor (`targets` against `reference`) is not zero (realism);
    accuracy: share of outputs the classifier reads as their true label (is it still the same digit?).
    """
    if not (len(outputs) == len(targets) == len(labels)):
        raise ValueError(f"outputs, targets and labels must have one length, got "
                         f"{len(outputs)}, {len(targets)}, {len(labels)}")
    classifier = metrics._resolve(classifier, outputs)
    predicted = metrics.predict(outputs, classifier)
    return {
        "psnr": psnr(outputs, targets).mean().item(),
        "fid": metrics.fid(reference, outputs, classifier),
        "accuracy": (predicted.cpu() == labels.cpu()).float().mean().item(),
    }


# --- saving and the shipped nets ------------------------------------------------------------------------

PAIRED_FORMAT = "gan_utils.paired.v1"
PRETRAINED_DIR = checkpoints.PRETRAINED_DIR / "paired"


NETS = {"SRNet": SRNet, "UNet": UNet}  # what a net file can hold; files without "net" in arch are SRNets


def save_net(path: Path | str, net: SRNet | UNet, **info) -> Path:
    """Write an SRNet's or a UNet's weights (fp16: half the bytes, no measurable loss on [-1, 1] images)
    with what rebuilds it (`arch`) and how it was trained (`info`: variant, steps, seed, scores ...),
    atomically."""
    if not isinstance(net, tuple(NETS.values())):
        raise TypeError(f"save_net stores an SRNet or a UNet, got {type(net).__name__}")
    reserved = {"format", "arch", "state_dict"} & set(info)
    if reserved:
        raise ValueError(f"{sorted(reserved)} are written by save_net itself; name your entries otherwise")
    info = _plain(info)
    weights = checkpoints.cpu_weights(net.state_dict(), half=True)
    return checkpoints.save_checkpoint(path, {"format": PAIRED_FORMAT, "arch": dict(net.arch),
                                              "state_dict": weights, **info})


def _plain(value):
    """Python numbers, strings, lists and dicts of them (what weights_only loading reads back): NumPy and
    0-d tensor scalars become floats or ints, tuples become lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if type(value).__module__ == "numpy" and getattr(value, "size", 0) == 1:
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a net file; pass numbers, strings, lists, dicts")


def load_net(path: Path | str, map_location: str | torch.device = "cpu") -> tuple[SRNet | UNet, dict]:
    """A net written by `save_net`, fp32 and in eval mode on `map_location`; returns (net, info)."""
    path = Path(path)
    if not path.is_file():
        raise checkpoints.CheckpointError(f"no net file at {path}")
    state = checkpoints._load_ours(path, PAIRED_FORMAT, "cpu",
                                   unreadable="{path} is unreadable ({error}); write it again with "
                                              "paired.save_net, or reinstall gan_utils for a shipped net",
                                   foreign="{path} is not a gan_utils.paired net file")
    try:
        arch = dict(state["arch"])
        cls = NETS[arch.pop("net", "SRNet")]
        net = cls(**arch)
        weights = checkpoints.float_weights(state["state_dict"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise checkpoints.CheckpointError(f"{path} lacks a valid arch or state_dict ({type(exc).__name__}: "
                                          f"{exc}); write it again with paired.save_net") from None
    checkpoints.load_weights(net, weights, path, type(net).__name__)
    return net.to(map_location).eval(), {k: v for k, v in state.items() if k != "state_dict"}


def pretrained_names() -> list[str]:
    """The shipped nets of this installation, e.g. 'sr4-pixel'."""
    return checkpoints.shipped_names(PRETRAINED_DIR)


def load_pretrained(name: str, map_location: str | torch.device = "cpu") -> tuple[SRNet | UNet, dict]:
    """A shipped net by name (the seed-0 nets of chapters 13 and 14's full runs); returns (net, info)."""
    return load_net(checkpoints.shipped_file(PRETRAINED_DIR, name, "shipped net"), map_location)
