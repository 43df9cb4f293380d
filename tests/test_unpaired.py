"""gan_utils.unpaired: the bold style against its closed form, the unpaired split, the cycle and LSGAN
terms against hand-computed values, a short real CycleGAN run on MNIST, reproducibility, bad inputs,
the save/load round trip and the shipped nets."""
import pytest
import torch

from gan_utils import checkpoints, data, losses, paired, unpaired


@pytest.fixture(scope="module")
def digits():
    x, y = data.load_mnist(train=True)
    return data.to_unit_range(x[:512]).unsqueeze(1), y[:512]  # (512, 1, 28, 28)


def small_nets(seed=0):
    torch.manual_seed(seed)
    return {"G_AB": paired.UNet(width=4, dropout=0.0), "G_BA": paired.UNet(width=4, dropout=0.0),
            "D_A": paired.PatchDiscriminator(in_channels=1, width=4),
            "D_B": paired.PatchDiscriminator(in_channels=1, width=4)}


def test_bolden_grows_a_pixel_into_a_block_and_keeps_the_range():
    image = torch.full((1, 1, 7, 7), -1.0)
    image[0, 0, 3, 3] = 1.0
    image[0, 0, 0, 6] = 0.5  # a corner pixel: the block is cut by the border, not padded with ink
    bold = unpaired.bolden(image)  # (1, 1, 7, 7)
    expected = torch.full((7, 7), -1.0)
    expected[:2, 5:] = 0.5
    expected[2:5, 2:5] = 1.0
    torch.testing.assert_close(bold[0, 0], expected)
    assert unpaired.bolden(image, size=1).equal(image)
    assert unpaired.bolden(image, size=5)[0, 0, 1:6, 1:6].eq(1).all()


def test_bolden_makes_real_digits_bolder(digits):
    images, _ = digits
    bold = unpaired.bolden(images)
    assert bold.shape == images.shape and (bold >= images).all()  # dilation never removes ink
    ink = lambda x: (x > 0).float().mean().item()  # noqa: E731
    assert ink(bold) > 1.5 * ink(images)


def test_make_domains_splits_into_disjoint_halves(digits):
    images, _ = digits
    a, b, index_a, index_b = unpaired.make_domains(images, unpaired.bolden, seed=3)
    assert a.shape == b.shape == (256, 1, 28, 28)
    assert not set(index_a.tolist()) & set(index_b.tolist())  # no digit in both: no pairs
    assert sorted(index_a.tolist() + index_b.tolist()) == list(range(512))
    assert a.equal(images[index_a]) and b.equal(unpaired.bolden(images[index_b]))
    again = unpaired.make_domains(images, unpaired.bolden, seed=3)[2]
    assert again.equal(index_a)


def test_cycle_loss_is_the_mean_absolute_difference():
    x = torch.zeros(2, 1, 4, 4)
    y = x.clone()
    y[0, 0, 0, 0] = 1.0  # one pixel off by 1, another by -0.5: (1 + 0.5) / 32
    y[1, 0, 2, 3] = -0.5
    assert unpaired.cycle_loss(x, y).item() == pytest.approx(1.5 / 32)
    assert unpaired.cycle_loss(x, x).item() == 0
    with pytest.raises(ValueError, match="differ"):
        unpaired.cycle_loss(x, torch.zeros(2, 1, 2, 2))


def test_cycle_step_matches_the_losses_written_out(digits):
    images, _ = digits
    a, b = images[:8], unpaired.bolden(images[8:16])
    nets = small_nets()
    cfg = unpaired.CycleConfig(cycle_weight=10.0, identity_weight=2.0)
    for net in nets.values():
        net.eval()  # BatchNorm on running statistics: the step below sees the same numbers
    with torch.no_grad():  # the terms by hand, before the step changes the nets
        fake_b, fake_a = nets["G_AB"](a), nets["G_BA"](b)
        adv = 0.5 * ((nets["D_B"](fake_b) - 1) ** 2).mean() + 0.5 * ((nets["D_A"](fake_a) - 1) ** 2).mean()
        cycle = (nets["G_BA"](fake_b) - a).abs().mean() + (nets["G_AB"](fake_a) - b).abs().mean()
        identity = (nets["G_AB"](b) - b).abs().mean() + (nets["G_BA"](a) - a).abs().mean()
        loss_D = (losses.lsgan_d_loss(nets["D_B"](b), nets["D_B"](fake_b))
                  + losses.lsgan_d_loss(nets["D_A"](a), nets["D_A"](fake_a)))
    opts = {k: torch.optim.Adam([p for n, net in nets.items() if n[0] == k for p in net.parameters()],
                                lr=1e-3) for k in "GD"}
    before = {n: [p.detach().clone() for p in net.parameters()] for n, net in nets.items()}
    terms = unpaired.cycle_step(nets, opts, a, b, cfg)
    assert terms["adv_G"] == pytest.approx(adv.item(), rel=1e-5)
    assert terms["cycle"] == pytest.approx(cycle.item(), rel=1e-5)
    assert terms["identity"] == pytest.approx(identity.item(), rel=1e-5)
    assert terms["loss_D"] == pytest.approx(loss_D.item(), rel=1e-5)  # fakes from before G's step
    for name, net in nets.items():  # every network took a step
        assert any(not torch.equal(x, p) for x, p in zip(before[name], net.parameters())), name


