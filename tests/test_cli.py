"""The command line: train, sample, resume after a killed process, bad input."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gan_utils import checkpoints, train
from gan_utils.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "gan_utils", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_train_then_sample(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "mlp", "--epochs", "1", "--subset", "300", "--out", str(out), "--quiet"]) == 0
    assert (out / "checkpoint.pt").is_file() and (out / "samples.png").is_file()
    assert main(["sample", "--run", str(out), "--n", "50", "--out", str(tmp_path / "s.pt")]) == 0
    samples = torch.load(tmp_path / "s.pt", weights_only=True)
    assert samples.shape == (50, 1, 28, 28) and samples.min() >= -1 and samples.max() <= 1
    assert main(["sample", "--run", str(out), "--n", "20", "--out", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").stat().st_size > 0


@pytest.mark.parametrize("args, match", [
    (["train", "--model", "vae", "--out", "x"], "unknown model 'vae'"),
    (["sample", "--run", "does/not/exist", "--out", "s.pt"], "no checkpoint"),
    (["train", "--device", "tpu", "--out", "x", "--subset", "10"], "unknown device"),
])
def test_bad_input_is_one_line(args, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and match in err and "Traceback" not in err


@pytest.mark.parametrize("args", [["train", "--epochs", "0", "--out", "x"], ["train", "--lr", "-1", "--out", "x"],
                                  ["sample", "--run", "x", "--n", "abc", "--out", "s.pt"]])
def test_argparse_rejects_impossible_values(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2 and "expected a positive" in capsys.readouterr().err


def test_standing_stats_follow_the_recipe_and_the_flag(tmp_path, capsys):
    common = ["--epochs", "1", "--subset", "200", "--eval-every", "0", "--quiet"]
    assert main(["train", "--model", "cgan", "--out", str(tmp_path / "a"), *common]) == 0
    assert checkpoints.load_checkpoint(tmp_path / "a")["config"]["standing_stats"] == 100  # cgan's best recipe
    assert main(["train", "--model", "cgan", "--standing-stats", "0", "--out", str(tmp_path / "b"), *common]) == 0
    assert checkpoints.load_checkpoint(tmp_path / "b")["config"]["standing_stats"] == 0
    assert main(["train", "--model", "dcgan", "--out", str(tmp_path / "c"), *common]) == 0
    assert checkpoints.load_checkpoint(tmp_path / "c")["config"]["standing_stats"] == 0  # it did not help the DCGAN
    with pytest.raises(SystemExit) as info:
        main(["train", "--standing-stats", "-1", "--out", str(tmp_path / "d")])
    assert info.value.code == 2 and "number of batches >= 0" in capsys.readouterr().err


def test_existing_run_needs_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--subset", "200", "--out", str(out), "--quiet"]) == 0
    assert main(["train", "--epochs", "1", "--subset", "200", "--out", str(out), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_sample_output_suffix_checked(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--subset", "200", "--out", str(out), "--quiet"]) == 0
    assert main(["sample", "--run", str(out), "--out", str(tmp_path / "x.jpg")]) == 2
    assert ".pt" in capsys.readouterr().err


def test_killed_process_resumes_to_the_uninterrupted_weights(tmp_path):
    """Kill a real training process mid-run, resume it, and compare with a run that was never killed."""
    common = ["--model", "mlp", "--subset", "1500", "--quiet", "--device", "cpu"]
    ref = run_cli("train", "--epochs", "3", "--out", str(tmp_path / "ref"), *common)
    assert ref.returncode == 0, ref.stderr

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    proc = subprocess.Popen([sys.executable, "-m", "gan_utils", "train", "--epochs", "3", "--out",
                             str(tmp_path / "killed"), *common], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.05)
    assert ckpt.exists(), "the first checkpoint never appeared"
    proc.send_signal(signal.SIGKILL)  # no clean-up handlers run: only the atomic write protects the file
    proc.wait()
    killed_at = train.load_checkpoint(ckpt)["epoch"]
    assert 1 <= killed_at <= 3

    resumed = run_cli("train", "--epochs", "3", "--out", str(tmp_path / "killed"), "--resume", *common)
    assert resumed.returncode == 0, resumed.stderr
    want, got = train.load_checkpoint(tmp_path / "ref"), train.load_checkpoint(ckpt)
    assert got["epoch"] == 3
    for net in ("net_G", "net_D"):
        for key, value in want[net].items():
            assert torch.equal(value, got[net][key]), f"{net}.{key}"


def test_evaluate_prints_the_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--subset", "300", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--run", str(out), "--n", "500"]) == 0
    printed = capsys.readouterr().out
    for key in ("fid", "is", "coverage", "precision", "recall"):
        assert re.search(rf"^\s+{key}: \d+\.\d+", printed, re.M), printed
    assert main(["evaluate", "--run", str(out), "--n", "20000"]) == 2  # more than the test set holds


def test_export_and_sample_pretrained(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(["train", "--model", "cgan", "--epochs", "1", "--subset", "128", "--out", str(out), "--quiet"]) == 0
    monkeypatch.setattr(checkpoints, "PRETRAINED_DIR", tmp_path / "pretrained")
    assert main(["export", "--run", str(out), "--name", "cgan", "--out", str(tmp_path / "pretrained" / "cgan.pt")]) == 0
    state = torch.load(tmp_path / "pretrained" / "cgan.pt", weights_only=True)
    assert state["model"] == "cgan" and all(v.dtype != torch.float32 for v in state["state_dict"].values())
    net_G, info = train.load_pretrained("cgan")
    assert info["epochs"] == 1 and not net_G.training
    assert main(["sample", "--pretrained", "cgan", "--n", "20", "--out", str(tmp_path / "s.pt")]) == 0
    assert torch.load(tmp_path / "s.pt", weights_only=True).shape == (20, 1, 28, 28)
    assert main(["sample", "--pretrained", "biggan", "--out", str(tmp_path / "s.pt")]) == 2
    assert "available: cgan" in capsys.readouterr().err
    assert main(["export", "--run", str(out), "--name", "mlp"]) == 2  # the run trained another model
    assert "name it 'cgan'" in capsys.readouterr().err
    assert main(["export", "--run", str(out), "--name", "cgan-small"]) == 0  # a model's name and a suffix
    assert train.load_pretrained("cgan-small")[1]["config"]["model"] == "cgan"


def test_train_on_a_folder_of_colour_images_then_sample_resume_and_refuse_fid(digit_folder, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", "dcgan", "--data", str(digit_folder), "--image-size", "32", "--channels", "3",
            "--batch-size", "8", "--quiet", "--device", "cpu", "--out", str(out)]
    assert main([*args, "--epochs", "1"]) == 0
    assert "20 images of" in capsys.readouterr().err
    cfg = train.load_checkpoint(out)["config"]
    assert (cfg["data"], cfg["image_size"], cfg["channels"]) == (str(digit_folder.resolve()), 32, 3)
    assert cfg["eval_every"] == 0  # the best recipe's FID reads MNIST digits: off for other data
    assert main(["sample", "--run", str(out), "--n", "6", "--out", str(tmp_path / "s.pt")]) == 0
    assert torch.load(tmp_path / "s.pt", weights_only=True).shape == (6, 3, 32, 32)
    assert main(["sample", "--run", str(out), "--n", "6", "--out", str(tmp_path / "g.png")]) == 0
    assert main(["evaluate", "--run", str(out), "--n", "100"]) == 2
    assert "MNIST classifier" in capsys.readouterr().err
    assert main(["export", "--run", str(out), "--name", "dcgan", "--out", str(tmp_path / "g.pt")]) == 0
    net_G, info = checkpoints.load_generator_file(tmp_path / "g.pt")  # rebuilt at the recorded size
    assert net_G.img_shape == (3, 32, 32) and info["config"]["data"] == str(digit_folder.resolve())
    # --data, --image-size and --channels are stored: a resume needs none of them
    assert main(["train", "--out", str(out), "--epochs", "2", "--resume", "--quiet"]) == 0
    assert train.load_checkpoint(out)["epoch"] == 2
    assert main([*args, "--epochs", "3", "--resume", "--image-size", "64"]) == 2
    assert "trained with --image-size 32, not --image-size 64" in capsys.readouterr().err


def test_resume_at_32_pixels_is_exact(digit_folder, tmp_path):
    common = ["--model", "dcgan", "--data", str(digit_folder), "--image-size", "32", "--channels", "1",
              "--batch-size", "6", "--quiet", "--device", "cpu"]
    assert main(["train", *common, "--epochs", "2", "--out", str(tmp_path / "ref")]) == 0
    assert main(["train", *common, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    assert main(["train", *common, "--epochs", "2", "--out", str(tmp_path / "run"), "--resume"]) == 0
    want, got = train.load_checkpoint(tmp_path / "ref"), train.load_checkpoint(tmp_path / "run")
    assert got["config"]["channels"] == 1 and got["net_G"]["net.0.weight"].shape == (100, 256, 4, 4)
    for net in ("net_G", "net_D", "ema_G"):
        for key, value in want[net].items():
            assert torch.equal(value, got[net][key]), f"{net}.{key}"


def test_mnist_stays_the_default_and_is_recorded(tmp_path):
    assert main(["train", "--epochs", "1", "--subset", "200", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    cfg = train.load_checkpoint(tmp_path / "run")["config"]
    assert (cfg["data"], cfg["image_size"], cfg["channels"], cfg["model"]) == ("mnist", 28, 1, "mlp")


@pytest.mark.parametrize("args, match", [
    (["--model", "dcgan", "--image-size", "48"], "square images of 28, 32, 64, 128 pixels, not 48x48"),
    (["--data", "cifar10"], "cifar10 is not under .* put the images in a folder"),
    (["--data", "no/such/folder"], "neither a folder nor a known data set"),
    (["--data", "cifar10", "--eval-every", "1", "--model", "dcgan"], "eval_every scores FID .*--eval-every 0"),
])
def test_bad_data_settings_are_one_line(args, match, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GAN_OFFLINE", "1")
    monkeypatch.setenv("GAN_DATA_DIR", str(tmp_path / "data"))
    assert main(["train", "--out", str(tmp_path / "run"), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and re.search(match, err) and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before any training
