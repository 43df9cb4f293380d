"""Checkpoints: a run's state on disk, written atomically, loaded with `weights_only=True`.

Two file kinds, each marked with a format string: a run's `checkpoint.pt` (both nets, both optimizers,
the history and the fixed noise: everything an exact resume needs) and a shipped generator (fp16 weights
of G and how they were trained). The training loop is in `train`; this module only reads and writes.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

CHECKPOINT_FORMAT = "gan_utils.checkpoint.v1"
CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"  # beside checkpoint.pt: G's weights at the lowest FID so far (train.fit with eval_every)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupted or not one of ours."""


# --- run checkpoints --------------------------------------------------------------------------------

def save_checkpoint(path: Path | str, state: dict) -> Path:
    """Write atomically: a temporary file in the same folder, flushed, then renamed over the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # a crash leaves either the old checkpoint or the new one, never half of one
    return path


def _load_ours(path: Path, file_format: str, map_location, unreadable: str, foreign: str) -> dict:
    """torch.load with weights_only=True (no arbitrary unpickling) and a check of our format marker."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(unreadable.format(path=path, error=type(exc).__name__)) from None
    if not isinstance(state, dict) or state.get("format") != file_format:
        raise CheckpointError(foreign.format(path=path))
    return state


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict:
    """Load with `weights_only=True` (no arbitrary unpickling) and check that it is one of ours."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train first "
                              f"(python -m gan_utils train --out {path.parent}) or check the path")
    return _load_ours(
        path, CHECKPOINT_FORMAT, map_location,
        unreadable="{path} cannot be read as a gan_utils checkpoint: it is truncated, corrupted or was written "
                   "by another program ({error}). Delete it and train again, or resume from another run.",
        foreign=f"{{path}} is a torch file but not a gan_utils checkpoint (no '{CHECKPOINT_FORMAT}' marker); "
                "pass the checkpoint.pt of a run made by gan_utils.train")


def _build_generator(model: str, latent_dim: int, state_dict: dict, source: Path | str,
                     device: str | torch.device = "cpu") -> nn.Module:
    """net_G of a model name with the given weights, in eval mode, on `device`."""
    from . import models
    if model not in models.BUILDERS:
        raise CheckpointError(f"{source} was trained with model {model!r}, which this version of "
                              f"gan_utils does not know (known: {', '.join(models.BUILDERS)})")
    net_G, _ = models.build(model, latent_dim)
    net_G.load_state_dict(state_dict)
    return net_G.to(device).eval()


def _run_weights(state: dict) -> dict:
    """G's weights of a run's checkpoint: the EMA's when the run kept one (what it sampled from)."""
    return state.get("ema_G") or state["net_G"]


def load_generator(path: Path | str, map_location: str | torch.device = "cpu", which: str = "last") -> tuple[nn.Module, dict]:
    """Rebuild G of a run: which='last' (the checkpoint; its EMA when kept) or 'best' (lowest FID, best.pt).

    Returns (net_G in eval mode, config dict).
    """
    if which not in ("last", "best"):
        raise ValueError(f"which must be 'last' or 'best', got {which!r}")
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    if which == "best":
        net_G, info = load_generator_file(folder / BEST_NAME, map_location,
                                          missing=f"no {BEST_NAME} in {folder}: the run was trained without "
                                                  "eval_every (--eval-every); use the last weights instead")
        return net_G, info["config"]
    state = load_checkpoint(path, map_location="cpu")  # whatever device wrote it; the net moves at the end
    cfg = state["config"]
    return _build_generator(cfg.get("model"), cfg["latent_dim"], _run_weights(state), path, map_location), cfg


# --- generator files: best.pt of a run, and the pretrained generators shipped with the package ----------

PRETRAINED_FORMAT = "gan_utils.generator.v1"
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


def save_generator(path: Path | str, net_G: nn.Module | dict, config: dict, *, half: bool = False, **info) -> Path:
    """Write G's weights with how they were trained (config, epochs, FID, ...): nothing else, no optimizer."""
    weights = net_G.state_dict() if isinstance(net_G, nn.Module) else net_G
    weights = {k: (v.detach().cpu().half() if half else v.detach().cpu()) if v.is_floating_point() else v.detach().cpu()
               for k, v in weights.items()}
    return save_checkpoint(path, {"format": PRETRAINED_FORMAT, "model": config["model"],
                                  "latent_dim": config["latent_dim"], "state_dict": weights, "config": config, **info})


def load_generator_file(path: Path | str, map_location: str | torch.device = "cpu", *,
                        missing: str = "") -> tuple[nn.Module, dict]:
    """A generator file (best.pt, a shipped generator), fp32, in eval mode on `map_location`; (net_G, info)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(missing or f"no generator file at {path}")
    state = _load_ours(path, PRETRAINED_FORMAT, "cpu",
                       unreadable="{path} is unreadable ({error}); train or reinstall again",
                       foreign="{path} is not a gan_utils generator file")
    weights = {k: v.float() if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    info = {k: v for k, v in state.items() if k != "state_dict"}
    return _build_generator(state["model"], state["latent_dim"], weights, path, map_location), info


def export_generator(run: Path | str, path: Path | str, which: str = "best") -> Path:
    """Write G of a run as a small fp16 file: its best-FID weights (best.pt) when it has them, else the last.

    The file records the recipe (config), epochs, training seconds, the run's FID curve (`evals`) and, for
    best weights, the FID they scored.
    """
    state = load_checkpoint(run)
    folder = Path(run) if Path(run).is_dir() else Path(run).parent
    cfg, history = state["config"], state["history"]
    info = {"epochs": int(state["epoch"]), "device": history.get("device", ""),
            "evals": history.get("evals", torch.empty(0, 6))}  # the FID curve: rows of train.EVAL_KEYS
    weights = _run_weights(state)
    if which == "best" and (folder / BEST_NAME).is_file():
        net_G, best = load_generator_file(folder / BEST_NAME)
        weights, info = net_G.state_dict(), {**info, "epochs": best["epochs"], "fid": best["fid"],
                                             "eval_n": best["eval_n"]}
    info["train_seconds"] = float(history["epoch_time"][:info["epochs"]].sum())
    return save_generator(path, weights, cfg, half=True, **info)


def pretrained_names() -> list[str]:
    """Models with a pretrained generator in this installation."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))


def load_pretrained(name: str, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The shipped generator of a model name, fp32, in eval mode on `map_location`; returns (net_G, info)."""
    path = PRETRAINED_DIR / f"{name}.pt"
    if not path.is_file():
        known = ", ".join(pretrained_names()) or "none"
        raise ValueError(f"no pretrained generator named {name!r} (available: {known})")
    return load_generator_file(path, map_location)
