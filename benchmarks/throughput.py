"""Training throughput: the article's section-5 loop vs the gan_utils engine vs a bare compute loop.

All three train the same MLP pair (G 100-256-512-1024-784, D 784-512-256-1) on real MNIST, batch 128,
Adam(2e-4, (0.5, 0.999)), on the same device, in one process, one after another:

- article: torchvision DataLoader with ToTensor + Normalize, D ending in Sigmoid, nn.BCELoss with labels
  sized to the batch (the crash fix, nothing else changed);
- engine:  gan_utils.train.fit with its history, progress bar (to /dev/null) and a checkpoint per epoch;
- bare:    the engine's math with the data already one float tensor in memory and nothing else; the ceiling.

Prints images/s of each and the ratios. Usage:
    python benchmarks/throughput.py [--model mlp|conv|dcgan] [--images 30000] [--device auto] [--repeats 2] [--amp]

--amp adds the engine with bf16 autocast. On a CPU without native bf16 (no AMX, no AVX512-BF16), where
amp=True trains in fp32, it measures bf16 forced on instead: what emulated bf16 would cost there.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from unittest import mock

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from gan_utils import data, models, train  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def article_loop(model: str, num_images: int, device: torch.device) -> float:
    """The article's loop: per-image PIL transforms in a DataLoader, Sigmoid + BCELoss."""
    import torchvision
    from torchvision import transforms
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    dataset = torchvision.datasets.MNIST(str(data.prepare_mnist()), train=True, transform=tf)
    dataset = torch.utils.data.Subset(dataset, range(num_images))
    loader = torch.utils.data.DataLoader(dataset, batch_size=128, shuffle=True)
    train.seed_everything(0)
    net_G, net_D = models.build(model)
    net_D = nn.Sequential(net_D, nn.Sigmoid()).to(device)  # the article's D outputs a probability
    net_G = net_G.to(device)
    criterion = nn.BCELoss()
    opt_G = torch.optim.Adam(net_G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(net_D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    sync(device)
    t0 = time.perf_counter()
    for real, _ in loader:
        real = real.to(device)
        B = real.size(0)
        real_label = torch.ones(B, device=device)
        fake_label = torch.zeros(B, device=device)
        z = torch.randn(B, 100, device=device)
        fake = net_G(z)
        loss_D = criterion(net_D(real), real_label) + criterion(net_D(fake.detach()), fake_label)
        opt_D.zero_grad()
        loss_D.backward()
        opt_D.step()
        z = torch.randn(B, 100, device=device)
        loss_G = criterion(net_D(net_G(z)), real_label)
        opt_G.zero_grad()
        loss_G.backward()
        opt_G.step()
    sync(device)
    return num_images / (time.perf_counter() - t0)


def article_data_only(num_images: int) -> float:
    """Only the article's input pipeline: PIL -> ToTensor -> Normalize -> batches, no training."""
    import torchvision
    from torchvision import transforms
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    dataset = torchvision.datasets.MNIST(str(data.prepare_mnist()), train=True, transform=tf)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, range(num_images)), batch_size=128,
                                         shuffle=True)
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return num_images / (time.perf_counter() - t0)


def engine_data_only(num_images: int, device: torch.device) -> float:
    """Only the engine's input pipeline: index a uint8 tensor on the device, scale to [-1, 1]."""
    loader = data.mnist_loader(batch_size=128, subset=num_images, device=device)
    sync(device)
    t0 = time.perf_counter()
    for x, _ in loader:
        pass
    sync(device)
    return num_images / (time.perf_counter() - t0)


def engine_loop(model: str, num_images: int, device: torch.device, **cfg_overrides) -> float:
    """gan_utils.train.fit with everything on: history, progress bar, checkpoint per epoch."""
    train.seed_everything(0)
    net_G, net_D = models.build(model)
    loader = data.mnist_loader(batch_size=128, subset=num_images, device=device)
    cfg = train.TrainConfig(model=model, num_epochs=1, device=str(device), progress=True, **cfg_overrides)
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stderr(io.StringIO()):
        sync(device)
        t0 = time.perf_counter()  # the whole call: set-up, checks, history, sample grid and checkpoint write
        train.fit(net_G, net_D, loader, cfg, out_dir=out)
        sync(device)
        return num_images / (time.perf_counter() - t0)