def test_a_short_cyclegan_run_on_real_digits_learns_to_come_back(digits):
    images, _ = digits
    a, b, _, _ = unpaired.make_domains(images, unpaired.bolden)
    nets = small_nets()
    cfg = unpaired.CycleConfig(num_steps=40, batch_size=16, lr=1e-3, log_every=10)
    history = unpaired.fit_cycle(nets["G_AB"], nets["D_B"], a, b, cfg, net_G_BA=nets["G_BA"],
                                 net_D_A=nets["D_A"],
                                 evaluate=lambda g: {"mean": unpaired.translate(g, a[:8]).mean().item()},
                                 eval_every=20)
    assert history["step"] == [10, 20, 30, 40]
    assert history["cycle"][-1] < history["cycle"][0]  # the reconstructions improved
    assert [e["step"] for e in history["evals"]] == [20, 40]
    assert history["config"]["cycle_weight"] == 10.0
    assert not any(net.training for net in nets.values())


def test_a_plain_gan_needs_no_way_back_and_the_same_seed_repeats(digits):
    images, _ = digits
    a, b, _, _ = unpaired.make_domains(images, unpaired.bolden)
    cfg = unpaired.CycleConfig(num_steps=3, batch_size=8, cycle_weight=0.0, log_every=1)
    runs = []
    for _ in range(2):
        nets = small_nets(seed=1)
        history = unpaired.fit_cycle(nets["G_AB"], nets["D_B"], a, b, cfg)
        assert history["cycle"] == [0.0, 0.0, 0.0] and all(v > 0 for v in history["loss_D"])
        runs.append(nets["G_AB"])
    for x, y in zip(runs[0].state_dict().values(), runs[1].state_dict().values()):
        assert torch.equal(x, y)


def test_bad_inputs_say_what_to_do(digits):
    images, _ = digits
    a, b, _, _ = unpaired.make_domains(images[:32], unpaired.bolden)
    nets = small_nets()
    with pytest.raises(ValueError, match="pass net_G_BA"):
        unpaired.fit_cycle(nets["G_AB"], nets["D_B"], a, b, unpaired.CycleConfig())
    with pytest.raises(ValueError, match="both net_G_BA and net_D_A"):
        unpaired.fit_cycle(nets["G_AB"], nets["D_B"], a, b, unpaired.CycleConfig(),
                           net_G_BA=nets["G_BA"])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        unpaired.fit_cycle(nets["G_AB"], nets["D_B"], a * 255, b, unpaired.CycleConfig())
    with pytest.raises(ValueError, match="i.e. \\[0, 1\\]"):
        unpaired.bolden((images + 1) / 2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        unpaired.bolden(images[:, 0])
    with pytest.raises(ValueError, match="odd"):
        unpaired.bolden(images, size=2)
    with pytest.raises(ValueError, match="different shapes"):
        unpaired.fit_cycle(nets["G_AB"], nets["D_B"], a, b[..., :16, :16],
                           unpaired.CycleConfig(cycle_weight=0))
    with pytest.raises(ValueError, match="cycle_weight"):
        unpaired.CycleConfig(cycle_weight=-1).validate()
    with pytest.raises(ValueError, match="batch_size"):
        unpaired.CycleConfig(batch_size=0).validate()


def test_evaluate_translation_scores_fidelity_and_realism(digits):
    images, labels = digits
    bold = unpaired.bolden(images)
    perfect = unpaired.evaluate_translation(bold[:256], bold[:256], labels[:256], bold[256:])
    unchanged = unpaired.evaluate_translation(images[:256], bold[:256], labels[:256], bold[256:])
    assert perfect["l1"] == 0 and perfect["psnr"] > 90
    assert unchanged["l1"] == pytest.approx((images[:256] - bold[:256]).abs().mean().item())
    assert unchanged["fid"] > 2 * perfect["fid"]  # thin digits are not bold digits
    assert unchanged["accuracy"] > 0.9  # but they are the right digits
    with pytest.raises(ValueError, match="differ"):
        unpaired.evaluate_translation(images[:10], bold[:9], labels[:10], bold[256:])


def test_save_and_load_round_trip(tmp_path):
    net = small_nets()["G_AB"].eval()
    path = unpaired.save_net(tmp_path / "g.pt", net, method="cyclegan", seed=0)
    loaded, info = paired.load_net(path)
    assert info["method"] == "cyclegan" and info["arch"]["width"] == 4 and not loaded.training
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), atol=5e-3, rtol=0)  # fp16 weights
    with pytest.raises(checkpoints.CheckpointError):
        paired.load_net(tmp_path / "missing.pt")


def test_shipped_nets_load_and_translate(digits):
    images, _ = digits
    names = unpaired.pretrained_names()
    with pytest.raises(ValueError, match="no shipped net"):
        unpaired.load_pretrained("no-such-net")
    if not names:
        pytest.skip("no shipped nets in this checkout")
    assert "cyclegan-AB" in names
    net, info = unpaired.load_pretrained("cyclegan-AB")
    out = unpaired.translate(net, images[:16])
    assert out.shape == (16, 1, 28, 28) and out.abs().max() <= 1
    assert info["seed"] == 0
