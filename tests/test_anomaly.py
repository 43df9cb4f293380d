"""gan_utils.anomaly: the one-class split, AUROC against a count of all pairs, every score
against its closed form on nets with known outputs, short real runs on MNIST, the
AnoGAN search's independence between images, save/load, and bad inputs."""
import pytest
import torch
from torch import nn

from gan_utils import anomaly, data


@pytest.fixture(scope="module")
def digits():
    x, y = data.load_mnist(train=True)
    return data.to_unit_range(x[:600]).unsqueeze(1), y[:600]  # (600, 1, 28, 28)


def small_config(**changes) -> anomaly.GANConfig:
    return anomaly.GANConfig(**{"num_steps": 3, "batch_size": 8, **changes})


# --- the split and the AUROC -------------------------------------------------------------

def test_split_keeps_the_held_out_class_out_of_the_normal_digits(digits):
    images, labels = digits
    normal, is_anomaly = anomaly.one_class_split(images, labels, held_out=3)
    assert len(normal) == int((labels != 3).sum()) and not is_anomaly.any()
    test_x, is_anomaly = anomaly.one_class_split(images, labels, held_out=3,
                                                 num_normal=20, num_anomalies=10, seed=5)
    assert test_x.shape == (30, 1, 28, 28)
    assert is_anomaly.tolist() == [False] * 20 + [True] * 10
    # every picked image is a row of `images` with the right label
    rows = (test_x.flatten(1)[:, None] == images.flatten(1)[None]).all(-1)  # (30, 600)
    picked_labels = labels[rows.float().argmax(1)]
    assert ((picked_labels == 3) == is_anomaly).all()
    again, _ = anomaly.one_class_split(images, labels, 3, 20, 10, seed=5)
    other, _ = anomaly.one_class_split(images, labels, 3, 20, 10, seed=6)
    assert torch.equal(again, test_x) and not torch.equal(other, test_x)


def test_split_rejects_what_it_cannot_do(digits):
    images, labels = digits
    with pytest.raises(ValueError, match="only"):
        anomaly.one_class_split(images, labels, 3, num_anomalies=10_000)
    with pytest.raises(ValueError, match="0-9"):
        anomaly.one_class_split(images, labels, 10)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        anomaly.one_class_split(images[:, 0], labels, 3)
    with pytest.raises(ValueError, match="labels"):
        anomaly.one_class_split(images, labels[:10], 3)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        anomaly.one_class_split((images + 1) * 127.5, labels, 3)


def auroc_by_pairs(scores, is_anomaly):
    wins = 0.0
    for a in scores[is_anomaly].tolist():
        for n in scores[~is_anomaly].tolist():
            wins += 1.0 if a > n else 0.5 if a == n else 0.0
    return wins / (int(is_anomaly.sum()) * int((~is_anomaly).sum()))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("levels", [3, 1000])  # many ties, almost none
def test_auroc_equals_the_count_over_all_pairs(seed, levels):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, levels, (60,), generator=gen).float()
    is_anomaly = torch.rand(60, generator=gen) < 0.4
    is_anomaly[:2] = torch.tensor([True, False])  # both kinds present
    assert anomaly.auroc(scores, is_anomaly) == pytest.approx(
        auroc_by_pairs(scores, is_anomaly), abs=1e-12)


def test_auroc_closed_forms():
    is_anomaly = torch.tensor([False, False, True, True])
    assert anomaly.auroc(torch.tensor([0.0, 1, 2, 3]), is_anomaly) == 1.0
    assert anomaly.auroc(torch.tensor([3.0, 2, 1, 0]), is_anomaly) == 0.0
    assert anomaly.auroc(torch.zeros(4), is_anomaly) == 0.5  # all tied: chance
    # one anomaly between the two normal scores: wins 1 pair of 2
    assert anomaly.auroc(torch.tensor([0.0, 2, 1]), torch.tensor([False, False, True])) == 0.5
    with pytest.raises(ValueError, match="at least one anomaly"):
        anomaly.auroc(torch.ones(3), torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="labels"):
        anomaly.auroc(torch.ones(3), torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        anomaly.auroc(torch.tensor([float("nan"), 1.0]), torch.tensor([True, False]))


# --- each score against its closed form, on nets with known outputs ---------------------

class ConstantG(nn.Module):
    """G(z): every pixel the mean of z; latent_dim 4."""
    latent_dim = 4

    def forward(self, z):
        return z.mean(1).view(-1, 1, 1, 1).expand(-1, 1, 28, 28)


class DoublingD(nn.Module):
    """f(x) = 2x flattened; D(x) = the sum of x."""

    def features(self, x):
        return 2 * x.flatten(1)

    def forward(self, x):
        return x.flatten(1).sum(1)


class ConstantE(nn.Module):
    """E(x): z = (c, c, c, c) with c the mean pixel, so G(E(x)) is x's mean everywhere."""

    def forward(self, x):
        return x.flatten(1).mean(1, keepdim=True).expand(-1, 4)


def flat(values):
    return torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 1, 28, 28).contiguous()


