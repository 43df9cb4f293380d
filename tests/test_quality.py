"""Quality during training: the EMA of G, FID scored into the history, best-FID weights, stabilisers, recipes."""
import copy
import dataclasses
import math

import pytest
import torch
from torch import nn

from gan_utils import checkpoints, losses, models, train


def _cfg(**kw):
    base = dict(model="mlp", num_epochs=1, progress=False, device="cpu", num_samples=8)
    return train.TrainConfig(**{**base, **kw})


def test_ema_decay_warms_up_then_holds():
    assert train.ema_decay(0.999, 0) == pytest.approx(0.1)      # (1 + 0) / (10 + 0)
    assert train.ema_decay(0.999, 90) == pytest.approx(0.91)    # (1 + 90) / (10 + 90)
    assert train.ema_decay(0.999, 10**6) == 0.999


def test_ema_update_matches_its_closed_form():
    """After n updates toward a G that keeps the same weights theta: ema = theta + prod(d_i) (ema_0 - theta)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = train.make_ema(net)
    start = [p.detach().clone() for p in ema.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)  # G moved away from the EMA's starting point
        net[1].running_mean.fill_(3.0)
    decays = [train.ema_decay(0.99, n) for n in range(25)]
    for d in decays:
        train.ema_update(ema, net, d)
    shrink = math.prod(decays)
    for p0, p_ema, p in zip(start, ema.parameters(), net.parameters()):
        torch.testing.assert_close(p_ema, p + shrink * (p0 - p))
    assert torch.equal(ema[1].running_mean, net[1].running_mean)  # buffers are copied, not averaged
    assert not any(p.requires_grad for p in ema.parameters())


class _TinyBNGenerator(nn.Module):
    """z (B, 3) -> Linear -> BatchNorm1d(4) -> (B, 1, 2, 2): one BatchNorm whose statistics have a closed form."""
    latent_dim, num_classes = 3, None

    def __init__(self):
        super().__init__()
        self.fc, self.bn = nn.Linear(3, 4), nn.BatchNorm1d(4)

    def forward(self, z):
        return self.bn(self.fc(z)).view(-1, 1, 2, 2)


def test_standing_stats_are_the_average_batch_statistics_of_gs_own_samples():
    torch.manual_seed(0)
    net = _TinyBNGenerator()
    with torch.no_grad():
        net.bn.running_mean.fill_(5.0)  # statistics of some other weights (the live G's)
        net.bn.running_var.fill_(9.0)
    num_batches, batch_size = 7, 16
    gen = torch.Generator().manual_seed(3)
    pre = [net.fc(torch.randn(batch_size, 3, generator=gen)).detach() for _ in range(num_batches)]  # (16, 4) each
    out = train.standing_stats(net, num_batches, batch_size, seed=3)
    assert out is net and not net.training
    torch.testing.assert_close(net.bn.running_mean, torch.stack([h.mean(0) for h in pre]).mean(0))
    torch.testing.assert_close(net.bn.running_var, torch.stack([h.var(0, unbiased=True) for h in pre]).mean(0))
    assert net.bn.momentum == 0.1 and int(net.bn.num_batches_tracked) == num_batches  # momentum restored
    again = copy.deepcopy(net)
    train.standing_stats(again, num_batches, batch_size, seed=3)
    assert torch.equal(again.bn.running_mean, net.bn.running_mean)  # seeded: the same weights, the same stats


def test_standing_stats_leave_a_generator_without_batchnorm_alone_and_refuse_zero_batches():
    net_G, _ = models.build("mlp")
    before = copy.deepcopy(net_G.state_dict())
    train.standing_stats(net_G.train(), 5, 8)
    assert not net_G.training and all(torch.equal(before[k], v) for k, v in net_G.state_dict().items())
    with pytest.raises(ValueError, match="num_batches"):
        train.standing_stats(models.build("dcgan")[0], 0)


def test_fit_scores_and_saves_the_ema_with_its_standing_stats(small_loader, tmp_path):
    torch.manual_seed(0)
    net_G, net_D = models.build("cgan")
    cfg = _cfg(model="cgan", num_epochs=1, eval_every=1, eval_n=100, ema=0.9, standing_stats=4)
    history = train.fit(net_G, net_D, small_loader, cfg, out_dir=tmp_path)
    ema = checkpoints.load_checkpoint(tmp_path)["ema_G"]
    recomputed, _ = models.build("cgan")
    recomputed.load_state_dict(ema)
    train.standing_stats(recomputed, 4, cfg.batch_size, seed=cfg.seed + train.STANDING_SEED)
    best, _ = checkpoints.load_generator_file(tmp_path / train.BEST_NAME)
    for key, value in recomputed.state_dict().items():
        assert torch.equal(value, ema[key]), key  # the checkpoint's EMA holds its own statistics
        assert torch.equal(value, best.state_dict()[key]), key  # and so do the best weights that were scored
    assert not torch.equal(ema["net.1.running_mean"], net_G.state_dict()["net.1.running_mean"])  # not G's
    assert train.score(best, 100, seed=0)["fid"] == pytest.approx(history.best["fid"], rel=1e-5)


def test_standing_stats_without_an_ema_leave_g_training(small_loader, monkeypatch):
    """With ema=0 the statistics are G's own; G must go on training in training mode after each estimate."""
    modes = []
    real_update_G = train.update_G
    monkeypatch.setattr(train, "update_G", lambda net_G, *a, **kw: modes.append(net_G.training)
                        or real_update_G(net_G, *a, **kw))
    torch.manual_seed(0)
    net_G, net_D = models.build("cgan")
    train.fit(net_G, net_D, small_loader, _cfg(model="cgan", num_epochs=2, standing_stats=2))
    assert len(modes) == 16 and all(modes)


