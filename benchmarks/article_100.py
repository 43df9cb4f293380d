"""The article's recipe for the article's full budget: 100 epochs of its section-5 loop and of the engine.

Chapter 6 compares the two loops for 15 epochs inside the notebook; 100 epochs of both take about two
hours of one CPU core, too long for a chapter's full run, so this script makes the record that chapter
6 reads (gan_utils/pretrained/records/article100-seed{S}.pt).

- article: the article's loop as chapter 6 runs it (torchvision DataLoader with ToTensor + Normalize,
  D ending in a Sigmoid, nn.BCELoss, labels sized to the batch: the crash fix, nothing else changed);
- engine:  gan_utils.train.fit with the article's settings (TrainConfig's defaults: logits, no EMA).

Both start from the same weights (seed 0 gives chapter 6's start) and are scored the same way after every
epoch: `train.score` (FID, IS, coverage, precision, recall of 2,000 samples on seeded noise against 2,000
MNIST test digits), plus the mean pixel distance between the 64 samples of a fixed noise batch. Each epoch
is checkpointed atomically (nets, optimizers, random state), so a stopped run resumes exactly. The merge
also scores each loop's last G as the shipped generators are scored (n = 10,000, `train.score`).

    OMP_NUM_THREADS=1 python benchmarks/article_100.py --loop article --seed 0 &
    OMP_NUM_THREADS=1 python benchmarks/article_100.py --loop engine --seed 0 &
    python benchmarks/article_100.py --merge --seed 0     # both finished: write the record
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gan_utils import checkpoints, data, models, train  # noqa: E402

RECORD_DIR = checkpoints.RECORDS_DIR
KEEP_SAMPLES = (1, 5, 15, 30, 50, 75, 100)  # epochs whose 36 fixed-noise samples the record keeps
FORMAT = "gan_utils.article100.v1"


def fixed_noise(latent_dim: int = 100) -> torch.Tensor:
    return torch.randn(64, latent_dim, generator=torch.Generator().manual_seed(0))  # chapter 6's z_fixed


def spread_of(samples: torch.Tensor) -> float:
    """Mean pixel distance between two of the 64 fixed-noise samples (in [-1, 1]); real digits: ~19.7."""
    return torch.pdist(samples.float().flatten(1)).mean().item()


def epoch_row(net_G: nn.Module, steps: dict, n_steps: int, eval_n: int) -> tuple[dict, torch.Tensor]:
    """Scores after one epoch: the last epoch's step means, the FID and friends, the fixed-noise spread."""
    def mean(key):
        return sum(steps[key][-n_steps:]) / n_steps
    row = {"loss_D": mean("loss_D"), "loss_G": mean("loss_G"), "loss_G_max": max(steps["loss_G"][-n_steps:]),
           "D_x": mean("D_x"), "D_G_z": mean("D_G_z")}
    row.update(train.score(net_G, eval_n, seed=0))
    samples = _fixed(net_G)  # (64, 1, 28, 28)
    row["spread"] = spread_of(samples)
    return row, samples


def _fixed(net_G: nn.Module) -> torch.Tensor:
    with train.eval_mode(net_G), torch.no_grad():
        return net_G(fixed_noise()).cpu()  # (64, 1, 28, 28) in [-1, 1]