def test_anogan_loss_is_the_weighted_l1_of_pixels_and_features():
    x = flat([0.5, -0.2])
    z = torch.tensor([[0.1] * 4, [-0.6] * 4])  # G(z) = 0.1 and -0.6
    lam = 0.1
    loss, fake = anomaly.anogan_loss(ConstantG(), DoublingD(), x, z, lam)
    gap = torch.tensor([0.4, 0.4])
    expected = (1 - lam) * 784 * gap + lam * 784 * 2 * gap
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(fake, flat([0.1, -0.6]))


def test_izi_loss_is_the_mean_square_of_pixels_plus_kappa_features():
    x = torch.full((2, 1, 28, 28), -1.0)
    x[:, :, :14] = 1.0  # half ink, half paper: the mean is 0, every pixel misses by 1
    loss, fake = anomaly.izi_loss(ConstantE(), ConstantG(), DoublingD(), x, kappa=0.5)
    torch.testing.assert_close(fake, torch.zeros_like(x))
    torch.testing.assert_close(loss, torch.full((2,), 1.0 + 0.5 * 4.0))


def test_d_nn_and_autoencoder_scores_closed_forms():
    x = flat([0.5, -0.25])
    torch.testing.assert_close(anomaly.d_scores(DoublingD(), x),
                               torch.tensor([-0.5 * 784, 0.25 * 784]))
    bank = flat([0.0, 1.0, -1.0])
    # nearest constant image: 0 for 0.5 (tie with 1.0), 0 for -0.25; distance 28|gap|
    torch.testing.assert_close(anomaly.nn_scores(bank, x), torch.tensor([14.0, 7.0]))

    class Zero(nn.Module):
        def forward(self, x):
            return torch.zeros_like(x)

    scores, recon = anomaly.ae_scores(Zero(), x)
    torch.testing.assert_close(scores, torch.tensor([0.25, 0.0625]))
    assert torch.equal(recon, torch.zeros_like(x))


# --- short real runs ---------------------------------------------------------------------

def test_a_short_gan_run_on_digits_changes_both_nets_and_recalibrates_G(digits):
    images, labels = digits
    normal, _ = anomaly.one_class_split(images, labels, held_out=7)
    torch.manual_seed(0)
    config = small_config()
    net_G, net_D = anomaly.make_gan(config)
    before = [p.clone() for p in (*net_G.parameters(), *net_D.parameters())]
    history = anomaly.fit_gan(net_G, net_D, normal, config)
    assert len(history["loss_D"]) == len(history["loss_G"]) == 3
    after = list((*net_G.parameters(), *net_D.parameters()))
    assert all(not torch.equal(b, a) for b, a in zip(before, after))
    assert not net_G.training and not net_D.training
    norm = next(m for m in net_G.modules() if isinstance(m, nn.BatchNorm2d))
    assert norm.running_var.ne(1).any() and norm.momentum == 0.1
    z = torch.randn(4, config.latent_dim)
    assert net_G(z).shape == (4, 1, 28, 28) and net_D(net_G(z)).shape == (4,)
    assert anomaly.features(net_D, normal[:4]).shape == (4, 4 * config.width * 49)


def test_gan_runs_repeat_exactly_with_the_same_seeds(digits):
    images, _ = digits
    outputs = []
    for _ in range(2):
        torch.manual_seed(1)
        net_G, net_D = anomaly.make_gan(small_config())
        anomaly.fit_gan(net_G, net_D, images, small_config(seed=4))
        outputs.append(net_G(torch.ones(2, 16)))
    torch.testing.assert_close(outputs[0], outputs[1])


