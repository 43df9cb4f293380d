"""Every model's shapes and parameter counts, at MNIST's size and another."""
import pytest
import torch
from torch.nn.utils import parametrize

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


def _labels(net, batch):
    return (torch.arange(batch) % 10,) if getattr(net, "num_classes", None) else ()


@pytest.mark.parametrize("name", list(models.BUILDERS))
@pytest.mark.parametrize("batch", [1, 5])
def test_shapes_and_ranges(name, batch):
    torch.manual_seed(0)
    net_G, net_D = models.build(name)
    net_G.eval()  # BatchNorm with a batch of one needs running statistics
    net_D.eval()
    x = net_G(torch.randn(batch, 100), *_labels(net_G, batch))
    assert x.shape == (batch, 1, 28, 28)
    assert x.min() >= -1 and x.max() <= 1
    assert net_D(x, *_labels(net_D, batch)).shape == (batch,)


@pytest.mark.parametrize("name", list(models.BUILDERS))
def test_no_discriminator_ends_in_sigmoid(name):
    _, net_D = models.build(name)
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in net_D.modules())  # logits / critic scores


def test_wgan_gp_critic_normalises_per_sample():
    _, critic = models.build("wgan-gp")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in critic.modules())
    critic.eval()
    x = torch.randn(6, 1, 28, 28)
    alone = critic(x[:1])
    together = critic(x)[:1]
    torch.testing.assert_close(alone, together)  # a sample's score does not depend on its batch


def test_conditional_pair_uses_the_label():
    torch.manual_seed(0)
    net_G, net_D = models.build("cgan")
    net_G.eval()
    z = torch.randn(1, 100).repeat(2, 1)
    images = net_G(z, torch.tensor([3, 7]))
    assert not torch.allclose(images[0], images[1])
    with pytest.raises(ValueError, match="pass labels"):
        net_G(z)
    with pytest.raises(ValueError, match=r"in \[0, 10\)"):
        net_G(z, torch.tensor([3, 10]))
    with pytest.raises(ValueError, match="integer dtype"):
        net_D(images, torch.tensor([3.0, 7.0]))
    unconditional, _ = models.build("dcgan")
    with pytest.raises(ValueError, match="unconditional"):
        unconditional(z, torch.tensor([3, 7]))


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
    for name in models.BUILDERS:
        net_G, net_D = models.build(name, latent_dim=16, img_shape=shape)
        x = net_G(torch.randn(2, 16), *_labels(net_G, 2))
        assert x.shape == (2, *shape)
        assert net_D(x, *_labels(net_D, 2)).shape == (2,)


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


def test_dcgan_init_covers_label_tables():
    # nn.Embedding defaults to N(0, 1); left there, the cGAN's projection term dwarfs the rest of D's logit.
    torch.manual_seed(0)
    net_G, net_D = models.build("cgan")
    for table in (net_G.embed.weight, net_D.embed.weight):
        assert abs(table.std().item() - 0.02) < 2e-3
    x = torch.rand(64, 1, 28, 28) * 2 - 1
    y = torch.arange(64) % 10
    with torch.no_grad():
        h = net_D.features(x)
        head, projection = net_D.head(h).view(-1), (net_D.embed(y) * h).sum(dim=1)
    assert projection.std() < 3 * head.std()


def test_dcgan_at_64_is_radfords_layout():
    """G 100 -> 512x4x4 -> 256x8x8 -> 128x16x16 -> 64x32x32 -> 3x64x64, D the mirror (width 64)."""
    net_G, net_D = models.build("dcgan", img_shape=(3, 64, 64))
    h = torch.randn(2, 100)[:, :, None, None]
    trail = []
    for layer in net_G.net:
        h = layer(h)
        if isinstance(layer, torch.nn.ConvTranspose2d):
            trail.append(tuple(h.shape[1:]))
    assert trail == [(512, 4, 4), (256, 8, 8), (128, 16, 16), (64, 32, 32), (3, 64, 64)]
    assert not isinstance(net_G.net[-2], torch.nn.BatchNorm2d) and isinstance(net_G.net[-1], torch.nn.Tanh)
    x, trail = h, []
    for layer in net_D.features:
        x = layer(x)
        if isinstance(layer, torch.nn.Conv2d):
            trail.append(tuple(x.shape[1:]))
    assert trail == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
    assert isinstance(net_D.features[1], torch.nn.LeakyReLU)  # no BN on D's input layer
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net_D.modules()) == 3
    assert {m.negative_slope for m in net_D.modules() if isinstance(m, torch.nn.LeakyReLU)} == {0.2}
    assert net_D.head.in_features == 512 * 4 * 4  # the paper's last 4x4 conv to one logit, as a Linear


