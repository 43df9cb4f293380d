"""The GPU path without a GPU: the device decisions, torch.compile, and tensors that claim another device.

CI has no GPU, so each device bug is caught by the CPU-side fact behind it: the bf16 decision with the
GPU's compute capability patched, compiled graphs under the `aot_eager` backend (the same autograd
machinery as Inductor, no C++ compiler needed), the `meta` device standing in for CUDA (a tensor there
cannot be read by the host, as a CUDA tensor cannot by numpy), and checkpoints edited to say that a
CUDA run wrote them.
"""
import functools
import warnings

import pytest
import torch

from gan_utils import checkpoints, data, models, train


# --- the AMP decision: train.amp_dtype --------------------------------------------------------------

def _fake_gpu(monkeypatch, capability):
    """A CUDA GPU of the given compute capability, as torch.cuda describes it (T4: (7, 5), A100: (8, 0)).

    is_bf16_supported mirrors torch: by default it counts emulated bf16, which a T4 has.
    """
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation or capability >= (8, 0))


def test_amp_on_a_t4_falls_back_to_fp32_with_one_warning(monkeypatch):
    _fake_gpu(monkeypatch, (7, 5))
    assert torch.cuda.is_bf16_supported()  # the check the engine used to trust: True on a T4
    assert train.amp_dtype("cuda") is None
    with pytest.warns(UserWarning, match=r"compute capability 7\.5.*fp32") as record:
        assert train.resolve_amp(True, "cuda") is None
    assert len(record) == 1


@pytest.mark.parametrize("capability", [(8, 0), (9, 0)])
def test_amp_uses_bf16_on_gpus_with_native_bf16(monkeypatch, capability):
    _fake_gpu(monkeypatch, capability)
    assert train.amp_dtype("cuda") is torch.bfloat16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert train.resolve_amp(True, "cuda:0") is torch.bfloat16


def _fake_cpu(monkeypatch, amx=False, avx512_bf16=False):
    # raising=False: torch before 2.11 has no such functions (the oldest supported torch is 2.4)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)


@pytest.mark.parametrize("flags, native", [({"avx2", "amx_tile"}, True), ({"avx512f", "avx512_bf16"}, True),
                                           ({"avx2", "fma"}, False), (set(), False)])
def test_an_older_torch_reads_the_cpu_flags(monkeypatch, flags, native):
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.delattr(torch.cpu, name, raising=False)
    monkeypatch.setattr(train, "_cpu_flags", lambda: flags)
    assert train.cpu_has_native_bf16() is native
    assert train.amp_dtype("cpu") is (torch.bfloat16 if native else None)


@pytest.mark.parametrize("amx, avx512_bf16", [(True, False), (False, True), (True, True)])
def test_amp_uses_bf16_on_cpus_with_native_bf16(monkeypatch, amx, avx512_bf16):
    _fake_cpu(monkeypatch, amx, avx512_bf16)
    assert train.cpu_has_native_bf16()
    assert train.amp_dtype("cpu") is torch.bfloat16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert train.resolve_amp(True, "cpu") is torch.bfloat16


def test_amp_on_a_cpu_without_native_bf16_falls_back_to_fp32_with_one_warning(monkeypatch, small_loader):
    # An AVX2-only CPU (this project's CI machines): torch runs bf16 there by emulation, 14x slower than fp32
    _fake_cpu(monkeypatch)
    assert not train.cpu_has_native_bf16()
    assert train.amp_dtype("cpu") is None
    with pytest.warns(UserWarning, match=r"CPU has no native bf16.*fp32") as record:
        assert train.resolve_amp(True, "cpu") is None
    assert len(record) == 1
    seen = []
    real_autocast = torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda device_type, dtype=None: seen.append((device_type, dtype))
                        or real_autocast(device_type, dtype=dtype))
    net_G, net_D = models.build("mlp")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train.fit(net_G, net_D, small_loader, train.TrainConfig(num_epochs=1, amp=True, device="cpu", progress=False))
    about_bf16 = [str(w.message) for w in caught if "bf16" in str(w.message)]
    assert len(about_bf16) == 1 and "no native bf16" in about_bf16[0]  # one warning for the whole run
    assert seen == []  # the whole run in fp32


