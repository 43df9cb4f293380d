"""Train the book's MNIST classifier, whose features the FID/IS/precision/recall in `gan_utils.metrics` use.

    python scripts/train_classifier.py            # ~3 epochs on CPU, writes gan_utils/assets/mnist_classifier.pt

Real MNIST from `gan_utils.data` in [-1, 1] (the book's range), seeded, Adam with a one-cycle learning rate,
random shifts of up to `--shift` pixels as light augmentation. The weights are stored as an fp16 state_dict
inside a plain dict, so `torch.load(path, weights_only=True)` reads them; the test accuracy recorded in the
file is measured after the fp16 round trip, on all 10,000 test images.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from gan_utils import data, metrics  # noqa: E402


def random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by its own (dy, dx) in [-max_shift, max_shift], filling with background (-1)."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)                    # (N, 1, H+2s, W+2s)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]                 # (N, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]                 # (N, 1, W)
    return padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)  # (N, 1, H, W)


@torch.no_grad()
def accuracy_on(net: metrics.MNISTClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy on (N, 1, 28, 28) images in [-1, 1]."""
    net.eval()
    correct = sum(int((net(x).argmax(1) == y).sum()) for x, y in zip(images.split(1000), labels.split(1000)))
    return correct / len(labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--shift", type=int, default=2, help="max random translation in pixels (0: off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subset", type=int, default=None, help="first n training images only (smoke tests)")
    parser.add_argument("--target", type=float, default=0.99, help="refuse to save below this test accuracy")
    parser.add_argument("--out", type=Path, default=metrics.ASSET_PATH)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    train_images, train_labels = data.load_mnist(train=True)
    train_images, train_labels = train_images[:args.subset], train_labels[:args.subset]
    test_u8, test_labels = data.load_mnist(train=False)
    test_images = data.to_unit_range(test_u8).unsqueeze(1)             # (10000, 1, 28, 28)
    loader = data.TensorLoader(train_images, train_labels, batch_size=args.batch_size, shuffle=True,
                               seed=args.seed)                         # yields x in [-1, 1]
    net = metrics.MNISTClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * len(loader))
    gen = torch.Generator().manual_seed(args.seed + 1)
    print(f"MNISTClassifier: {sum(p.numel() for p in net.parameters()):,} parameters; "
          f"{len(train_labels):,} train / {len(test_labels):,} test images; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)

    start = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        total, seen = 0.0, 0
        for x, y in loader:
            x = random_shift(x, args.shift, gen)
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(y)
            seen += len(y)
        acc = accuracy_on(net, test_images, test_labels)
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {total / seen:.4f}, test accuracy {acc:.4f}, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    train_time = time.perf_counter() - start

    # Store fp16 (half the bytes) and measure the accuracy of exactly what is stored.
    state_fp16 = {k: v.detach().half().contiguous() for k, v in net.state_dict().items()}
    check = metrics.MNISTClassifier()
    check.load_state_dict({k: v.float() for k, v in state_fp16.items()})
    acc = accuracy_on(check, test_images, test_labels)
    print(f"test accuracy after the fp16 round trip: {acc:.4f} ({round(acc * len(test_labels))}/"
          f"{len(test_labels)}); training took {train_time:.0f} s on CPU")
    if acc < args.target:
        print(f"below the target {args.target}; not saving. Train longer (--epochs).", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "format": metrics.CLASSIFIER_FORMAT,
        "state_dict": state_fp16,
        "test_accuracy": float(acc),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "shift": args.shift,
        "seed": args.seed,
        "train_seconds": round(train_time, 1),
        "torch_version": str(torch.__version__),
    }, args.out)
    metrics.load_classifier(path=args.out)  # the file must load with torch.load(weights_only=True)
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
