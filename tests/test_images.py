"""Images beyond MNIST: folders of real PNG files written here, a torchvision set by name, both loader paths, errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from gan_utils import data, images, models, train


def test_folder_with_class_subfolders_in_memory(digit_folder, mnist_train):
    loader = images.image_loader(digit_folder, image_size=32, channels=3, batch_size=8, shuffle=False,
                                 num_workers=0)
    assert isinstance(loader, data.TensorLoader) and loader.num_images == 20 and len(loader) == 3
    x, y = next(iter(loader))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32
    assert -1 <= x.min() < -0.9 and 0.9 < x.max() <= 1  # MNIST's black and white, in [-1, 1]
    files = images.ImageFiles(digit_folder)
    assert files.classes == ["0", "1"] and set(y.tolist()) <= {0, 1}
    assert y.tolist() == files.labels[:8]


def test_flat_folder_is_one_class(tmp_path, mnist_train, write_digits):
    folder = write_digits(tmp_path / "flat", list(mnist_train[0][:5]))
    loader = images.image_loader(folder, image_size=28, channels=1, batch_size=5, num_workers=0)
    x, y = next(iter(loader))
    assert x.shape == (5, 1, 28, 28) and y.tolist() == [0] * 5
    # 28 -> 28 changes nothing: the pixels are MNIST's own, in the folder's (sorted) order
    loader.shuffle = False
    x, _ = next(iter(loader))
    torch.testing.assert_close(x, data.to_unit_range(mnist_train[0][:5]).unsqueeze(1))


@pytest.mark.parametrize("num_workers", [0, 1])
def test_streaming_path_serves_the_same_batches_as_the_in_memory_path(digit_folder, num_workers):
    kwargs = dict(image_size=32, channels=3, batch_size=6, seed=3, num_workers=num_workers)
    fast = images.image_loader(digit_folder, in_memory=True, **kwargs)
    slow = images.image_loader(digit_folder, in_memory=False, **kwargs)
    assert isinstance(slow, images.StreamingLoader) and len(slow) == len(fast) == 4
    for epoch in (0, 1):  # another order each epoch, the same on both paths (what an exact resume needs)
        fast.set_epoch(epoch)
        slow.set_epoch(epoch)
        got = list(slow)
        want = list(fast)
        assert [len(x) for x, _ in got] == [6, 6, 6, 2]
        for (x_s, y_s), (x_f, y_f) in zip(got, want):
            assert torch.equal(x_s, x_f) and torch.equal(y_s, y_f)
    fast.set_epoch(2)
    assert not torch.equal(torch.cat([x for x, _ in fast]), torch.cat([x for x, _ in got]))  # epoch 3 reshuffles


def test_resize_then_center_crop():
    wide = np.zeros((32, 64, 3), np.uint8)
    wide[:, 16:48] = (200, 100, 50)  # the middle square is the picture, the sides are cropped away
    square = images.to_square(Image.fromarray(wide), 32, 3)
    assert square.shape == (3, 32, 32) and square.dtype == torch.uint8
    assert square[:, :, 0].tolist() == [[200] * 32, [100] * 32, [50] * 32]
    assert (square == torch.tensor([200, 100, 50]).view(3, 1, 1)).all()
    small = images.to_square(Image.fromarray(wide), 16, 1)  # halved, then grey (ITU-R 601-2 luma, PIL's "L")
    assert small.shape == (1, 16, 16)
    assert abs(int(small[0, 8, 8]) - round(200 * 0.299 + 100 * 0.587 + 50 * 0.114)) <= 1


def test_mixed_sizes_modes_and_formats_become_one_shape(tmp_path, mnist_train):
    """Grey PNG, RGBA PNG, palette GIF and JPEG files of different sizes: all (3, 32, 32) after resize and crop."""
    digits = mnist_train[0][:4].numpy()
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(digits[0]).save(folder / "grey.png")  # 28x28, mode L
    Image.fromarray(np.stack([digits[1]] * 3 + [np.full((28, 28), 255, np.uint8)], -1)).resize((70, 50)).save(
        folder / "rgba.png")  # 70x50, mode RGBA
    Image.fromarray(digits[2]).convert("P").resize((20, 44)).save(folder / "palette.gif")  # 20x44, mode P
    Image.fromarray(np.stack([digits[3]] * 3, -1)).resize((100, 100)).save(folder / "photo.JPG", quality=95)
    loader = images.image_loader(folder, image_size=32, channels=3, batch_size=4, shuffle=False, num_workers=0)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [0] * 4 and -1 <= x.min() and x.max() <= 1
    names = [f.name for f in images.ImageFiles(folder).files]
    assert names == ["grey.png", "palette.gif", "photo.JPG", "rgba.png"]  # sorted, upper-case suffix included
    assert torch.equal(x[0, 0], x[0, 1]) and torch.equal(x[0, 1], x[0, 2])  # a grey file: three equal channels


def test_a_torchvision_set_by_name(mnist_train):
    loader = images.image_loader("mnist", image_size=32, channels=1, subset=10, batch_size=10, shuffle=False,
                                 num_workers=0)
    x, y = next(iter(loader))
    assert x.shape == (10, 1, 32, 32) and y.tolist() == mnist_train[1][:10].tolist()
    digit = Image.fromarray(mnist_train[0][0].numpy())
    assert torch.equal(x[0], data.to_unit_range(images.to_square(digit, 32, 1)))


def test_training_on_a_folder_at_32_pixels(digit_folder):
    loader = images.image_loader(digit_folder, image_size=32, channels=3, batch_size=8, num_workers=0)
    train.seed_everything(0)
    net_G, net_D = models.build("dcgan", img_shape=(3, 32, 32))
    history = train.fit(net_G, net_D, loader, train.TrainConfig(model="dcgan", num_epochs=1, progress=False,
                                                                device="cpu", num_samples=4))
    assert len(history.steps["loss_D"]) == 3 and history.samples[0].shape == (4, 3, 32, 32)


def test_empty_folder(tmp_path):
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("not a picture")
    with pytest.raises(data.DataError, match="no image files in .*empty"):
        images.image_loader(tmp_path / "empty")


@pytest.mark.parametrize("in_memory", [True, False])
def test_unreadable_images_are_named(tmp_path, mnist_train, write_digits, in_memory):
    folder = write_digits(tmp_path / "digits", list(mnist_train[0][:4]))
    (folder / "not_an_image.png").write_text("hello")
    with pytest.raises(data.DataError, match=r"cannot read .*not_an_image\.png as an image"):
        list(images.image_loader(folder, image_size=28, channels=1, in_memory=in_memory, num_workers=0))
    (folder / "not_an_image.png").unlink()
    good = (folder / "img_000.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(data.DataError, match=r"cannot read .*truncated\.png"):
        list(images.image_loader(folder, image_size=28, channels=1, in_memory=in_memory, num_workers=0))


@pytest.mark.parametrize("in_memory", [True, False])
def test_an_unreadable_image_in_a_worker_gives_the_message_without_its_traceback(tmp_path, mnist_train,
                                                                                 write_digits, in_memory):
    folder = write_digits(tmp_path / "digits", list(mnist_train[0][:4]))
    (folder / "beach.jpg").write_bytes(b"<html>not found</html>")  # a download that failed
    with pytest.raises(data.DataError) as caught:
        list(images.image_loader(folder, image_size=28, channels=1, in_memory=in_memory, num_workers=1))
    message = str(caught.value)
    assert message.startswith("cannot read ") and "beach.jpg as an image" in message
    assert "Traceback" not in message and "worker" not in message


@pytest.mark.parametrize("kwargs, match", [
    ({"channels": 2}, "channels must be 1 .* or 3"),
    ({"channels": 4}, "channels must be 1 .* or 3"),
    ({"image_size": 0}, "image_size must be an int >= 4"),
    ({"image_size": 32.0}, "image_size must be an int >= 4"),
    ({"subset": 0}, "subset must be a positive int"),
])
def test_bad_settings(digit_folder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        images.image_loader(digit_folder, num_workers=0, **kwargs)


def test_neither_a_folder_nor_a_known_name(tmp_path):
    with pytest.raises(ValueError, match="neither a folder nor a known data set.*cifar10"):
        images.image_loader(tmp_path / "nowhere")


def test_a_set_that_cannot_be_downloaded_says_so_and_suggests_a_folder(tmp_path, monkeypatch):
    import torchvision

    class Offline(torchvision.datasets.CIFAR10):
        def __init__(self, root, download=False, **kwargs):
            if download:
                raise RuntimeError("Error downloading cifar-10-python.tar.gz: Name or service not known")
            super().__init__(root, download=False, **kwargs)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(data.DataError, match=r"cifar10 is not under .* could not be downloaded \(RuntimeError: "
                                             r"Error downloading .*Name or service not known\).*--data path/to/folder"):
        images.image_loader("cifar10", root=tmp_path)
    monkeypatch.setenv("GAN_OFFLINE", "1")
    with pytest.raises(data.DataError, match="GAN_OFFLINE=1 forbids downloads.*folder"):
        images.image_loader("fashion-mnist", root=tmp_path)


def test_channels_that_differ_from_the_model_are_refused(digit_folder):
    loader = images.image_loader(digit_folder, image_size=32, channels=3, batch_size=8, num_workers=0)
    net_G, net_D = models.build("dcgan", img_shape=(1, 32, 32))
    with pytest.raises(ValueError, match=r"images have shape \(3, 32, 32\), net_D expects \(1, 32, 32\)"):
        train.fit(net_G, net_D, loader, train.TrainConfig(model="dcgan", progress=False, device="cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_in_memory_path_holds_the_pixels_on_the_gpu(digit_folder):
    loader = images.image_loader(digit_folder, image_size=32, channels=3, device="cuda", num_workers=0)
    assert loader.images.is_cuda and loader.images.dtype == torch.uint8
    x, _ = next(iter(loader))
    assert x.is_cuda and x.dtype == torch.float32


def test_default_shapes_follow_the_data(digit_folder):
    assert images.native_shape("mnist") == (28, 1) and images.native_shape("CIFAR10") == (32, 3)
    assert images.native_shape(digit_folder) == images.FOLDER_SHAPE == (64, 3)
    assert set(images.TORCHVISION_SETS) >= {"mnist", "fashion-mnist", "cifar10", "celeba"}


@pytest.fixture(scope="module")
def emoji_folder():
    """The OpenMoji folder of the book's chapter 12: the wheel from the package index, drawn once (cached)."""
    return images.openmoji_folder(verbose=False)


