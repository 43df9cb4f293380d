"""Issue 12: the command line and the engine under misuse, faults and shared folders.

Each case is numbered as in the issue. Every bad input must give one line, exit code 2, no traceback,
no partial files and no lost checkpoint, and be refused before any expensive work.
"""
import errno
import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gan_utils import checkpoints, data, metrics, models, train
from gan_utils.__main__ import main


def _cfg(**kw):
    return train.TrainConfig(**{"num_epochs": 1, "progress": False, "device": "cpu", "seed": 0, **kw})


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]
    assert "Traceback" not in err and last.startswith("error:"), err
    for needle in needles:
        assert needle in last, last
    return last


def _leftovers(folder):
    """Temporary or lock files anywhere under folder."""
    return [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".part")) or p.name == checkpoints.LOCK_NAME]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny trained run (1 epoch on 256 images); tests copy it before changing it."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--epochs", "1", "--subset", "256", "--recipe", "paper", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture()
def my_run(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


@pytest.fixture()
def no_work(monkeypatch):
    """Make training and sampling fail loudly: a refusal must come before them."""
    def forbidden(*args, **kwargs):
        raise AssertionError("expensive work started before the input was checked")
    monkeypatch.setattr(train, "fit", forbidden)
    monkeypatch.setattr(train, "generate", forbidden)
    monkeypatch.setattr(data, "mnist_loader", forbidden)


# --- 1. resume continues exactly what was stored, or refuses ------------------------------------------

@pytest.mark.parametrize("flags, named", [
    (["--lr", "0.05"], "--lr"), (["--batch-size", "32"], "--batch-size"), (["--subset", "512"], "--subset"),
    (["--k", "2"], "--k"), (["--seed", "3"], "--seed"), (["--model", "dcgan"], "--model"),
])
def test_resume_refuses_a_differing_setting(my_run, flags, named, capsys, no_work):
    before = (my_run / "checkpoint.pt").read_bytes()
    assert main(["train", "--epochs", "2", "--resume", "--out", str(my_run), "--quiet", *flags]) == 2
    _one_line_error(capsys, named)
    assert (my_run / "checkpoint.pt").read_bytes() == before


def test_resume_keeps_the_stored_subset_and_override_reaches_the_optimizer(my_run, capsys):
    assert main(["train", "--epochs", "2", "--resume", "--out", str(my_run), "--quiet"]) == 0
    assert "Resuming" in capsys.readouterr().err  # even with --quiet
    state = train.load_checkpoint(my_run)
    assert state["data"]["num_images"] == 256 and state["epoch"] == 2  # epoch 2 saw the same 256 images
    assert main(["train", "--epochs", "3", "--resume", "--override", "--lr", "0.05", "--out", str(my_run),
                 "--quiet"]) == 0
    state = train.load_checkpoint(my_run)
    assert state["config"]["lr_G"] == 0.05
    assert all(g["lr"] == 0.05 for opt in ("opt_G", "opt_D") for g in state[opt]["param_groups"])


@pytest.mark.parametrize("change", [{"lr_G": 0.05}, {"loss": "lsgan"}, {"k": 2}, {"batch_size": 64}])
def test_api_resume_refuses_a_differing_config(small_loader, tmp_path, change):
    train.seed_everything(0)
    train.fit(*models.build("mlp"), small_loader, _cfg(), out_dir=tmp_path)
    with pytest.raises(ValueError, match=f"{next(iter(change))}.*allow_changes=True.*--override"):
        train.fit(*models.build("mlp"), small_loader, _cfg(num_epochs=2, **change), out_dir=tmp_path, resume=True)
    net_G, net_D = models.build("mlp")
    train.fit(net_G, net_D, small_loader, _cfg(num_epochs=2, lr_G=0.05), out_dir=tmp_path, resume=True,
              allow_changes=True)
    assert train.load_checkpoint(tmp_path)["opt_G"]["param_groups"][0]["lr"] == 0.05


def test_api_resume_refuses_other_data(small_loader, mnist_train, tmp_path):
    train.fit(*models.build("mlp"), small_loader, _cfg(), out_dir=tmp_path)
    other = data.TensorLoader(mnist_train[0][:500], mnist_train[1][:500], batch_size=128)
    with pytest.raises(ValueError, match="number of training images 1000 -> 500"):
        train.fit(*models.build("mlp"), other, _cfg(num_epochs=2), out_dir=tmp_path, resume=True)


def test_epochs_below_what_is_done_is_refused(tmp_path, capsys, small_loader):
    two = tmp_path / "two"
    train.fit(*models.build("mlp"), small_loader, _cfg(num_epochs=2), out_dir=two)
    assert main(["train", "--epochs", "1", "--resume", "--out", str(two), "--quiet"]) == 2
    _one_line_error(capsys, "already holds 2 epochs", "--epochs 3")
    with pytest.raises(ValueError, match="already holds 2 epochs"):
        train.fit(*models.build("mlp"), small_loader, _cfg(num_epochs=1), out_dir=two, resume=True)


# --- 2. outputs are checked before any work -------------------------------------------------------------

@pytest.mark.parametrize("case", ["existing file", "checkpoint path", "checkpoint path, resume", "unwritable"])
def test_train_output_checked_before_training(my_run, tmp_path, case, capsys, no_work):
    if case == "unwritable":
        if os.geteuid() == 0:
            out = "/proc/gan_utils_run"  # not even root can create a folder here
        else:
            locked = tmp_path / "read_only"
            locked.mkdir()
            locked.chmod(0o555)
            out = str(locked / "run")
        args = ["--out", out]
    elif case == "existing file":
        (tmp_path / "notes.txt").write_text("mine")
        args = ["--out", str(tmp_path / "notes.txt")]
    else:
        args = ["--out", str(my_run / "checkpoint.pt")] + (["--resume"] if "resume" in case else [])
    assert main(["train", "--epochs", "2", "--subset", "256", "--quiet", *args]) == 2
    _one_line_error(capsys)
    if case == "existing file":
        assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("name, ok", [("x.txt", False), ("x", False), ("A.PNG", True), ("s.Pt", True)])
def test_sample_output_checked_before_generating(my_run, tmp_path, name, ok, capsys, monkeypatch):
    calls = []
    real_generate = train.generate
    monkeypatch.setattr(train, "generate", lambda *a, **kw: calls.append(1) or real_generate(*a, **kw))
    out = tmp_path / "new_folder" / name
    assert main(["sample", "--run", str(my_run), "--n", "12", "--out", str(out)]) == (0 if ok else 2)
    if ok:
        assert out.is_file() and not _leftovers(tmp_path)
    else:
        _one_line_error(capsys, "--out must end in")
        assert not calls and not (tmp_path / "new_folder").exists()  # no work, no empty folder


@pytest.mark.parametrize("target", ["checkpoint", "shipped"])
def test_sample_never_overwrites_a_checkpoint_or_a_shipped_generator(my_run, target, capsys, no_work):
    out = my_run / "checkpoint.pt" if target == "checkpoint" else checkpoints.PRETRAINED_DIR / "mlp.pt"
    before = out.read_bytes()
    assert main(["sample", "--run", str(my_run), "--n", "4", "--out", str(out)]) == 2
    _one_line_error(capsys, "--out")
    assert out.read_bytes() == before


@pytest.mark.parametrize("n", ["12000", "2", "3"])
def test_evaluate_n_checked_before_sampling(my_run, n, capsys, no_work):
    assert main(["evaluate", "--run", str(my_run), "--n", n]) == 2
    assert "k must" not in _one_line_error(capsys, "--n must be between 4 and 10000")


# --- 3. disk full ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["fsync", "replace"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_disk_full_keeps_the_old_checkpoint_and_no_temp_file(my_run, monkeypatch, fault, code):
    before = (my_run / "checkpoint.pt").read_bytes()
    state = train.load_checkpoint(my_run)

    def full(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(os, fault, full)
    with pytest.raises(train.CheckpointError, match="no space left.*free some space"):
        checkpoints.save_checkpoint(my_run / "checkpoint.pt", state)
    monkeypatch.undo()
    assert (my_run / "checkpoint.pt").read_bytes() == before and not _leftovers(my_run)


def test_disk_full_during_training_is_one_line(my_run, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    assert main(["train", "--epochs", "2", "--resume", "--out", str(my_run), "--quiet"]) == 2
    monkeypatch.undo()
    _one_line_error(capsys, "no space left")
    assert train.load_checkpoint(my_run)["epoch"] == 1 and not _leftovers(my_run)


# --- 4. two writers of one run folder -------------------------------------------------------------------

@pytest.fixture()
def other_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _plant_lock(folder, pid):
    (folder / checkpoints.LOCK_NAME).write_text(f"{pid} {__import__('socket').gethostname()}\n")


def test_second_writer_is_refused(my_run, other_process, capsys, small_loader):
    _plant_lock(my_run, other_process.pid)
    before = (my_run / "checkpoint.pt").read_bytes()
    assert main(["train", "--epochs", "2", "--resume", "--out", str(my_run), "--quiet"]) == 2
    _one_line_error(capsys, f"pid {other_process.pid}")
    with pytest.raises(checkpoints.RunLockedError, match="another training process"):
        train.fit(*models.build("mlp"), small_loader, _cfg(num_epochs=2), out_dir=my_run, resume=True)
    assert (my_run / "checkpoint.pt").read_bytes() == before


def test_lock_of_a_killed_process_is_taken_over(my_run):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # its pid is gone: the lock is stale, as after kill -9
    _plant_lock(my_run, proc.pid)
    assert main(["train", "--epochs", "2", "--resume", "--out", str(my_run), "--quiet"]) == 0
    assert train.load_checkpoint(my_run)["epoch"] == 2 and not _leftovers(my_run)


# --- 5. a symlink planted where a temporary file would go -----------------------------------------------

@pytest.mark.parametrize("planted", ["checkpoint.pt.tmp", ".checkpoint.pt.tmp"])
def test_planted_symlink_is_not_followed(my_run, tmp_path, planted):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (my_run / planted).symlink_to(victim)
    assert main(["train", "--epochs", "2", "--resume", "--out", str(my_run), "--quiet"]) == 0
    assert victim.read_text() == "precious"
    assert not (my_run / "checkpoint.pt").is_symlink() and train.load_checkpoint(my_run)["epoch"] == 2


# --- 6. export does not silently replace a shipped generator --------------------------------------------

def test_export_needs_force_and_keeps_a_backup(my_run, tmp_path, monkeypatch, capsys):
    shipped = tmp_path / "pretrained"
    shipped.mkdir()
    shutil.copy(checkpoints.PRETRAINED_DIR / "mlp.pt", shipped / "mlp.pt")
    monkeypatch.setattr(checkpoints, "PRETRAINED_DIR", shipped)
    before = (shipped / "mlp.pt").read_bytes()
    assert main(["export", "--run", str(my_run), "--name", "mlp"]) == 2
    _one_line_error(capsys, "--force")
    assert (shipped / "mlp.pt").read_bytes() == before
    assert main(["export", "--run", str(my_run), "--name", "mlp", "--force"]) == 0
    assert (shipped / "mlp.pt.bak").read_bytes() == before
    assert train.load_pretrained("mlp")[1]["epochs"] == 1 and not _leftovers(shipped)


# --- 7. sample sizes that cannot fit --------------------------------------------------------------------

@pytest.mark.parametrize("n, suffix, needle", [("1000000000", ".pt", "memory"), ("5000", ".png", "grid")])
def test_sample_size_that_cannot_fit_is_refused(my_run, tmp_path, n, suffix, needle, capsys, no_work):
    assert main(["sample", "--run", str(my_run), "--n", n, "--out", str(tmp_path / f"s{suffix}")]) == 2
    _one_line_error(capsys, needle)
    assert not (tmp_path / f"s{suffix}").exists()


# --- 8. the Sigmoid guard looks at what runs last ---------------------------------------------------------

class SigmoidInForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = models.MLPDiscriminator()

    def forward(self, x):
        return torch.sigmoid(self.net(x))


class GatedD(nn.Module):
    """A valid D: a Sigmoid gate, declared last, multiplies features; the output is a logit."""
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.LeakyReLU(0.2))
        self.score = nn.Linear(64, 1)
        self.gate_logit = nn.Linear(64, 64)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        h = self.features(x)                                # (B, 64)
        return self.score(h * self.gate(self.gate_logit(h))).squeeze(1)  # (B,)


@pytest.mark.parametrize("make_D, refused", [
    (lambda: nn.Sequential(models.MLPDiscriminator(), nn.Sigmoid()), True),
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 1), nn.Sigmoid(), nn.Flatten(0)), True),
    (SigmoidInForward, True),
    (GatedD, False),
], ids=["Sigmoid last", "Sigmoid then Flatten", "torch.sigmoid in forward", "gated D"])
def test_sigmoid_guard_checks_what_runs_last(small_loader, make_D, refused):
    net_G, _ = models.build("mlp")
    if refused:
        with pytest.raises(ValueError, match="expects logits"):
            train.fit(net_G, make_D(), small_loader, _cfg())
    else:
        assert train.fit(net_G, make_D(), small_loader, _cfg()).num_epochs == 1


