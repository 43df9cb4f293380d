"""Property: random argument lists never end in a traceback, and never leave a half-written run behind.

Kept fast: few examples, derandomized (the same lists on every run), training capped at one epoch on a
tiny subset unless an argument is rejected first, and no network (the MNIST fetchers are stubbed).
"""
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gan_utils import checkpoints, data, train
from gan_utils.__main__ import main

VALUES = {
    "--model": ["mlp", "dcgan", "vae", ""],
    "--epochs": ["0", "1", "-1", "x", "1e3"],
    "--subset": ["0", "16", "64", "x", "-5"],
    "--batch-size": ["0", "16", "x", "999999999999"],
    "--lr": ["0", "0.05", "-1", "nan", "inf", "x"],
    "--k": ["0", "2", "x"],
    "--seed": ["0", "3", "-1", "1e23", "100000000000000000000000"],
    "--device": ["cpu", "auto", "meta", "xpu", "cuda:3", ""],
    "--n": ["0", "1", "3", "4", "16", "5000", "12000", "1000000000", "x"],
    "--name": ["mlp", "dcgan", "nope"],
    "--pretrained": ["mlp", "nope"],
    "--recipe": ["best", "paper", "article", "fast"],
    "--ema": ["0", "0.9", "1", "-0.5", "x"],
    "--eval-every": ["0", "1", "-1", "x"],
    "--eval-n": ["1", "50", "20000", "x"],
    "--standing-stats": ["0", "2", "-1", "x"],
}
PATHS = ["run", "run/checkpoint.pt", "new", "new/deeper", "file.txt", "s.pt", "G.PNG", "x.txt", "missing"]
FLAGS = {  # what each command takes (its required flags first); a few strays from other commands too
    "train": ["--out", "--model", "--epochs", "--subset", "--batch-size", "--lr", "--k", "--seed", "--device",
              "--resume", "--override", "--quiet", "--amp", "--recipe", "--ema", "--eval-every", "--eval-n",
              "--standing-stats"],
    "sample": ["--out", "--run", "--pretrained", "--n", "--seed", "--best"],
    "evaluate": ["--run", "--pretrained", "--n", "--seed", "--best"],
    "export": ["--run", "--name", "--out", "--force"],
    "data": ["--root"],
}
SWITCHES = ("--resume", "--override", "--quiet", "--amp", "--force", "--best")
STRAYS = ["--model", "--n", "--force", "--root", "--bogus"]


@st.composite
def argument_lists(draw):
    command = draw(st.sampled_from(sorted(FLAGS) + ["bogus"]))
    # Training defaults to 10 epochs on all of MNIST, scored on 2,000 samples: start from a tiny run, which
    # the drawn flags may change.
    argv = [command] + (["--epochs", "1", "--subset", "32", "--eval-n", "50"] if command == "train" else [])
    pool = FLAGS.get(command, [])
    required = [f for f in pool[:2] if f not in SWITCHES and draw(st.floats(0, 1)) < 0.85]
    extra = draw(st.lists(st.sampled_from(pool + STRAYS), max_size=4))
    for flag in required + extra:
        if flag in SWITCHES:
            argv.append(flag)
        elif flag in ("--out", "--run", "--root"):
            argv += [flag, "{ws}/" + draw(st.sampled_from(PATHS))]
        else:
            argv += [flag, draw(st.sampled_from(VALUES.get(flag, ["1"])))]
    return argv


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    assert main(["train", "--epochs", "1", "--subset", "32", "--out", str(ws / "run"), "--quiet"]) == 0
    (ws / "file.txt").write_text("keep me")
    shipped = ws / "pretrained"
    shipped.mkdir()
    for name in ("mlp", "dcgan"):
        shutil.copy(checkpoints.PRETRAINED_DIR / f"{name}.pt", shipped)
    return ws


def _check_nothing_half_written(ws):
    leftovers = [p for p in ws.rglob("*") if p.name.endswith((".tmp", ".part")) or p.name == checkpoints.LOCK_NAME]
    assert not leftovers, leftovers
    for ckpt in ws.rglob(checkpoints.CHECKPOINT_NAME):
        train.load_checkpoint(ckpt)  # raises CheckpointError on a half-written file
    for shipped in (ws / "pretrained").glob("*.pt"):
        assert train.load_pretrained(shipped.stem)[0] is not None
    assert (ws / "file.txt").read_text() == "keep me"


def _shipped(ws):
    return {p.name: p.read_bytes() for p in (ws / "pretrained").glob("*.pt")}


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=argument_lists())
def test_random_argument_lists_never_traceback(workspace, monkeypatch, capsys, argv):
    def offline(*args, **kwargs):
        raise OSError("no network in this test")
    monkeypatch.setattr(data, "_download_torchvision", offline)
    monkeypatch.setattr(data, "_fetch_from_wheel", offline)
    monkeypatch.setattr(checkpoints, "PRETRAINED_DIR", workspace / "pretrained")
    argv = [a.replace("{ws}", str(workspace)) for a in argv]
    shipped = _shipped(workspace)
    try:
        code = main(argv)
        from_argparse = False
    except SystemExit as exc:  # argparse: usage errors (2) and --help (0)
        code, from_argparse = exc.code, True
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code in (0, 2, 130), (argv, err)
    if code == 2 and not from_argparse:
        assert any(line.startswith("error: ") for line in err.splitlines()), (argv, err)
    _check_nothing_half_written(workspace)
    if "--force" not in argv:  # a shipped generator is replaced only on purpose
        assert _shipped(workspace) == shipped, argv