def test_openmoji_folder_draws_every_emoji_once_with_its_attribution(emoji_folder):
    files = sorted(emoji_folder.glob("*.png"))
    # 4,495 with Pillow's text shaping (sequences: flags, skin tones); the single code points without it
    assert len(files) == 4495 or len(files) > 1800
    assert "CC BY-SA 4.0" in (emoji_folder / "ATTRIBUTION.txt").read_text()
    assert images.openmoji_folder(verbose=False) == emoji_folder  # found again, not drawn again
    with Image.open(emoji_folder / "1F600.png") as grinning:
        assert grinning.size == (128, 128) and grinning.mode == "RGB"
        pixels = torch.frombuffer(bytearray(grinning.tobytes()), dtype=torch.uint8).view(128, 128, 3)
    assert (pixels[0] == 255).all()  # white around the emoji
    yellow = (pixels[..., 0] > 200) & (pixels[..., 1] > 150) & (pixels[..., 2] < 100)
    assert yellow.float().mean() > 0.1  # a yellow face, in colour: the font's colour layers were drawn


def test_openmoji_folder_trains_as_a_folder_of_pictures(emoji_folder):
    loader = images.image_loader(emoji_folder, image_size=32, channels=3, batch_size=8, subset=16)
    batch, labels = next(iter(loader))
    assert batch.shape == (8, 3, 32, 32) and batch.min() >= -1 and batch.max() <= 1 and (labels == 0).all()
    assert batch.std() > 0.2  # pictures, not a blank page


def test_openmoji_folder_refuses_a_bad_size(tmp_path):
    with pytest.raises(ValueError, match="size must be an int >= 16"):
        images.openmoji_folder(tmp_path, size=8)
