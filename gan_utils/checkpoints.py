"""Checkpoints: a run's state on disk, written atomically, loaded with `weights_only=True`.

Two file kinds, each marked with a format string: a run's `checkpoint.pt` (both nets, both optimizers,
the history and the fixed noise: everything an exact resume needs) and a shipped generator (fp16 weights
of G and how they were trained). The training loop is in `train`; this module only reads and writes.
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch import nn

CHECKPOINT_FORMAT = "gan_utils.checkpoint.v1"
CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"  # beside checkpoint.pt: G's weights at the lowest FID so far (train.fit with eval_every)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupted or not one of ours."""


class RunLockedError(CheckpointError):
    """Another process is writing the same run folder."""


# --- writing files safely ---------------------------------------------------------------------------

def _write_error(path: Path, exc: OSError) -> CheckpointError:
    """One line that says what went wrong writing `path` and what to do; the old file is untouched."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return CheckpointError(f"no space left on the disk of {path.parent} while writing {path.name}; "
                               "free some space and run again (any previous version of the file is kept)")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CheckpointError(f"cannot write {path}: {(exc.strerror or 'permission denied').lower()}; "
                               "choose a writable folder")
    return CheckpointError(f"cannot write {path}: {exc.strerror or exc}; any previous version of the file is kept")


def write_atomic(path: Path | str, write) -> Path:
    """Call `write(file)` on a fresh temporary file next to `path`, fsync it, then rename it over `path`.

    The temporary file is created exclusively under a unique name (mkstemp: O_CREAT | O_EXCL), so a file
    or symlink planted at a predictable name cannot redirect the write. A crash, Ctrl-C or a full disk
    leaves either the old file or the new one, never half of one, and no temporary file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a checkpoint is as readable as any file the user saves
        os.replace(tmp, path)  # replaces a symlink at `path` itself, never the file it points to
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from None
        raise
    return path


def _torch_bytes(state) -> memoryview:
    """torch.save into memory: a full disk then shows up as an OSError of our own write, not as a
    RuntimeError deep in torch's zip writer ("unexpected pos ...")."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer()


# --- one writer per run folder ------------------------------------------------------------------------

LOCK_NAME = ".lock"
_held: dict[Path, int] = {}  # run folders this process has locked, with how many nested holders


def _lock_owner(lock: Path) -> tuple[int | None, str]:
    try:
        pid, host = lock.read_text().split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None, ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


@contextlib.contextmanager
def run_lock(folder: Path | str) -> Iterator[Path]:
    """Hold `folder/.lock` (pid and host) while training writes there; a second writer is refused.

    A lock left by a killed process (its pid is gone) is taken over. Re-entrant within one process,
    so the command line can hold it before `fit` takes it again.
    """
    folder = Path(folder).resolve()
    if _held.get(folder):
        _held[folder] += 1
        try:
            yield folder
        finally:
            _held[folder] -= 1
        return
    lock = folder / LOCK_NAME
    host = socket.gethostname()
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(lock, exc) from None
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid, owner_host = _lock_owner(lock)
            if pid is None:
                with contextlib.suppress(OSError):
                    if time.time() - lock.stat().st_mtime < 10:
                        time.sleep(0.5)  # just created by another writer, its pid not yet written
                        continue
            elif owner_host != host:
                raise RunLockedError(f"{folder} is locked by process {pid} on {owner_host}; if no training runs "
                                     f"there, delete {lock}, else wait or choose another --out (API: out_dir)")
            elif pid != os.getpid() and _alive(pid):
                raise RunLockedError(f"{folder} is being written by another training process (pid {pid}); wait "
                                     f"for it to finish or choose another --out (API: out_dir); if none runs, "
                                     f"delete {lock}")
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # stale: left by a process that was killed
            continue
        except OSError as exc:
            raise _write_error(lock, exc) from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {host}\n")
        break
    else:
        raise RunLockedError(f"cannot take the lock {lock}; another process keeps creating it. Choose another "
                             "--out (API: out_dir)")
    _held[folder] = 1
    try:
        yield folder
    finally:
        del _held[folder]
        with contextlib.suppress(OSError):
            lock.unlink()
            if created:
                folder.rmdir()  # only if still empty: a run that failed before its first checkpoint leaves nothing


# --- run checkpoints --------------------------------------------------------------------------------

def save_checkpoint(path: Path | str, state: dict) -> Path:
    """Write atomically (write_atomic): a unique temporary file in the same folder, then a rename."""
    payload = _torch_bytes(state)
    return write_atomic(path, lambda f: f.write(payload))


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
    state = _load_ours(
        path, CHECKPOINT_FORMAT, map_location,
        unreadable="{path} cannot be read as a gan_utils checkpoint: it is truncated, corrupted or was written "
                   "by another program ({error}). Delete it and train again, or resume from another run.",
        foreign=f"{{path}} is a torch file but not a gan_utils checkpoint (no '{CHECKPOINT_FORMAT}' marker); "
                "pass the checkpoint.pt of a run made by gan_utils.train")
    missing = [key for key in RUN_KEYS if key not in state]
    config = state.get("config")
    if not missing and not (isinstance(config, dict) and isinstance(config.get("model"), str)
                            and isinstance(config.get("latent_dim"), int)):
        missing = ["config.model / config.latent_dim"]
    if missing:
        raise CheckpointError(f"{path} is a damaged or hand-edited gan_utils checkpoint (missing "
                              f"{', '.join(missing)}); train again, or resume from another run")
    return state


# What `fit` writes and an exact resume needs (fixed_labels and data are optional: older checkpoints).
RUN_KEYS = ("epoch", "step", "config", "net_G", "net_D", "opt_G", "opt_D", "history", "z_fixed")

# Settings a resume may change freely: how long and where it runs, not what it computes.
FREE_ON_RESUME = ("num_epochs", "device", "progress", "compile", "amp")


def config_changes(saved: dict, config: dict) -> dict[str, tuple]:
    """{name: (stored value, new value)} for every setting that differs from a checkpoint's config."""
    return {k: (saved[k], v) for k, v in config.items()
            if k in saved and k not in FREE_ON_RESUME and saved[k] != v}