@pytest.mark.parametrize("name", ["dcgan", "cgan", "lsgan", "wgan", "wgan-gp"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 32, 32), (3, 32, 32), (1, 64, 64), (3, 64, 64)])
def test_dcgan_family_at_each_size(name, shape):
    torch.manual_seed(0)
    net_G, net_D = models.build(name, img_shape=shape)
    x = net_G(torch.randn(3, 100), *_labels(net_G, 3))
    assert x.shape == (3, *shape) and x.min() >= -1 and x.max() <= 1
    scores = net_D(x, *_labels(net_D, 3))
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    if shape[1] == 32:  # the 32-pixel layout: 256x4x4 -> 128x8x8 -> 64x16x16 -> C x 32 x 32
        widths = [m.out_channels for m in net_G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
        assert widths == [256, 128, 64, shape[0]]


def test_the_28_pixel_layout_is_unchanged():
    """The shipped 28x28 generators were trained with these exact parameter shapes."""
    net_G, net_D = models.build("dcgan")
    assert [tuple(p.shape) for p in net_G.net.parameters()][:3] == [(100, 128, 7, 7), (128,), (128,)]
    assert models.count_parameters(net_G) == 100 * 128 * 49 + 2 * 128 + 128 * 64 * 16 + 2 * 64 + 64 * 32 * 16 + 2 * 32 \
        + 32 * 9 + 1
    assert net_D.head.in_features == 128 * 7 * 7


@pytest.mark.parametrize("shape", [(3, 48, 48), (1, 30, 30), (3, 64, 32), (1, 16, 16)])
def test_a_size_the_dcgan_family_cannot_make_names_the_sizes_it_can(shape):
    for name in ("dcgan", "cgan", "wgan-gp"):
        with pytest.raises(ValueError, match=r"square images of 28, 32, 64, 128 pixels.*--image-size"):
            models.build(name, img_shape=shape)


def test_minibatch_std_appends_the_batch_mean_std():
    x = torch.randn(6, 3, 5, 5)
    out = models.MinibatchStd()(x)
    assert out.shape == (6, 4, 5, 5)
    torch.testing.assert_close(out[:, :3], x)
    # closed form: the population std of each of the 75 features over the 6 samples, averaged
    expected = (x.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
    torch.testing.assert_close(out[:, 3], expected.expand(6, 5, 5))
    # a batch of one image has no spread: the map is ~0, not NaN
    single = models.MinibatchStd()(x[:1])
    assert torch.isfinite(single).all() and single[:, 3].abs().max() < 1e-3
    # a collapsed batch (one image repeated) scores lower than a varied one
    same = x[:1].expand(6, -1, -1, -1)
    assert models.MinibatchStd()(same)[0, 3, 0, 0] < out[0, 3, 0, 0]


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_discriminator_stabiliser_options_keep_shapes(shape):
    for options in ({"minibatch_std": True}, {"spectral_norm": True, "norm": "none"},
                    {"spectral_norm": True, "minibatch_std": True}):
        net_D = models.DCGANDiscriminator(shape, **options)
        net_D.apply(models.dcgan_init)
        assert net_D(torch.randn(4, *shape)).shape == (4,)
    with_std = models.DCGANDiscriminator(shape, minibatch_std=True)
    assert any(isinstance(m, models.MinibatchStd) for m in with_std.modules())


def test_spectral_norm_bounds_every_layer_and_keeps_dcgan_init():
    torch.manual_seed(0)
    net_D = models.DCGANDiscriminator(norm="none", spectral_norm=True)
    net_D.apply(models.dcgan_init)
    layers = [m for m in net_D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    # the init reached the stored weights (N(0, 0.02)), not a throwaway copy
    stored = torch.cat([m.parametrizations.weight.original.flatten() for m in layers])
    assert abs(stored.std().item() - 0.02) < 0.002
    net_D.eval()  # no power-iteration step: the estimate refitted after the init is already right
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert abs(sigma.item() - 1.0) < 0.05, (m, sigma)
    net_D.train()
    for _ in range(50):  # power iteration: one step per training forward
        net_D(torch.randn(8, 1, 28, 28))
    net_D.eval()
    for m in layers:  # largest singular value of each weight, reshaped to (out, -1), is 1
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert abs(sigma.item() - 1.0) < 0.02, (m, sigma)
    # applying it twice does not stack two normalisations
    models.add_spectral_norm(net_D)
    assert len(net_D.head.parametrizations.weight) == 1
