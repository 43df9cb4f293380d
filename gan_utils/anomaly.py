"""One-class anomaly detection with a GAN: D's score, AnoGAN, f-AnoGAN, two baselines.

The one-class protocol: train on "normal" digits only (nine of the ten classes), then
score test digits, among which the held-out class plays the anomaly. Every score below
is "higher = more anomalous":

    D score      -D(x), the logit of D negated: "D does not believe x is real"
    AnoGAN       search a z for each test x (Schlegl et al. 2017); the score is the loss
                 (1 - lam) * sum |x - G(z)| + lam * sum |f(x) - f(G(z))| at the end,
                 lam = 0.1
    f-AnoGAN     an encoder E replaces the search (Schlegl et al. 2019, "izi_f"): with G
                 and D frozen, train E to minimise
                 mean (x - G(E(x)))^2 + kappa * mean (f(x) - f(G(E(x))))^2;
                 the score is the same sum for a test x
    autoencoder  E's architecture and G's, trained together on reconstruction alone
    nearest nbr  the L2 pixel distance to the closest normal training digit

f is D's last hidden layer (`net_D.features`). `auroc` ranks a score: the probability
that a random anomaly scores higher than a random normal digit.

    from gan_utils import anomaly
    train_x, _ = anomaly.one_class_split(x_train, y_train, held_out=7, num_normal=4000)
    test_x, is_anomaly = anomaly.one_class_split(x_test, y_test, held_out=7,
                                                 num_normal=150, num_anomalies=150)
    config = anomaly.GANConfig()
    net_G, net_D = anomaly.make_gan(config)
    anomaly.fit_gan(net_G, net_D, train_x, config)
    scores, _ = anomaly.anogan_scores(net_G, net_D, test_x)
    print(anomaly.auroc(scores, is_anomaly))

Images are float in [-1, 1] (the range of Tanh), shape (N, 1, 28, 28), as everywhere
in the book.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoints, data, models, train

__all__ = ["one_class_split", "auroc", "GANConfig", "make_gan", "fit_gan",
           "recalibrate", "features", "d_scores", "SearchConfig", "anogan_loss",
           "anogan_scores", "Encoder", "Autoencoder", "EncoderConfig", "izi_loss",
           "fit_encoder", "izi_scores", "fit_autoencoder", "ae_scores", "nn_scores",
           "save_nets", "load_nets", "load_pretrained", "pretrained_names",
           "config_dict"]

IMAGE_SHAPE = (1, 28, 28)


def _check_images(images: torch.Tensor, name: str = "images") -> None:
    if images.dim() != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE:
        raise ValueError(f"expected {name} of shape (N, 1, 28, 28), "
                         f"got {tuple(images.shape)}")
    data.check_pixel_range(images, name)


# --- the protocol and the score ------------------------------------------------------

def one_class_split(images: torch.Tensor, labels: torch.Tensor, held_out: int,
                    num_normal: Optional[int] = None, num_anomalies: int = 0,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`num_normal` digits of the nine normal classes (all if None) and `num_anomalies`
    of the held-out class, drawn at random without replacement, normal ones first.

    Args:
        images: (N, 1, 28, 28) in [-1, 1]; labels: (N,) digit classes.
    Returns:
        (images (n, 1, 28, 28), is_anomaly (n,) bool). For a training set keep
        num_anomalies = 0: the detector must never see the class it will flag.
    """
    _check_images(images)
    if labels.shape != (len(images),):
        raise ValueError(f"expected labels of shape ({len(images)},), "
                         f"got {tuple(labels.shape)}")
    if not 0 <= held_out <= 9:
        raise ValueError(f"held_out must be a digit class 0-9, got {held_out}")
    gen = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    picked = []
    for anomalous, count in ((False, num_normal), (True, num_anomalies)):
        pool = ((labels == held_out) == anomalous).nonzero().flatten()
        count = len(pool) if count is None else count
        if count > len(pool):
            kind = "anomalies" if anomalous else "normal digits"
            raise ValueError(f"asked for {count} {kind}, only {len(pool)} exist")
        picked.append(pool[torch.randperm(len(pool), generator=gen)[:count]])
    is_anomaly = torch.cat([torch.zeros(len(picked[0]), dtype=torch.bool),
                            torch.ones(len(picked[1]), dtype=torch.bool)])
    return images[torch.cat(picked).to(images.device)], is_anomaly


