"""Each loss against its closed form, and the article's BCELoss forms against the logits forms."""
import math

import pytest
import torch
from torch.testing import assert_close

from gan_utils import losses


@pytest.fixture()
def logits():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(64, generator=gen) * 3, torch.randn(64, generator=gen) * 3


def test_d_loss_closed_form(logits):
    r, f = logits
    expected = -(torch.log(torch.sigmoid(r)).mean() + torch.log(1 - torch.sigmoid(f)).mean())
    assert_close(losses.d_loss(r, f), expected, rtol=1e-5, atol=1e-6)


def test_g_losses_closed_form(logits):
    _, f = logits
    assert_close(losses.g_loss_nonsaturating(f), -torch.log(torch.sigmoid(f)).mean(), rtol=1e-5, atol=1e-6)
    assert_close(losses.g_loss_minimax(f), torch.log(1 - torch.sigmoid(f)).mean(), rtol=1e-5, atol=1e-6)


def test_bceloss_equals_logits_form(logits):
    r, f = logits
    assert_close(losses.d_loss_probs(torch.sigmoid(r), torch.sigmoid(f)), losses.d_loss(r, f), rtol=1e-5, atol=1e-5)
    assert_close(losses.g_loss_probs(torch.sigmoid(f)), losses.g_loss_nonsaturating(f), rtol=1e-5, atol=1e-5)


def test_bceloss_clamps_at_100_where_logits_form_is_exact():
    f = torch.tensor([-120.0], requires_grad=True)  # a confident D: sigmoid rounds to exactly 0 in float32
    p = torch.sigmoid(f)
    assert p.item() == 0.0
    clamped = losses.g_loss_probs(p)
    assert clamped.item() == pytest.approx(100.0)
    clamped.backward()
    assert f.grad.abs().item() == 0.0  # no signal left for G
    f.grad = None
    exact = losses.g_loss_nonsaturating(f)
    assert exact.item() == pytest.approx(120.0)
    exact.backward()
    assert f.grad.item() == pytest.approx(-1.0)


def test_minimax_saturates_nonsaturating_does_not():
    f = torch.tensor([-8.0], requires_grad=True)  # D(G(z)) ~ 3e-4: early training
    losses.g_loss_minimax(f).backward()
    g_minimax = f.grad.item()
    f.grad = None
    losses.g_loss_nonsaturating(f).backward()
    assert abs(g_minimax) == pytest.approx(torch.sigmoid(torch.tensor(-8.0)).item(), rel=1e-4)
    assert abs(f.grad.item()) > 1000 * abs(g_minimax)


def test_losses_do_not_depend_on_batch_size(logits):
    r, f = logits
    assert_close(losses.d_loss(r.repeat(3), f.repeat(3)), losses.d_loss(r, f))


def test_engine_steps_under_bf16_autocast_use_the_logits_form():
    """BCELoss on probabilities is refused under CUDA autocast; the engine's logits form runs in bf16."""
    from gan_utils import models, train
    torch.manual_seed(0)
    net_G, net_D = models.build("mlp")
    opt_G, opt_D = train.make_optimizers(net_G, net_D, train.TrainConfig())
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    real = torch.rand(16, 1, 28, 28) * 2 - 1
    loss_D, real_out, _ = train.update_D(net_D, net_G, real, opt_D, latent_dim=100, autocast=autocast)
    loss_G = train.update_G(net_G, net_D, 16, opt_G, latent_dim=100, autocast=autocast)
    assert loss_D.dtype == torch.float32 and real_out.dtype == torch.float32  # losses computed in fp32
    assert torch.isfinite(loss_D) and torch.isfinite(loss_G)


def test_lsgan_closed_form(logits):
    r, f = logits
    assert_close(losses.lsgan_d_loss(r, f), 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f ** 2).mean())
    assert_close(losses.lsgan_g_loss(f), 0.5 * ((f - 1) ** 2).mean())
    assert losses.lsgan_d_loss(torch.ones(4), torch.zeros(4)).item() == 0.0


def test_wgan_losses(logits):
    r, f = logits
    assert_close(losses.wgan_critic_loss(r, f), f.mean() - r.mean())
    assert_close(losses.wgan_g_loss(f), -f.mean())


class _Quadratic(torch.nn.Module):
    """C(x) = sum(w * x^2) per sample: its input gradient 2 w x is known in closed form."""

    def __init__(self, shape):
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(0.1, 1.0, math.prod(shape)).view(shape))

    def forward(self, x):
        return (self.w * x ** 2).flatten(1).sum(1)


def test_gradient_penalty_by_hand():
    torch.manual_seed(0)
    real, fake = torch.randn(8, 2, 4, 4), torch.randn(8, 2, 4, 4)
    critic = _Quadratic((2, 4, 4))
    gen = torch.Generator().manual_seed(3)
    gp = losses.gradient_penalty(critic, real, fake, generator=gen)
    alpha = torch.rand((8, 1, 1, 1), generator=torch.Generator().manual_seed(3))  # one alpha per sample
    x_hat = alpha * real + (1 - alpha) * fake
    grad = 2 * critic.w.detach() * x_hat
    expected = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()  # norm over each sample's whole gradient
    assert_close(gp, expected, rtol=1e-5, atol=1e-6)
    gp.backward()  # create_graph: the penalty trains the critic
    assert critic.w.grad is not None and critic.w.grad.abs().sum() > 0


def test_gradient_penalty_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        losses.gradient_penalty(_Quadratic((1, 2, 2)), torch.zeros(2, 1, 2, 2), torch.zeros(3, 1, 2, 2))
