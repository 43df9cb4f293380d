"""Stabilisers in controlled pairs: one model, the same seeds, data and budget; only the recipe differs.

Every run keeps an EMA of G (decay --ema) and is scored twice at each evaluation, with the EMA's weights
and with G's own, on the same noise: so the EMA's effect is a paired comparison inside every run, and
each variant's effect a comparison across runs that share their seeds. FID, recall, ... come from
`train.score` (the book's classifier, --eval-n samples against as many MNIST test digits).

    OMP_NUM_THREADS=1 python benchmarks/stabilisers.py --model mlp --epochs 15 --seeds 0 1 2 \
        --variants article ttur smooth noise --out runs/stabilisers-mlp.json

Prints one row per (variant, seed) as it goes, then mean and spread (min-max) over the seeds of the final
and the best FID of each variant, with the EMA and without.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gan_utils import data, metrics, models, train  # noqa: E402

# TrainConfig fields each variant changes, on top of the model's --base recipe.
VARIANTS = {
    "article": {},
    "ttur": {"lr_D": 4e-4, "lr_G": 1e-4},          # Heusel et al. 2017: D learns faster than G
    "smooth": {"label_smoothing": 0.1},             # one-sided label smoothing (Salimans et al. 2016)
    "noise": {"instance_noise": 0.1},               # instance noise, annealed to 0 (Sonderby et al. 2016)
    "ttur+smooth": {"lr_D": 4e-4, "lr_G": 1e-4, "label_smoothing": 0.1},
    # other losses on the same networks (the MLP D returns a logit, so each loss applies unchanged)
    "lsgan": {"loss": "lsgan"},                     # Mao et al. 2017: least squares
    "wgan-gp": {"loss": "wgan-gp", "lr_G": 1e-4, "lr_D": 1e-4, "beta1": 0.0, "beta2": 0.9, "k": 5},
    "slow": {"lr_G": 1e-4, "lr_D": 1e-4},           # both nets at half the article's step
    # the same recipe with another D (DCGAN family only): the key "D" holds DCGANDiscriminator's options
    "sn": {"D": {"norm": "none", "spectral_norm": True}},  # Miyato et al. 2018: SN in place of BatchNorm
    "mbstd": {"D": {"minibatch_std": True}},               # Karras et al. 2018: a batch-variety map
}


def run_one(model: str, base: str, variant: str, seed: int, args) -> dict:
    changes = dict(VARIANTS[variant])
    d_options = changes.pop("D", None)
    cfg = train.config_for(model, recipe=base, num_epochs=args.epochs, seed=seed, ema=args.ema,
                           eval_every=args.eval_every, eval_n=args.eval_n, progress=False, amp=args.amp,
                           **changes)
    train.seed_everything(seed)
    net_G, net_D = models.build(model, cfg.latent_dim)  # G's start is the same in every variant
    if d_options is not None:
        if not isinstance(net_D, models.DCGANDiscriminator) or net_D.num_classes is not None:
            raise SystemExit(f"variant {variant!r} swaps the DCGAN discriminator; {model!r} has another D")
        layout = {"width": net_D.width, "norm": net_D.norm}  # the model's own D, then the variant's change
        net_D = models.DCGANDiscriminator(net_D.img_shape, **{**layout, **d_options})
        net_D.apply(models.dcgan_init)
    loader = data.mnist_loader(batch_size=cfg.batch_size, subset=args.subset, seed=seed)
    raw = []

    def score_raw(epoch: int, history: train.History) -> None:
        if history.evals and history.evals[-1]["epoch"] == epoch + 1:  # the engine just scored the EMA
            raw.append({"epoch": epoch + 1, **train.score(net_G, cfg.eval_n, seed=cfg.seed)})

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        history = train.fit(net_G, net_D, loader, cfg, out_dir=run_dir, on_epoch_end=score_raw)
        ema_state = train.load_checkpoint(run_dir).get("ema_G")
    # the class mix of the final samples (of the EMA if kept): largest over smallest share of a digit
    final_G = copy.deepcopy(net_G)
    if ema_state:
        final_G.load_state_dict(ema_state)
    share = metrics.class_histogram(train.generate(final_G, cfg.eval_n, seed=cfg.seed))
    return {"model": model, "variant": variant, "seed": seed, "epochs": args.epochs,
            "train_s": sum(history.epoch_time), "wall_s": time.perf_counter() - t0,
            "ema": history.evals, "raw": raw, "class_ratio": float(share.max() / share.min()) if share.min() > 0 else float("inf")}


def _spread(values: list[float], digits: int = 1) -> str:
    if len(values) == 1:
        return f"{values[0]:7.{digits}f}"
    return f"{statistics.mean(values):7.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mlp")
    p.add_argument("--base", default="article", help="the recipe the variants start from: article, paper, best")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--eval-every", type=int, default=3)
    p.add_argument("--eval-n", type=int, default=2000)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--subset", type=int, default=None)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--out", default=None, help="JSON file for every curve (appended run by run)")
    args = p.parse_args()

    results = []
    out = Path(args.out) if args.out else None
    if out is not None and out.exists():
        results = json.loads(out.read_text())
    done = {(r["variant"], r["seed"], r["epochs"]) for r in results if r["model"] == args.model}
    print(f"{'variant':>12} {'seed':>4} {'FID ema':>8} {'FID raw':>8} {'best ema':>8} {'recall':>6} "
          f"{'max/min':>7} {'train s':>8}")
    for variant in args.variants:
        for seed in args.seeds:
            if (variant, seed, args.epochs) in done:
                continue
            r = run_one(args.model, args.base, variant, seed, args)
            results.append(r)
            if out is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(results, indent=1))
            last, best = r["ema"][-1], min(r["ema"], key=lambda row: row["fid"])
            print(f"{variant:>12} {seed:>4} {last['fid']:8.1f} {r['raw'][-1]['fid']:8.1f} {best['fid']:8.1f} "
                  f"{last['recall']:6.3f} {r['class_ratio']:7.2f} {r['train_s']:8.0f}", flush=True)
    print(f"\n{args.model}, {args.epochs} epochs, FID at n={args.eval_n}: mean [min-max] over seeds {args.seeds}")
    print(f"{'variant':>12} {'final, EMA':>22} {'final, raw G':>22} {'best, EMA':>22} {'recall, EMA':>12} "
          f"{'class max/min':>22}")
    for variant in args.variants:
        rows = [r for r in results if r["model"] == args.model and r["variant"] == variant
                and r["epochs"] == args.epochs and r["seed"] in args.seeds]
        if not rows:
            continue
        print(f"{variant:>12} {_spread([r['ema'][-1]['fid'] for r in rows]):>22} "
              f"{_spread([r['raw'][-1]['fid'] for r in rows]):>22} "
              f"{_spread([min(row['fid'] for row in r['ema']) for r in rows]):>22} "
              f"{statistics.mean(r['ema'][-1]['recall'] for r in rows):12.3f} "
              f"{_spread([r.get('class_ratio', float('nan')) for r in rows], 2):>22}")


if __name__ == "__main__":
    main()
