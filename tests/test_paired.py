"""gan_utils.paired: the degradation, PSNR against its closed form, the nets' shapes at several sizes,
a short real super-resolution run on MNIST, reproducibility, bad inputs, and the shipped nets."""
import math

import pytest
import torch

from gan_utils import checkpoints, data, metrics, paired


@pytest.fixture(scope="module")
def digits():
    x, y = data.load_mnist(train=True)
    high = data.to_unit_range(x[:512]).unsqueeze(1)  # (512, 1, 28, 28)
    return high, y[:512]


def test_downsample_is_the_block_mean_and_bicubic_restores_the_size():
    high = torch.arange(16.0).view(1, 1, 4, 4) / 16 * 2 - 1
    low = paired.downsample(high, 2)  # (1, 1, 2, 2)
    assert torch.allclose(low[0, 0, 0, 0], high[0, 0, :2, :2].mean())
    assert paired.bicubic(low, 2).shape == high.shape
    assert paired.bicubic(torch.full((1, 1, 2, 2), 5.0), 2).max() == 1  # clamped to the image range
    with pytest.raises(ValueError, match="divisible by 4"):
        paired.downsample(torch.zeros(1, 1, 30, 30), 4)


def test_psnr_matches_its_closed_form():
    target = torch.zeros(3, 1, 8, 8)
    # a constant error e on [-1, 1] is e/2 on [0, 1]: MSE (e/2)^2, PSNR = 10 log10(4 / e^2)
    for e in (0.1, 0.5, 1.0):
        got = paired.psnr(target + e, target)
        assert got.shape == (3,)
        assert torch.allclose(got, torch.full((3,), 10 * math.log10(4 / e**2)), atol=1e-4)
    with pytest.raises(ValueError, match="differ"):
        paired.psnr(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4))


@pytest.mark.parametrize("scale,low_side", [(2, 14), (4, 7), (4, 8), (8, 4)])
def test_srnet_multiplies_any_side_by_its_scale(scale, low_side):
    net = paired.SRNet(scale=scale)
    out = net(torch.randn(2, 1, low_side, low_side))
    assert out.shape == (2, 1, scale * low_side, scale * low_side)
    assert out.abs().max() <= 1  # Tanh: the image range


def test_srnet_and_discriminator_reject_what_they_cannot_take():
    with pytest.raises(ValueError, match="power of two"):
        paired.SRNet(scale=3)
    with pytest.raises(ValueError, match=r"\(B, 1, h, w\)"):
        paired.SRNet()(torch.randn(2, 3, 7, 7))
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        paired.SRDiscriminator(in_channels=2)(torch.randn(2, 1, 28, 28))


@pytest.mark.parametrize("side", [28, 32, 64])
def test_discriminator_gives_one_logit_per_image_at_any_size(side):
    assert paired.SRDiscriminator()(torch.randn(3, 1, side, side)).shape == (3,)


def test_feature_loss_is_zero_on_equal_images_and_trains_only_the_output(digits):
    high, _ = digits
    judge = paired.train_feature_net(high, digits[1], num_steps=2, batch_size=8)
    assert not any(p.requires_grad for p in judge.parameters())
    assert paired.feature_loss(judge, high[:4], high[:4]).item() == 0
    output = high[:4].clone().requires_grad_(True)
    loss = paired.feature_loss(judge, output, high[4:8])
    loss.backward()
    assert loss.item() > 0 and output.grad.abs().sum() > 0


def test_a_short_pixel_run_on_real_digits_beats_bicubic(digits):
    high, _ = digits
    low = paired.downsample(high, 4)  # (512, 1, 7, 7)
    torch.manual_seed(0)
    net = paired.SRNet()
    history = paired.fit_paired(net, low, high, paired.PairedConfig(num_steps=60, lr=1e-3, log_every=20))
    assert history["step"] == [20, 40, 60]
    assert history["pixel"][-1] < history["pixel"][0]
    assert history["loss_D"] == [0.0, 0.0, 0.0]  # no adversary in the baseline
    assert not net.training
    ours = paired.psnr(paired.upscale(net, low), high).mean()
    assert ours > paired.psnr(paired.bicubic(low, 4), high).mean()


