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
