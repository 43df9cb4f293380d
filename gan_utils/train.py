"""The training engine every chapter uses: `update_D`, `update_G`, `fit` (checkpoints: `checkpoints`).

One loop for every model and loss family. Algorithm 1 of Goodfellow et al. (2014): each batch is one
discriminator step; every k-th batch is followed by one generator step. Checkpoints are written
atomically at every epoch end and hold only tensors and plain values (`torch.load(weights_only=True)`);
every epoch's batch order and noise depend only on (seed, epoch), so a resumed run is exact: bitwise on
the CPU; on CUDA only up to the GPU's nondeterministic kernels (cuDNN convolutions pick algorithms that
add in varying order) unless `torch.use_deterministic_algorithms(True)` is set.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from . import checkpoints, data, distributed, losses, models
from .checkpoints import (  # re-exported: chapters call train.load_checkpoint, train.load_pretrained, ...
    BEST_NAME, CHECKPOINT_FORMAT, CHECKPOINT_NAME, PRETRAINED_DIR, PRETRAINED_FORMAT, CheckpointError,
    export_generator, load_checkpoint, load_generator, load_pretrained, load_record, pretrained_names,
    save_checkpoint, save_generator,
)

# Quick mode: the tests (and an impatient reader) set GAN_QUICK=1 to cut every long loop.
QUICK = os.environ.get("GAN_QUICK", "") not in ("", "0")


# Classroom mode: GAN_SKIP_TRAINING=1 makes the chapters load the pretrained generators (load_pretrained)
# instead of training, so any chapter shows a trained model in seconds on a CPU. Runs whose networks
# later cells need (a discriminator, a history to plot) shrink to their quick size instead: `train_budget`.
SKIP_TRAINING = os.environ.get("GAN_SKIP_TRAINING", "") not in ("", "0")


def budget(full, quick):
    """`full` normally, `quick` when GAN_QUICK=1 (tests, nbval): `num_epochs = train.budget(30, 1)`."""
    return quick if QUICK else full


def train_budget(full, short):
    """The size of a training run: `short` in quick mode and in classroom mode (GAN_SKIP_TRAINING=1).

    For the runs of the early chapters whose D or history later cells use, so they cannot simply load a
    pretrained generator: `num_epochs = train.train_budget(8, 1)` trains one epoch in a classroom.
    """
    return short if (QUICK or SKIP_TRAINING) else full


class DivergenceError(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class StopTraining(Exception):
    """Raise from an `on_epoch_end` hook (or a widget) to stop cleanly after this epoch's checkpoint."""


# --- configuration ----------------------------------------------------------------------------------