def test_the_same_seed_gives_the_same_net_and_the_adversary_trains(digits):
    high, _ = digits
    low = paired.downsample(high, 4)
    cfg = paired.PairedConfig(num_steps=3, batch_size=8, adv_weight=0.01, log_every=1)
    nets = []
    for _ in range(2):
        torch.manual_seed(1)
        net_G, net_D = paired.SRNet(), paired.SRDiscriminator()
        before = [p.detach().clone() for p in net_D.parameters()]
        history = paired.fit_paired(net_G, low, high, cfg, net_D=net_D)
        nets.append(net_G)
        assert len(history["loss_D"]) == 3 and all(v > 0 for v in history["adv_G"])
        assert any(not torch.equal(a, b) for a, b in zip(before, net_D.parameters()))  # D learned
    for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values()):
        assert torch.equal(a, b)


def test_conditional_discriminator_sees_input_and_output():
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    y = -x
    cfg = paired.PairedConfig(num_steps=2, batch_size=4, adv_weight=1.0, conditional_D=True,
                              pixel_loss="l1")
    paired.fit_paired(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1), torch.nn.Tanh()), x, y, cfg,
                      net_D=paired.SRDiscriminator(in_channels=2))
    with pytest.raises(ValueError, match="one size"):
        paired.fit_paired(paired.SRNet(), paired.downsample(x, 4), x, cfg,
                          net_D=paired.SRDiscriminator(in_channels=2))


def test_bad_settings_say_what_to_do(digits):
    high, labels = digits
    low = paired.downsample(high, 4)
    net = paired.SRNet()
    with pytest.raises(ValueError, match="pass net_D"):
        paired.fit_paired(net, low, high, paired.PairedConfig(adv_weight=0.1))
    with pytest.raises(ValueError, match="pass feature_net"):
        paired.fit_paired(net, low, high, paired.PairedConfig(feature_weight=1.0))
    with pytest.raises(ValueError, match="line up"):
        paired.fit_paired(net, low[:10], high, paired.PairedConfig())
    with pytest.raises(ValueError, match="pixel_loss"):
        paired.PairedConfig(pixel_loss="l2").validate()
    with pytest.raises(ValueError, match="at least one"):
        paired.PairedConfig(pixel_weight=0).validate()
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        paired.fit_paired(net, low, high * 255, paired.PairedConfig())


def test_evaluate_scores_fidelity_and_realism(digits):
    high, labels = digits
    perfect = paired.evaluate_upscaled(high[:256], high[:256], labels[:256], high[256:])
    blurred = paired.evaluate_upscaled(paired.bicubic(paired.downsample(high[:256], 4), 4), high[:256],
                                       labels[:256], high[256:])
    assert perfect["psnr"] > 90 and perfect["accuracy"] > 0.95
    assert blurred["psnr"] < 20 and blurred["fid"] > 10 * perfect["fid"]
    with pytest.raises(ValueError, match="one length"):
        paired.evaluate_upscaled(high[:10], high[:10], labels[:9], high[256:])


def test_save_and_load_round_trip_in_half_precision(tmp_path):
    torch.manual_seed(0)
    net = paired.SRNet(width=8, num_blocks=1).eval()
    path = paired.save_net(tmp_path / "sr.pt", net, variant="pixel", steps=3)
    loaded, info = paired.load_net(path)
    assert info["variant"] == "pixel" and info["arch"]["width"] == 8 and not loaded.training
    x = torch.randn(2, 1, 7, 7)
    assert torch.allclose(loaded(x), net(x), atol=1e-3)
    assert torch.load(path, weights_only=True)["format"] == paired.PAIRED_FORMAT
    torch.save({"format": "other"}, tmp_path / "foreign.pt")
    with pytest.raises(checkpoints.CheckpointError, match="not a gan_utils.paired"):
        paired.load_net(tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="no shipped net named 'sr9'"):
        paired.load_pretrained("sr9")
    with pytest.raises(TypeError, match="SRNet"):
        paired.save_net(tmp_path / "x.pt", torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="written by save_net"):
        paired.save_net(tmp_path / "x.pt", net, arch={"scale": 2})
    # NumPy and tensor scalars are stored as plain numbers, so weights_only loading reads them back
    import numpy as np
    path = paired.save_net(tmp_path / "np.pt", net, scores={"psnr": np.float64(20.5), "fid": torch.tensor(3.0)},
                           betas=(0.9, 0.999))
    info = paired.load_net(path)[1]
    assert info["scores"] == {"psnr": 20.5, "fid": 3.0} and info["betas"] == [0.9, 0.999]
    torch.save({"format": paired.PAIRED_FORMAT, "state_dict": {}}, tmp_path / "no_arch.pt")
    with pytest.raises(checkpoints.CheckpointError, match="arch"):
        paired.load_net(tmp_path / "no_arch.pt")


