"""Figures of the book: sample grids, training curves, live progress, animations."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def sharp_inline_figures() -> bool:
    """Inline figures as retina PNGs (twice the pixels at the same size); True inside IPython.

    Every chapter imports this module, so one call here makes every chapter's figures sharp: at the
    chapters' `figure.dpi` of 80 a retina PNG carries 160 pixels per inch, so text stays crisp when the
    online book scales a wide figure down to its column.
    """
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # plain Python (the command line, tests): nothing is drawn inline
        return False
    if get_ipython() is None:
        return False
    set_matplotlib_formats("retina")
    return True


sharp_inline_figures()


def _to_display(images: torch.Tensor) -> torch.Tensor:
    """Any of uint8 [0, 255], float [-1, 1] -> float [0, 1], shape (N, C, H, W), on the CPU."""
    images = images.detach().cpu()
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dtype == torch.uint8:
        return images.float() / 255
    return (images.float().clamp(-1, 1) + 1) / 2


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> np.ndarray:
    """A (H, W) or (H, W, 3) array in [0, 1] tiling the images nrow per row."""
    from torchvision.utils import make_grid as tv_grid
    images = _to_display(images)  # (N, C, H, W) in [0, 1]
    grid = tv_grid(images, nrow=nrow, padding=padding, pad_value=1.0).permute(1, 2, 0).cpu().numpy()  # (H', W', 3)
    return grid[..., 0] if images.shape[1] == 1 else grid


def show_grid(images: torch.Tensor, nrow: int = 8, title: Optional[str] = None, ax=None, figsize=(5, 5)):
    """Draw a grid of images (uint8 or [-1, 1]); returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    ax.imshow(make_grid(images, nrow=nrow), cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def save_grid(images: torch.Tensor, path: Path | str, nrow: int = 10) -> Path:
    """Write a PNG of the grid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, make_grid(images, nrow=nrow), cmap="gray", vmin=0, vmax=1)
    return path


def smooth(values: Sequence[float], window: int = 50) -> np.ndarray:
    """Moving average (shorter at the start), so noisy per-step curves can be read; NaN (no value) is skipped."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0 or window <= 1:
        return v
    valid = ~np.isnan(v)
    total = np.concatenate([[0.0], np.cumsum(np.where(valid, v, 0.0))])
    count = np.concatenate([[0], np.cumsum(valid)])
    hi = np.arange(1, len(v) + 1)
    lo = np.maximum(0, hi - window)
    n = count[hi] - count[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (total[hi] - total[lo]) / np.maximum(n, 1), np.nan)


def plot_history(history, window: int = 50, axes=None, title: str = ""):
    """Two panels: loss_D and loss_G per step; mean D(x) and D(G(z)) per step (smoothed)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    steps = history.steps
    x = np.arange(1, len(steps["loss_D"]) + 1)
    axes[0].plot(x, smooth(steps["loss_D"], window), label="loss_D")
    axes[0].plot(x, smooth(steps["loss_G"], window), label="loss_G")
    axes[0].set_xlabel("D step")
    axes[0].set_title(f"{title} losses".strip())
    axes[0].legend()
    axes[1].plot(x, smooth(steps["D_x"], window), label="mean D(x)")
    axes[1].plot(x, smooth(steps["D_G_z"], window), label="mean D(G(z))")
    axes[1].set_xlabel("D step")
    axes[1].set_title(f"{title} discriminator outputs".strip())
    axes[1].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    return axes


def show_progress(epoch: int, history) -> None:
    """`fit(..., on_epoch_end=viz.show_progress)`: redraw curves and the latest fixed-noise samples."""
    from IPython.display import clear_output, display
    fig = plt.figure(figsize=(13, 3.4))
    gs = fig.add_gridspec(1, 3, width_ratios=[1.2, 1.2, 0.8])
    plot_history(history, axes=[fig.add_subplot(gs[0]), fig.add_subplot(gs[1])])
    show_grid(history.samples[-1], ax=fig.add_subplot(gs[2]), title=f"epoch {epoch + 1}")
    fig.tight_layout()
    clear_output(wait=True)
    display(fig)
    plt.close(fig)
    print(f"epoch {epoch + 1}: {history.epoch_time[-1]:.1f} s, {history.img_per_s[-1]:,.0f} img/s on {history.device}")


def animate(grids: Sequence[torch.Tensor], nrow: int = 8, interval: int = 400, titles: Optional[Sequence[str]] = None):
    """An HTML animation (JavaScript player, works in the static book) of a sequence of sample grids."""
    from matplotlib import animation
    from IPython.display import HTML
    frames = [make_grid(g, nrow=nrow) for g in grids]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.set_axis_off()
    im = ax.imshow(frames[0], cmap="gray", vmin=0, vmax=1)
    label = ax.set_title(titles[0] if titles else "epoch 1")

    def update(i):
        im.set_data(frames[i])
        label.set_text(titles[i] if titles else f"epoch {i + 1}")
        return im, label

    anim = animation.FuncAnimation(fig, update, frames=len(frames), interval=interval, blit=False)
    html = HTML(anim.to_jshtml(default_mode="once"))
    plt.close(fig)
    return html


def plot_fid(runs: dict, ax=None, key: str = "fid", title: str = "quality over training", log: bool = True):
    """FID (or another EVAL_KEYS column) over epochs, one line per run: {name: History or list of eval rows}.

    The curve decides a budget: train until it stops falling. Marks each run's best epoch with a dot.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.6))
    for name, run in runs.items():
        rows = run.evals if hasattr(run, "evals") else run
        if not rows:
            continue
        epochs, values = [r["epoch"] for r in rows], [r[key] for r in rows]
        line, = ax.plot(epochs, values, marker=".", label=name)
        best = int(np.argmin(values)) if key == "fid" else int(np.argmax(values))
        ax.plot(epochs[best], values[best], "o", color=line.get_color(), markersize=7)
    if log and key == "fid":
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(key.upper() if key == "fid" else key)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return ax


def table(rows: Sequence[dict], columns: dict, caption: str = ""):
    """A Markdown table that the notebook and the book render as a table: rows of dicts, and
    columns {key: (header, format)} such as {"fid": ("FID", "{:.2f}")}; a missing value is left blank."""
    from IPython.display import Markdown
    lines = ["| " + " | ".join(header for header, _ in columns.values()) + " |",
             "|" + "|".join(" ---: " if fmt and fmt != "{}" else " --- " for _, fmt in columns.values()) + "|"]
    for row in rows:
        cells = [(fmt or "{}").format(row[key]) if row.get(key) is not None else "" for key, (_, fmt) in columns.items()]
        lines.append("| " + " | ".join(cells) + " |")
    return Markdown((f"**{caption}**\n\n" if caption else "") + "\n".join(lines))


def source(*objs, width: int = 88):
    """The source code of each obj as one highlighted Python block, where `print(inspect.getsource(obj))`
    would give plain text. Lines wider than `width` would scroll sideways on the page: a ValueError says which."""
    import inspect
    import textwrap
    from IPython.display import Markdown
    if not objs:
        raise ValueError("source needs at least one function, class or module, e.g. viz.source(train.update_D)")
    blocks = []
    for obj in objs:
        code = textwrap.dedent(inspect.getsource(obj)).rstrip()
        wide = [n for n, line in enumerate(code.splitlines(), 1) if len(line) > width]
        if wide:
            raise ValueError(f"{getattr(obj, '__qualname__', obj)}: lines {wide} are wider than {width} "
                             "columns; wrap them in the source, or pass a larger width")
        name = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}".strip(".")
        blocks.append(f"# {name}\n{code}" if name else code)  # which object, when several are shown
    return Markdown("```python\n" + "\n\n\n".join(blocks) + "\n```")