OBJECTIVES = {
    # name: (loss of D, loss of G); the chapter on losses explains each.
    "nonsaturating": (losses.d_loss, losses.g_loss_nonsaturating),
    "minimax": (losses.d_loss, losses.g_loss_minimax),
    "lsgan": (losses.lsgan_d_loss, losses.lsgan_g_loss),
    "wgan": (losses.wgan_critic_loss, losses.wgan_g_loss),
    "wgan-gp": (losses.wgan_critic_loss, losses.wgan_g_loss),
}
PROBABILITY_LOSSES = ("nonsaturating", "minimax")  # D's output is a logit of a probability


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run; the defaults are the article's (section 5)."""
    model: str = "mlp"            # a name of models.build, stored in checkpoints for `sample`
    latent_dim: int = 100         # size of z
    batch_size: int = 128
    num_epochs: int = 10
    lr_G: float = 2e-4
    lr_D: float = 2e-4
    beta1: float = 0.5            # Adam's beta1 0.5 (not 0.9) keeps the adversarial game from oscillating
    beta2: float = 0.999
    optimizer: str = "adam"       # "adam" or "rmsprop" (the original WGAN)
    k: int = 1                    # D steps per G step: Algorithm 1's k, WGAN's n_critic
    loss: str = "nonsaturating"   # a key of OBJECTIVES
    gp_weight: float = 10.0       # lambda of WGAN-GP
    clip_value: float = 0.0       # WGAN weight clipping; 0 = off
    device: str = "auto"          # "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:1", "mps"
    amp: bool = False             # bf16 autocast where the device has native bf16 (see amp_dtype)
    compile: bool = False         # torch.compile both nets (CUDA); WGAN-GP's penalty runs the eager critic
    seed: int = 0
    num_samples: int = 64         # size of the fixed-noise grid saved each epoch
    ema: float = 0.0              # decay of an exponential moving average of G's weights; 0 = off
    label_smoothing: float = 0.0  # one-sided: D's target for real images is 1 - label_smoothing (BCE losses)
    instance_noise: float = 0.0   # std of Gaussian noise on D's inputs, annealed linearly to 0 over the run
    standing_stats: int = 0       # batches of G's own samples that re-estimate the EMA's BN statistics
                                  # before it is scored or saved (standing_stats()); 0 = keep G's
    eval_every: int = 0           # score FID every N epochs (and after the last); 0 = never
    eval_n: int = 2000            # samples per FID score (compare scores only at the same n)
    progress: bool = True         # tqdm bars (quiet in tests)
    data: str = ""                # what it trained on, for the record: "mnist", a folder, a torchvision name
    image_size: Optional[int] = None  # side of the square images; None: whatever the nets make (filled in by fit)
    channels: Optional[int] = None    # 1 grey or 3 colour; None: whatever the nets make (filled in by fit)

    def validate(self) -> "TrainConfig":
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)
        need(isinstance(self.latent_dim, int) and self.latent_dim >= 1, f"latent_dim must be an int >= 1, got {self.latent_dim!r}")
        need(isinstance(self.batch_size, int) and self.batch_size >= 1, f"batch_size must be an int >= 1, got {self.batch_size!r}")
        need(isinstance(self.num_epochs, int) and self.num_epochs >= 1, f"num_epochs must be an int >= 1, got {self.num_epochs!r}")
        for name in ("lr_G", "lr_D"):
            value = getattr(self, name)
            need(isinstance(value, (int, float)) and math.isfinite(value) and value > 0, f"{name} must be > 0, got {value!r}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            need(0 <= value < 1, f"{name} must be in [0, 1), got {value!r}")
        need(isinstance(self.k, int) and self.k >= 1, f"k (D steps per G step) must be an int >= 1, got {self.k!r}")
        need(self.loss in OBJECTIVES, f"unknown loss {self.loss!r}; choose one of: {', '.join(OBJECTIVES)}")
        need(self.optimizer in ("adam", "rmsprop"), f"optimizer must be 'adam' or 'rmsprop', got {self.optimizer!r}")
        need(self.gp_weight >= 0, f"gp_weight must be >= 0, got {self.gp_weight!r}")
        need(self.clip_value >= 0, f"clip_value must be >= 0 (0 = off), got {self.clip_value!r}")
        need(isinstance(self.num_samples, int) and self.num_samples >= 1, f"num_samples must be an int >= 1, got {self.num_samples!r}")
        need(isinstance(self.ema, (int, float)) and 0 <= self.ema < 1, f"ema (the EMA decay) must be in [0, 1), e.g. 0.999; 0 = off; got {self.ema!r}")
        need(0 <= self.label_smoothing < 0.5, f"label_smoothing must be in [0, 0.5), e.g. 0.1; got {self.label_smoothing!r}")
        need(self.label_smoothing == 0 or self.loss in PROBABILITY_LOSSES,
             f"label_smoothing applies to the BCE losses ({', '.join(PROBABILITY_LOSSES)}), not to {self.loss!r}")
        need(self.instance_noise >= 0, f"instance_noise must be >= 0 (0 = off), got {self.instance_noise!r}")
        need(isinstance(self.standing_stats, int) and self.standing_stats >= 0,
             f"standing_stats must be an int >= 0 (batches; 0 = off), got {self.standing_stats!r}")
        need(isinstance(self.eval_every, int) and self.eval_every >= 0, f"eval_every must be an int >= 0 (0 = off), got {self.eval_every!r}")
        need(isinstance(self.eval_n, int) and 2 <= self.eval_n <= 10_000, f"eval_n must be an int in [2, 10000] (the test set's size), got {self.eval_n!r}")
        need(self.image_size is None or (isinstance(self.image_size, int) and self.image_size >= 4),
             f"image_size must be an int >= 4 (e.g. 28, 32, 64) or None, got {self.image_size!r}")
        need(self.channels in (None, 1, 3), f"channels must be 1 (grey), 3 (colour) or None, got {self.channels!r}")
        need(not self.eval_every or self.data in ("", "mnist"),
             f"eval_every scores FID with the book's MNIST classifier, not on {self.data!r}: set eval_every=0 "
             "(CLI: --eval-every 0)")
        return self

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# Recipes: the TrainConfig fields of a model name that differ from the article's defaults.
# "paper": each model as its paper prescribes it; "article": the article's section 5 settings (Adam 2e-4,
# beta1 0.5, batch 128) with only the model's loss; "best": the best recipe measured in this book
# (benchmarks/stabilisers.py, chapter 10), the command line's default.
PAPER_RECIPES = {
    "mlp": {},
    "conv": {},
    "dcgan": {},
    "cgan": {},
    "lsgan": {"loss": "lsgan"},
    # Arjovsky et al. 2017, Algorithm 1: RMSProp 5e-5, clip 0.01, n_critic 5.
    "wgan": {"loss": "wgan", "optimizer": "rmsprop", "lr_G": 5e-5, "lr_D": 5e-5, "k": 5, "clip_value": 0.01},
    # Gulrajani et al. 2017, Algorithm 1: Adam 1e-4, betas (0, 0.9), lambda 10, n_critic 5.
    "wgan-gp": {"loss": "wgan-gp", "lr_G": 1e-4, "lr_D": 1e-4, "beta1": 0.0, "beta2": 0.9, "k": 5, "gp_weight": 10.0},
}
RECIPES = PAPER_RECIPES  # the name earlier chapters use
_EMA_AND_FID = {"ema": 0.999, "eval_every": 1}
BEST_RECIPES = {name: {**recipe, **_EMA_AND_FID} for name, recipe in PAPER_RECIPES.items()}
# The article's MLP pair collapsed under its own BCE recipe on every seed measured, with or without TTUR,
# label smoothing or instance noise; trained as a WGAN-GP (the same two networks: D already returns an
# unbounded score, and it has no BatchNorm to spoil a per-sample penalty) it did not (chapter 10.11).
BEST_RECIPES["mlp"] = {**PAPER_RECIPES["wgan-gp"], **_EMA_AND_FID}
# The EMA's BatchNorm statistics re-estimated from its own samples (standing_stats), measured on the shipped
# generators at n = 10,000 over three estimation seeds (benchmarks/standing_stats.py, chapter 10.11): cGAN
# 7.31 -> 5.80-5.83, conv 76.55 -> 73.82-74.29; DCGAN +0.03 to +0.07, LSGAN +0.12 to +0.17, WGAN-GP +1.39 to +1.47.
# Only the two it helped take it.
BEST_RECIPES.update({name: {**BEST_RECIPES[name], "standing_stats": 100} for name in ("cgan", "conv")})
RECIPE_NAMES = ("best", "paper", "article")


def recipe_fields(model: str, name: str = "best") -> dict:
    """The TrainConfig fields of `model` under a recipe name: 'best' (default), 'paper' or 'article'."""
    if model not in PAPER_RECIPES:
        raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(PAPER_RECIPES)}")
    if name not in RECIPE_NAMES:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPE_NAMES)}")
    if name == "article":
        return {"loss": PAPER_RECIPES[model].get("loss", "nonsaturating")}
    return dict((BEST_RECIPES if name == "best" else PAPER_RECIPES)[model])


def recipe_label(model: str, config: dict) -> str:
    """How a run's stored config was trained, for tables: "EMA of G" (the best recipe) or "paper", plus
    the loss when it is not the model's own (the MLP's best recipe trains it as a WGAN-GP)."""
    label = "EMA of G" if config.get("ema") else "paper"
    if config.get("loss", "nonsaturating") != PAPER_RECIPES.get(model, {}).get("loss", "nonsaturating"):
        label += f", {config['loss']} loss"
    return label


def config_for(model: str, recipe: str = "paper", **overrides) -> TrainConfig:
    """The TrainConfig of a model name under a recipe ('paper', 'best' or 'article'), `overrides` on top."""
    return TrainConfig(**{"model": model, **recipe_fields(model, recipe), **overrides})


