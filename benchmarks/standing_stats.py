"""Standing statistics on the shipped generators: does re-estimating BatchNorm's statistics help?

Each shipped generator is an EMA of G's weights that carries the live G's BatchNorm running statistics,
measured under bf16 autocast in training (see `train.standing_stats`). This script scores each one as it
ships and again after `train.standing_stats` (--batches batches of 128 of its own fp32 samples) with three
estimation seeds, all at n = --n against as many MNIST test digits (the book's classifier, seed 0 noise).
Chapter 10.11 shows the table, and the cGAN's recipe takes the step where it helped (its shipped file was
trained before the recipe had it: `--apply cgan` writes the statistics of estimation seed --apply-seed into
it, keeps the old file as cgan.pt.bak, and records the step and the file's FID at n = 2000, as training
scores it, in its metadata).

    OMP_NUM_THREADS=1 python benchmarks/standing_stats.py [--models cgan dcgan lsgan conv wgan-gp] [--n 10000]
    OMP_NUM_THREADS=1 python benchmarks/standing_stats.py --models cgan --apply cgan

Prints one row per (model, variant), then each model's change in FID: min-max over the estimation seeds.
A generator without BatchNorm (the MLP) has nothing to re-estimate and is refused.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gan_utils import checkpoints, metrics, train  # noqa: E402


def score(net_G: nn.Module, n: int) -> dict:
    fake = train.generate(net_G, n, seed=0, labels=train.cycled_labels(net_G, n))
    return metrics.evaluate(fake, n=n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cgan", "dcgan", "lsgan", "conv", "wgan-gp"])
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
    changes = {}
    print("| model | BatchNorm statistics | FID | precision | recall |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.models:
        shipped, _ = train.load_pretrained(name)
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in shipped.modules()):
            raise SystemExit(f"{name}: its generator has no BatchNorm, so there are no statistics to re-estimate")
        t0 = time.perf_counter()
        base = score(shipped, args.n)
        print(f"| {name} | as shipped (the live G's) | {base['fid']:.2f} | {base['precision']:.3f} | "
              f"{base['recall']:.3f} |", flush=True)
        changes[name] = []
        for seed in args.seeds:
            net_G = train.standing_stats(copy.deepcopy(shipped), args.batches, 128, seed=seed)
            row = score(net_G, args.n)
            changes[name].append(row["fid"] - base["fid"])
            print(f"| {name} | standing, seed {seed} | {row['fid']:.2f} | {row['precision']:.3f} | "
                  f"{row['recall']:.3f} |", flush=True)
        print(f"<!-- {name}: {time.perf_counter() - t0:.0f} s -->", file=sys.stderr)
    print()
    for name, deltas in changes.items():
        print(f"{name}: FID change {min(deltas):+.2f} to {max(deltas):+.2f} over {len(deltas)} estimation seeds")
    for name in args.apply:
        apply(name, args.batches, args.apply_seed)


def apply(name: str, batches: int, seed: int) -> None:
    """Write standing statistics into the shipped file NAME.pt (fp16, like every shipped file)."""
    path = checkpoints.shipped_file(checkpoints.PRETRAINED_DIR, name, "pretrained generator")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("standing_stats"):
        raise SystemExit(f"{path} already holds standing statistics ({state['standing_stats']})")
    net_G, info = train.load_pretrained(name)
    train.standing_stats(net_G, batches, 128, seed=seed)
    eval_n = int(info.get("eval_n", 2000))
    fid = train.score(net_G, eval_n, seed=int(info["config"].get("seed", 0)))["fid"]  # as fit scores it
    extra = {k: v for k, v in info.items() if k not in ("format", "model", "latent_dim", "config", "fid")}
    config = {**info["config"], "standing_stats": batches}
    backup = path.with_name(path.name + ".bak")
    payload = path.read_bytes()
    checkpoints.write_atomic(backup, lambda f: f.write(payload))
    checkpoints.save_generator(path, net_G, config, half=True, **extra, fid=fid, fid_before_standing_stats=info["fid"],
                               standing_stats={"batches": batches, "batch_size": 128, "seed": seed})
    print(f"{path}: standing statistics written (seed {seed}); FID at n = {eval_n} {info['fid']:.2f} -> {fid:.2f}")


if __name__ == "__main__":
    main()
