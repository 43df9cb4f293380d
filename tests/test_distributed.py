"""DistributedDataParallel on the CPU: 2 gloo processes started by torchrun, tiny MNIST runs, seconds each.

Tolerance of "the same as one process": weights and losses to 1e-5 (absolute), over 20 steps. Two processes
add each gradient in two halves of 32 and average them, one process adds 64 at once: float32 rounding differs
by about 1e-7 (measured: at most 1.7e-7 on the weights and 1.2e-7 on the losses after 20 steps of the MLP
pair). Training a GAN is chaotic, so such differences do not stay small for long: one process whose initial
weights are scaled by 1 + 1e-7 noise drifts from the unperturbed run by 1e-5 after ~17 steps and 1e-1 after
~55 (the 2-process run stayed within 2e-7 for 38 steps, then drifted alike). Hence 20 steps, not an epoch count.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from gan_utils import data, distributed, train

ROOT = Path(__file__).resolve().parents[1]
# 10 batches of 64 per epoch; an MLP pair has no BatchNorm, so 2 processes must match one up to rounding.
# The MLP with the article's BCE loss and an EMA of G (its best recipe is a WGAN-GP, whose per-rank penalty is
# not checked for equality with one process here).
COMMON = ["--model", "mlp", "--recipe", "paper", "--ema", "0.999", "--subset", "640", "--batch-size", "64",
          "--eval-every", "0", "--quiet", "--device", "cpu"]
ATOL = 1e-5


def _env(**extra):
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def torchrun(*args, script=None, env=None, wait=True):
    """`torchrun --standalone --nproc_per_node=2 -m gan_utils train ARGS` (--standalone: a free port of its own)."""
    target = [str(script)] if script else ["-m", "gan_utils"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *target, "train", *args]
    if not wait:
        return subprocess.Popen(cmd, env=env or _env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(cmd, env=env or _env(), cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """A 2-process run of 2 epochs (20 steps), never interrupted: (its folder, the completed process)."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    result = torchrun(*COMMON, "--epochs", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def _assert_close_runs(want: dict, got: dict, atol: float) -> None:
    for net in ("net_G", "net_D", "ema_G"):
        for key, value in want[net].items():
            torch.testing.assert_close(got[net][key], value, atol=atol, rtol=0, msg=f"{net}.{key}")
    for key in train.STEP_KEYS:
        torch.testing.assert_close(got["history"]["steps"][key], want["history"]["steps"][key], atol=atol, rtol=0,
                                   equal_nan=True, msg=key)


def test_two_processes_train_as_one_with_the_same_global_batch(ddp_run, tmp_path):
    out, result = ddp_run
    assert result.stderr.splitlines()[0].startswith("2 processes, gloo")  # rank 0 alone writes the log
    assert result.stderr.count("training mlp for 2 epochs") == 1
    single = subprocess.run([sys.executable, "-m", "gan_utils", "train", *COMMON, "--epochs", "2", "--out",
                             str(tmp_path / "one")], env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    want, got = train.load_checkpoint(tmp_path / "one"), train.load_checkpoint(out)
    assert got["step"] == want["step"] == 20 and len(got["history"]["steps"]["loss_D"]) == 20
    _assert_close_runs(want, got, ATOL)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "samples.png"]  # one writer, no lock left


