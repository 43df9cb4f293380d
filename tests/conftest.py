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
