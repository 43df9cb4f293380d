"""gan_utils.augment: the balanced subset, the affine maps against their closed forms, DiffAugment,
the classifier's loop and accuracy, a short real cGAN run on MNIST, the save/load round trip, bad
inputs, and the shipped subset generators."""
import math

import pytest
import torch

from gan_utils import augment, checkpoints, data


@pytest.fixture(scope="module")
def mnist():
    x, y = data.load_mnist(train=True)
    return data.to_unit_range(x).unsqueeze(1), y  # (60000, 1, 28, 28), (60000,)


@pytest.fixture(scope="module")
def subset(mnist):
    images, labels = mnist
    index = augment.labelled_subset(labels, 10, seed=0)
    return images[index], labels[index]  # (100, 1, 28, 28), (100,)


# --- the subset -----------------------------------------------------------------------------------

def test_labelled_subset_is_balanced_sorted_and_fixed_by_its_seed(mnist):
    _, labels = mnist
    index = augment.labelled_subset(labels, 7, seed=3)
    assert index.shape == (70,)
    assert torch.equal(torch.bincount(labels[index], minlength=10), torch.full((10,), 7))
    assert torch.equal(index, index.sort().values) and len(index.unique()) == 70
    assert torch.equal(index, augment.labelled_subset(labels, 7, seed=3))
    assert not torch.equal(index, augment.labelled_subset(labels, 7, seed=4))


def test_labelled_subset_rejects_impossible_sizes():
    labels = torch.arange(10).repeat(3)  # three of each digit
    with pytest.raises(ValueError, match="per_class must be an int >= 1"):
        augment.labelled_subset(labels, 0, seed=0)
    with pytest.raises(ValueError, match="only 3 digits of class 0"):
        augment.labelled_subset(labels, 4, seed=0)
    with pytest.raises(ValueError, match="digits 0-9"):
        augment.labelled_subset(torch.tensor([0, 10]), 1, seed=0)


# --- affine maps ----------------------------------------------------------------------------------

def test_a_one_pixel_shift_and_a_quarter_turn_match_their_closed_forms(subset):
    images = subset[0][:4]  # (4, 1, 28, 28)
    one_pixel = 2 / 28
    # output pixel (i, j) reads input (i, j - 1): the digit moves one pixel to the right
    theta = torch.tensor([[1.0, 0, -one_pixel], [0, 1.0, 0]]).expand(4, 2, 3)
    moved = augment.apply_affine(images, theta)
    expected = torch.cat([torch.full_like(images[..., :1], -1), images[..., :-1]], dim=-1)
    torch.testing.assert_close(moved, expected, atol=1e-5, rtol=0)
    # output (x, y) reads input (-y, x): rot90 in the (H, W) plane, counter-clockwise on screen
    theta = torch.tensor([[0.0, -1, 0], [1.0, 0, 0]]).expand(4, 2, 3)
    torch.testing.assert_close(augment.apply_affine(images, theta),
                               torch.rot90(images, 1, dims=(2, 3)), atol=1e-5, rtol=0)


def test_affine_matrices_stay_in_their_ranges():
    cfg = augment.AffineConfig(degrees=15, shift=2, scale=0.1)
    theta = augment.affine_matrices(2000, cfg, torch.Generator().manual_seed(0))
    # the 2x2 part is a rotation divided by the zoom: its determinant is 1 / zoom^2
    zoom = theta[:, :, :2].det().rsqrt()
    assert zoom.min() >= 0.9 - 1e-6 and zoom.max() <= 1.1 + 1e-6
    angle = torch.atan2(theta[:, 1, 0], theta[:, 0, 0])
    assert angle.abs().max() <= math.radians(15) + 1e-6
    assert angle.abs().max() > math.radians(14)  # the range is used, not just its middle
    assert theta[:, :, 2].abs().max() <= 2 * 2 / 28 + 1e-6


def test_random_affine_is_fixed_by_its_generator_and_keeps_background(subset):
    images = subset[0][:8]
    first = augment.random_affine(images, generator=torch.Generator().manual_seed(1))
    again = augment.random_affine(images, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, again) and not torch.allclose(first, images)
    assert first.min() >= -1 - 1e-6 and first.max() <= 1 + 1e-6
    blank = augment.random_affine(torch.full((3, 1, 28, 28), -1.0))
    assert torch.equal(blank, torch.full_like(blank, -1.0))  # nothing to move, nothing appears
    identity = augment.random_affine(images, augment.AffineConfig(0, 0, 0))
    torch.testing.assert_close(identity, images, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="scale must be in"):
        augment.random_affine(images, augment.AffineConfig(scale=1.5))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        augment.random_affine(images[0])


def test_diff_augment_cuts_a_square_keeps_the_ink_and_passes_gradients(subset):
    ones = torch.ones(5, 1, 28, 28)
    cut = augment.diff_augment(ones, torch.Generator().manual_seed(0), shift=0, cutout=8)
    assert torch.equal((cut == -1).sum((1, 2, 3)), torch.full((5,), 64))  # 8 x 8 per image
    # a whole-pixel shift of a digit with a background border keeps every pixel's value
    images = subset[0][:5].clone().requires_grad_(True)
    moved = augment.diff_augment(images, torch.Generator().manual_seed(0), shift=2, cutout=0)
    inner = subset[0][:5, :, 2:-2, 2:-2]  # MNIST digits leave the border empty
    assert torch.all(subset[0][:5, :, :2] == -1) and torch.all(subset[0][:5, :, -2:] == -1)
    torch.testing.assert_close((moved + 1).sum((1, 2, 3)), (inner + 1).sum((1, 2, 3)))
    moved.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