def load_weights(net, weights: dict, source: Path | str, what: str, load=None) -> None:
    """net.load_state_dict (or load(net, weights)), with a CheckpointError that names the architecture mismatch."""
    try:
        net.load_state_dict(weights) if load is None else load(net, weights)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{source} does not fit this {what} (another architecture or size: {first}); "
                              "build the same model the run was trained with, or start a new run") from None


def image_shape(config: dict) -> tuple[int, int, int]:
    """(C, H, W) of the images a run's config describes; (1, 28, 28) for runs from before other sizes."""
    size = config.get("image_size") or 28
    return (config.get("channels") or 1, size, size)


def _build_generator(model: str, latent_dim: int, state_dict: dict, source: Path | str,
                     device: str | torch.device = "cpu", img_shape: tuple = (1, 28, 28)) -> nn.Module:
    """net_G of a model name with the given weights, in eval mode, on `device`."""
    from . import models
    if model not in models.BUILDERS:
        raise CheckpointError(f"{source} was trained with model {model!r}, which this version of "
                              f"gan_utils does not know (known: {', '.join(models.BUILDERS)})")
    net_G, _ = models.build(model, latent_dim, img_shape)
    load_weights(net_G, state_dict, source, f"{model} generator")
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
    net_G = _build_generator(cfg.get("model"), cfg["latent_dim"], _run_weights(state), path, map_location,
                             image_shape(cfg))
    return net_G, cfg


# --- generator files: best.pt of a run, and the pretrained generators shipped with the package ----------

PRETRAINED_FORMAT = "gan_utils.generator.v1"
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


def cpu_weights(weights: dict, half: bool = False) -> dict:
    """A state_dict detached on the CPU, its floating tensors in fp16 when `half` (shipped files: half the bytes)."""
    return {k: (v.detach().cpu().half() if half else v.detach().cpu()) if v.is_floating_point() else v.detach().cpu()
            for k, v in weights.items()}


def float_weights(weights: dict) -> dict:
    """A stored state_dict with its floating tensors back in fp32 (files written with half=True)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}


def save_generator(path: Path | str, net_G: nn.Module | dict, config: dict, *, half: bool = False, **info) -> Path:
    """Write G's weights with how they were trained (config, epochs, FID, ...): nothing else, no optimizer."""
    weights = cpu_weights(net_G.state_dict() if isinstance(net_G, nn.Module) else net_G, half)
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
    weights = float_weights(state["state_dict"])
    info = {k: v for k, v in state.items() if k != "state_dict"}
    shape = image_shape(state.get("config") or {})
    return _build_generator(state["model"], state["latent_dim"], weights, path, map_location, shape), info


