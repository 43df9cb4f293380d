"""GAN losses as pure functions of the discriminator's outputs.

Conventions: `real_logits = D(x)` and `fake_logits = D(G(z))` are logits (B,); D's probability is
sigma(logit). Every loss is a mean over the batch, so it does not depend on the batch size, and so
the last, smaller batch of an epoch needs no special labels.

Identities used throughout (sigma = sigmoid, softplus(t) = log(1 + e^t)):
    -log sigma(t)      = softplus(-t)
    -log(1 - sigma(t)) = softplus(t)
so the logits forms below equal the article's `nn.BCELoss` forms exactly, without computing a
probability that can round to 0 or 1 (where BCELoss clamps its log at -100).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """L_D = -E[log D(x)] - E[log(1 - D(G(z)))] = mean softplus(-real) + mean softplus(fake).

    The article's form: BCE(D(x), 1) + BCE(D(G(z)), 0). Minimising it maximises V(D, G) over D.
    `smoothing` = s > 0 is one-sided label smoothing (Salimans et al. 2016): real target 1 - s, fakes stay 0,
    so the real term becomes (1 - s) softplus(-real) + s softplus(real).
    """
    real_term = F.softplus(-real_logits) if not smoothing else (
        (1 - smoothing) * F.softplus(-real_logits) + smoothing * F.softplus(real_logits))
    return real_term.mean() + F.softplus(fake_logits).mean()


def g_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """L_G = -E[log D(G(z))] = mean softplus(-fake): the loss the article's code uses, BCE(D(G(z)), 1).

    Its gradient stays large when D confidently rejects the fakes (early training).
    """
    return F.softplus(-fake_logits).mean()


def g_loss_minimax(fake_logits: torch.Tensor) -> torch.Tensor:
    """L_G = E[log(1 - D(G(z)))] = -mean softplus(fake): the V(D, G) term G minimises in the paper.

    It saturates: when D(G(z)) -> 0 its gradient w.r.t. the logit, -sigma(fake), vanishes.
    """
    return -F.softplus(fake_logits).mean()


# --- the article's probability forms, kept to compare against ---------------------------------------

def d_loss_probs(real_probs: torch.Tensor, fake_probs: torch.Tensor) -> torch.Tensor:
    """The article's L_D with `nn.BCELoss` on probabilities (D ends in Sigmoid); labels sized to the batch."""
    bce = nn.BCELoss()
    return bce(real_probs, torch.ones_like(real_probs)) + bce(fake_probs, torch.zeros_like(fake_probs))


def g_loss_probs(fake_probs: torch.Tensor) -> torch.Tensor:
    """The article's L_G with `nn.BCELoss`: BCE(D(G(z)), 1) = -mean log D(G(z)), log clamped at -100."""
    return nn.BCELoss()(fake_probs, torch.ones_like(fake_probs))


# --- the loss families of the later chapters --------------------------------------------------------

def lsgan_d_loss(real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
    """LSGAN (Mao et al. 2017), a=0, b=1: L_D = 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]."""
    return 0.5 * ((real_out - 1) ** 2).mean() + 0.5 * (fake_out ** 2).mean()


def lsgan_g_loss(fake_out: torch.Tensor) -> torch.Tensor:
    """LSGAN, c=1: L_G = 1/2 E[(D(G(z)) - 1)^2]."""
    return 0.5 * ((fake_out - 1) ** 2).mean()


def wgan_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """WGAN critic: L_C = E[C(G(z))] - E[C(x)]; -L_C estimates the Wasserstein-1 distance (C has no Sigmoid)."""
    return fake_scores.mean() - real_scores.mean()


def wgan_g_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """WGAN generator: L_G = -E[C(G(z))]."""
    return -fake_scores.mean()


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad_x_hat C(x_hat)||_2 - 1)^2], x_hat = a x + (1 - a) G(z).

    One a ~ U(0, 1) per sample (shape (B, 1, 1, 1)), not per pixel, and the norm is taken over each
    sample's whole gradient (all channels and pixels), not per channel.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} must have the same shape")
    alpha_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    source = generator.device if generator is not None else real.device  # a CPU generator may serve CUDA data
    alpha = torch.rand(alpha_shape, device=source, dtype=real.dtype, generator=generator).to(real.device)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    norms = grad.flatten(1).norm(2, dim=1)  # (B,): one norm per sample
    return ((norms - 1) ** 2).mean()