# --- 9. MNIST files are verified ------------------------------------------------------------------------

@pytest.fixture()
def mnist_copy(tmp_path):
    """A private copy of the real raw files, to damage."""
    folder = data.raw_folder(tmp_path)
    shutil.copytree(data.raw_folder(data.default_root()), folder)
    return tmp_path


def _zero_pixels(path):
    raw = bytearray(path.read_bytes())
    raw[16:] = bytes(len(raw) - 16)  # the header stays valid
    path.write_bytes(bytes(raw))


def test_zeroed_pixels_with_a_valid_header_are_refused(mnist_copy, capsys):
    _zero_pixels(data.raw_folder(mnist_copy) / data.RAW_FILES["test_images"])
    with pytest.raises(data.DataError, match="known checksum.*python -m gan_utils data"):
        data.load_mnist(mnist_copy, train=False)
    assert main(["data", "--root", str(mnist_copy)]) == 2
    _one_line_error(capsys, "Delete")


@pytest.mark.parametrize("header", [b"\x00\x00\x08\xff" + b"\x00" * 8, b"\x00\x00\x08\x00", b"\x00\x00\x08\x03\x00"])
def test_impossible_idx_header_is_a_data_error(tmp_path, header):
    (tmp_path / "bad").write_bytes(header)
    with pytest.raises(data.DataError, match="not an MNIST IDX file"):
        data.read_idx(tmp_path / "bad")