def run_article(seed: int, epochs: int, eval_n: int, out: Path) -> None:
    import torchvision
    from torchvision import transforms
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    dataset = torchvision.datasets.MNIST(str(data.prepare_mnist()), train=True, transform=tf)
    loader = torch.utils.data.DataLoader(dataset, batch_size=128, shuffle=True)
    torch.manual_seed(seed)  # chapter 6: torch.manual_seed(0), then G, then D
    net_G, net_D = models.MLPGenerator(latent_dim=100), models.MLPDiscriminator()
    net_D = nn.Sequential(net_D, nn.Sigmoid())  # the article's D outputs a probability
    criterion = nn.BCELoss()
    opt_G = torch.optim.Adam(net_G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(net_D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    state_file = out / "state.pt"
    steps = {"loss_D": [], "loss_G": [], "D_x": [], "D_G_z": []}
    rows, kept, train_s = [], {}, 0.0
    if state_file.is_file():  # resume exactly: weights, Adam moments, the global random state
        state = torch.load(state_file, weights_only=True)
        net_G.load_state_dict(state["G"])
        net_D.load_state_dict(state["D"])
        opt_G.load_state_dict(state["opt_G"])
        opt_D.load_state_dict(state["opt_D"])
        torch.set_rng_state(state["rng"])
        steps = {k: v.tolist() for k, v in state["steps"].items()}
        rows, kept, train_s = state["rows"], state["kept"], state["train_s"]
        print(f"resumed after epoch {len(rows)}", flush=True)
    for epoch in range(len(rows), epochs):
        t0 = time.perf_counter()
        net_G.train()
        for real, _ in loader:
            B = real.size(0)
            real_label, fake_label = torch.ones(B, 1), torch.zeros(B, 1)
            z = torch.randn(B, 100)
            fake = net_G(z)
            out_real = net_D(real).view(B, 1)
            out_fake = net_D(fake.detach()).view(B, 1)
            loss_D = criterion(out_real, real_label) + criterion(out_fake, fake_label)
            opt_D.zero_grad()
            loss_D.backward()
            opt_D.step()
            z = torch.randn(B, 100)
            loss_G = criterion(net_D(net_G(z)).view(B, 1), real_label)
            opt_G.zero_grad()
            loss_G.backward()
            opt_G.step()
            for key, value in zip(steps, (loss_D, loss_G, out_real.mean(), out_fake.mean())):
                steps[key].append(value.item())
        train_s += time.perf_counter() - t0
        rng = torch.get_rng_state()  # scoring uses its own generators; restore to be safe
        row, samples = epoch_row(net_G, steps, len(loader), eval_n)
        torch.set_rng_state(rng)
        rows.append(row)
        if epoch + 1 in KEEP_SAMPLES:
            kept[epoch + 1] = data.from_unit_range(samples[:36])
        print(f"article epoch {epoch + 1}: FID {row['fid']:.1f} recall {row['recall']:.3f} spread "
              f"{row['spread']:.1f} D(x) {row['D_x']:.3f} D(G(z)) {row['D_G_z']:.3f}", flush=True)
        checkpoints.save_checkpoint(state_file, {
            "G": net_G.state_dict(), "D": net_D.state_dict(), "opt_G": opt_G.state_dict(),
            "opt_D": opt_D.state_dict(), "rng": torch.get_rng_state(),
            "steps": {k: torch.tensor(v) for k, v in steps.items()}, "rows": rows, "kept": kept,
            "train_s": train_s, "eval_n": eval_n})


def run_engine(seed: int, epochs: int, eval_n: int, out: Path) -> None:
    train.seed_everything(seed)
    net_G, net_D = models.MLPGenerator(latent_dim=100), models.MLPDiscriminator()
    loader = data.mnist_loader(batch_size=128, seed=seed)
    cfg = train.TrainConfig(num_epochs=epochs, eval_every=1, eval_n=eval_n, seed=seed, progress=False)
    state_file, ckpt_dir = out / "rows.pt", out / "run"
    rows, kept = [], {}
    if (ckpt_dir / checkpoints.CHECKPOINT_NAME).is_file():
        # fit writes its checkpoint before on_epoch_end writes the rows: keep the rows of the epochs the
        # checkpoint holds, and score again the one epoch a stop between the two writes may have lost
        ckpt = train.load_checkpoint(ckpt_dir)
        done = int(ckpt["epoch"])
        if state_file.is_file():
            state = torch.load(state_file, weights_only=True)
            rows, kept = state["rows"][:done], {e: s for e, s in state["kept"].items() if e <= done}
        if len(rows) == done - 1:
            last_G = models.MLPGenerator(latent_dim=100)
            last_G.load_state_dict(ckpt["net_G"])
            steps = {k: v.tolist() for k, v in ckpt["history"]["steps"].items()}
            row, samples = epoch_row(last_G, steps, len(loader), eval_n)
            rows.append(row)
            if done in KEEP_SAMPLES:
                kept[done] = data.from_unit_range(samples[:36])
        if len(rows) != done:
            raise SystemExit(f"{state_file} has {len(rows)} epochs, the checkpoint {done}: delete {out} and rerun")

    def on_epoch_end(epoch: int, history: train.History) -> None:
        n = len(loader)
        row, samples = epoch_row(net_G, history.steps, n, eval_n)
        rows.append(row)
        if epoch + 1 in KEEP_SAMPLES:
            kept[epoch + 1] = data.from_unit_range(samples[:36])
        print(f"engine epoch {epoch + 1}: FID {row['fid']:.1f} recall {row['recall']:.3f} spread "
              f"{row['spread']:.1f} D(x) {row['D_x']:.3f} D(G(z)) {row['D_G_z']:.3f}", flush=True)
        checkpoints.save_checkpoint(state_file, {"rows": rows, "kept": kept, "eval_n": eval_n,
                                                 "train_s": sum(history.epoch_time)})

    train.fit(net_G, net_D, loader, cfg, out_dir=ckpt_dir, resume=True, on_epoch_end=on_epoch_end)


def merge(seed: int, root: Path, epochs: int) -> Path:
    record = {"format": FORMAT, "seed": seed, "loops": {}}
    for loop, name in (("article", "state.pt"), ("engine", "rows.pt")):
        state = torch.load(root / f"{loop}-s{seed}" / name, weights_only=True)
        rows = state["rows"]
        if len(rows) != epochs:
            raise SystemExit(f"{loop} seed {seed} has {len(rows)} of {epochs} epochs: let it finish (it resumes)")
        eval_n = int(state.get("eval_n", 2000))  # the seed-0 runs stored none; they used 2,000
        if record.setdefault("eval_n", eval_n) != eval_n:
            raise SystemExit(f"the two loops were scored with different --eval-n ({record['eval_n']}, {eval_n})")
        # the last epoch's G, scored as the shipped generators are: n = 10,000, noise seed 0
        weights = state["G"] if loop == "article" else train.load_checkpoint(root / f"{loop}-s{seed}" / "run")["net_G"]
        net_G = models.MLPGenerator(latent_dim=100)
        net_G.load_state_dict(weights)
        record["loops"][loop] = {
            "rows": {k: torch.tensor([r[k] for r in rows], dtype=torch.float64) for k in rows[0]},
            "samples": {int(e): s for e, s in state["kept"].items()}, "train_s": float(state["train_s"]),
            "final_10k": train.score(net_G, 10_000, seed=0)}
        print(loop, len(rows), "epochs; last epoch at n=10,000:", record["loops"][loop]["final_10k"])
    return checkpoints.save_checkpoint(RECORD_DIR / f"article100-seed{seed}.pt", record)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loop", choices=["article", "engine"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--eval-n", type=int, default=2000)
    p.add_argument("--root", default="runs/article100")
    p.add_argument("--merge", action="store_true", help="write the record from two finished runs")
    args = p.parse_args()
    root = Path(args.root)
    if args.merge:
        print("wrote", merge(args.seed, root, args.epochs))
        return
    if args.loop is None:
        p.error("give --loop article or --loop engine (or --merge)")
    out = root / f"{args.loop}-s{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    (run_article if args.loop == "article" else run_engine)(args.seed, args.epochs, args.eval_n, out)


if __name__ == "__main__":
    main()