def test_label_smoothing_is_bce_with_a_soft_real_target():
    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.3, -2.0, 1.0])
    s = 0.1
    bce = nn.BCEWithLogitsLoss()
    want = bce(real, torch.full_like(real, 1 - s)) + bce(fake, torch.zeros_like(fake))
    torch.testing.assert_close(losses.d_loss(real, fake, smoothing=s), want)
    torch.testing.assert_close(losses.d_loss(real, fake, smoothing=0.0), losses.d_loss(real, fake))


def test_fit_scores_fid_and_keeps_the_best_weights(small_loader, tmp_path):
    torch.manual_seed(0)
    net_G, net_D = models.build("mlp")
    cfg = _cfg(num_epochs=3, eval_every=2, eval_n=200, ema=0.9)
    history = train.fit(net_G, net_D, small_loader, cfg, out_dir=tmp_path)
    assert [row["epoch"] for row in history.evals] == [2, 3]  # every 2nd epoch and after the last
    assert all(set(row) == set(train.EVAL_KEYS) and row["fid"] > 0 for row in history.evals)
    best = history.best
    assert best["fid"] == min(row["fid"] for row in history.evals)
    net_best, info = checkpoints.load_generator_file(tmp_path / train.BEST_NAME)
    assert info["epochs"] == best["epoch"] and info["fid"] == pytest.approx(best["fid"])
    # best.pt holds the weights that scored best: scoring them again gives the same FID
    assert train.score(net_best, 200, seed=0)["fid"] == pytest.approx(best["fid"], rel=1e-5)
    assert "FID" in history.summary()


@pytest.mark.parametrize("model, extra", [("mlp", {}), ("cgan", {"standing_stats": 3}),
                                          ("cgan", {"standing_stats": 3, "ema": 0.0})])
def test_resume_keeps_the_ema_and_the_fid_history(small_loader, tmp_path, model, extra):
    def run(epochs, out, resume=False, seed=0):
        torch.manual_seed(seed)
        net_G, net_D = models.build(model)
        cfg = _cfg(**{"model": model, "num_epochs": epochs, "eval_every": 1, "eval_n": 100, "ema": 0.9, **extra})
        h = train.fit(net_G, net_D, small_loader, cfg, out_dir=out, resume=resume)
        state = checkpoints.load_checkpoint(out)
        return h, state["ema_G"] or state["net_G"]

    full, ema_full = run(2, tmp_path / "a")
    run(1, tmp_path / "b")
    resumed, ema_resumed = run(2, tmp_path / "b", resume=True, seed=99)
    for key in ema_full:
        assert torch.equal(ema_full[key], ema_resumed[key]), key
    assert [r["fid"] for r in resumed.evals] == [r["fid"] for r in full.evals]