# --- 10. the smaller cases --------------------------------------------------------------------------------

@pytest.mark.parametrize("device", ["meta", "xpu", "cuda:7", "nonsense"])
def test_unusable_device_is_one_line(device, tmp_path, capsys, no_work):
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    assert main(["train", "--device", device, "--out", str(tmp_path / "r"), "--subset", "64"]) == 2
    _one_line_error(capsys, "device")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("edit", ["model", "drop config", "drop history", "latent_dim"])
def test_hand_edited_checkpoint_is_a_checkpoint_error(my_run, edit, small_loader):
    state = torch.load(my_run / "checkpoint.pt", weights_only=True)
    if edit == "model":
        state["config"]["model"] = "dcgan"  # a known name, other weights
    elif edit == "latent_dim":
        state["config"]["latent_dim"] = "100"
    else:
        del state[edit.split()[1]]
    torch.save(state, my_run / "checkpoint.pt")
    with pytest.raises(train.CheckpointError):
        train.load_generator(my_run)
    if edit != "model":
        with pytest.raises(train.CheckpointError):
            train.fit(*models.build("mlp"), small_loader, _cfg(num_epochs=2), out_dir=my_run, resume=True)


def test_api_resume_into_another_architecture(my_run, mnist_train):
    loader = data.TensorLoader(mnist_train[0][:256], batch_size=128)
    net_G, net_D = models.build("conv")  # the run trained the MLP pair
    with pytest.raises(train.CheckpointError, match="does not fit"):
        train.fit(net_G, net_D, loader, _cfg(num_epochs=2), out_dir=my_run, resume=True)