def _worker_pid(marker: str, rank: int) -> int | None:
    """The pid of the torchrun worker of `rank` whose environment carries `marker` (Linux /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in environ and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_a_killed_rank_resumes_to_the_uninterrupted_weights(ddp_run, tmp_path):
    out = tmp_path / "killed"
    marker = f"GAN_TEST_RUN={tmp_path}"
    proc = torchrun(*COMMON, "--epochs", "2", "--out", str(out), env=_env(GAN_TEST_RUN=str(tmp_path)), wait=False)
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "checkpoint.pt").exists() and proc.poll() is None:
        time.sleep(0.05)
    pid = _worker_pid(marker, rank=1)
    assert (out / "checkpoint.pt").exists() and pid is not None, proc.communicate()[1][-3000:]
    os.kill(pid, signal.SIGKILL)  # rank 1 dies without a word; torchrun stops rank 0
    proc.communicate(timeout=120)
    killed_at = train.load_checkpoint(out)["epoch"]
    assert 1 <= killed_at <= 2

    resumed = torchrun(*COMMON, "--epochs", "2", "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    want, got = train.load_checkpoint(ddp_run[0]), train.load_checkpoint(out)
    assert got["epoch"] == 2
    _assert_close_runs(want, got, atol=0)  # the same processes and order of additions: bitwise


def test_ranks_that_disagree_on_settings_stop_with_one_clear_error(tmp_path):
    script = tmp_path / "disagree.py"
    script.write_text("import os, sys\n"
                      "from gan_utils.__main__ import main\n"
                      "args = sys.argv[1:]\n"
                      "if os.environ['RANK'] == '1':  # the second process is started with another learning rate\n"
                      "    args = ['0.001' if a == '0.0002' else a for a in args]\n"
                      "sys.exit(main(args))\n")
    result = torchrun(*COMMON, "--epochs", "1", "--lr", "0.0002", "--out", str(tmp_path / "run"), script=script)
    assert result.returncode != 0
    message = "error: the 2 processes were started with different settings (lr: 0.0002 on rank 0, 0.001 on rank 1)"
    assert result.stderr.count(message) == 2, result.stderr[-3000:]  # every rank says the same, then stops
    assert "gan_utils/" not in result.stderr  # no traceback of ours
    assert not (tmp_path / "run").exists()


def test_a_batchnorm_model_trains_on_two_cpu_processes(tmp_path):
    out = tmp_path / "run"
    result = torchrun("--model", "dcgan", "--subset", "128", "--batch-size", "32", "--eval-every", "0", "--quiet",
                      "--device", "cpu", "--epochs", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    state = train.load_checkpoint(out)
    assert state["step"] == 4 and torch.isfinite(state["history"]["steps"]["loss_D"]).all()
    assert "net.1.running_mean" in state["net_G"]  # plain BatchNorm: SyncBatchNorm cannot run on the CPU


def _context(rank=0, world_size=2, device="cpu"):
    return distributed.Context(rank, world_size, 0, torch.device(device), "gloo")


def test_each_rank_gets_its_slice_of_the_global_batch():
    images = torch.arange(10 * 4, dtype=torch.uint8).view(10, 1, 2, 2)
    whole = [x for x, _ in data.TensorLoader(images, batch_size=4, seed=5)]
    slices = []
    for rank in (0, 1):
        loader = data.TensorLoader(images, batch_size=4, seed=5)
        distributed.shard(loader, _context(rank))
        slices.append([x for x, _ in loader])
    assert [len(x) for x in slices[0]] == [2, 2, 1]  # the last batch of 2 is cut into 1 + 1
    for batch, first, second in zip(whole, *slices):
        assert torch.equal(torch.cat([first, second]), batch)


def test_noise_is_the_global_batch_sliced():
    whole = train._noise((6, 3), "cpu", torch.Generator().manual_seed(1))
    parts = [train._noise((2, 3), "cpu", distributed.ShardedGenerator("cpu", rank, 3).manual_seed(1))
             for rank in range(3)]  # 3 processes, 2 rows each
    assert torch.equal(torch.cat(parts), whole)


def test_a_batch_that_does_not_divide_and_a_foreign_loader_are_refused():
    with pytest.raises(ValueError, match="make it divisible by the 2 processes"):
        distributed.shard(data.TensorLoader(torch.zeros(8, 1, 2, 2), batch_size=5), _context())
    with pytest.raises(ValueError, match="slices a data.TensorLoader"):
        distributed.shard(torch.utils.data.DataLoader(torch.zeros(8, 2), batch_size=4), _context())


def test_batchnorm_becomes_syncbatchnorm_on_cuda_only(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    weight = net[1].weight
    assert isinstance(distributed.sync_batchnorm(net, _context())[1], nn.BatchNorm2d)
    converted = distributed.sync_batchnorm(net, _context(device="cuda"))  # converting needs no GPU
    assert isinstance(converted[1], nn.SyncBatchNorm) and converted[1].weight is weight  # the optimizer's tensor
    # Why the CPU keeps BatchNorm: PyTorch's SyncBatchNorm refuses CPU tensors once a process group exists.
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match="SyncBatchNorm expected input tensor to be on GPU"):
            nn.SyncBatchNorm(4)(torch.randn(2, 4, 3, 3))
    finally:
        torch.distributed.destroy_process_group()