def test_exported_generator_is_the_best_one(small_loader, tmp_path):
    torch.manual_seed(0)
    net_G, net_D = models.build("mlp")
    history = train.fit(net_G, net_D, small_loader, _cfg(num_epochs=2, eval_every=1, eval_n=100, ema=0.9),
                        out_dir=tmp_path / "run")
    train.export_generator(tmp_path / "run", tmp_path / "g.pt")
    _, info = checkpoints.load_generator_file(tmp_path / "g.pt")
    assert info["epochs"] == history.best["epoch"] and info["fid"] == pytest.approx(history.best["fid"])
    assert info["config"]["ema"] == 0.9  # the recipe travels with the weights


def test_eval_every_needs_mnist_shaped_images():
    net_G, net_D = models.build("dcgan", img_shape=(1, 32, 32))
    with pytest.raises(ValueError, match="1x28x28"):
        train._check_nets(net_G, net_D, _cfg(model="dcgan", eval_every=1))


@pytest.mark.parametrize("kwargs, match", [
    ({"ema": 1.0}, "ema"), ({"ema": -0.1}, "ema"), ({"eval_every": -1}, "eval_every"),
    ({"eval_n": 1}, "eval_n"), ({"eval_n": 20_000}, "eval_n"), ({"label_smoothing": 0.6}, "label_smoothing"),
    ({"label_smoothing": 0.1, "loss": "wgan"}, "BCE"), ({"instance_noise": -1.0}, "instance_noise"),
    ({"standing_stats": -1}, "standing_stats"), ({"standing_stats": 2.5}, "standing_stats"),
])
def test_bad_quality_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _cfg(**kwargs).validate()


def test_recipes():
    assert train.config_for("mlp", recipe="article") == train.TrainConfig(model="mlp")  # the article's settings
    assert train.config_for("wgan", recipe="article").loss == "wgan"  # only the model's loss
    best = train.config_for("dcgan", recipe="best")
    assert best.ema > 0 and best.eval_every >= 1
    assert set(train.BEST_RECIPES) == set(train.PAPER_RECIPES) == set(models.BUILDERS)
    # the article's MLP keeps its layers; only its best recipe trains it as a WGAN-GP, with no Sigmoid
    mlp_best = train.config_for("mlp", recipe="best")
    assert (mlp_best.loss, mlp_best.k, mlp_best.gp_weight, mlp_best.ema) == ("wgan-gp", 5, 10.0, 0.999)
    assert train.config_for("mlp", recipe="paper").loss == "nonsaturating"
    # standing statistics only where they were measured to help (cGAN, conv), never in the paper recipes
    assert {m for m in train.BEST_RECIPES if train.config_for(m, recipe="best").standing_stats} == {"cgan", "conv"}
    assert not any(train.config_for(m, recipe="paper").standing_stats for m in train.PAPER_RECIPES)
    net_G, net_D = models.build("mlp")
    assert not any(isinstance(m, (torch.nn.Sigmoid, torch.nn.BatchNorm1d)) for m in net_D.modules())
    with pytest.raises(ValueError, match="unknown recipe"):
        train.config_for("mlp", recipe="fast")


def test_recipe_label_names_a_loss_only_when_the_recipe_changed_it():
    assert train.recipe_label("dcgan", {"ema": 0.999, "loss": "nonsaturating"}) == "EMA of G"
    assert train.recipe_label("wgan-gp", {"ema": 0.999, "loss": "wgan-gp"}) == "EMA of G"
    assert train.recipe_label("wgan", {"ema": 0.0, "loss": "wgan"}) == "paper"
    best_mlp = dataclasses.asdict(train.config_for("mlp", recipe="best"))
    assert train.recipe_label("mlp", best_mlp) == "EMA of G, wgan-gp loss"


def test_instance_noise_and_smoothing_train(small_loader):
    torch.manual_seed(0)
    net_G, net_D = models.build("mlp")
    history = train.fit(net_G, net_D, small_loader, _cfg(instance_noise=0.2, label_smoothing=0.1))
    assert all(math.isfinite(v) for v in history.steps["loss_D"])


