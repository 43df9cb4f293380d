"""Standing statistics on trained generators: does re-estimating BatchNorm's statistics help?

A generator sampled from an EMA of G's weights carries the live G's BatchNorm running statistics, measured
under bf16 autocast where training used it (see `train.standing_stats`). This script scores each shipped
generator named by --models (and the best weights of each run folder named by --runs) as it is and again
after `train.standing_stats` (--batches batches of 128 of its own fp32 samples) with three estimation
seeds, all at n = --n against as many MNIST test digits (the book's classifier, seed 0 sampling noise).
Chapter 10.11 shows the table; the best recipes of the cGAN and conv, the two it helped, take the step.

    OMP_NUM_THREADS=1 python benchmarks/standing_stats.py [--models cgan dcgan lsgan conv wgan-gp] [--n 10000]
    OMP_NUM_THREADS=1 python benchmarks/standing_stats.py --models --runs runs/train   # a run's best.pt

The shipped files were trained before the recipes had the step, and stay as they were trained.
`--apply cgan` writes the statistics of estimation seed --apply-seed into gan_utils/pretrained/cgan.pt,
keeps the old file as cgan.pt.bak, and records the step in the file's metadata (`standing_stats`: the
settings and the file's FID at n = --n before and after, scored from the written fp16 file); the stored
config and training curve stay those of the training run.

Prints one row per (generator, variant), then each generator's change in FID: min-max over the seeds.
A generator without BatchNorm (the MLP) has nothing to re-estimate and is refused.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gan_utils import checkpoints, train  # noqa: E402


def has_batchnorm(net_G: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net_G.modules())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["cgan", "dcgan", "lsgan", "conv", "wgan-gp"],
                        help="shipped generators (python -m gan_utils sample --pretrained NAME)")
    parser.add_argument("--runs", nargs="*", default=[], help="run folders: their best.pt is scored")
    parser.add_argument("--n", type=int, default=10_000, help="samples per score (and as many test digits)")
    parser.add_argument("--batches", type=int, default=100, help="batches of 128 samples per estimate")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="estimation seeds")
    parser.add_argument("--apply", nargs="+", default=[], metavar="NAME",
                        help="write the re-estimated statistics into these shipped files")
    parser.add_argument("--apply-seed", type=int, default=1, help="the estimation seed --apply writes")
    args = parser.parse_args()
    unknown = set(args.apply) - set(args.models)
    if unknown:
        raise SystemExit(f"--apply {' '.join(sorted(unknown))}: score it first (add it to --models)")
    generators = [(name, lambda name=name: train.load_pretrained(name)[0]) for name in args.models]
    generators += [(run, lambda run=run: checkpoints.load_generator(run, which="best")[0]) for run in args.runs]
    changes = {}
    print("| generator | BatchNorm statistics | FID | precision | recall |")
    print("| --- | --- | --- | --- | --- |")
    for name, load in generators:
        shipped = load()
        if not has_batchnorm(shipped):
            raise SystemExit(f"{name}: its generator has no BatchNorm, so there are no statistics to re-estimate")
        t0 = time.perf_counter()
        base = train.score(shipped, args.n, seed=0)
        print(f"| {name} | as it is (the live G's) | {base['fid']:.2f} | {base['precision']:.3f} | "
              f"{base['recall']:.3f} |", flush=True)
        changes[name] = []
        for seed in args.seeds:
            net_G = train.standing_stats(copy.deepcopy(shipped), args.batches, 128, seed=seed)
            row = train.score(net_G, args.n, seed=0)
            changes[name].append(row["fid"] - base["fid"])
            print(f"| {name} | standing, seed {seed} | {row['fid']:.2f} | {row['precision']:.3f} | "
                  f"{row['recall']:.3f} |", flush=True)
        print(f"<!-- {name}: {time.perf_counter() - t0:.0f} s -->", file=sys.stderr)
    print()
    for name, deltas in changes.items():
        print(f"{name}: FID change {min(deltas):+.2f} to {max(deltas):+.2f} over {len(deltas)} estimation seeds")
    for name in args.apply:
        apply(name, args.batches, args.apply_seed, args.n)


def apply(name: str, batches: int, seed: int, n: int) -> None:
    """Write standing statistics into the shipped file NAME.pt (fp16, like every shipped file)."""
    path = checkpoints.shipped_file(checkpoints.PRETRAINED_DIR, name, "pretrained generator")
    net_G, info = train.load_pretrained(name)
    if info.get("standing_stats"):
        raise SystemExit(f"{path} already holds standing statistics ({info['standing_stats']})")
    before = train.score(net_G, n, seed=0)["fid"]
    train.standing_stats(net_G, batches, 128, seed=seed)
    # score what the file will hold: the statistics rounded to fp16, as save_generator(half=True) stores them
    net_G.load_state_dict(checkpoints.float_weights(checkpoints.cpu_weights(net_G.state_dict(), half=True)))
    after = train.score(net_G, n, seed=0)["fid"]
    extra = {k: v for k, v in info.items() if k not in ("format", "model", "latent_dim", "config")}
    settings = {"batches": batches, "batch_size": 128, "seed": seed, "n": n, "fid_before": before, "fid_after": after}
    checkpoints.keep_backup(path)
    checkpoints.save_generator(path, net_G, info["config"], half=True, **extra, standing_stats=settings)
    print(f"{path}: standing statistics written (seed {seed}); FID at n = {n}: {before:.2f} -> {after:.2f}")

if __name__ == "__main__":
    main()
