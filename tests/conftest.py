import os

import pytest
import torch

os.environ.setdefault("GAN_QUICK", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def mnist_train():
    """The real MNIST training split (uint8 images, labels), fetched once if needed."""
    from gan_utils import data
    return data.load_mnist(train=True)


@pytest.fixture()
def small_loader(mnist_train):
    """1000 real digits (not a multiple of 128: the last batch is smaller), batch 128."""
    from gan_utils import data
    images, labels = mnist_train
    return data.TensorLoader(images[:1000], labels[:1000], batch_size=128, seed=0)


def _write_digits(folder, digits, classes=None, colour=False, size=None):
    """PNG files of real MNIST digits: in class sub-folders when `classes` is given, else flat in `folder`.

    colour=True stacks three different digits as R, G, B; size=(w, h) stretches them to a non-square shape.
    """
    import numpy as np
    from PIL import Image
    for i, digit in enumerate(digits):
        sub = folder / str(classes[i]) if classes is not None else folder
        sub.mkdir(parents=True, exist_ok=True)
        pixels = digit.numpy()
        if colour:
            others = [digits[(i + j) % len(digits)].numpy() for j in (1, 2)]
            pixels = np.stack([pixels, *others], -1)  # (H, W, 3): three real digits as R, G, B
        image = Image.fromarray(pixels)
        if size is not None:
            image = image.resize(size, Image.Resampling.BILINEAR)
        image.save(sub / f"img_{i:03d}.png")
    return folder


@pytest.fixture()
def write_digits():
    """A function that writes PNG files of real MNIST digits into a folder (tests of image folders)."""
    return _write_digits


@pytest.fixture()
def digit_folder(tmp_path, mnist_train):
    """20 colour PNGs of real digits, 40x30 pixels (not square), in two class sub-folders."""
    digits, labels = mnist_train
    return _write_digits(tmp_path / "digits", list(digits[:20]), classes=[int(y) % 2 for y in labels[:20]],
                         colour=True, size=(40, 30))