def test_plot_fid_marks_the_best_epoch():
    import matplotlib
    matplotlib.use("Agg")
    from gan_utils import viz
    rows = [{"epoch": e, "fid": f} for e, f in ((1, 300.0), (2, 120.0), (3, 150.0))]
    ax = viz.plot_fid({"run": rows})
    line, dot = ax.lines
    assert list(line.get_ydata()) == [300.0, 120.0, 150.0]
    assert list(dot.get_xdata()) == [2] and list(dot.get_ydata()) == [120.0]


def test_table_renders_markdown_with_formats_and_blanks():
    from gan_utils import viz
    md = viz.table([{"model": "cgan", "fid": 9.333}, {"model": "real"}],
                   {"model": ("model", "{}"), "fid": ("FID", "{:.1f}")}).data
    assert md.splitlines() == ["| model | FID |", "| --- | ---: |", "| cgan | 9.3 |", "| real |  |"]


def test_stabiliser_benchmark_swaps_only_the_discriminator(monkeypatch):
    """benchmarks/stabilisers.py 'sn' and 'mbstd': same G start, another D, a short real run that reports
    the class mix; a model without the DCGAN D is refused."""
    import argparse
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "stabilisers.py"
    spec = importlib.util.spec_from_file_location("stabilisers", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    built = []
    real_fit = train.fit

    def spy_fit(net_G, net_D, *args, **kw):
        built.append(({k: v.clone() for k, v in net_G.state_dict().items()}, net_D))
        return real_fit(net_G, net_D, *args, **kw)

    monkeypatch.setattr(bench.train, "fit", spy_fit)
    args = argparse.Namespace(epochs=1, ema=0.999, eval_every=1, eval_n=50, amp=False, subset=256)
    rows = [bench.run_one("dcgan", "best", v, 0, args) for v in ("article", "sn", "mbstd")]
    for (state, _), (other, _) in zip(built, built[1:]):
        for key in state:
            torch.testing.assert_close(state[key], other[key])  # G's start is the same
    from torch.nn.utils import parametrize
    assert not any(parametrize.is_parametrized(m) for m in built[0][1].modules())
    assert parametrize.is_parametrized(built[1][1].head, "weight")
    assert any(isinstance(m, models.MinibatchStd) for m in built[2][1].modules())
    assert all(r["class_ratio"] >= 1.0 and len(r["ema"]) == 1 for r in rows)
    with pytest.raises(SystemExit, match="DCGAN discriminator"):
        bench.run_one("mlp", "article", "sn", 0, args)
    # a variant keeps the model's own layout: the WGAN-GP critic keeps its per-sample normalisation
    bench.run_one("wgan-gp", "best", "mbstd", 0, args)
    critic = built[-1][1]
    assert any(isinstance(m, nn.GroupNorm) for m in critic.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in critic.modules())


def test_the_article100_record_chapter_6_reads_is_complete():
    record = train.load_record("article100-seed0")
    assert record["format"] == "gan_utils.article100.v1" and record["seed"] == 0 and record["eval_n"] == 2000
    assert set(record["loops"]) == {"article", "engine"}
    for loop in record["loops"].values():
        rows = loop["rows"]
        assert {"fid", "recall", "coverage", "spread", "D_x", "D_G_z", "loss_G_max"} <= set(rows)
        assert all(len(values) == 100 and torch.isfinite(values).all() for values in rows.values())
        assert {15, 50, 100} <= set(loop["samples"])
        assert all(s.dtype == torch.uint8 and s.shape == (36, 1, 28, 28) for s in loop["samples"].values())
        assert loop["train_s"] > 0


def test_load_record_names_what_exists_and_refuses_a_broken_file(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no record named 'nope' .*article100-seed0.*--merge"):
        train.load_record("nope")
    monkeypatch.setattr(checkpoints, "RECORDS_DIR", tmp_path)
    (tmp_path / "broken.pt").write_bytes(b"not a torch file")
    with pytest.raises(checkpoints.CheckpointError, match="cannot be read as a record"):
        train.load_record("broken")
    torch.save({"format": "someone.else"}, tmp_path / "foreign.pt")
    with pytest.raises(checkpoints.CheckpointError, match="not a gan_utils record .*someone.else"):
        train.load_record("foreign")
    torch.save({"format": checkpoints.PRETRAINED_FORMAT}, tmp_path / "generator.pt")
    with pytest.raises(checkpoints.CheckpointError, match="not a gan_utils record"):
        train.load_record("generator")