def export_generator(run: Path | str, path: Path | str, which: str = "best", *, force: bool = False) -> Path:
    """Write G of a run as a small fp16 file: its best-FID weights (best.pt) when it has them, else the last.

    The file records the recipe (config), epochs, training seconds, the run's FID curve (`evals`) and, for
    best weights, the FID they scored. An existing file is replaced only with `force=True`, and then kept
    next to it as NAME.pt.bak.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force (API: force=True) to replace it "
                              f"(the old file is kept as {path.name}.bak)")
    state = load_checkpoint(run)
    folder = Path(run) if Path(run).is_dir() else Path(run).parent
    cfg, history = state["config"], state["history"]
    info = {"epochs": int(state["epoch"]), "device": history.get("device", ""),
            "evals": history.get("evals", torch.empty(0, 6))}  # the FID curve: rows of train.EVAL_KEYS
    weights = _run_weights(state)
    _build_generator(cfg["model"], cfg["latent_dim"], weights, run, img_shape=image_shape(cfg))  # refuse misfits
    if which == "best" and (folder / BEST_NAME).is_file():
        net_G, best = load_generator_file(folder / BEST_NAME)
        weights, info = net_G.state_dict(), {**info, "epochs": best["epochs"], "fid": best["fid"],
                                             "eval_n": best["eval_n"]}
    info["train_seconds"] = float(history["epoch_time"][:info["epochs"]].sum())
    keep_backup(path)
    return save_generator(path, weights, cfg, half=True, **info)


def keep_backup(path: Path | str) -> Optional[Path]:
    """Copy an existing file to NAME.bak beside it (atomically) before it is replaced; None if there is none."""
    path = Path(path)
    if not path.exists():
        return None
    payload = path.read_bytes()
    return write_atomic(path.with_name(path.name + ".bak"), lambda f: f.write(payload))


def shipped_names(folder: Path) -> list[str]:
    """The names of the .pt files shipped in `folder` (PRETRAINED_DIR or one of its subfolders)."""
    return sorted(p.stem for p in folder.glob("*.pt"))


def shipped_file(folder: Path, name: str, what: str) -> Path:
    """The shipped file `folder`/NAME.pt; a ValueError naming the available ones ("no {what} named ...")
    if there is none. Every module's load_pretrained goes through here."""
    path = folder / f"{name}.pt"
    if not path.is_file():
        raise ValueError(f"no {what} named {name!r} (available: {', '.join(shipped_names(folder)) or 'none'})")
    return path


RECORDS_DIR = PRETRAINED_DIR / "records"  # long runs' scores that a chapter shows instead of training


def load_record(name: str) -> dict:
    """A shipped record of a run too long for a chapter's own run (benchmarks/ write them; their docstrings
    say how): a dict of tensors, lists and numbers, loaded with `weights_only=True`."""
    try:
        path = shipped_file(RECORDS_DIR, name, "record")
    except ValueError as exc:
        raise ValueError(f"{exc}; a record is written by its benchmark (for article100-seedN: python "
                         "benchmarks/article_100.py ... --merge --seed N)") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} cannot be read as a record ({type(exc).__name__}: {exc}); reinstall "
                              "gan_utils or rerun the benchmark that writes it") from None
    found = state.get("format") if isinstance(state, dict) else None
    if not str(found).startswith("gan_utils.") or found in (CHECKPOINT_FORMAT, PRETRAINED_FORMAT):
        raise CheckpointError(f"{path} is not a gan_utils record (format {found!r}); records live in "
                              f"{RECORDS_DIR} and are written by the scripts in benchmarks/")
    return state


def pretrained_names() -> list[str]:
    """Models with a pretrained generator in this installation."""
    return shipped_names(PRETRAINED_DIR)


def load_pretrained(name: str, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The shipped generator of a model name, fp32, in eval mode on `map_location`; returns (net_G, info)."""
    return load_generator_file(shipped_file(PRETRAINED_DIR, name, "pretrained generator"), map_location)