# --- the classifier -------------------------------------------------------------------------------

def test_small_cnn_shapes_and_bad_inputs():
    net = augment.SmallCNN()
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        net(torch.zeros(3, 28, 28))


class _FixedLogits(torch.nn.Module):
    """Answers a fixed class per image, whatever the pixels: a hand-computable accuracy."""

    def __init__(self, answers):
        super().__init__()
        self.answers = answers

    def forward(self, x):
        return torch.nn.functional.one_hot(self.answers[: len(x)], 10).float()


def test_accuracy_is_the_share_of_right_answers():
    images = torch.zeros(8, 1, 28, 28)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    answers = torch.tensor([0, 1, 2, 0, 0, 5, 0, 0])  # 4 of 8 right
    assert augment.accuracy(_FixedLogits(answers), images, labels) == 0.5
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        augment.accuracy(_FixedLogits(answers), images + 2, labels)


def test_training_changes_the_weights_learns_and_is_reproducible(subset):
    images, labels = subset
    cfg = augment.ClassifierConfig(num_steps=60, affine=True, seed=0)
    torch.manual_seed(cfg.seed)
    start = augment.SmallCNN()  # the weights train_classifier starts from
    net = augment.train_classifier(images, labels, cfg)
    moved = [not torch.equal(a, b) for a, b in zip(start.parameters(), net.parameters())]
    assert all(moved)
    assert augment.accuracy(net, images, labels) > 0.5  # 100 digits, chance is 0.1
    again = augment.train_classifier(images, labels, cfg)
    for a, b in zip(net.parameters(), again.parameters()):
        assert torch.equal(a, b)


def test_gan_ratio_mixes_in_the_extra_images(subset):
    images, labels = subset
    # extra digits with wrong labels (+1): a batch that is mostly extra must teach the wrong answer
    extra = (images, (labels + 1) % 10)
    cfg = augment.ClassifierConfig(num_steps=80, gan_ratio=0.9, seed=0)
    net = augment.train_classifier(images, labels, cfg, extra=extra)
    assert augment.accuracy(net, images, (labels + 1) % 10) > augment.accuracy(net, images, labels)


def test_train_classifier_rejects_bad_inputs(subset):
    images, labels = subset
    cfg = augment.ClassifierConfig(num_steps=1)
    with pytest.raises(ValueError, match="needs extra"):
        augment.train_classifier(images, labels, augment.ClassifierConfig(gan_ratio=0.5))
    with pytest.raises(ValueError, match=r"i\.e\. \[0, 1\]"):
        augment.train_classifier((images + 1) / 2, labels, cfg)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        augment.train_classifier(images[:, 0], labels, cfg)
    with pytest.raises(ValueError, match="labels of shape"):
        augment.train_classifier(images, labels[:5], cfg)
    with pytest.raises(ValueError, match="extra images is empty"):
        augment.train_classifier(images, labels, augment.ClassifierConfig(gan_ratio=0.5),
                                 extra=(images[:0], labels[:0]))
    with pytest.raises(ValueError, match="gan_ratio must be in"):
        augment.train_classifier(images, labels, augment.ClassifierConfig(gan_ratio=1.0),
                                 extra=subset)


# --- the subset cGAN ------------------------------------------------------------------------------

def test_a_short_cgan_run_changes_g_and_generates_balanced_digits(subset):
    images, labels = subset
    cfg = augment.CGANConfig(num_steps=4, batch_size=16, ema=0.0, seed=0)
    torch.manual_seed(cfg.seed)
    start_G, _ = augment.build_cgan(cfg)
    net_G, history = augment.fit_cgan(images, labels, cfg)
    assert all(not torch.equal(a, b) for a, b in zip(start_G.parameters(),
                                                     net_G.parameters()))
    assert history["step"] == [4] and all(math.isfinite(v) for v in history["loss_D"])
    fakes, fake_labels = augment.generate(net_G, 3, seed=0)
    assert fakes.shape == (30, 1, 28, 28) and fakes.abs().max() <= 1
    assert torch.equal(fake_labels, torch.arange(10).repeat_interleave(3))
    assert torch.equal(fakes, augment.generate(net_G, 3, seed=0)[0])
    with pytest.raises(ValueError, match="batch_size must be"):
        augment.fit_cgan(images, labels, augment.CGANConfig(batch_size=1))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        augment.fit_cgan(images * 255, labels, cfg)


def test_save_and_load_round_trip(tmp_path, subset):
    cfg = augment.CGANConfig(num_steps=1, batch_size=8)
    net_G, _ = augment.fit_cgan(*subset, cfg)
    path = augment.save_generator(tmp_path / "g.pt", net_G, cfg, per_class=10, fid=12.5)
    loaded, info = augment.load_generator(path)
    assert info["per_class"] == 10 and info["config"]["latent_dim"] == cfg.latent_dim
    # fp16 weights: the same images up to half precision
    torch.testing.assert_close(augment.generate(loaded, 2)[0], augment.generate(net_G, 2)[0],
                               atol=2e-2, rtol=0)
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(checkpoints.CheckpointError, match="not a gan_utils.augment"):
        augment.load_generator(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no shipped generator"):
        augment.load_pretrained("no-such-net")


def test_the_shipped_subset_generators_load_and_draw_digits():
    names = augment.pretrained_names()
    assert names == ["cgan-10-per-class", "cgan-100-per-class"]
    for name in names:
        net_G, info = augment.load_pretrained(name)
        assert info["per_class"] in (10, 100) and info["seed"] == 0
        fakes, labels = augment.generate(net_G, 2)
        assert fakes.shape == (20, 1, 28, 28) and fakes.abs().max() <= 1
