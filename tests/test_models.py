"""Every model's shapes and parameter counts, at MNIST's size and another."""
import pytest
import torch

from gan_utils import models


def test_mlp_pair_is_the_articles():
    net_G, net_D = models.build("mlp")
    widths_G = [m.out_features for m in net_G.modules() if isinstance(m, torch.nn.Linear)]
    widths_D = [m.out_features for m in net_D.modules() if isinstance(m, torch.nn.Linear)]
    assert widths_G == [256, 512, 1024, 784] and widths_D == [512, 256, 1]
    assert models.count_parameters(net_G) == 100 * 256 + 256 + 256 * 512 + 512 + 512 * 1024 + 1024 + 1024 * 784 + 784
    assert models.count_parameters(net_D) == 784 * 512 + 512 + 512 * 256 + 256 + 256 + 1
    slopes = {m.negative_slope for m in net_D.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.2}
    assert isinstance(list(net_G.modules())[-1], torch.nn.Tanh)


@pytest.mark.parametrize("name", ["mlp", "conv"])
@pytest.mark.parametrize("batch", [1, 5])
def test_shapes_and_ranges(name, batch):
    torch.manual_seed(0)
    net_G, net_D = models.build(name)
    net_G.eval()  # BatchNorm with a batch of one needs running statistics
    x = net_G(torch.randn(batch, 100))
    assert x.shape == (batch, 1, 28, 28)
    assert x.min() >= -1 and x.max() <= 1
    assert net_D(x).shape == (batch,)


def test_conv_pair_shape_trail():
    net_G, net_D = models.build("conv")
    z = torch.randn(4, 100)
    h = net_G.project(z).view(-1, *net_G.start)
    assert h.shape == (4, 256, 7, 7)
    h = net_G.upsample[:3](h)
    assert h.shape == (4, 128, 14, 14)
    assert net_G(z).shape == (4, 1, 28, 28)
    bn = [m for m in net_G.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert bn and all(m.eps == 1e-5 for m in bn)  # not BatchNorm1d(n, 0.8), which would set eps=0.8
    assert models.count_parameters(net_G) == 100 * 12544 + 2 * 12544 + 256 * 128 * 16 + 2 * 128 + 128 * 16 + 1
    assert models.count_parameters(net_D) == 16 * 64 + 64 + 64 * 128 * 16 + 128 + 6272 + 1


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 64, 64), (1, 28, 28)])
def test_models_work_at_other_sizes(shape):
    for name in ("mlp", "conv"):
        net_G, net_D = models.build(name, latent_dim=16, img_shape=shape)
        x = net_G(torch.randn(2, 16))
        assert x.shape == (2, *shape)
        assert net_D(x).shape == (2,)


def test_bad_inputs():
    net_G, net_D = models.build("conv")
    with pytest.raises(ValueError, match=r"\(B, 100\)"):
        net_G(torch.randn(2, 64))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        net_D(torch.randn(2, 784))
    with pytest.raises(TypeError, match="to_unit_range"):
        net_D(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unknown model 'vae'"):
        models.build("vae")
    with pytest.raises(ValueError, match="divisible by 4"):
        models.build("conv", img_shape=(1, 30, 30))
    with pytest.raises(ValueError, match="latent_dim"):
        models.build("mlp", latent_dim=0)


def test_dcgan_init_statistics():
    torch.manual_seed(0)
    net_G, _ = models.build("conv")
    w = net_G.upsample[0].weight
    assert abs(w.mean().item()) < 2e-3 and abs(w.std().item() - 0.02) < 2e-3
