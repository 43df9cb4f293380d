"""Sample quality at a fixed training budget: every model of the book, the same number of D steps, one table.

Each model (mlp, conv, dcgan, cgan, lsgan, wgan, wgan-gp) is trained from scratch with the shared engine,
one after another in one process, on the same device and the same real MNIST images:

- recipe:  gan_utils.train.config_for(name) (the paper's optimiser, loss, k and clipping / penalty);
- data:    gan_utils.data.mnist_loader (the first --subset training images, batch 128), cycled so that every
           model gets exactly --steps discriminator steps (for wgan and wgan-gp, k = 5: one G step per 5);
- loop:    gan_utils.train.fit (its timing: train time and img/s count the real images through D);
- scores:  gan_utils.metrics.evaluate on --n samples against --n MNIST test images, the same n for every
           model (FID is biased upward at small n, so only numbers at equal n compare).

The last row, "real (floor)", scores --n random *training* images against the same test reference: what a
perfect generator would get at this n. A fixed, short budget ranks how fast each recipe learns, not how good
it gets; the pretrained generators (chapter 10) rank the converged models. Usage:
    python benchmarks/quality.py [--steps 400] [--subset N] [--amp] [--models mlp dcgan ...] [--n 2000]
                                 [--device auto] [--seed 0]
    python benchmarks/quality.py --pretrained [--n 10000]   # chapter 10's table of the shipped generators

With --pretrained nothing is trained: the shipped generators are scored at --n (10,000 in chapter 10, seed 0),
with the recipe, epochs and CPU minutes recorded in each file: the table chapter 10 shows.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from gan_utils import data, metrics, models, train  # noqa: E402

MODELS = ["mlp", "conv", "dcgan", "cgan", "lsgan", "wgan", "wgan-gp"]


class StepLoader:
    """Exactly `steps` batches of a TensorLoader as one epoch of `fit`, starting a new pass when one ends.

    `fit` counts in epochs; a budget in D steps must not depend on the size of the training set.
    """

    def __init__(self, loader: data.TensorLoader, steps: int):
        self.loader, self.steps = loader, steps
        self.device, self.labels = loader.device, loader.labels  # what fit checks on its loader

    def __len__(self) -> int:
        return self.steps

    def set_epoch(self, epoch: int) -> None:
        pass  # the inner loader's own epoch counter advances at each of its passes

    def __iter__(self):
        done = 0
        while done < self.steps:
            for batch in self.loader:
                yield batch
                done += 1
                if done == self.steps:
                    return


def train_one(name: str, steps: int, subset: int, batch_size: int, amp: bool, device: torch.device,
              seed: int) -> tuple[torch.nn.Module, train.History]:
    """Train a fresh pair of model `name` for `steps` D steps; returns (net_G, history)."""
    train.seed_everything(seed)
    net_G, net_D = models.build(name)
    loader = data.mnist_loader(batch_size=batch_size, subset=subset, device=device, seed=seed)
    cfg = train.config_for(name, num_epochs=1, batch_size=batch_size, amp=amp, device=str(device),
                           seed=seed, progress=False)
    history = train.fit(net_G, net_D, StepLoader(loader, steps), cfg)
    return net_G, history


def pretrained_table(names: list[str], n: int, seed: int) -> None:
    """Score every shipped generator at n against n test digits; print chapter 10's table."""
    t_start = time.perf_counter()
    rows = []
    for name in names:
        net_G, info = train.load_pretrained(name)
        scores = train.score(net_G, n, seed=seed)  # the book's canonical evaluation
        recipe = train.recipe_label(name, info["config"])
        rows.append((name, info["epochs"], info["train_seconds"] / 60, recipe, scores))
    floor = metrics.real_floor(n, seed=seed)
    print(f"{'model':>14} {'epochs':>6} {'CPU min':>7} {'recipe':>22} {'FID':>7} {'IS':>5} {'cover':>5} "
          f"{'prec':>5} {'recall':>6}")
    for name, epochs, minutes, recipe, s in sorted(rows, key=lambda r: r[-1]["fid"]):
        print(f"{name:>14} {epochs:6d} {minutes:7.1f} {recipe:>22} {s['fid']:7.2f} {s['is']:5.2f} "
              f"{s['coverage']:5.1f} {s['precision']:5.3f} {s['recall']:6.3f}")
    print(f"{'real (floor)':>14} {'':>6} {'':>7} {'':>6} {floor['fid']:7.2f} {floor['is']:5.2f} "
          f"{floor['coverage']:5.1f} {floor['precision']:5.3f} {floor['recall']:6.3f}")
    print(f"metrics at n={n} against MNIST test images (seed {seed}); total {time.perf_counter() - t_start:.0f} s")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400, help="D steps per model (batches of real images)")
    parser.add_argument("--subset", type=int, default=None,
                        help="train on the first N MNIST images (default: steps x batch, at most 60000)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast where native (CUDA >= 8.0; CPUs with AMX or AVX512-BF16, where it helps the conv models)")
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS, metavar="NAME",
                        help=f"any of: {' '.join(MODELS)}")
    parser.add_argument("--n", type=int, default=None,
                        help="samples (and test images) for every metric (default 2000; 10000 with --pretrained)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrained", action="store_true",
                        help="score the shipped generators instead of training (chapter 10's table; --n 10000)")
    args = parser.parse_args(argv)
    if args.pretrained:
        pretrained_table(args.models, args.n or 10_000, args.seed)
        return
    args.n = args.n or 2000
    if args.steps < 1 or args.n < 10 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be >= 1 and --n >= 10")
    device = train.pick_device(args.device)
    subset = min(args.subset or args.steps * args.batch_size, 60000)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"steps={args.steps} batch={args.batch_size} subset={subset} amp={args.amp} n={args.n} "
          f"seed={args.seed} device={name} torch={torch.__version__}", flush=True)

    rows = []
    t_start = time.perf_counter()
    for model in args.models:
        net_G, history = train_one(model, args.steps, subset, args.batch_size, args.amp, device, args.seed)
        seconds = sum(history.epoch_time)
        seen = round(history.img_per_s[-1] * history.epoch_time[-1])  # real images through D
        scores = train.score(net_G, args.n, seed=args.seed + 1)
        rows.append((model, args.steps, seen, seconds, seen / seconds, scores))
        print(f"  {model}: trained in {seconds:.1f} s, FID {scores['fid']:.2f}", flush=True)
    floor = metrics.real_floor(args.n, seed=args.seed)

    print(f"\n{'model':>14} {'steps':>6} {'images':>8} {'train s':>8} {'img/s':>7} {'FID':>7} {'IS':>5} "
          f"{'cover':>5} {'prec':>5} {'recall':>6}")
    for model, steps, seen, seconds, rate, s in rows:
        print(f"{model:>14} {steps:6d} {seen:8d} {seconds:8.1f} {rate:7.0f} {s['fid']:7.2f} {s['is']:5.2f} "
              f"{s['coverage']:5.1f} {s['precision']:5.3f} {s['recall']:6.3f}")
    print(f"{'real (floor)':>14} {'':>6} {'':>8} {'':>8} {'':>7} {floor['fid']:7.2f} {floor['is']:5.2f} "
          f"{floor['coverage']:5.1f} {floor['precision']:5.3f} {floor['recall']:6.3f}")
    print(f"metrics at n={args.n} against MNIST test images; total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