def pick_device(name: str = "auto") -> torch.device:
    """CUDA if present, then Apple MPS, then CPU; an explicit name must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but this machine has no CUDA GPU; use --device auto or cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was asked for but Apple MPS is not available; use --device auto or cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed torch's global generators (model init); the engine's own streams are seeded per epoch."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware: Intel's AMX tiles or AVX512-BF16 (x86 only).

    Without them torch still runs bf16 autocast, by converting to fp32 and back around every op: on an
    AVX2-only AMD EPYC the DCGAN engine trained at 11 img/s in bf16 against 156 in fp32 (14 times slower,
    benchmarks/throughput.py). torch 2.11 and newer answer through torch.cpu; on older ones, Linux's
    /proc/cpuinfo flags are read. Other CPUs (ARM's, Apple's) count as having none: unmeasured there.
    """
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    if any(probe is not None for probe in probes):
        return any(probe() for probe in probes if probe is not None)
    return bool(_cpu_flags() & {"amx_tile", "avx512_bf16"})


def _cpu_flags() -> set[str]:
    """The CPU's feature flags from Linux's /proc/cpuinfo; empty where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            return {flag for line in f if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    except OSError:
        return set()


def amp_dtype(device: torch.device | str) -> Optional[torch.dtype]:
    """The autocast dtype that makes `amp=True` pay off on `device`, or None where fp32 is the better choice.

    bf16 on CPUs with native bf16 (cpu_has_native_bf16: AMX or AVX512-BF16) and on CUDA GPUs with native
    bf16 (compute capability >= 8.0: A100, L4, H100 ...). None on other CPUs: bf16 is emulated on an
    AVX2-only x86 CPU, 14 times slower than fp32 for the DCGAN. None on older GPUs such as Colab's T4 (7.5):
    torch.cuda.is_bf16_supported() says True there, but by emulation, slower than fp32 (cuDNN's bf16
    convolutions need 8.0), and Inductor would not compile it. None on Apple MPS: the engine's autocast
    covers CPU and CUDA only, so amp would change nothing.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    if device.type == "cuda":
        native = (torch.cuda.is_bf16_supported(including_emulation=False)
                  and torch.cuda.get_device_capability(device) >= (8, 0))
        return torch.bfloat16 if native else None
    return None


def resolve_amp(amp: bool, device: torch.device | str) -> Optional[torch.dtype]:
    """amp_dtype(device) when `amp` is asked for, with one warning where it falls back to fp32; else None."""
    if not amp:
        return None
    dtype = amp_dtype(device)
    if dtype is None:
        import warnings
        device = torch.device(device)
        if device.type == "cuda":
            why = (f"this GPU (compute capability {'.'.join(map(str, torch.cuda.get_device_capability(device)))}) "
                   "has no native bf16, and emulated bf16 is slower than fp32")
        elif device.type == "cpu":
            why = "this CPU has no native bf16 (no AMX, no AVX512-BF16), and emulated bf16 is slower than fp32"
        else:
            why = f"autocast is not used on {device.type}"
        warnings.warn(f"amp=True: {why}; training runs in fp32. Pass amp=train.amp_dtype(device) is not None "
                      "to choose it per device without this warning.", stacklevel=3)
    return dtype


def make_optimizers(net_G: nn.Module, net_D: nn.Module, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam(lr, (beta1, beta2)) for both nets (fused on CUDA), or RMSprop for the original WGAN."""
    def make(params, lr):
        if cfg.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr)
        fused = next(iter(net_G.parameters())).is_cuda or None  # fused Adam: one kernel for all params
        return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2), fused=fused)
    return make(net_G.parameters(), cfg.lr_G), make(net_D.parameters(), cfg.lr_D)


# Per-device choices an optimizer stores in its param_groups: they describe the run that saved it, not this one.
_DEVICE_FLAGS = ("fused", "foreach", "capturable")


def load_optimizer_state(opt: torch.optim.Optimizer, saved: dict) -> None:
    """opt.load_state_dict(saved), keeping this run's fused/foreach/capturable flags (a CUDA run saves
    fused=True, which a CPU resume must not inherit); the moments follow the parameters' device."""
    groups = [{**g, **{k: here[k] for k in _DEVICE_FLAGS if k in here}}
              for g, here in zip(saved["param_groups"], opt.param_groups)]
    opt.load_state_dict({**saved, "param_groups": groups})


# --- an exponential moving average of G ---------------------------------------------------------------

def make_ema(net_G: nn.Module) -> nn.Module:
    """A frozen copy of G whose weights will trail G's: the generator to sample from (Yazici et al. 2019)."""
    ema_G = copy.deepcopy(net_G)
    ema_G.requires_grad_(False)
    return ema_G


def ema_decay(decay: float, num_updates: int) -> float:
    """The decay of update number `num_updates` (0, 1, ...): min(decay, (1 + n) / (10 + n)).

    The warm-up keeps the average from dragging G's random initial weights through the first thousand steps.
    """
    return min(decay, (1 + num_updates) / (10 + num_updates))


@torch.no_grad()
def ema_update(ema_G: nn.Module, net_G: nn.Module, decay: float) -> None:
    """theta_ema <- decay * theta_ema + (1 - decay) * theta; buffers (BN running statistics) are copied."""
    torch._foreach_lerp_(list(ema_G.parameters()), list(net_G.parameters()), 1.0 - decay)
    for b_ema, b in zip(ema_G.buffers(), net_G.buffers()):
        b_ema.copy_(b)