def test_ctrl_c_in_epoch_1_says_no_checkpoint_exists(small_loader, tmp_path, monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train, "update_D", interrupt)
    history = train.fit(*models.build("mlp"), small_loader, _cfg(), out_dir=tmp_path / "r")
    err = capsys.readouterr().err
    assert history.interrupted and "no checkpoint exists yet" in err and "epoch 0" not in err
    assert not (tmp_path / "r").exists()  # nothing left behind


def test_ctrl_c_during_a_checkpoint_write_reports_what_is_on_disk(small_loader, tmp_path, monkeypatch, capsys):
    real_save = train.save_checkpoint
    calls = []

    def interrupt_second_write(path, state):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_save(path, state)
    monkeypatch.setattr(train, "save_checkpoint", interrupt_second_write)
    train.fit(*models.build("mlp"), small_loader, _cfg(num_epochs=3), out_dir=tmp_path)
    err = capsys.readouterr().err
    assert "holds epoch 1" in err and "--resume" in err and "resume=True" in err
    assert train.load_checkpoint(tmp_path)["epoch"] == 1 and not _leftovers(tmp_path)


@pytest.mark.parametrize("seed", ["100000000000000000000000", "1e23", "-1", "4294967296"])
def test_seed_out_of_range_is_a_usage_error(seed, tmp_path, capsys, no_work):
    with pytest.raises(SystemExit) as info:
        main(["train", "--seed", seed, "--out", str(tmp_path / "r")])
    assert info.value.code == 2 and "seed" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["real", "fake"])