def auroc(scores: torch.Tensor, is_anomaly: torch.Tensor) -> float:
    """Area under the ROC curve of `scores` (higher = more anomalous): P(a random
    anomaly scores higher than a random normal example), a tie counting one half.
    Exact, from ranks (the Mann-Whitney U statistic): O(n log n) where comparing
    every pair would take O(n^2) memory."""
    scores = torch.as_tensor(scores).detach().cpu().double().flatten()
    is_anomaly = torch.as_tensor(is_anomaly).cpu().bool().flatten()
    if scores.shape != is_anomaly.shape:
        raise ValueError(f"{len(scores)} scores but {len(is_anomaly)} labels")
    num_anomalies = int(is_anomaly.sum())
    num_normal = len(scores) - num_anomalies
    if num_anomalies == 0 or num_normal == 0:
        raise ValueError("AUROC needs at least one anomaly and one normal example")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN")
    ordered, order = scores.sort()
    # tied scores share the mean of the ranks they occupy
    _, group, counts = torch.unique_consecutive(ordered, return_inverse=True,
                                                return_counts=True)
    last = counts.cumsum(0).double()  # 1-based rank of each group's last member
    mean_rank = last - (counts.double() - 1) / 2
    ranks = torch.empty_like(scores)
    ranks[order] = mean_rank[group]
    # U: how many (anomaly, normal) pairs the anomaly wins, ties one half
    u = ranks[is_anomaly].sum() - num_anomalies * (num_anomalies + 1) / 2
    return (u / (num_anomalies * num_normal)).item()


# --- the GAN -------------------------------------------------------------------------

@dataclass
class GANConfig:
    latent_dim: int = 16   # small: MNIST needs few, and the shipped nets stay small
    width: int = 16        # D's first conv; a quarter of the compute of the book's 32
    width_G: int = 8       # G's last layer (4x this at 7x7): G costs most of a step
    num_steps: int = 1000  # one D step and one G step each
    batch_size: int = 32   # small batches, more steps: what a short CPU budget favours
    lr: float = 5e-4       # 2.5x DCGAN's 2e-4: with 2e-4, 1,000 steps left blobs
    betas: tuple = (0.5, 0.999)  # DCGAN's Adam
    loss: str = "nonsaturating"  # any of train.OBJECTIVES; f-AnoGAN used "wgan-gp"
    seed: int = 0          # the batches and the noise (weights: torch.manual_seed)


def make_gan(config: GANConfig) -> tuple[nn.Module, nn.Module]:
    """The book's DCGAN pair at 28x28, DCGAN-initialised. D has no normalisation
    layers: its score and features of an image must not depend on the batch."""
    net_G = models.DCGANGenerator(config.latent_dim, IMAGE_SHAPE, width=config.width_G)
    net_D = models.DCGANDiscriminator(IMAGE_SHAPE, width=config.width, norm="none")
    net_G.apply(models.dcgan_init)
    net_D.apply(models.dcgan_init)
    return net_G, net_D


def fit_gan(net_G: nn.Module, net_D: nn.Module, images: torch.Tensor,
            config: GANConfig) -> dict[str, list[float]]:
    """Train G and D on the normal `images` (N, 1, 28, 28) with the book's
    `train.update_D` and `train.update_G`, batches drawn with replacement.
    Returns {"loss_D": [...], "loss_G": [...]}, one entry a step; both nets end in
    eval mode, G's BatchNorm statistics recomputed (`recalibrate`)."""
    _check_images(images)
    gen = torch.Generator().manual_seed(config.seed)  # CPU: the same run anywhere
    opt_G = torch.optim.Adam(net_G.parameters(), lr=config.lr, betas=config.betas)
    opt_D = torch.optim.Adam(net_D.parameters(), lr=config.lr, betas=config.betas)
    net_G.train(), net_D.train()
    history = {"loss_D": [], "loss_G": []}
    for _ in range(config.num_steps):
        index = torch.randint(len(images), (config.batch_size,), generator=gen)
        real = images[index.to(images.device)]  # (B, 1, 28, 28)
        loss_D, _, _ = train.update_D(net_D, net_G, real, opt_D,
                                      latent_dim=config.latent_dim,
                                      loss=config.loss, generator=gen)
        loss_G = train.update_G(net_G, net_D, config.batch_size, opt_G,
                                latent_dim=config.latent_dim, loss=config.loss,
                                generator=gen)
        history["loss_D"].append(loss_D.item())
        history["loss_G"].append(loss_G.item())
        if history["loss_D"][-1] != history["loss_D"][-1]:  # NaN
            raise FloatingPointError("D's loss became NaN: lower the learning rate")
    recalibrate(net_G, config.latent_dim, generator=gen)
    net_D.eval()
    return history