def test_shipped_nets_beat_bicubic_on_test_digits():
    # chapter 13's classroom mode loads them instead of training for most of an hour
    x, _ = data.load_mnist(train=False)
    high = data.to_unit_range(x[:500]).unsqueeze(1)
    low = paired.downsample(high, 4)
    floor = paired.psnr(paired.bicubic(low, 4), high).mean()
    assert set(paired.pretrained_names()) >= {
        "sr4-pixel", "sr4-pixel-l1", "sr4-adversarial", "sr4-feature", "sr4-feature-adversarial"}
    for name in [n for n in paired.pretrained_names() if n.startswith("sr4-")]:
        net, info = paired.load_pretrained(name)
        assert info["arch"]["scale"] == 4
        assert paired.psnr(paired.upscale(net, low), high).mean() > floor + 3, name


def test_shipped_translation_nets_beat_the_input():
    # chapter 14's classroom mode loads them: each must restore test digits better than its input does
    x, _ = data.load_mnist(train=False)
    high = data.to_unit_range(x[:500]).unsqueeze(1)
    names = {n for n in paired.pretrained_names() if n.startswith("p2p-")}
    assert names == {f"p2p-{task}-{loss}" for task in ("outline", "top-half") for loss in ("l1", "pix2pix")}
    for name in sorted(names):
        net, info = paired.load_pretrained(name)
        assert isinstance(net, paired.UNet) and info["seed"] == 0 and info["steps"] >= 1000, name
        given = paired.outline(high) if "outline" in name else paired.erase_rows(high, 14)
        out = paired.upscale(net, given)
        # the outline fixes the digit; from the top half the lower half is a guess (chapter 14: +2 to 3 dB)
        gain = 5 if "outline" in name else 1.5
        assert paired.psnr(out, high).mean() > paired.psnr(given, high).mean() + gain, name


def test_quality_curve_is_recorded_without_changing_the_run(digits):
    high, _ = digits
    low = paired.downsample(high, 4)
    cfg = paired.PairedConfig(num_steps=5, batch_size=8, log_every=1)
    calls = []

    def evaluate(net):
        calls.append(net.training)
        torch.rand(3)  # evaluation may draw random numbers: the batches must not change
        return {"psnr": paired.psnr(paired.upscale(net, low[:16]), high[:16]).mean().item()}

    runs = []
    for kwargs in ({}, {"evaluate": evaluate, "eval_every": 2}):
        torch.manual_seed(3)
        net = paired.SRNet(width=8, num_blocks=1)
        runs.append((net, paired.fit_paired(net, low, high, cfg, **kwargs)))
    assert [e["step"] for e in runs[1][1]["evals"]] == [2, 4, 5] and calls == [False] * 3
    assert runs[0][1]["evals"] == []
    for a, b in zip(runs[0][0].state_dict().values(), runs[1][0].state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="eval_every"):
        paired.fit_paired(paired.SRNet(), low, high, cfg, evaluate=evaluate)