def test_the_search_lowers_each_loss_and_treats_images_independently(digits):
    images, _ = digits
    torch.manual_seed(0)
    net_G, net_D = anomaly.make_gan(small_config())
    anomaly.fit_gan(net_G, net_D, images, small_config())
    x = images[:3]
    config = anomaly.SearchConfig(num_steps=20, seed=2)
    scores, closest = anomaly.anogan_scores(net_G, net_D, x, config)
    assert scores.shape == (3,) and closest.shape == (3, 1, 28, 28)
    z0 = torch.randn(3, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        start, _ = anomaly.anogan_loss(net_G, net_D, x, z0)
    assert (scores < start).all()
    # image 0 gets the same first z and the same score whichever image is beside it
    pair_a, _ = anomaly.anogan_scores(net_G, net_D, images[[0, 1]], config)
    pair_b, _ = anomaly.anogan_scores(net_G, net_D, images[[0, 5]], config)
    torch.testing.assert_close(pair_a[0], pair_b[0])
    assert all(p.requires_grad for p in net_G.parameters())  # restored


def test_the_encoder_learns_with_G_and_D_frozen(digits):
    images, _ = digits
    torch.manual_seed(0)
    net_G, net_D = anomaly.make_gan(small_config())
    net_E = anomaly.Encoder()
    frozen = [p.clone() for p in (*net_G.parameters(), *net_D.parameters())]
    e_before = [p.clone() for p in net_E.parameters()]
    config = anomaly.EncoderConfig(num_steps=30, batch_size=16)
    history = anomaly.fit_encoder(net_E, net_G, net_D, images, config)
    assert len(history) == 30 and min(history[-5:]) < history[0]
    assert all(torch.equal(b, a) for b, a in
               zip(frozen, (*net_G.parameters(), *net_D.parameters())))
    assert all(not torch.equal(b, a) for b, a in zip(e_before, net_E.parameters()))
    assert all(p.requires_grad for p in net_D.parameters())
    scores, recon = anomaly.izi_scores(net_E, net_G, net_D, images[:5])
    assert scores.shape == (5,) and recon.shape == (5, 1, 28, 28)


def test_the_autoencoder_learns_to_reconstruct(digits):
    images, _ = digits
    torch.manual_seed(0)
    net_AE = anomaly.Autoencoder()
    history = anomaly.fit_autoencoder(
        net_AE, images, anomaly.EncoderConfig(num_steps=40, batch_size=16))
    assert min(history[-5:]) < 0.7 * history[0]
    scores, recon = anomaly.ae_scores(net_AE, images[:8])
    assert scores.shape == (8,) and recon.shape == (8, 1, 28, 28)


# --- saving, loading, bad inputs ---------------------------------------------------------

def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    config = small_config()
    net_G, net_D = anomaly.make_gan(config)
    nets = {"G": net_G.eval(), "D": net_D.eval(), "E": anomaly.Encoder().eval(),
            "AE": anomaly.Autoencoder().eval()}
    path = anomaly.save_nets(tmp_path / "holdout-3.pt", nets, config, held_out=3,
                             gan=anomaly.config_dict(config))
    loaded, info = anomaly.load_nets(path)
    assert info["held_out"] == 3 and info["gan"]["betas"] == [0.5, 0.999]
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    z = torch.randn(2, 16)
    with torch.no_grad():  # fp16 on disk: equal to about 1e-3
        torch.testing.assert_close(loaded["G"](z), nets["G"](z), atol=5e-3, rtol=0)
        torch.testing.assert_close(loaded["D"](x), nets["D"](x), atol=5e-3, rtol=1e-2)
        torch.testing.assert_close(loaded["E"](x), nets["E"](x), atol=5e-3, rtol=1e-2)
        torch.testing.assert_close(loaded["AE"](x), nets["AE"](x), atol=5e-3, rtol=0)
    with pytest.raises(ValueError, match="unknown nets"):
        anomaly.save_nets(tmp_path / "x.pt", {"F": net_G}, config)
    with pytest.raises(ValueError, match="written by save_nets"):
        anomaly.save_nets(tmp_path / "x.pt", nets, config, arch=1)
    with pytest.raises(Exception, match="no anomaly-detector file"):
        anomaly.load_nets(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="no shipped detector"):
        anomaly.load_pretrained("holdout-99")


@pytest.mark.parametrize("name", anomaly.pretrained_names())
def test_shipped_detectors_load_and_know_their_class(name):
    nets, info = anomaly.load_pretrained(name)
    assert set(nets) == set(anomaly.NET_NAMES)
    assert name == f"holdout-{info['held_out']}"
    with torch.no_grad():
        samples = nets["G"](torch.randn(4, nets["G"].latent_dim))
    assert samples.shape == (4, 1, 28, 28) and samples.abs().max() <= 1


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, 28, 28), r"\(N, 1, 28, 28\)"),
    (torch.zeros(2, 1, 32, 32), r"\(N, 1, 28, 28\)"),
    (torch.full((2, 1, 28, 28), 255.0), r"\[-1, 1\]"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "to_unit_range"),
])
def test_scores_reject_images_outside_the_books_convention(bad, match):
    torch.manual_seed(0)
    net_G, net_D = anomaly.make_gan(small_config())
    good = torch.zeros(3, 1, 28, 28)
    with pytest.raises(ValueError, match=match):
        anomaly.d_scores(net_D, bad)
    with pytest.raises(ValueError, match=match):
        anomaly.anogan_scores(net_G, net_D, bad, anomaly.SearchConfig(num_steps=1))
    with pytest.raises(ValueError, match=match):
        anomaly.nn_scores(good, bad)
    with pytest.raises(ValueError, match=match):
        anomaly.fit_gan(net_G, net_D, bad, small_config())