def bare_loop(model: str, num_images: int, device: torch.device) -> float:
    """The engine's math and nothing else: one in-memory float tensor, no history, no checks."""
    images, _ = data.load_mnist()
    images = data.to_unit_range(images[:num_images]).unsqueeze(1).to(device)  # (N, 1, 28, 28)
    train.seed_everything(0)
    net_G, net_D = models.build(model)
    net_G, net_D = net_G.to(device), net_D.to(device)
    opt_G = torch.optim.Adam(net_G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(net_D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    softplus = nn.functional.softplus
    sync(device)
    t0 = time.perf_counter()
    order = torch.randperm(num_images, device=device)
    for start in range(0, num_images, 128):
        real = images[order[start:start + 128]]
        B = real.size(0)
        with torch.no_grad():
            fake = net_G(torch.randn(B, 100, device=device))
        loss_D = softplus(-net_D(real)).mean() + softplus(net_D(fake)).mean()
        opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        opt_D.step()
        net_D.requires_grad_(False)
        loss_G = softplus(-net_D(net_G(torch.randn(B, 100, device=device)))).mean()
        opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        opt_G.step()
        net_D.requires_grad_(True)
    sync(device)
    return num_images / (time.perf_counter() - t0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mlp", choices=["mlp", "conv", "dcgan"])
    parser.add_argument("--images", type=int, default=30000, help="images per measured pass")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=2, help="passes of each loop; the best one counts")
    parser.add_argument("--amp", action="store_true", help="engine with bf16 autocast as well")
    args = parser.parse_args(argv)
    device = train.pick_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"model={args.model} images/pass={args.images} batch=128 device={name} torch={torch.__version__}")
    loops = {"article": lambda: article_loop(args.model, args.images, device),
             "engine": lambda: engine_loop(args.model, args.images, device),
             "bare": lambda: bare_loop(args.model, args.images, device)}
    if args.amp and train.amp_dtype(device) is not None:
        loops["engine+bf16"] = lambda: engine_loop(args.model, args.images, device, amp=True)
    elif args.amp and device.type != "cpu":
        print(f"--amp: the engine's autocast is fp32 on {device.type}; no bf16 row")
    elif args.amp:  # what amp=True would cost if the engine did not fall back to fp32 here
        print("this CPU has no native bf16: amp=True trains in fp32; measuring bf16 forced on, as emulated")

        def forced_bf16() -> float:
            with mock.patch.object(train, "amp_dtype", lambda device: torch.bfloat16):
                return engine_loop(args.model, args.images, device, amp=True)
        loops["engine+bf16"] = forced_bf16
    bare_loop(args.model, min(args.images, 2048), device)  # warm-up: allocator, kernels, data in the page cache
    best = {k: 0.0 for k in loops}
    for _ in range(args.repeats):  # interleaved, so a slow moment of the machine hits every loop alike
        for k, fn in loops.items():
            best[k] = max(best[k], fn())
    for k, v in best.items():
        print(f"{k:>12}: {v:9,.0f} img/s")
    # Share of a training pass spent producing batches: (time for data alone) / (time for the whole pass).
    share_article = best["article"] / max(article_data_only(args.images) for _ in range(args.repeats))
    share_engine = best["engine"] / max(engine_data_only(args.images, device) for _ in range(args.repeats))
    print(f"data loading share of the pass: article {share_article:.1%}, engine {share_engine:.1%}")
    print(f"engine / bare    = {best['engine'] / best['bare']:.3f}  (target >= 0.90)")
    print(f"engine / article = {best['engine'] / best['article']:.2f}x")
    if "engine+bf16" in best:
        print(f"engine+bf16 / engine = {best['engine+bf16'] / best['engine']:.2f}x")


if __name__ == "__main__":
    main()