@pytest.mark.parametrize("side,depth", [(28, 1), (28, 2), (32, 3), (64, 2)])
def test_unet_keeps_the_size_and_patch_d_gives_a_map(side, depth):
    net = paired.UNet(depth=depth)
    x = torch.randn(2, 1, side, side)
    assert net(x).shape == x.shape and net(x).abs().max() <= 1
    logits = paired.PatchDiscriminator(in_channels=2)(torch.cat([x, x], 1))
    assert logits.shape == (2, side // 4, side // 4)
    assert paired.PatchDiscriminator(in_channels=2, num_strided=1)(torch.cat([x, x], 1)).shape == (
        2, side // 2, side // 2)


def test_unet_skips_carry_detail_and_bad_sizes_say_what_to_do():
    torch.manual_seed(0)
    net = paired.UNet(dropout=0).eval()
    x = torch.randn(1, 1, 28, 28)
    seen = {}
    net.out.register_forward_pre_hook(lambda module, args: seen.update(h=args[0]))
    net(x)
    # the last stage sees the decoder's map beside the stem's full-resolution map of x itself
    assert torch.equal(seen["h"][:, 32:], net.stem(x))
    with pytest.raises(ValueError, match="depth must be"):
        paired.UNet(depth=0)
    with pytest.raises(ValueError, match="num_strided"):
        paired.PatchDiscriminator(num_strided=0)
    with pytest.raises(ValueError, match="divisible by 8"):
        paired.UNet(depth=3)(torch.randn(1, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        paired.PatchDiscriminator()(torch.randn(1, 1, 28, 28))


def test_a_patch_discriminator_trains_with_the_usual_losses():
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    cfg = paired.PairedConfig(num_steps=2, batch_size=4, adv_weight=1.0, conditional_D=True,
                              pixel_loss="l1", pixel_weight=100.0)
    history = paired.fit_paired(paired.UNet(), x, -x, cfg, net_D=paired.PatchDiscriminator())
    assert len(history["loss_D"]) == 1 and history["adv_G"][0] > 0
    with pytest.raises(ValueError, match="in_channels = 1 \\+ 1"):
        paired.fit_paired(paired.UNet(), x, -x, cfg, net_D=paired.PatchDiscriminator(in_channels=1))


def test_feature_loss_trains_g_only_and_short_last_log_chunk_is_a_mean(digits):
    high, labels = digits
    low = paired.downsample(high, 4)
    judge = metrics.MNISTClassifier()  # not frozen by its maker: fit_paired must freeze it
    cfg = paired.PairedConfig(num_steps=5, batch_size=8, feature_weight=1.0, log_every=2)
    history = paired.fit_paired(paired.SRNet(width=8, num_blocks=1), low, high, cfg, feature_net=judge)
    assert history["step"] == [2, 4, 5] and all(v > 0 for v in history["feature"])
    assert all(p.grad is None for p in judge.parameters()) and not judge.training


def test_dropout_nets_are_reproducible_with_an_evaluating_callback():
    x = torch.rand(32, 1, 28, 28) * 2 - 1
    cfg = paired.PairedConfig(num_steps=4, batch_size=4, log_every=1, pixel_loss="l1")
    nets = []
    for kwargs in ({}, {"evaluate": lambda net: {"r": torch.rand(1).item()}, "eval_every": 1}):
        torch.manual_seed(5)
        net = paired.UNet(width=8)  # dropout 0.5 draws from the global generator
        paired.fit_paired(net, x, -x, cfg, **kwargs)
        nets.append(net)
    for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values()):
        assert torch.equal(a, b)


def test_outline_keeps_the_border_of_the_shape_only():
    x = -torch.ones(1, 1, 7, 7)
    x[..., 1:6, 1:6] = 1.0  # a 5x5 white square
    edge = paired.outline(x)
    expected = -torch.ones(1, 1, 7, 7)
    expected[..., 1:6, 1:6] = 1.0
    expected[..., 2:5, 2:5] = -1.0  # the 3x3 inside touches no background
    assert torch.equal(edge, expected)
    assert torch.equal(paired.outline(-torch.ones(2, 1, 4, 4)), -torch.ones(2, 1, 4, 4))


def test_outline_of_digits_is_a_thin_subset_of_the_strokes(digits):
    high, _ = digits
    edge = paired.outline(high)
    on = edge > 0
    assert edge.shape == high.shape and set(edge.unique().tolist()) == {-1.0, 1.0}
    assert bool((high[on] > 0).all())  # every edge pixel is a stroke pixel
    assert 0.3 < on.float().sum() / (high > 0).float().sum() < 1.0


def test_erase_rows_paints_the_lower_part_background(digits):
    high, _ = digits
    cut = paired.erase_rows(high[:4], 14)
    assert torch.equal(cut[..., :14, :], high[:4, ..., :14, :])
    assert bool((cut[..., 14:, :] == -1).all()) and not torch.equal(cut, high[:4])
    for bad in (0, 28):
        with pytest.raises(ValueError, match="start must be a row"):
            paired.erase_rows(high[:1], bad)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        paired.outline(data.to_pixel_range(high[:2]))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        paired.erase_rows(high[0], 14)


def test_a_unet_round_trips_through_a_net_file(tmp_path):
    torch.manual_seed(0)
    net = paired.UNet(width=8, depth=2).eval()
    path = paired.save_net(tmp_path / "unet.pt", net, variant="l1", steps=3)
    loaded, info = paired.load_net(path)
    assert isinstance(loaded, paired.UNet) and info["arch"]["net"] == "UNet" and not loaded.training
    x = torch.randn(2, 1, 28, 28).clamp(-1, 1)
    assert torch.allclose(loaded(x), net(x), atol=2e-3)
    # the shipped SRNet files carry no "net" entry and still load as SRNets
    assert isinstance(paired.load_pretrained("sr4-pixel")[0], paired.SRNet)