def test_nan_features_are_refused(which):
    good = torch.randn(50, 8)
    bad = good.clone()
    bad[3, 2] = float("nan")
    real, fake = (bad, good) if which == "real" else (good, bad)
    with pytest.raises(ValueError, match="NaN"):
        metrics.fid_from_features(real, fake)
    with pytest.raises(ValueError, match="NaN"):
        metrics.precision_recall(real, fake)


@pytest.mark.parametrize("bad_batch", [1, 3])
def test_pixel_range_of_every_batch_is_checked(mnist_train, bad_batch):
    images = data.to_unit_range(mnist_train[0][:512]).unsqueeze(1)
    images[bad_batch * 128:(bad_batch + 1) * 128] = (images[bad_batch * 128:(bad_batch + 1) * 128] + 1) * 127.5
    loader = data.TensorLoader(images, batch_size=128, shuffle=False)  # one unscaled file among good ones
    with pytest.raises(ValueError, match="expected floats in \\[-1, 1\\]"):
        train.fit(*models.build("mlp"), loader, _cfg())


@pytest.mark.parametrize("make", [lambda x: TensorDataset(x), lambda x: TensorDataset(x, torch.zeros(len(x)))])
def test_a_plain_torch_dataloader_trains(mnist_train, make):
    x = data.to_unit_range(mnist_train[0][:256]).unsqueeze(1)
    loader = DataLoader(make(x), batch_size=64, shuffle=True)
    assert train.fit(*models.build("mlp"), loader, _cfg()).num_epochs == 1


@pytest.mark.parametrize("classes", [["3"], "3", [3.0], [3, 11]])
def test_bad_class_filter_says_what_to_pass(classes):
    with pytest.raises(ValueError, match="classes must be a list of int digits"):
        data.mnist_loader(classes=classes, subset=10)