@torch.no_grad()
def recalibrate(net_G: nn.Module, latent_dim: int, num_batches: int = 8,
                batch_size: int = 256,
                generator: Optional[torch.Generator] = None) -> None:
    """Set G's BatchNorm running statistics to their plain average over `num_batches`
    batches of fresh noise (8 x 256 = 2,048 z by default), all through the final G.
    In training they trail G's weights (a moving average over past steps), and AnoGAN
    and f-AnoGAN use G in eval mode, so they must describe the final G."""
    norms = [m for m in net_G.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None: a cumulative average over the batches below
    net_G.train()
    device = next(net_G.parameters()).device
    for _ in range(num_batches):
        net_G(torch.randn(batch_size, latent_dim, generator=generator).to(device))
    for m in norms:
        m.momentum = 0.1  # PyTorch's default again, for any later training
    net_G.eval()


def features(net_D: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """f(x): D's last hidden layer, flattened, (N, 4 * width * 7 * 7): the space of
    AnoGAN's and f-AnoGAN's feature residual."""
    return net_D.features(images)


@torch.no_grad()
def d_scores(net_D: nn.Module, images: torch.Tensor, chunk: int = 500) -> torch.Tensor:
    """-D(x) as a logit, (N,): D's own verdict, "not real" read as "anomalous"."""
    _check_images(images)
    net_D.eval()
    return torch.cat([-net_D(part) for part in images.split(chunk)]).cpu()


# --- AnoGAN: a search in z for every test image --------------------------------------

@dataclass
class SearchConfig:
    num_steps: int = 50  # Adam steps on each z; the paper took 500 (see the exercises)
    lr: float = 0.05     # Adam's step size on z
    lam: float = 0.1     # the paper's lambda: the weight of the feature residual
    seed: int = 0        # the starting z of every image
    chunk: int = 500     # images searched at once (memory only: each z has its loss)


def anogan_loss(net_G: nn.Module, net_D: nn.Module, images: torch.Tensor,
                z: torch.Tensor, lam: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """AnoGAN's loss of each image, (1 - lam) sum|x - G(z)| + lam sum|f(x) - f(G(z))|.
    Returns (loss (N,), G(z) (N, 1, 28, 28))."""
    fake = net_G(z)  # (N, 1, 28, 28)
    residual = (images - fake).abs().flatten(1).sum(1)  # (N,)
    feature = (features(net_D, images) - features(net_D, fake)).abs().sum(1)  # (N,)
    return (1 - lam) * residual + lam * feature, fake


def anogan_scores(net_G: nn.Module, net_D: nn.Module, images: torch.Tensor,
                  config: SearchConfig = SearchConfig()
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """AnoGAN (Schlegl et al. 2017): `num_steps` of Adam on each image's own z, from
    z ~ N(0, I); the score is the loss at the end. A batch searched at once gives the
    answer of one image at a time: the summed loss's gradient in z_i is image i's
    own, and Adam scales every coordinate separately.
    Returns (scores (N,), the closest G(z) found (N, 1, 28, 28)), on the CPU."""
    _check_images(images)
    net_G.eval(), net_D.eval()
    gen = torch.Generator().manual_seed(config.seed)
    params = [*net_G.parameters(), *net_D.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)  # only z moves; no gradients for the weights
    scores, closest = [], []
    try:
        for part in images.split(config.chunk):
            z = torch.randn(len(part), net_G.latent_dim, generator=gen)
            z = z.to(images.device).requires_grad_(True)  # (n, latent_dim)
            opt = torch.optim.Adam([z], lr=config.lr)
            for _ in range(config.num_steps):
                loss, _ = anogan_loss(net_G, net_D, part, z, config.lam)
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
            with torch.no_grad():
                loss, fake = anogan_loss(net_G, net_D, part, z, config.lam)
            scores.append(loss.cpu())
            closest.append(fake.cpu())
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
    return torch.cat(scores), torch.cat(closest)


# --- f-AnoGAN's encoder and the plain autoencoder ------------------------------------

class Encoder(nn.Module):
    """Image -> z: D's three convolutions (no normalisation) and a linear map."""

    def __init__(self, latent_dim: int = 16, width: int = 16):
        super().__init__()
        self.latent_dim = latent_dim
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1), nn.LeakyReLU(0.2),          # (B, w, 14, 14)
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),      # (B, 2w, 7, 7)
            nn.Conv2d(2 * w, 4 * w, 3, 1, 1), nn.LeakyReLU(0.2),  # (B, 4w, 7, 7)
            nn.Flatten(),                                         # (B, 4w * 49)
            nn.Linear(4 * w * 49, latent_dim),                    # (B, latent_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x)
        return self.net(x)


class Autoencoder(nn.Module):
    """The baseline with f-AnoGAN's architecture: an `Encoder` and a G-shaped decoder,
    trained together on reconstruction, with no discriminator anywhere."""

    def __init__(self, latent_dim: int = 16, width: int = 16, width_G: int = 8):
        super().__init__()
        self.encoder = Encoder(latent_dim, width)
        self.decoder = models.DCGANGenerator(latent_dim, IMAGE_SHAPE, width=width_G)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))  # (B, 1, 28, 28)


