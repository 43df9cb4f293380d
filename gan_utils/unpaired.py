"""Unpaired image-to-image translation: CycleGAN (Zhu et al. 2017) on two digit styles.

Two domains, A and B, with no pairs between them. Two generators translate each way,
G_AB: A -> B and G_BA: B -> A, and two discriminators D_A, D_B judge each domain. The
generators minimise

    L_G = lsgan(D_B(G_AB(a))) + lsgan(D_A(G_BA(b)))        look like the other domain
        + w_cycle * (|G_BA(G_AB(a)) - a|_1                  and come back when
                     + |G_AB(G_BA(b)) - b|_1)                translated back
        + w_identity * (|G_AB(b) - b|_1 + |G_BA(a) - a|_1)  (optional) keep the target

with the least-squares GAN loss of chapter 9, as the paper does. Chapter 9's lsgan
carries a factor 1/2 that the paper's generator term (D - 1)^2 lacks, so w_cycle = 10
here weighs against the adversarial terms like the paper's lambda = 20. w_cycle = 0 without
G_BA is a plain GAN that only asks G_AB(a) to look like B: nothing in the loss ties the
output to its input.

    from gan_utils import paired, unpaired
    domain_a, domain_b, _, _ = unpaired.make_domains(images, unpaired.bolden)
    G_AB, G_BA = paired.UNet(dropout=0.0), paired.UNet(dropout=0.0)
    D_A = paired.PatchDiscriminator(in_channels=1)
    D_B = paired.PatchDiscriminator(in_channels=1)
    history = unpaired.fit_cycle(G_AB, D_B, domain_a, domain_b, unpaired.CycleConfig(),
                                 net_G_BA=G_BA, net_D_A=D_A)

Images are float in [-1, 1] (the range of Tanh), shape (N, C, H, W), as everywhere in
the book.
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

from . import checkpoints, losses, paired, train

__all__ = ["bolden", "make_domains", "cycle_loss", "CycleConfig", "cycle_step",
           "fit_cycle", "translate", "evaluate_translation", "save_net",
           "load_pretrained", "pretrained_names"]


# --- the two styles -------------------------------------------------------------------

def bolden(images: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Grey-scale dilation: each pixel becomes the brightest of its size x size block,
    so every stroke grows by (size - 1) / 2 pixels on each side. The bold style of
    domain B. (N, C, H, W) in [-1, 1] -> same shape."""
    _check_images(images)
    if not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"size must be an odd int >= 1 (a centred block), "
                         f"got {size!r}")
    # max_pool2d pads with -inf: the border adds no ink
    return F.max_pool2d(images, size, stride=1, padding=size // 2)


def make_domains(images: torch.Tensor, style: Callable[[torch.Tensor], torch.Tensor],
                 seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Split `images` (N, C, H, W) at random into two halves: domain A, one half as
    it is, and domain B, `style` applied to the *other* half, so that no image of A
    has its partner in B. Returns (domain_a, domain_b, index_a, index_b), the last
    two the indices into `images` of each half."""
    _check_images(images)
    if len(images) < 2:
        raise ValueError(f"need at least two images to split, got {len(images)}")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=gen).to(images.device)
    index_a, index_b = order[: len(images) // 2], order[len(images) // 2:]
    return images[index_a], style(images[index_b]), index_a, index_b


_check_images = paired._check_images  # (N, C, H, W) in [-1, 1]


# --- the losses and one step ----------------------------------------------------------

def cycle_loss(original: torch.Tensor, reconstructed: torch.Tensor) -> torch.Tensor:
    """CycleGAN's cycle-consistency term: |F(G(x)) - x|_1, the mean over pixels."""
    if original.shape != reconstructed.shape:
        raise ValueError(f"original {tuple(original.shape)} and reconstructed "
                         f"{tuple(reconstructed.shape)} differ")
    return (reconstructed - original).abs().mean()


@dataclass
class CycleConfig:
    """How `fit_cycle` trains. Defaults: the paper's Adam (2e-4, betas (0.5, 0.999))
    and cycle weight 10 (against a 1/2-scaled LSGAN term: like the paper's 20); the
    identity term is off (the paper uses it for paintings). No pool of past fakes."""

    num_steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    cycle_weight: float = 10.0    # > 0 needs net_G_BA and net_D_A
    identity_weight: float = 0.0  # G_AB(b) should stay b (and G_BA(a) stay a)
    seed: int = 0
    log_every: int = 50

    def validate(self) -> "CycleConfig":
        for name in ("num_steps", "batch_size", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("lr", "cycle_weight", "identity_weight"):
            value = getattr(self, name)
            if value < 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.lr == 0:
            raise ValueError("lr must be > 0")
        return self


def cycle_step(nets: dict[str, nn.Module], opts: dict[str, torch.optim.Optimizer],
               a: torch.Tensor, b: torch.Tensor, cfg: CycleConfig) -> dict[str, float]:
    """One update of the generators, then one of the discriminators, on a batch of
    each domain. `nets`: "G_AB", "D_B" and, for CycleGAN, "G_BA", "D_A"; `opts`: "G"
    over all generators, "D" over all discriminators. Returns each loss term."""
    both = "G_BA" in nets
    zero = torch.zeros((), device=a.device)
    fake_b = nets["G_AB"](a)  # (B, 1, 28, 28): a in B's style
    adv = losses.lsgan_g_loss(nets["D_B"](fake_b))  # D_B should call it real
    loss_cycle = loss_identity = zero
    if both:
        fake_a = nets["G_BA"](b)  # (B, 1, 28, 28): b in A's style
        adv = adv + losses.lsgan_g_loss(nets["D_A"](fake_a))
        if cfg.cycle_weight > 0:  # there and back again: the input must survive
            loss_cycle = (cycle_loss(a, nets["G_BA"](fake_b))
                          + cycle_loss(b, nets["G_AB"](fake_a)))
    if cfg.identity_weight > 0:  # an image already in the target style passes as is
        loss_identity = cycle_loss(b, nets["G_AB"](b))
        if both:
            loss_identity = loss_identity + cycle_loss(a, nets["G_BA"](a))
    loss_G = (adv + cfg.cycle_weight * loss_cycle
              + cfg.identity_weight * loss_identity)
    opts["G"].zero_grad(set_to_none=True)
    loss_G.backward()
    opts["G"].step()
    # D's step on the same fakes, detached: it must not update the generators
    loss_D = losses.lsgan_d_loss(nets["D_B"](b), nets["D_B"](fake_b.detach()))
    if both:
        loss_D = loss_D + losses.lsgan_d_loss(nets["D_A"](a),
                                              nets["D_A"](fake_a.detach()))
    opts["D"].zero_grad(set_to_none=True)
    loss_D.backward()
    opts["D"].step()
    return {"adv_G": adv.item(), "cycle": loss_cycle.item(),
            "identity": loss_identity.item(), "loss_D": loss_D.item()}


# --- training -------------------------------------------------------------------------

def fit_cycle(net_G_AB: nn.Module, net_D_B: nn.Module, domain_a: torch.Tensor,
              domain_b: torch.Tensor, cfg: CycleConfig, *,
              net_G_BA: Optional[nn.Module] = None, net_D_A: Optional[nn.Module] = None,
              evaluate: Optional[Callable[[nn.Module], dict]] = None,
              eval_every: int = 0) -> dict:
    """Train G_AB against D_B on unpaired batches of `domain_a` and `domain_b`; with
    `net_G_BA` and `net_D_A` also the way back and the cycle (CycleGAN). Without them
    cfg.cycle_weight must be 0: a plain GAN from A to B.

    Batches are drawn with replacement by a generator seeded with cfg.seed, the A and
    B indices independently (there are no pairs), so two variants with one seed see
    the same batches. Returns the history: every `log_every` steps the mean of each
    loss term, then `seconds` and `images_per_second` (A images), and with `evaluate`,
    `evaluate(net_G_AB)` every `eval_every` steps and at the end in history["evals"].
    Nets end in eval mode."""
    cfg.validate()
    for name, images in (("domain_a", domain_a), ("domain_b", domain_b)):
        _check_images(images, name)
    if domain_a.shape[1:] != domain_b.shape[1:]:
        raise ValueError(f"the domains hold images of different shapes, "
                         f"{tuple(domain_a.shape[1:])} and {tuple(domain_b.shape[1:])}")
    if domain_a.device != domain_b.device:
        raise ValueError(f"domain_a is on {domain_a.device} but domain_b on "
                         f"{domain_b.device}: move both to the training device")
    if (net_G_BA is None) != (net_D_A is None):
        raise ValueError("the way back needs both net_G_BA and net_D_A, or neither")
    if net_G_BA is None and cfg.cycle_weight > 0:
        raise ValueError("cycle_weight > 0 needs the way back: pass net_G_BA and "
                         "net_D_A, or set cycle_weight=0 for a plain GAN from A to B")
    if evaluate is not None and (not isinstance(eval_every, int) or eval_every < 1):
        raise ValueError(f"with evaluate, eval_every must be a positive number of "
                         f"steps, got {eval_every!r}")
    device = domain_a.device
    nets = {"G_AB": net_G_AB, "D_B": net_D_B}
    if net_G_BA is not None:
        nets.update(G_BA=net_G_BA, D_A=net_D_A)
    for net in nets.values():
        net.to(device).train()
    # one optimiser over both generators, one over both discriminators, as the paper
    opts = {k: torch.optim.Adam([p for name, net in nets.items() if name[0] == k
                                 for p in net.parameters()], lr=cfg.lr, betas=cfg.betas)
            for k in ("G", "D")}
    gen = torch.Generator().manual_seed(cfg.seed)
    names = ["adv_G", "cycle", "identity", "loss_D"]
    history = {"step": [], **{n: [] for n in names}, "evals": []}
    running = {n: 0.0 for n in names}
    eval_seconds = 0.0
    start = time.perf_counter()
    for step in range(1, cfg.num_steps + 1):
        idx_a = torch.randint(len(domain_a), (cfg.batch_size,), generator=gen)
        idx_b = torch.randint(len(domain_b), (cfg.batch_size,), generator=gen)
        terms = cycle_step(nets, opts, domain_a[idx_a.to(device)],
                           domain_b[idx_b.to(device)], cfg)
        if not all(math.isfinite(v) for v in terms.values()):
            raise FloatingPointError(f"a loss became NaN or infinite at step {step}: "
                                     f"{terms}; lower lr")
        paired.log_terms(history, running, terms, step,
                         last=step % cfg.log_every == 0 or step == cfg.num_steps)
        if evaluate is not None and (step % eval_every == 0 or step == cfg.num_steps):
            t0 = time.perf_counter()
            with train.eval_mode(net_G_AB):  # BatchNorm on its running statistics
                history["evals"].append({"step": step, **evaluate(net_G_AB)})
            eval_seconds += time.perf_counter() - t0
    seconds = time.perf_counter() - start - eval_seconds  # training time only
    history.update(seconds=seconds, config=asdict(cfg),
                   images_per_second=cfg.num_steps * cfg.batch_size / seconds)
    for net in nets.values():
        net.eval()
    return history


# --- translating and scoring ----------------------------------------------------------

@torch.no_grad()
def translate(net_G: nn.Module, images: torch.Tensor,
              batch_size: int = 1000) -> torch.Tensor:
    """net_G on `images` in eval mode, in batches: (N, C, H, W) -> (N, C, H, W)."""
    _check_images(images)
    with train.eval_mode(net_G):
        return torch.cat([net_G(part) for part in images.split(batch_size)])


@torch.no_grad()
def evaluate_translation(outputs: torch.Tensor, targets: torch.Tensor,
                         labels: torch.Tensor, reference: torch.Tensor,
                         classifier: Optional[nn.Module] = None) -> dict[str, float]:
    """Fidelity and realism of translated digits. l1 (mean absolute error per pixel on
    [-1, 1]) and psnr (dB) against the true translations `targets`, known on the test
    set only; fid against `reference`, other real digits of the target domain;
    accuracy: the share the book's classifier reads as `labels` (same digit?)."""
    _check_images(outputs, "outputs")
    if outputs.shape != targets.shape:
        raise ValueError(f"outputs {tuple(outputs.shape)} and targets "
                         f"{tuple(targets.shape)} differ")
    scores = paired.evaluate_upscaled(outputs, targets, labels, reference, classifier)
    return {"l1": (outputs - targets).abs().mean().item(), **scores}


# --- saving and the shipped nets ------------------------------------------------------

PRETRAINED_DIR = checkpoints.PRETRAINED_DIR / "unpaired"


def save_net(path: Path | str, net: paired.UNet, **info) -> Path:
    """Write a U-Net generator (fp16) with what rebuilds it and how it was trained:
    `paired.save_net`, read back with `paired.load_net`."""
    return paired.save_net(path, net, **info)


def pretrained_names() -> list[str]:
    """The shipped generators of this installation, e.g. 'cyclegan-AB'."""
    return checkpoints.shipped_names(PRETRAINED_DIR)


def load_pretrained(name: str,
                    map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """A shipped generator by name (the seed-0 nets of chapter 15's full run);
    returns (net, info)."""
    path = checkpoints.shipped_file(PRETRAINED_DIR, name, "shipped net")
    return paired.load_net(path, map_location)