@torch.no_grad()
def standing_stats(net_G: nn.Module, num_batches: int = 100, batch_size: int = 128, seed: int = 0, *,
                   latent_dim: Optional[int] = None) -> nn.Module:
    """Re-estimate G's BatchNorm running statistics from its own samples, in place; returns G in eval mode.

    An EMA of G's weights (make_ema) carries the live G's running statistics, which belong to other weights;
    in training they are also measured under autocast. Here each BatchNorm forgets them and averages the
    batch statistics of `num_batches` fp32 batches of this G's own samples, equally weighted (BigGAN's
    "standing statistics", Brock et al. 2019). Only the BatchNorm layers run in training mode (a Dropout
    or a spectral norm elsewhere stays as at sampling time). A conditional G draws uniform labels. Seeded:
    the same weights give the same statistics. A G without BatchNorm is returned unchanged.
    """
    norms = [m for m in net_G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return net_G.eval()
    if not isinstance(num_batches, int) or num_batches < 1:
        raise ValueError(f"num_batches must be an int >= 1, got {num_batches!r}")
    latent_dim = latent_dim or net_G.latent_dim
    device = next(net_G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    num_classes = getattr(net_G, "num_classes", None)
    momenta = [m.momentum for m in norms]
    net_G.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: every batch weighs the same
        m.train()          # batch statistics, accumulated into the running ones
    try:
        for _ in range(num_batches):
            z = torch.randn(batch_size, latent_dim, generator=gen).to(device)
            y = torch.randint(0, num_classes, (batch_size,), generator=gen).to(device) if num_classes else None
            _call(net_G, z, y)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        net_G.eval()
    return net_G


STANDING_SEED = 54321  # fit's estimate uses seed cfg.seed + STANDING_SEED


# --- one step of each player ------------------------------------------------------------------------

def _call(net: nn.Module, x: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
    return net(x) if labels is None else net(x, labels)


def _noise(shape: tuple, device: torch.device | str, generator: Optional[torch.Generator],
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N(0, I) of `shape` on `device` (z, instance noise), drawn on the generator's own device.

    A CPU torch.Generator with CUDA nets works (the noise is moved), and gives the same z on every device.
    """
    source = generator.device if generator is not None else device
    shard = getattr(generator, "shard", None)
    if shard is not None:  # under torchrun (distributed.ShardedGenerator): the global batch's noise, this rank's rows
        rank, world_size = shard
        noise = torch.randn((shape[0] * world_size, *shape[1:]), device=source, generator=generator)
        return noise[rank * shape[0]:(rank + 1) * shape[0]].to(device, dtype)
    return torch.randn(shape, device=source, generator=generator).to(device, dtype)


def _eager(net: nn.Module) -> nn.Module:
    """The module behind a torch.compile or DDP wrapper (the same weights): for the double backward of WGAN-GP,
    which compiled graphs (aot_autograd) do not support; its gradients still reach DDP's averaging."""
    net = getattr(net, "_orig_mod", net)
    return net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net


def _add_noise(x: torch.Tensor, std: float, generator: Optional[torch.Generator]) -> torch.Tensor:
    """x plus Gaussian noise of the given std, drawn like z (instance noise)."""
    return x + std * _noise(x.shape, x.device, generator, x.dtype)


def update_D(
    net_D: nn.Module, net_G: nn.Module, real: torch.Tensor,
    opt_D: torch.optim.Optimizer, *,
    latent_dim: int, loss: str = "nonsaturating", labels: Optional[torch.Tensor] = None,
    gp_weight: float = 10.0, clip_value: float = 0.0,
    generator: Optional[torch.Generator] = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    label_smoothing: float = 0.0, noise_std: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of D on a real batch and as many fakes.

    Returns (loss_D, D(x) logits, D(G(z)) logits), detached.
    """
    d_loss_fn, _ = OBJECTIVES[loss]
    B = real.shape[0]  # the last batch can be smaller: size everything from it
    z = _noise((B, latent_dim), real.device, generator)  # (B, latent_dim)
    with torch.no_grad(), autocast():  # D's step must not update G: no graph through G
        fake = _call(net_G, z, labels)  # (B, C, H, W)
    if noise_std > 0:  # instance noise: blur both so that their supports overlap
        real = _add_noise(real, noise_std, generator)
        fake = _add_noise(fake, noise_std, generator)
    with autocast():
        real_out = _call(net_D, real, labels).float()  # (B,)
        fake_out = _call(net_D, fake, labels).float()  # (B,)
    if label_smoothing:
        loss_D = d_loss_fn(real_out, fake_out, label_smoothing)
    else:
        loss_D = d_loss_fn(real_out, fake_out)
    if loss == "wgan-gp":
        critic = lambda x: _call(_eager(net_D), x, labels)  # noqa: E731
        fake = fake.to(real.dtype)
        gp = losses.gradient_penalty(critic, real, fake, generator=generator)
        loss_D = loss_D + gp_weight * gp
    opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    opt_D.step()
    if clip_value > 0:  # the original WGAN's crude Lipschitz constraint
        with torch.no_grad():
            for p in net_D.parameters():
                p.clamp_(-clip_value, clip_value)
    return loss_D.detach(), real_out.detach(), fake_out.detach()


def update_G(
    net_G: nn.Module, net_D: nn.Module, batch_size: int,
    opt_G: torch.optim.Optimizer, *,
    latent_dim: int, loss: str = "nonsaturating", labels: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
    device: torch.device | str | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    noise_std: float = 0.0,
) -> torch.Tensor:
    """One step of G on fresh noise (G descends its own loss; nobody ascends).

    Returns loss_G, detached. The noise goes to `device` (default: G's device).
    """
    _, g_loss_fn = OBJECTIVES[loss]
    if device is None:
        device = next(net_G.parameters()).device
    z = _noise((batch_size, latent_dim), device, generator)  # (B, latent_dim)
    # G's step must not update D, and need not compute D's weight gradients
    net_D.requires_grad_(False)
    try:
        with autocast():
            fake = _call(net_G, z, labels)  # (B, C, H, W)
            if noise_std > 0:  # D sees the fakes through the noise of its own step
                fake = _add_noise(fake, noise_std, generator)
            fake_out = _call(net_D, fake, labels).float()  # (B,)
        loss_G = g_loss_fn(fake_out)
        opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        opt_G.step()
    finally:
        net_D.requires_grad_(True)
    return loss_G.detach()


# --- history ----------------------------------------------------------------------------------------

STEP_KEYS = ("loss_D", "loss_G", "D_x", "D_G_z")
EVAL_KEYS = ("epoch", "fid", "is", "coverage", "precision", "recall")  # one row per scored epoch


@dataclass
class History:
    """What a run recorded: per D step losses and mean D outputs, per epoch time and samples."""
    steps: dict = field(default_factory=lambda: {k: [] for k in STEP_KEYS})
    epoch_time: list = field(default_factory=list)      # seconds of training per epoch
    img_per_s: list = field(default_factory=list)       # real images through D per second
    samples: list = field(default_factory=list)         # per epoch: (num_samples, C, H, W) uint8 grid of fixed noise
    evals: list = field(default_factory=list)           # per scored epoch: dict of EVAL_KEYS (cfg.eval_every)
    device: str = ""
    interrupted: bool = False

    @property
    def num_epochs(self) -> int:
        return len(self.epoch_time)

    @property
    def best(self) -> Optional[dict]:
        """The scored epoch with the lowest FID (None before the first score)."""
        return min(self.evals, key=lambda row: row["fid"]) if self.evals else None

    def to_state(self) -> dict:
        evals = [[row[k] for k in EVAL_KEYS] for row in self.evals]
        return {"steps": {k: torch.tensor(v, dtype=torch.float32) for k, v in self.steps.items()},
                "epoch_time": torch.tensor(self.epoch_time, dtype=torch.float64),
                "img_per_s": torch.tensor(self.img_per_s, dtype=torch.float64),
                "samples": list(self.samples), "device": self.device,
                "evals": torch.tensor(evals, dtype=torch.float64).reshape(-1, len(EVAL_KEYS))}

    @classmethod
    def from_state(cls, state: dict) -> "History":
        evals = [dict(zip(EVAL_KEYS, row)) for row in state["evals"].tolist()] if "evals" in state else []
        for row in evals:
            row["epoch"] = int(row["epoch"])
        return cls(steps={k: v.tolist() for k, v in state["steps"].items()},
                   epoch_time=state["epoch_time"].tolist(), img_per_s=state["img_per_s"].tolist(),
                   samples=[grid.cpu() for grid in state["samples"]], evals=evals, device=state.get("device", ""))

    def summary(self) -> str:
        if not self.epoch_time:
            return "no epoch finished"
        total = sum(self.epoch_time)
        text = (f"{self.num_epochs} epochs in {total:.1f} s on {self.device} "
                f"({sum(self.img_per_s) / len(self.img_per_s):,.0f} img/s)")
        if self.evals:
            last, best = self.evals[-1], self.best
            text += f"; FID {last['fid']:.1f} after epoch {last['epoch']} (best {best['fid']:.1f}, epoch {best['epoch']})"
        return text


# --- the loop ---------------------------------------------------------------------------------------

def _with_image_shape(cfg: TrainConfig, net_D: nn.Module) -> TrainConfig:
    """cfg with image_size and channels of the images net_D reads (what a checkpoint must record to rebuild G)."""
    shape = tuple(getattr(net_D, "img_shape", ()))
    if len(shape) != 3 or shape[1] != shape[2]:
        return cfg  # toy points or a non-square net: nothing to record
    if (cfg.channels, cfg.image_size) not in ((None, None), shape[:2]):
        raise ValueError(f"the config says {cfg.channels or '?'}x{cfg.image_size or '?'}x{cfg.image_size or '?'} "
                         f"images but net_D reads {'x'.join(map(str, shape))}: build both at one size")
    return replace(cfg, channels=shape[0], image_size=shape[1])


def _check_nets(net_G: nn.Module, net_D: nn.Module, cfg: TrainConfig) -> None:
    if cfg.eval_every and tuple(getattr(net_G, "img_shape", ())) != (1, 28, 28):
        raise ValueError("eval_every scores FID with the book's MNIST classifier, which reads 1x28x28 images; "
                         "set eval_every=0 for other data")
    g_latent = getattr(net_G, "latent_dim", None)
    if g_latent is not None and g_latent != cfg.latent_dim:
        raise ValueError(f"latent size mismatch: net_G expects z of size {g_latent}, config has latent_dim={cfg.latent_dim}")
    if _ends_in_sigmoid(net_G, net_D, cfg):
        what = ("a WGAN critic must output unbounded scores" if cfg.loss.startswith("wgan")
                else f"the '{cfg.loss}' loss expects logits and applies the sigmoid itself")
        raise ValueError(f"net_D ends in Sigmoid, but {what}: remove the final nn.Sigmoid() "
                         "(or torch.sigmoid) from its forward")


# Ops that only move values around: a sigmoid followed by one of them still ends D in a sigmoid.
_RESHAPES = {"flatten", "view", "reshape", "squeeze", "unsqueeze", "contiguous", "float", "to", "__getitem__",
             "clone", "view_as", "reshape_as", "permute", "transpose", "t"}


def _ends_in_sigmoid(net_G: nn.Module, net_D: nn.Module, cfg: TrainConfig) -> bool:
    """Probe D once on two fakes and see which op ran last: the op that is *run*, not the module declared."""
    from torch.overrides import TorchFunctionMode

    made_by: dict[int, str] = {}
    keep = []  # hold the tensors so their ids are not reused during the probe

    class Trace(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = getattr(func, "__name__", "").rstrip("_")
            if name in _RESHAPES:
                first = args[0] if args else None
                name = made_by.get(id(first), name)
            for t in (out if isinstance(out, (tuple, list)) else (out,)):
                if isinstance(t, torch.Tensor):
                    made_by[id(t)] = name
                    keep.append(t)
            return out

    try:
        device = next(net_D.parameters()).device
        gen = torch.Generator().manual_seed(0)  # a private stream: the probe must not shift the seeded runs
        z = torch.randn(2, cfg.latent_dim, generator=gen).to(device)
        labels = cycled_labels(net_G, 2)
        labels = labels.to(device) if labels is not None else None
        with torch.no_grad(), eval_mode(net_G), eval_mode(net_D):
            fake = _call(net_G, z, labels)
            with Trace():
                out = _call(net_D, fake, labels)
    except Exception:
        return False  # a probe that cannot run proves nothing; the first real batch reports the mismatch
    return isinstance(out, torch.Tensor) and made_by.get(id(out)) in ("sigmoid", "expit")


def _check_batch(real: torch.Tensor, labels: Optional[torch.Tensor], net_D: nn.Module) -> None:
    num_classes = getattr(net_D, "num_classes", None)
    if labels is not None and num_classes is not None:
        models.check_label_range(labels, num_classes)  # once per run: the forward does not (a GPU sync)
    shape = getattr(net_D, "img_shape", None)
    if shape is not None and tuple(real.shape[1:]) != tuple(shape):
        raise ValueError(f"the data's images have shape {tuple(real.shape[1:])}, net_D expects {tuple(shape)}")
    if real.dim() != 4:
        return  # toy data (points in 1-D or 2-D) has no pixel range to check
    data.check_pixel_range(real, "real images")


def _run_generator(cfg: TrainConfig, epoch: int, device: torch.device,
                   ddp: Optional[distributed.Context] = None) -> torch.Generator:
    gen = torch.Generator(device=device) if ddp is None else distributed.ShardedGenerator(device, ddp.rank,
                                                                                           ddp.world_size)
    gen.manual_seed(cfg.seed * 1_000_003 + 7919 * (epoch + 1))
    return gen


def fit(net_G: nn.Module, net_D: nn.Module, loader, cfg: TrainConfig, *, out_dir: Path | str | None = None,
        resume: bool = False, on_epoch_end: Optional[Callable[[int, History], None]] = None,
        fixed_labels: Optional[torch.Tensor] = None, allow_changes: bool = False,
        ddp: Optional[distributed.Context] = None) -> History:
    """Train net_G and net_D on `loader` (batches of (images in [-1, 1], labels or None)).

    With `out_dir`, a checkpoint is written there atomically after every epoch (one training process per
    folder: a second one is refused), and `resume=True` continues from it exactly: a config or data size
    that differs from the checkpoint's is refused unless `allow_changes=True` (CLI: --override).
    `on_epoch_end(epoch, history)` runs after each epoch (live figures, widgets); it may raise
    StopTraining. A conditional pair (G with `num_classes`) gets the batch's labels. Under torchrun, `ddp`
    (distributed.setup()) trains with DistributedDataParallel; see `distributed` for what that changes.
    """
    run = dict(resume=resume, on_epoch_end=on_epoch_end, fixed_labels=fixed_labels, allow_changes=allow_changes,
               ddp=ddp)
    if out_dir is None:
        return _fit(net_G, net_D, loader, cfg, out_dir=None, **run)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {out_dir} is a file; pass a folder (the run folder that holds {CHECKPOINT_NAME})")
    writer = ddp is None or ddp.is_main  # under torchrun rank 0 alone writes: the other ranks only read
    with checkpoints.run_lock(out_dir) if writer else contextlib.nullcontext():  # proves the folder writable
        return _fit(net_G, net_D, loader, cfg, out_dir=out_dir, **run)


def _num_images(loader) -> Optional[int]:
    """How many training examples a loader serves (TensorLoader or DataLoader), None if it cannot say."""
    if hasattr(loader, "num_images"):
        return int(loader.num_images)
    with contextlib.suppress(TypeError, AttributeError):
        return len(loader.dataset)
    return None


def _split_batch(batch) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(images, labels) from what a loader yields: a tensor, (x,) as from TensorDataset(x), or (x, y)."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) in (1, 2):
        return batch[0], (batch[1] if len(batch) == 2 else None)
    raise ValueError(f"the loader yields {type(batch).__name__} batches; expected images, (images,) or "
                     "(images, labels)")


def _fit(net_G: nn.Module, net_D: nn.Module, loader, cfg: TrainConfig, *, out_dir: Optional[Path], resume: bool,
         on_epoch_end: Optional[Callable[[int, History], None]], fixed_labels: Optional[torch.Tensor],
         allow_changes: bool, ddp: Optional[distributed.Context]) -> History:
    cfg = _with_image_shape(cfg.validate(), net_D)
    _check_nets(net_G, net_D, cfg)
    device = pick_device(cfg.device) if ddp is None else ddp.device
    writer = ddp is None or ddp.is_main
    if ddp is not None:  # before any work: the same settings and data everywhere, this rank's slice of each batch
        settings = {k: v for k, v in asdict(cfg).items() if k not in ("device", "progress")}
        distributed.check_same_settings({**settings, "num_images": _num_images(loader)}, ddp)
        distributed.shard(loader, ddp)
        net_G, net_D = distributed.sync_batchnorm(net_G, ddp), distributed.sync_batchnorm(net_D, ddp)
    conditional = getattr(net_G, "num_classes", None) is not None
    if conditional and getattr(loader, "labels", True) is None:
        raise ValueError("a conditional generator needs a loader with labels")
    net_G.to(device).train()
    net_D.to(device).train()
    if hasattr(loader, "device") and torch.device(loader.device).type != device.type:
        raise ValueError(f"the loader holds its data on {loader.device} but training runs on {device}; "
                         f"build it with device='{device}'")
    opt_G, opt_D = make_optimizers(net_G, net_D, cfg)
    history = History(device=str(device) if device.type != "cuda" else torch.cuda.get_device_name(device))
    if ddp is not None:
        history.device = f"{ddp.world_size} x {history.device} ({ddp.backend})"
    z_fixed = torch.randn(cfg.num_samples, cfg.latent_dim,
                          generator=torch.Generator().manual_seed(cfg.seed + 12345)).to(device)
    if conditional and fixed_labels is None:
        fixed_labels = cycled_labels(net_G, cfg.num_samples)
    if fixed_labels is not None:
        fixed_labels = fixed_labels.to(device)
    start_epoch, step = 0, 0
    saved_epoch = None  # the epoch of the checkpoint on disk (None: none written by this run yet)
    ckpt_path = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    if resume:
        if ckpt_path is None:
            raise ValueError("resume=True needs out_dir (where the checkpoint is)")
        if ckpt_path.exists():
            # On the CPU first, whatever device wrote it: load_state_dict copies onto this run's device.
            state = load_checkpoint(ckpt_path, map_location="cpu")
            if not cfg.data:  # the API need not say what it trains on: the record of the run stays
                cfg = replace(cfg, data=state["config"].get("data", ""))
            changes = checkpoints.config_changes(state["config"], asdict(cfg))
            stored_n, n = state.get("data", {}).get("num_images"), _num_images(loader)
            if stored_n is not None and n is not None and stored_n != n:
                changes["number of training images"] = (stored_n, n)
            if changes and not allow_changes:
                listed = "; ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items())
                raise ValueError(f"{ckpt_path} was trained with other settings ({listed}); resume with the stored "
                                 "ones to continue exactly, or pass allow_changes=True (CLI: --override) to change them")
            if int(state["epoch"]) > cfg.num_epochs:
                raise ValueError(f"{ckpt_path} already holds {int(state['epoch'])} epochs but num_epochs is "
                                 f"{cfg.num_epochs}: it counts all epochs, so ask for more (CLI: --epochs)")
            checkpoints.load_weights(net_G, state["net_G"], ckpt_path, "net_G")
            checkpoints.load_weights(net_D, state["net_D"], ckpt_path, "net_D")
            for opt, key in ((opt_G, "opt_G"), (opt_D, "opt_D")):  # this run's fused/foreach flags, not the saved ones
                checkpoints.load_weights(opt, state[key], ckpt_path, f"optimizer {key}", load=load_optimizer_state)
            if changes:  # on purpose: the restored optimizers take the new settings, not the stored ones
                for opt, lr in ((opt_G, cfg.lr_G), (opt_D, cfg.lr_D)):
                    for group in opt.param_groups:
                        group["lr"] = lr
                        if "betas" in group:
                            group["betas"] = (cfg.beta1, cfg.beta2)
                if writer:
                    print("Resuming with changed settings: " + "; ".join(
                        f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items()), file=sys.stderr)
            history = History.from_state(state["history"])
            start_epoch, step = int(state["epoch"]), int(state["step"])
            saved_epoch = start_epoch
            z_fixed = state["z_fixed"].to(device)
            if cfg.progress and writer:
                print(f"Resuming from {ckpt_path} after epoch {start_epoch}.", file=sys.stderr)
    # The EMA starts as a copy of G (of the restored G when resuming a run that had none).
    ema_G, ema_updates = (make_ema(net_G), 0) if cfg.ema else (None, 0)
    if ema_G is not None and resume and ckpt_path.exists() and state.get("ema_G"):
        ema_G.load_state_dict(state["ema_G"])
        ema_updates = int(state.get("ema_updates", 0))
    sample_G = ema_G if ema_G is not None else net_G  # what the grids, the FID and the exported files show
    best_path = ckpt_path.with_name(BEST_NAME) if ckpt_path is not None else None

    dtype = resolve_amp(cfg.amp, device)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext
    # Each player's own step goes through its DDP wrapper (gradients averaged across ranks); the other player,
    # not updated in that step, is called bare: DDP expects one backward through its parameters per forward.
    step_G, step_D = net_G, net_D
    train_G, train_D = (net_G, net_D) if ddp is None else (distributed.wrap(net_G, ddp), distributed.wrap(net_D, ddp))
    if cfg.compile:
        step_G, step_D = torch.compile(net_G), torch.compile(net_D)
        train_G, train_D = (step_G, step_D) if ddp is None else (torch.compile(train_G), torch.compile(train_D))

    def checkpoint(epoch: int) -> None:
        if ckpt_path is None or not writer:
            return
        save_checkpoint(ckpt_path, {
            "format": CHECKPOINT_FORMAT, "epoch": epoch, "step": step, "config": asdict(cfg),
            "net_G": net_G.state_dict(), "net_D": net_D.state_dict(),
            "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
            "history": history.to_state(), "z_fixed": z_fixed.cpu(),
            "fixed_labels": fixed_labels.cpu() if fixed_labels is not None else torch.empty(0),
            "ema_G": ema_G.state_dict() if ema_G is not None else {}, "ema_updates": ema_updates,
            "data": {"num_images": _num_images(loader)},  # so a resume can refuse other data
        })

    def evaluate(epoch: int) -> None:
        row = {"epoch": epoch, **score(sample_G, cfg.eval_n, seed=cfg.seed)}
        history.evals.append(row)
        if best_path is not None and history.best is row:  # a new best: keep its weights beside the checkpoint
            save_generator(best_path, sample_G, asdict(cfg), epochs=epoch, fid=row["fid"], eval_n=cfg.eval_n)

    progress = None
    if cfg.progress and writer:
        from tqdm.auto import tqdm
        progress = tqdm(total=(cfg.num_epochs - start_epoch) * len(loader), desc="training",
                        unit="batch", mininterval=0.5, initial=0)
    checked_first = False
    pixel_lo = pixel_hi = None  # the range of every batch of the epoch, checked at its end (no sync per batch)
    # Until G's first step (k > 1) there is no loss_G: NaN, drawn as a gap. Then the last value carries over.
    loss_G = torch.tensor(history.steps["loss_G"][-1] if history.steps["loss_G"] else float("nan"), device=device)
    try:
        for epoch in range(start_epoch, cfg.num_epochs):
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
            gen = _run_generator(cfg, epoch, device, ddp)
            records = []
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            seen = 0
            for i, batch in enumerate(loader):
                real, labels = _split_batch(batch)
                if not checked_first:
                    _check_batch(real, labels if conditional else None, net_D)
                    checked_first = True
                if real.dim() == 4:
                    lo, hi = torch.aminmax(real.detach())
                    pixel_lo = lo if pixel_lo is None else torch.minimum(pixel_lo, lo)
                    pixel_hi = hi if pixel_hi is None else torch.maximum(pixel_hi, hi)
                real = real.to(device, non_blocking=True)
                labels = labels.to(device) if (conditional and labels is not None) else None
                # instance noise decays linearly from cfg.instance_noise to 0 over the whole run
                noise_std = cfg.instance_noise * max(0.0, 1 - step / (cfg.num_epochs * len(loader)))
                loss_D, real_out, fake_out = update_D(
                    train_D, step_G, real, opt_D, latent_dim=cfg.latent_dim, loss=cfg.loss, labels=labels,
                    gp_weight=cfg.gp_weight, clip_value=cfg.clip_value, generator=gen, autocast=autocast,
                    label_smoothing=cfg.label_smoothing, noise_std=noise_std)
                g_step = (i + 1) % cfg.k == 0
                if g_step:
                    loss_G = update_G(train_G, step_D, real.shape[0], opt_G, latent_dim=cfg.latent_dim,
                                      loss=cfg.loss, labels=labels, generator=gen, device=device, autocast=autocast,
                                      noise_std=noise_std)
                    if ema_G is not None:
                        ema_update(ema_G, net_G, ema_decay(cfg.ema, ema_updates))
                        ema_updates += 1
                if cfg.loss in PROBABILITY_LOSSES:  # mean D(x) and D(G(z)) as probabilities
                    d_x, d_g_z = torch.sigmoid(real_out).mean(), torch.sigmoid(fake_out).mean()
                else:  # raw scores of a critic / least-squares D
                    d_x, d_g_z = real_out.mean(), fake_out.mean()
                records.append(torch.stack([loss_D, loss_G, d_x, d_g_z, loss_D.new_tensor(float(g_step))]))
                seen += real.shape[0]
                step += 1
                if progress is not None and (i + 1) % 50 == 0:
                    last = records[-1].tolist()  # one device sync per 50 steps
                    _guard(last, epoch, step)
                    progress.update(50)
                    progress.set_postfix(epoch=epoch + 1, loss_D=f"{last[0]:.3f}", loss_G=f"{last[1]:.3f}",
                                         refresh=False)
            table = torch.stack(records).cpu() if records else torch.empty(0, 5)
            if ddp is not None:  # each rank's losses are means over its slice: their mean is the global batch's
                table, seen = distributed.average(table, ddp), seen * ddp.world_size
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - t0
            if pixel_lo is not None:  # a later batch out of range (e.g. one unscaled file): before the checkpoint
                data.check_pixel_range(torch.stack([pixel_lo, pixel_hi]).float(), f"real images of epoch {epoch + 1}")
                pixel_lo = pixel_hi = None
            bad = ~torch.isfinite(table[:, [0, 2, 3]]).all(dim=1) | ((table[:, 4] > 0) & ~torch.isfinite(table[:, 1]))
            if bad.any():
                first = int(bad.nonzero()[0])
                _guard(table[first].tolist(), epoch, step - len(table) + first + 1)
            for key, column in zip(STEP_KEYS, table.T.tolist()):
                history.steps[key].extend(column)
            history.epoch_time.append(elapsed)
            history.img_per_s.append(seen / elapsed if elapsed > 0 else float("nan"))
            if cfg.standing_stats:  # every rank: a SyncBatchNorm (DDP) reduces across them
                was_training = sample_G.training  # without an EMA, sample_G is the G in training
                # its own noise stream: not the rows that the FID score (seed cfg.seed) draws
                standing_stats(sample_G, cfg.standing_stats, cfg.batch_size, seed=cfg.seed + STANDING_SEED,
                               latent_dim=cfg.latent_dim)
                sample_G.train(was_training)
            history.samples.append(_fixed_grid(sample_G, z_fixed, fixed_labels))
            if progress is not None:
                progress.update(len(loader) % 50)
            if writer and cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.num_epochs):
                evaluate(epoch + 1)
            checkpoint(epoch + 1)
            saved_epoch = epoch + 1 if ckpt_path is not None else None
            if on_epoch_end is not None:
                on_epoch_end(epoch, history)
    except StopTraining:
        if cfg.progress and writer:
            kept = f"checkpoint of epoch {saved_epoch} kept" if saved_epoch else "no checkpoint written"
            print(f"Stopped after epoch {history.num_epochs}; {kept}.", file=sys.stderr)
    except KeyboardInterrupt:
        history.interrupted = True
        if ckpt_path is None:
            kept = "nothing is saved (no out_dir)"
        elif saved_epoch is None:
            kept = f"no checkpoint exists yet in {out_dir}: rerun from the start"
        else:
            kept = (f"{ckpt_path} holds epoch {saved_epoch}: run again with --resume "
                    "(API: resume=True) to continue exactly")
        print(f"Interrupted after {history.num_epochs} finished epochs; {kept}.", file=sys.stderr)
    finally:
        if progress is not None:
            progress.close()
    return history


def _guard(values: list, epoch: int, step: int) -> None:
    """Raise DivergenceError unless the row [loss_D, loss_G, D_x, D_G_z, G stepped] is finite."""
    loss_D, loss_G, d_x, d_g_z, g_step = values
    finite = all(math.isfinite(v) for v in (loss_D, d_x, d_g_z)) and (not g_step or math.isfinite(loss_G))
    if not finite:
        names = ", ".join(f"{k}={v:.4g}" for k, v in zip(STEP_KEYS, values))
        raise DivergenceError(f"training diverged at step {step} (epoch {epoch + 1}): {names}. The last good "
                              "checkpoint is kept; lower the learning rate or use a stabler loss, then resume.")


@torch.no_grad()
def _fixed_grid(net_G: nn.Module, z_fixed: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
    was_training = net_G.training
    net_G.eval()  # BN uses its running statistics, as at sampling time
    images = _call(net_G, z_fixed, labels).float()
    net_G.train(was_training)
    if images.dim() != 4:
        return images.cpu()  # toy points (N, D), kept as they are
    return data.from_unit_range(images).cpu()  # (N, C, H, W) uint8


@contextlib.contextmanager
def eval_mode(net: nn.Module):
    """Run `net` in eval mode (BN uses its running statistics, as at sampling time), then restore its mode."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


def cycled_labels(net_G: nn.Module, n: int) -> Optional[torch.Tensor]:
    """For a conditional G the labels 0, 1, ..., 9, 0, 1, ... (every class equally often); None otherwise."""
    num_classes = getattr(net_G, "num_classes", None)
    return torch.arange(n) % num_classes if num_classes else None


@torch.no_grad()
def generate(net_G: nn.Module, n: int, *, latent_dim: Optional[int] = None, batch_size: int = 1000,
             seed: Optional[int] = 0, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """n samples of G in eval mode, float in [-1, 1], shape (n, C, H, W), on the CPU."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    latent_dim = latent_dim or net_G.latent_dim
    device = next(net_G.parameters()).device
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    out = []
    with eval_mode(net_G):
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            z = torch.randn(b, latent_dim, generator=gen).to(device)
            y = labels[start:start + b].to(device) if labels is not None else None
            out.append(_call(net_G, z, y).float().cpu())
    return torch.cat(out)


def score(net_G: nn.Module, n: int = 2000, seed: int = 0) -> dict[str, float]:
    """FID, IS, class coverage, precision and recall of n samples of G (eval mode, seeded noise; a
    conditional G draws the digits 0-9 in turn) against n MNIST test images, in the book's classifier's
    feature space. What `fit` records every `eval_every` epochs; compare scores only at the same n.
    """
    from . import metrics
    fake = generate(net_G, n, seed=seed, labels=cycled_labels(net_G, n))  # (n, 1, 28, 28) in [-1, 1]
    return metrics.evaluate(fake, n=n)