@dataclass
class EncoderConfig:
    num_steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    kappa: float = 1.0  # f-AnoGAN's weight of the feature residual (the paper's 1)
    seed: int = 0       # the batches


def izi_loss(net_E: nn.Module, net_G: nn.Module, net_D: nn.Module,
             images: torch.Tensor, kappa: float = 1.0
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """f-AnoGAN's izi_f of each image,
    mean (x - G(E(x)))^2 + kappa * mean (f(x) - f(G(E(x))))^2.
    Returns (loss (N,), G(E(x)) (N, 1, 28, 28))."""
    fake = net_G(net_E(images))  # (N, 1, 28, 28): image -> z -> image
    residual = (images - fake).pow(2).flatten(1).mean(1)  # (N,)
    feature = (features(net_D, images) - features(net_D, fake)).pow(2).mean(1)
    return residual + kappa * feature, fake


def _batches(images: torch.Tensor, config: EncoderConfig) -> Iterator[torch.Tensor]:
    gen = torch.Generator().manual_seed(config.seed)
    for _ in range(config.num_steps):
        index = torch.randint(len(images), (config.batch_size,), generator=gen)
        yield images[index.to(images.device)]  # (B, 1, 28, 28)


def fit_encoder(net_E: Encoder, net_G: nn.Module, net_D: nn.Module,
                images: torch.Tensor,
                config: EncoderConfig = EncoderConfig()) -> list[float]:
    """Train f-AnoGAN's encoder on the normal `images` with G and D frozen (eval mode,
    no gradients for their weights): E alone learns to invert G.
    Returns the batch loss of every step."""
    _check_images(images)
    net_G.eval(), net_D.eval()
    params = [*net_G.parameters(), *net_D.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    opt = torch.optim.Adam(net_E.parameters(), lr=config.lr)
    net_E.train()
    history = []
    try:
        for real in _batches(images, config):
            loss = izi_loss(net_E, net_G, net_D, real, config.kappa)[0].mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(loss.item())
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
    net_E.eval()
    return history


@torch.no_grad()
def izi_scores(net_E: Encoder, net_G: nn.Module, net_D: nn.Module,
               images: torch.Tensor, kappa: float = 1.0,
               chunk: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """f-AnoGAN's score, izi_f, of every image: one pass through E, G and D, no
    search. Returns (scores (N,), G(E(x)) (N, 1, 28, 28)), on the CPU."""
    _check_images(images)
    net_E.eval(), net_G.eval(), net_D.eval()
    found = [izi_loss(net_E, net_G, net_D, part, kappa) for part in images.split(chunk)]
    scores, recon = zip(*found)
    return torch.cat(scores).cpu(), torch.cat(recon).cpu()


def fit_autoencoder(net_AE: Autoencoder, images: torch.Tensor,
                    config: EncoderConfig = EncoderConfig()) -> list[float]:
    """Train the autoencoder on the normal `images` by mean squared error.
    Returns the batch loss of every step."""
    _check_images(images)
    opt = torch.optim.Adam(net_AE.parameters(), lr=config.lr)
    net_AE.train()
    history = []
    for real in _batches(images, config):
        loss = F.mse_loss(net_AE(real), real)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(loss.item())
    net_AE.eval()
    return history


@torch.no_grad()
def ae_scores(net_AE: Autoencoder, images: torch.Tensor,
              chunk: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean squared reconstruction error of every image, (N,), and the
    reconstructions (N, 1, 28, 28), on the CPU."""
    _check_images(images)
    net_AE.eval()
    recon = torch.cat([net_AE(part) for part in images.split(chunk)])
    return (images - recon).pow(2).flatten(1).mean(1).cpu(), recon.cpu()


@torch.no_grad()
def nn_scores(train_images: torch.Tensor, images: torch.Tensor,
              chunk: int = 500) -> torch.Tensor:
    """The L2 pixel distance from every image to its nearest neighbour among
    `train_images`, (N,). No training; the cost grows with the training set."""
    _check_images(train_images, "train_images")
    _check_images(images)
    bank = train_images.flatten(1)  # (M, 784)
    return torch.cat([torch.cdist(part.flatten(1), bank).min(1).values
                      for part in images.split(chunk)]).cpu()


# --- saving and the shipped nets -----------------------------------------------------

ANOMALY_FORMAT = "gan_utils.anomaly.v1"
PRETRAINED_DIR = checkpoints.PRETRAINED_DIR / "anomaly"
NET_NAMES = ("G", "D", "E", "AE")


def _build(name: str, latent_dim: int, width: int, width_G: int) -> nn.Module:
    if name in ("G", "D"):
        config = GANConfig(latent_dim=latent_dim, width=width, width_G=width_G)
        return make_gan(config)[name == "D"]
    if name == "E":
        return Encoder(latent_dim, width)
    return Autoencoder(latent_dim, width, width_G)


def save_nets(path: Path | str, nets: dict[str, nn.Module], config: GANConfig,
              **info) -> Path:
    """Write the nets of one held-out class ({"G", "D", "E", "AE"}, any of them) in
    fp16, with the sizes in `config` that rebuild them and `info` (held_out, seed,
    steps ...), atomically."""
    unknown = set(nets) - set(NET_NAMES)
    if unknown:
        raise ValueError(f"unknown nets {sorted(unknown)}; save_nets stores "
                         f"{', '.join(NET_NAMES)}")
    reserved = {"format", "arch", "state_dicts"} & set(info)
    if reserved:
        raise ValueError(f"{sorted(reserved)} are written by save_nets itself")
    weights = {name: checkpoints.cpu_weights(net.state_dict(), half=True)
               for name, net in nets.items()}
    arch = {"latent_dim": config.latent_dim, "width": config.width,
            "width_G": config.width_G}
    return checkpoints.save_checkpoint(path, {"format": ANOMALY_FORMAT, "arch": arch,
                                              "state_dicts": weights, **info})


def load_nets(path: Path | str, map_location: str | torch.device = "cpu"
              ) -> tuple[dict[str, nn.Module], dict]:
    """The nets written by `save_nets`, fp32, in eval mode on `map_location`;
    returns (nets, info)."""
    path = Path(path)
    if not path.is_file():
        raise checkpoints.CheckpointError(f"no anomaly-detector file at {path}")
    state = checkpoints._load_ours(
        path, ANOMALY_FORMAT, "cpu",
        unreadable="{path} is unreadable ({error}); write it again with "
                   "anomaly.save_nets",
        foreign="{path} is not a gan_utils.anomaly file")
    nets = {}
    for name, weights in state["state_dicts"].items():
        net = _build(name, **state["arch"])
        checkpoints.load_weights(net, checkpoints.float_weights(weights), path, name)
        nets[name] = net.to(map_location).eval()
    return nets, {k: v for k, v in state.items() if k != "state_dicts"}


def pretrained_names() -> list[str]:
    """The shipped detectors of this installation, e.g. 'holdout-7'."""
    return checkpoints.shipped_names(PRETRAINED_DIR)


def load_pretrained(name: str, map_location: str | torch.device = "cpu"
                    ) -> tuple[dict[str, nn.Module], dict]:
    """A shipped detector by name (seed-0 nets of chapter 17's full run):
    returns (nets, info)."""
    path = checkpoints.shipped_file(PRETRAINED_DIR, name, "shipped detector")
    return load_nets(path, map_location)


def config_dict(config) -> dict:
    """A config dataclass as plain values (tuples as lists), to store with weights."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in asdict(config).items()}
