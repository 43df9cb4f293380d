"""Training on several processes with PyTorch's DistributedDataParallel: `torchrun --nproc_per_node=N -m gan_utils
train ...` (one process per GPU with nccl; on the CPU with gloo, for tests and classrooms).

How a run of N processes relates to one process (`train.fit` does the same with `ddp=` a Context):
- Batches. The global batch stays the configured `batch_size`: every rank draws the same permutation of
  the data for (seed, epoch), cuts each global batch into N contiguous slices and trains on its own
  (batch_size must be divisible by N). DDP averages the N gradients, which is the gradient of the mean
  loss over the global batch: the learning rate means what it means for one process.
- Noise. Every rank seeds one generator per epoch from (seed, epoch), as one process does, draws the
  noise of the whole global batch (z, instance noise) and keeps its rows (ShardedGenerator). So the N
  processes see the images and the noise one process would see, and stay in step without messages.
  WGAN-GP's interpolation weights are the exception: each rank draws B / N of them from the shared stream,
  so from the first penalty on such a run follows another random stream than one process would (the same
  in distribution, and still identical on every rank).
- Writing. Rank 0 alone takes the run folder's lock and writes checkpoints (atomically), best.pt, logs
  and samples; every rank reads the checkpoint to resume, which is therefore exact (weights, optimizer
  moments, epoch and step; the data order and noise follow from (seed, epoch)). Several machines need the
  run folder on a shared file system.
- BatchNorm. On CUDA every BatchNorm becomes SyncBatchNorm: the statistics of the global batch, as one
  process computes them. On the CPU PyTorch's SyncBatchNorm refuses to run (torch 2.4 to 2.14: "SyncBatchNorm
  expected input tensor to be on GPU", tests/test_distributed.py checks it), so with gloo each rank keeps
  plain BatchNorm over its own slice of batch_size / N images: a smaller batch for the statistics, the
  "ghost batch norm" of large-batch training. Running statistics are rank 0's (DDP copies them to all).
  Models without BatchNorm (mlp, the WGAN-GP critic) train exactly as one process does, to float rounding.
- Settings. Every rank sends its settings to every other before any work (all_gather_object); ranks
  started with different ones stop with the same one-line error.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import data

# Devices whose tensors torch.nn.SyncBatchNorm accepts; on others BatchNorm stays per rank (see above).
SYNC_BN_DEVICES = ("cuda",)


@dataclass(frozen=True)
class Context:
    """This process's place in a torchrun job."""
    rank: int          # 0 .. world_size - 1; rank 0 writes
    world_size: int    # number of processes
    local_rank: int    # index on this machine: the GPU it uses
    device: torch.device
    backend: str       # "nccl" (CUDA) or "gloo" (CPU)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        return f"{self.world_size} processes, {self.backend}"


def launched() -> bool:
    """True in a process that torchrun started as one of several (WORLD_SIZE > 1)."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str = "auto") -> Context:
    """Join the job torchrun described in RANK, WORLD_SIZE and LOCAL_RANK: nccl on CUDA (the GPU of LOCAL_RANK),
    gloo on the CPU."""
    rank, world_size, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if device == "auto":
        use_cuda = torch.cuda.is_available()
    elif device in ("cuda", "cpu"):
        use_cuda = device == "cuda"
        if use_cuda and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but this machine has no CUDA GPU; use --device cpu")
    else:
        raise ValueError(f"under torchrun --device is auto, cuda or cpu (each process takes the GPU of its "
                         f"LOCAL_RANK), not {device!r}")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"process {local_rank} on this machine has no GPU (it has {torch.cuda.device_count()}): "
                             "pass --nproc_per_node at most the number of GPUs")
        where, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(where)
    else:
        where, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        # A rank that fails makes torchrun stop the others; the timeout only bounds a rank stuck for another reason.
        dist.init_process_group(backend, timeout=timedelta(minutes=10),
                                **({"device_id": where} if use_cuda else {}))
    return Context(rank, world_size, local_rank, where, backend)


def teardown() -> None:
    """Leave the job (the process group), if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def check_same_settings(settings: dict, ctx: Context) -> None:
    """Raise the same ValueError on every rank unless all ranks were started with these settings."""
    gathered = [None] * ctx.world_size
    dist.all_gather_object(gathered, {k: str(v) for k, v in settings.items()})
    first = gathered[0]
    for rank, other in enumerate(gathered[1:], start=1):
        differ = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
        if differ:
            listed = "; ".join(f"{k}: {first.get(k)} on rank 0, {other.get(k)} on rank {rank}" for k in differ)
            raise ValueError(f"the {ctx.world_size} processes were started with different settings ({listed}); "
                             "start every process with the same command")


class ShardedGenerator(torch.Generator):
    """A torch.Generator whose noise train._noise draws for the whole global batch, keeping this rank's rows."""

    def __new__(cls, device: torch.device | str, rank: int, world_size: int):
        gen = super().__new__(cls, device)
        gen.shard = (rank, world_size)
        return gen


def shard(loader, ctx: Context) -> None:
    """Make `loader` serve this rank's slice of every global batch (data.batch_indices does the slicing)."""
    from . import images
    if not isinstance(loader, (data.TensorLoader, images.StreamingLoader)):
        raise ValueError(f"distributed training slices a data.TensorLoader or images.StreamingLoader, not a "
                         f"{type(loader).__name__}: every rank must draw the same order from (seed, epoch)")
    if loader.batch_size % ctx.world_size:
        raise ValueError(f"the batch size {loader.batch_size} is the global batch, cut into one slice per process: "
                         f"make it divisible by the {ctx.world_size} processes")
    loader.rank, loader.world_size = ctx.rank, ctx.world_size


def sync_batchnorm(net: nn.Module, ctx: Context) -> nn.Module:
    """net with its BatchNorm layers made SyncBatchNorm where the device supports it (in place, same parameters)."""
    if ctx.device.type not in SYNC_BN_DEVICES:
        return net  # PyTorch's SyncBatchNorm raises on CPU tensors: each rank normalises its own slice
    return nn.SyncBatchNorm.convert_sync_batchnorm(net)


def wrap(net: nn.Module, ctx: Context) -> nn.Module:
    """net inside DistributedDataParallel: gradients averaged across ranks during its backward pass."""
    # DDP also copies rank 0's buffers (BatchNorm's running statistics) to every rank before each forward.
    return DistributedDataParallel(net, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def average(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    """The mean of a tensor over all ranks (an epoch's losses), on the CPU."""
    values = values.to(ctx.device).clone()
    dist.all_reduce(values)
    return (values / ctx.world_size).cpu()