def test_fit_autocasts_in_bf16_on_a_cpu_with_amx(monkeypatch, small_loader):
    _fake_cpu(monkeypatch, amx=True)
    seen = []
    real_autocast = torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda device_type, dtype=None: seen.append((device_type, dtype))
                        or real_autocast(device_type, dtype=dtype))
    net_G, net_D = models.build("mlp")
    train.fit(net_G, net_D, small_loader, train.TrainConfig(num_epochs=1, amp=True, device="cpu", progress=False))
    assert seen and set(seen) == {("cpu", torch.bfloat16)}


def test_amp_on_mps():
    assert train.amp_dtype("mps") is None  # the engine's autocast covers CPU and CUDA only
    with pytest.warns(UserWarning, match="mps.*fp32"):
        assert train.resolve_amp(True, "mps") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert train.resolve_amp(False, "cuda") is None  # not asked: no decision, no warning


def test_fit_autocasts_with_the_dtype_of_amp_dtype(monkeypatch, small_loader):
    seen = []
    real_autocast = torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda device_type, dtype=None: seen.append((device_type, dtype))
                        or real_autocast(device_type, dtype=dtype))
    monkeypatch.setattr(train, "amp_dtype", lambda device: None)  # what a T4 answers
    net_G, net_D = models.build("mlp")
    with pytest.warns(UserWarning, match="fp32"):
        train.fit(net_G, net_D, small_loader, train.TrainConfig(num_epochs=1, amp=True, device="cpu", progress=False))
    assert seen == []


# --- torch.compile: every model and every loss ------------------------------------------------------

# Every model name with its paper's recipe covers every loss (nonsaturating, lsgan, wgan with clipping and
# RMSprop, wgan-gp) and every architecture; the loss functions themselves run outside the compiled nets, so
# the other pairings add no new compiled graph. WGAN-GP also on the conditional pair: labels in the penalty.
COMPILE_CASES = [(model, train.RECIPES[model].get("loss", "nonsaturating")) for model in train.RECIPES]
COMPILE_CASES += [("cgan", "wgan-gp"), ("dcgan", "minimax")]


@pytest.mark.slow  # about a minute: one torch.compile per case
@pytest.mark.parametrize("model,loss", COMPILE_CASES)
def test_every_model_and_loss_trains_under_torch_compile(monkeypatch, mnist_train, model, loss):
    images, labels = mnist_train
    loader = data.TensorLoader(images[:32], labels[:32], batch_size=16, seed=0)  # 2 steps of real MNIST
    cfg = train.config_for(model, loss=loss, k=1, num_epochs=1, batch_size=16, num_samples=4, progress=False,
                           device="cpu")  # k=1: G steps too within two batches
    if loss == "wgan-gp":
        cfg.beta1, cfg.beta2, cfg.gp_weight = 0.0, 0.9, 10.0
    histories = []
    for compile in (False, True):
        train.seed_everything(0)
        cfg.compile = compile
        histories.append(train.fit(*models.build(model), loader, cfg))
        if not compile:  # aot_eager: the autograd graphs Inductor would get (double backward included)
            monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
            torch._dynamo.reset()  # a fresh cache: past its recompile limit dynamo would run eager, silently
            torch._dynamo.utils.counters.clear()
    counters = torch._dynamo.utils.counters
    assert counters["stats"]["unique_graphs"] >= 2, "nothing was compiled"
    assert not counters["graph_break"], f"graph breaks in {model}: {dict(counters['graph_break'])}"
    eager, compiled = histories
    for key in ("loss_D", "loss_G"):
        torch.testing.assert_close(torch.tensor(compiled.steps[key]), torch.tensor(eager.steps[key]),
                                   rtol=1e-4, atol=1e-4, msg=f"{model} x {loss}: {key}")


# --- the cGAN's labels: no host sync in forward ----------------------------------------------------

def test_conditional_forward_compiles_to_one_graph():
    net_G, net_D = models.build("cgan")
    z, labels = torch.randn(8, 100), torch.arange(8) % 10
    # fullgraph=True raises on a graph break, and reading a label value (int(labels.max())) is one
    fake = torch.compile(net_G, fullgraph=True, backend="aot_eager")(z, labels)  # (8, 1, 28, 28)
    scores = torch.compile(net_D, fullgraph=True, backend="aot_eager")(fake, labels)  # (8,)
    assert scores.shape == (8,)


def test_conditional_forward_on_an_accelerator_does_not_read_labels():
    net_G, _ = models.build("cgan")
    net_G.to("meta")  # like CUDA, the host cannot read a meta tensor's values: any int(labels.min()) fails
    out = net_G(torch.randn(4, 100, device="meta"), torch.tensor([0, 1, 2, 3], device="meta"))
    assert out.shape == (4, 1, 28, 28)


def test_labels_out_of_range_are_still_caught(mnist_train):
    net_G, net_D = models.build("cgan")
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        net_G(torch.randn(2, 100), torch.tensor([3, 10]))  # on the CPU, in every forward
    images, labels = mnist_train
    bad = data.TensorLoader(images[:32], labels[:32] + 10, batch_size=16, seed=0)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):  # once per run in fit
        train.fit(net_G, net_D, bad, train.config_for("cgan", num_epochs=1, progress=False, device="cpu"))


# --- the players' steps on another device ------------------------------------------------------------

@pytest.mark.parametrize("model,loss", [("mlp", "nonsaturating"), ("cgan", "nonsaturating"), ("wgan-gp", "wgan-gp")])
def test_steps_follow_the_nets_device_with_a_cpu_generator(model, loss):
    # The pattern of chapters 3 and 6 (a seeded CPU torch.Generator) with the nets on another device.
    net_G, net_D = models.build(model)
    net_G.to("meta")
    net_D.to("meta")
    opt_G, opt_D = torch.optim.Adam(net_G.parameters()), torch.optim.Adam(net_D.parameters())
    real = torch.zeros(4, 1, 28, 28, device="meta")
    labels = torch.arange(4, device="meta") if model == "cgan" else None
    loss_D, _, _ = train.update_D(net_D, net_G, real, opt_D, latent_dim=100, loss=loss, labels=labels,
                                  generator=torch.Generator().manual_seed(0))
    loss_G = train.update_G(net_G, net_D, 4, opt_G, latent_dim=100, loss=loss, labels=labels,
                            generator=torch.Generator().manual_seed(1))  # no device=: the nets' device
    assert loss_D.device.type == loss_G.device.type == "meta"


# --- checkpoints across devices ------------------------------------------------------------------------

def test_resume_of_a_checkpoint_whose_optimizer_was_fused_on_a_gpu(tmp_path, small_loader):
    net_G, net_D = models.build("mlp")
    cfg = train.TrainConfig(num_epochs=1, progress=False, device="cpu")
    train.fit(net_G, net_D, small_loader, cfg, out_dir=tmp_path)
    # What a CUDA run writes: fused Adam, its step counters as float32 tensors beside the moments
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    for opt in (state["opt_G"], state["opt_D"]):
        for group in opt["param_groups"]:
            group["fused"] = True
        for slot in opt["state"].values():
            slot["step"] = slot["step"].float()
    torch.save(state, tmp_path / "checkpoint.pt")

    cfg.num_epochs = 2
    history = train.fit(*models.build("mlp"), small_loader, cfg, out_dir=tmp_path, resume=True)
    resumed = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    for opt in (resumed["opt_G"], resumed["opt_D"]):
        assert all(not group["fused"] for group in opt["param_groups"])  # this run's CPU choice, not the GPU's
    assert torch.stack(history.samples).device.type == "cpu"


@pytest.mark.parametrize("name", checkpoints.pretrained_names()[:1])
def test_load_pretrained_returns_the_net_on_the_asked_device(name):
    net_G, _ = train.load_pretrained(name, map_location="meta")
    assert {p.device.type for p in net_G.parameters()} == {"meta"}
    assert not net_G.training


def test_load_generator_returns_the_net_on_the_asked_device(tmp_path, small_loader):
    net_G, net_D = models.build("mlp")
    train.fit(net_G, net_D, small_loader, train.TrainConfig(num_epochs=1, progress=False, device="cpu"),
              out_dir=tmp_path)
    loaded, cfg = train.load_generator(tmp_path, map_location="meta")
    assert {p.device.type for p in loaded.parameters()} == {"meta"}
    assert cfg["model"] == "mlp"
