"""Interactive widgets of the book: latent walks, class-conditional digits, the GAN objective, live training.

Each widget is a small class. Its state and callbacks are plain Python, so tests drive it without a browser
(set a slider's `.value`, call `.click()` on a button, read `.current_image`). `.widget` is the ipywidgets
container and `.snapshot()` draws the current state as a matplotlib Figure. When a widget is the last line of
a cell, its output holds the live view AND a PNG of the snapshot: a running kernel shows the controls, while
a page that cannot run widgets (the static online book, GitHub) shows the picture instead of an empty box.

Only widgets and arguments that ipywidgets 7.7 (Colab) and 8.x share are used; `tests/test_widgets.py` checks it.
Widget events are handled only while the kernel is idle: to use the Stop button during training, run the
training with `TrainingDashboard.start` (a background thread), not in a blocking cell.
"""
from __future__ import annotations

import base64
import io
import math
import sys
import threading
from typing import Callable, Optional

import numpy as np
import PIL.Image
import torch
from matplotlib.figure import Figure
from torch import nn

from . import train, viz

try:
    import ipywidgets as ipw
except ImportError:  # the pure functions (lerp, slerp, objective_values) work without ipywidgets
    ipw = None

WIDGET_VIEW_MIMETYPE = "application/vnd.jupyter.widget-view+json"


def _require_ipywidgets() -> None:
    """Fail clearly without ipywidgets; in IPython, let our pyplot-free Figures display as PNG (the inline
    backend registers that formatter only once pyplot has drawn a figure)."""
    if ipw is None:
        raise ImportError("the interactive widgets need ipywidgets: pip install 'ipywidgets>=7.7'")
    ip = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    if ip is not None:
        png = ip.display_formatter.formatters["image/png"]
        try:
            png.lookup_by_type(Figure)
        except KeyError:
            png.for_type(Figure, _retina_png)


# --- pure functions ---------------------------------------------------------------------------------

def lerp(z0: torch.Tensor, z1: torch.Tensor, t: float) -> torch.Tensor:
    """Linear interpolation (1 - t) z0 + t z1. Between two Gaussian z its norm sags in the middle."""
    return (1 - t) * z0 + t * z1


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: float, eps: float = 1e-6) -> torch.Tensor:
    """Spherical interpolation along the last dimension (Shoemake 1985; White 2016 for GANs).

    slerp = sin((1 - t) w) / sin(w) z0 + sin(t w) / sin(w) z1, where w is the angle between z0 and z1.
    It follows the great circle, so unit vectors stay unit vectors. Where z0 and z1 are nearly parallel
    (sin w < eps) the formula is 0/0 and the arc is a straight line anyway: lerp is used there.
    """
    cos = (nn.functional.normalize(z0, dim=-1) * nn.functional.normalize(z1, dim=-1)).sum(-1, keepdim=True)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))  # (..., 1) angle between z0 and z1
    sin = torch.sin(omega)
    parallel = sin.abs() < eps
    safe = torch.where(parallel, torch.ones_like(sin), sin)  # avoid 0/0; those entries are replaced below
    out = torch.sin((1 - t) * omega) / safe * z0 + torch.sin(t * omega) / safe * z1
    return torch.where(parallel, lerp(z0, z1, t), out)


def _integrate(y: np.ndarray, x: np.ndarray) -> float:
    """Trapezoid rule (np.trapz was renamed in NumPy 2; this works on both)."""
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)


def objective_values(mean_g: float, std_g: float, data_mean: float = 4.0, data_std: float = 0.5,
                     num_points: int = 20001) -> dict:
    """The GAN objective for 1-D Gaussians p_data = N(data_mean, data_std^2), p_g = N(mean_g, std_g^2).

    By quadrature on a grid covering both densities: the optimal discriminator D*(x) = p_data / (p_data + p_g),
    V(D*, G) = E_data[log D*] + E_g[log(1 - D*)], and JSD(p_data || p_g) from its definition with
    m = (p_data + p_g) / 2. Theory (Goodfellow et al. 2014, Theorem 1): V = -log 4 + 2 JSD, 0 <= JSD <= log 2.
    Returns dict(V, JSD, D_star=(x, d), p_data=(x, p), p_g=(x, p)).
    """
    if not (std_g > 0 and data_std > 0):
        raise ValueError(f"standard deviations must be > 0, got std_g={std_g}, data_std={data_std}")
    lo = min(data_mean - 12 * data_std, mean_g - 12 * std_g)
    hi = max(data_mean + 12 * data_std, mean_g + 12 * std_g)
    x = np.linspace(lo, hi, num_points)

    def log_normal(m: float, s: float) -> np.ndarray:
        return -0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)

    log_pd, log_pg = log_normal(data_mean, data_std), log_normal(mean_g, std_g)
    log_sum = np.logaddexp(log_pd, log_pg)  # log(p_data + p_g), finite even where both underflow
    log_d, log_1md = log_pd - log_sum, log_pg - log_sum  # log D*, log(1 - D*)
    p_d, p_g = np.exp(log_pd), np.exp(log_pg)
    value = _integrate(p_d * log_d, x) + _integrate(p_g * log_1md, x)
    m = (p_d + p_g) / 2
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 log 0 = 0 where a density underflows
        kl_d = np.where(p_d > 0, p_d * (np.log(p_d) - np.log(m)), 0.0)
        kl_g = np.where(p_g > 0, p_g * (np.log(p_g) - np.log(m)), 0.0)
    jsd = 0.5 * _integrate(kl_d, x) + 0.5 * _integrate(kl_g, x)
    return {"V": value, "JSD": jsd, "D_star": (x, np.exp(log_d)), "p_data": (x, p_d), "p_g": (x, p_g)}


# --- shared helpers ---------------------------------------------------------------------------------

def _seed_noise(seed: int, shape: tuple) -> torch.Tensor:
    """Noise of a seed; (1, d) equals train.generate(net_G, 1, seed=seed)'s noise, so images match."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(int(seed)))


@torch.no_grad()
def _generate(net_G: nn.Module, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """G(z) for a given z, in eval mode (as train.generate, which draws z itself), float on the CPU."""
    device = next(net_G.parameters()).device
    with train.eval_mode(net_G):
        out = net_G(z.to(device)) if labels is None else net_G(z.to(device), labels.to(device))
    return out.float().cpu()


def _images_png(images: torch.Tensor, nrow: int = 8, zoom: int = 1) -> bytes:
    """PNG bytes of a grid of images ([-1, 1] or uint8), each pixel repeated zoom x zoom (stays crisp)."""
    grid = viz.make_grid(images, nrow=nrow)  # (H, W) in [0, 1]
    grid = (grid * 255).round().astype(np.uint8).repeat(zoom, axis=0).repeat(zoom, axis=1)
    buf = io.BytesIO()
    PIL.Image.fromarray(grid).save(buf, format="png")  # one gray channel: 4x smaller than an RGBA imsave
    return buf.getvalue()


def _figure_png(fig: Figure, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _retina_png(fig: Figure, dpi: int = 80) -> tuple[bytes, dict]:
    """The figure at twice the pixels, shown at its size: (PNG, {"width": ...}), as matplotlib's retina inline
    output does, so a snapshot stays crisp in the online book and on high-density screens."""
    png = _figure_png(fig, 2 * dpi)
    width = int.from_bytes(png[16:20], "big")  # the PNG header's IHDR width
    return png, {"width": width // 2}


class _Interactive:
    """Base: `.widget` for a live kernel, `.snapshot()` for a static page, both in one display bundle."""

    widget = None

    def snapshot(self) -> Figure:  # pragma: no cover - every widget overrides it
        raise NotImplementedError

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs) -> dict:
        data = {"text/plain": f"{type(self).__name__} (run the notebook to use its controls)",
                WIDGET_VIEW_MIMETYPE: {"version_major": 2, "version_minor": 0, "model_id": self.widget.model_id}}
        fig = self._static_figure()
        metadata = {}
        if fig is not None and "google.colab" not in sys.modules:  # Colab always runs widgets: no picture
            png, metadata["image/png"] = _retina_png(fig)
            data["image/png"] = base64.b64encode(png).decode("ascii")
        return data, metadata

    def _static_figure(self) -> Optional[Figure]:
        return self.snapshot()


# --- 1. latent space --------------------------------------------------------------------------------

class LatentExplorer(_Interactive):
    """Walk G's latent space: move z along k directions, or interpolate between the noise of two seeds.

    Mode "directions": z = z(seed) + sum_i a_i u_i, one slider a_i per direction u_i. By default the u_i are
    k random orthonormal directions (QR of a Gaussian matrix seeded by `direction_seed`): no single
    coordinate of z is special to G, and since the u_i are orthonormal, a_i = 1 moves z by one standard
    deviation of its prior. `directions="axes"` uses the first k coordinates of z instead.
    Mode "interpolate": z = lerp or slerp(z(seed), z(seed B), t). The readout shows ||z||: lerp's path
    passes near the origin, where G has seen almost no z (||z|| ~ sqrt(d) for a Gaussian z).
    """

    def __init__(self, net_G: nn.Module, num_directions: int = 5, seed: int = 0, *, directions: str = "random",
                 direction_seed: int = 0, span: float = 3.0, label: Optional[int] = None, zoom: int = 6):
        _require_ipywidgets()
        self.net_G, self.zoom = net_G, zoom
        self.latent_dim = int(net_G.latent_dim)
        if not 1 <= num_directions <= self.latent_dim:
            raise ValueError(f"num_directions must be in [1, {self.latent_dim}], got {num_directions}")
        if directions == "random":
            gen = torch.Generator().manual_seed(direction_seed)
            q, _ = torch.linalg.qr(torch.randn(self.latent_dim, num_directions, generator=gen))
            self.directions = q.T.contiguous()  # (k, latent_dim), orthonormal rows
        elif directions == "axes":
            self.directions = torch.eye(self.latent_dim)[:num_directions]  # (k, latent_dim)
        else:
            raise ValueError(f"directions must be 'random' or 'axes', got {directions!r}")
        conditional = getattr(net_G, "num_classes", None) is not None
        self.labels = torch.tensor([label if label is not None else 0]) if conditional else None

        self.mode = ipw.ToggleButtons(options=["directions", "interpolate"], value="directions")
        self.seed_slider = ipw.IntSlider(value=seed, min=0, max=999, description="seed")
        self.direction_sliders = [ipw.FloatSlider(value=0.0, min=-span, max=span, step=0.1, description=f"u{i}")
                                  for i in range(num_directions)]
        self.seed_b_slider = ipw.IntSlider(value=seed + 1, min=0, max=999, description="seed B")
        self.t_slider = ipw.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="t")
        self.method = ipw.ToggleButtons(options=["linear", "spherical"], value="spherical", description="path")
        self.image = ipw.Image(format="png")
        self.info = ipw.HTML(value="")
        self._controls = ipw.VBox(children=self.direction_sliders)
        self.widget = ipw.VBox(children=[self.mode, ipw.HBox(children=[
            ipw.VBox(children=[self.seed_slider, self._controls]), ipw.VBox(children=[self.image, self.info])])])
        for control in [self.mode, self.seed_slider, self.seed_b_slider, self.t_slider, self.method,
                        *self.direction_sliders]:
            control.observe(self._update, names="value")
        self._update()

    def set_direction(self, i: int, value: float) -> None:
        """Move slider i (the callback regenerates the image)."""
        self.direction_sliders[i].value = value

    @property
    def current_z(self) -> torch.Tensor:
        """The z the sliders describe, shape (latent_dim,)."""
        z0 = _seed_noise(self.seed_slider.value, (1, self.latent_dim))[0]  # (latent_dim,)
        if self.mode.value == "directions":
            coeffs = torch.tensor([s.value for s in self.direction_sliders], dtype=torch.float32)  # (k,)
            return z0 + coeffs @ self.directions
        z1 = _seed_noise(self.seed_b_slider.value, (1, self.latent_dim))[0]
        return (slerp if self.method.value == "spherical" else lerp)(z0, z1, self.t_slider.value)

    def _update(self, change: Optional[dict] = None) -> None:
        if change is not None and change["owner"] is self.mode:  # swap the visible controls
            directions = self.mode.value == "directions"
            self._controls.children = (self.direction_sliders if directions
                                       else [self.seed_b_slider, self.t_slider, self.method])
        z = self.current_z
        self.current_image = _generate(self.net_G, z[None], self.labels)[0]  # (C, H, W) in [-1, 1]
        self.image.value = _images_png(self.current_image, zoom=self.zoom)
        self.info.value = (f"||z|| = {z.norm():.2f} "
                           f"(a Gaussian z has ||z|| near sqrt(d) = {math.sqrt(self.latent_dim):.1f})")

    def snapshot(self, num_steps: int = 9) -> Figure:
        """Directions mode: each row moves one u_i from -span to +span. Interpolate mode: lerp vs slerp rows."""
        z = self.current_z
        if self.mode.value == "directions":
            span = self.direction_sliders[0].max
            steps = torch.linspace(-span, span, num_steps)  # (S,)
            zs = z + steps[None, :, None] * self.directions[:, None, :]  # (k, S, latent_dim)
            title = f"moving z(seed {self.seed_slider.value}) along each direction u_i, from {-span:g} to {span:g}"
        else:
            z0 = _seed_noise(self.seed_slider.value, (1, self.latent_dim))[0]
            z1 = _seed_noise(self.seed_b_slider.value, (1, self.latent_dim))[0]
            ts = torch.linspace(0, 1, num_steps)
            zs = torch.stack([torch.stack([f(z0, z1, float(t)) for t in ts]) for f in (lerp, slerp)])  # (2, S, d)
            title = f"seed {self.seed_slider.value} -> {self.seed_b_slider.value}: linear (top), spherical (bottom)"
        rows = zs.shape[0]
        labels = self.labels.repeat(rows * num_steps) if self.labels is not None else None
        images = _generate(self.net_G, zs.reshape(-1, self.latent_dim), labels)  # (rows * S, C, H, W)
        fig = Figure(figsize=(num_steps * 0.8, rows * 0.8 + 0.4))
        viz.show_grid(images, nrow=num_steps, ax=fig.add_subplot(), title=title)
        return fig


# --- 2. conditional digits --------------------------------------------------------------------------

class DigitPicker(_Interactive):
    """Pick a class and a noise seed of a conditional G (net_G(z, labels)); shows a row of samples.

    The same noise is used for every class, so switching the digit keeps the samples' style.
    """

    def __init__(self, net_G: nn.Module, num_samples: int = 8, seed: int = 0, zoom: int = 3):
        _require_ipywidgets()
        num_classes = getattr(net_G, "num_classes", None)
        if num_classes is None:
            raise ValueError(f"DigitPicker needs a conditional generator (net_G.num_classes set, called as net_G(z, "
                             f"labels)); this {type(net_G).__name__} is unconditional: use LatentExplorer")
        self.net_G, self.num_classes, self.num_samples, self.zoom = net_G, int(num_classes), num_samples, zoom
        self.digit = ipw.Dropdown(options=[(str(c), c) for c in range(self.num_classes)], description="digit")
        self.seed_slider = ipw.IntSlider(value=seed, min=0, max=999, description="seed")
        self.image = ipw.Image(format="png")
        self.widget = ipw.VBox(children=[ipw.HBox(children=[self.digit, self.seed_slider]), self.image])
        self.digit.observe(self._update, names="value")
        self.seed_slider.observe(self._update, names="value")
        self._update()

    def _noise(self) -> torch.Tensor:
        return _seed_noise(self.seed_slider.value, (self.num_samples, self.net_G.latent_dim))  # (n, latent_dim)

    def _update(self, change: Optional[dict] = None) -> None:
        labels = torch.full((self.num_samples,), int(self.digit.value), dtype=torch.long)  # (n,)
        self.current_images = _generate(self.net_G, self._noise(), labels)  # (n, C, H, W) in [-1, 1]
        self.image.value = _images_png(self.current_images, nrow=self.num_samples, zoom=self.zoom)

    def snapshot(self) -> Figure:
        """Every class (rows) for the current seed's noise (columns)."""
        z = self._noise().repeat(self.num_classes, 1)  # (classes * n, latent_dim), same noise per row
        labels = torch.arange(self.num_classes).repeat_interleave(self.num_samples)  # (classes * n,)
        fig = Figure(figsize=(self.num_samples * 0.7, self.num_classes * 0.7 + 0.4))
        viz.show_grid(_generate(self.net_G, z, labels), nrow=self.num_samples, ax=fig.add_subplot(),
                      title=f"one class per row, seed {self.seed_slider.value}")
        return fig


# --- 3. the objective on 1-D Gaussians --------------------------------------------------------------

class ObjectivePlayground(_Interactive):
    """Sliders for p_g = N(mean, std^2) against a fixed p_data; plots both densities, D*, V(D*, G) and JSD."""

    def __init__(self, data_mean: float = 4.0, data_std: float = 0.5, mean_g: float = 0.0, std_g: float = 1.0):
        _require_ipywidgets()
        self.data_mean, self.data_std = data_mean, data_std
        self.mean_slider = ipw.FloatSlider(value=mean_g, min=data_mean - 6, max=data_mean + 6, step=0.1,
                                           description="mean of p_g", continuous_update=False)
        self.std_slider = ipw.FloatSlider(value=std_g, min=0.1, max=3.0, step=0.05,
                                          description="std of p_g", continuous_update=False)
        self.image = ipw.Image(format="png")
        self.info = ipw.HTML(value="")
        self.widget = ipw.VBox(children=[ipw.HBox(children=[self.mean_slider, self.std_slider]), self.info,
                                         self.image])
        self.mean_slider.observe(self._update, names="value")
        self.std_slider.observe(self._update, names="value")
        self._update()

    def _update(self, change: Optional[dict] = None) -> None:
        self.current = objective_values(self.mean_slider.value, self.std_slider.value, self.data_mean,
                                        self.data_std)
        v, jsd = self.current["V"], self.current["JSD"]
        self.info.value = (f"V(D*, G) = {v:.4f} = -log 4 + 2 JSD = {-math.log(4):.4f} + 2 &times; {jsd:.4f} "
                           f"(JSD is 0 only when p_g = p_data, at most log 2 = {math.log(2):.4f})")
        self.image.value = _figure_png(self.snapshot())

    def snapshot(self) -> Figure:
        (x, p_d), (_, p_g), (_, d) = self.current["p_data"], self.current["p_g"], self.current["D_star"]
        m, s = self.mean_slider.value, self.std_slider.value
        mu, sd = self.data_mean, self.data_std
        keep = (x > min(mu - 4 * sd, m - 4 * s)) & (x < max(mu + 4 * sd, m + 4 * s))  # where the mass is
        fig = Figure(figsize=(7, 3))
        ax = fig.add_subplot()
        ax.plot(x[keep], p_d[keep], label="$p_{data}$")
        ax.plot(x[keep], p_g[keep], label="$p_g$")
        ax.set_xlabel("x")
        ax.set_ylabel("density")
        ax2 = ax.twinx()
        ax2.plot(x[keep], d[keep], "k--", label="$D^*(x)$")
        ax2.axhline(0.5, color="gray", lw=0.5)
        ax2.set_ylim(-0.02, 1.02)
        ax2.set_ylabel("$D^*(x)$")
        lines = ax.get_lines() + ax2.get_lines()[:1]
        ax.legend(lines, [line.get_label() for line in lines], loc="upper left", fontsize=8)
        ax.set_title(f"V(D*, G) = {self.current['V']:.3f},  JSD = {self.current['JSD']:.3f}")
        fig.tight_layout()
        return fig


# --- 4. live training -------------------------------------------------------------------------------

class TrainingDashboard(_Interactive):
    """Live loss curves and the latest fixed-noise samples, with a Stop button; an `on_epoch_end` hook.

        dashboard = widgets.TrainingDashboard()
        dashboard                                    # show it
        history = train.fit(net_G, net_D, loader, cfg, on_epoch_end=dashboard)

    A busy kernel processes widget clicks only after the running cell ends, so during a blocking `fit` the
    Stop button is queued (interrupt the kernel instead: fit keeps the last checkpoint). To stop from the
    button, train in a background thread: `dashboard.start(net_G, net_D, loader, cfg)`, later `dashboard.wait()`.
    After a click, the next hook call raises train.StopTraining: fit keeps the epoch just finished. A click
    stays armed (the button greys out) until `reset()`, which `start` calls for you.
    """

    def __init__(self, window: int = 50, nrow: int = 8):
        _require_ipywidgets()
        self.window, self.nrow = window, nrow
        self.stop_button = ipw.Button(description="Stop after this epoch", button_style="danger", icon="stop")
        self.status = ipw.HTML(value="waiting for the first epoch")
        self.curves = ipw.Image(format="png")
        self.samples = ipw.Image(format="png")
        self.widget = ipw.VBox(children=[ipw.HBox(children=[self.stop_button, self.status]),
                                         ipw.HBox(children=[self.curves, self.samples])])
        self.stop_button.on_click(self._on_stop)
        self.history: Optional[train.History] = None
        self._thread: Optional[threading.Thread] = None
        self._outcome: dict = {}
        self.reset()

    def reset(self) -> None:
        """Re-arm the Stop button (a new run)."""
        self.stop_requested = False
        self.stop_button.disabled = False

    def _on_stop(self, button=None) -> None:
        self.stop_requested = True
        self.stop_button.disabled = True
        self.status.value = "stop requested: training ends after the current epoch"

    def __call__(self, epoch: int, history: train.History) -> None:
        """The hook: redraw, then raise train.StopTraining if Stop was clicked."""
        self.history = history
        fig = Figure(figsize=(9, 3))
        viz.plot_history(history, window=self.window, axes=fig.subplots(1, 2))
        fig.tight_layout()
        self.curves.value = _figure_png(fig)
        if history.samples[-1].dim() == 4:  # image samples; toy points (N, D) have no grid to show
            self.samples.value = _images_png(history.samples[-1], nrow=self.nrow)
        done = history.num_epochs
        self.status.value = (f"epoch {done}: {history.epoch_time[-1]:.1f} s, "
                             f"{history.img_per_s[-1]:,.0f} img/s on {history.device}")
        if self.stop_requested:
            self.status.value = f"stopped after epoch {done}; its checkpoint is kept"
            raise train.StopTraining(f"stopped from the dashboard after epoch {done}")

    def _static_figure(self) -> Optional[Figure]:
        return self.snapshot() if self.history is not None else None  # nothing to show before training

    def snapshot(self) -> Figure:
        """Curves and the latest samples (what the widget shows); display it after training for the static book."""
        fig = Figure(figsize=(13, 3.4))
        if self.history is None or not self.history.samples:
            fig.text(0.5, 0.5, "no epoch finished yet", ha="center", va="center")
            return fig
        images = self.history.samples[-1]
        panels = 3 if images.dim() == 4 else 2  # toy points (N, D) have no image grid
        grid = fig.add_gridspec(1, panels, width_ratios=[1.2, 1.2, 0.8][:panels])
        viz.plot_history(self.history, window=self.window, axes=[fig.add_subplot(grid[i]) for i in range(2)])
        if panels == 3:
            viz.show_grid(images, nrow=self.nrow, ax=fig.add_subplot(grid[2]), title=f"epoch {self.history.num_epochs}")
        fig.tight_layout()
        return fig

    def start(self, net_G: nn.Module, net_D: nn.Module, loader, cfg: train.TrainConfig,
              **fit_kwargs) -> threading.Thread:
        """Run train.fit in a background thread with this dashboard as hook (and `on_epoch_end` too, if given),
        so the cell returns at once and the Stop button works. Use cfg.progress=False (the bar would print
        into whichever cell runs). `wait()` returns the History."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("this dashboard is already training; click Stop or call wait() first")
        extra: Optional[Callable] = fit_kwargs.pop("on_epoch_end", None)

        def hook(epoch: int, history: train.History) -> None:
            if extra is not None:
                extra(epoch, history)
            self(epoch, history)

        def run() -> None:
            try:
                self._outcome["history"] = train.fit(net_G, net_D, loader, cfg, on_epoch_end=hook, **fit_kwargs)
            except BaseException as exc:  # handed to wait(), which re-raises it in the caller's thread
                self._outcome["error"] = exc
                self.status.value = f"training failed: {type(exc).__name__}: {exc}"

        self.reset()
        self._outcome = {}
        self._thread = threading.Thread(target=run, name="gan_utils-training", daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout: Optional[float] = None) -> train.History:
        """Block until the background run of `start` ends; return its History (or raise its error)."""
        if self._thread is None:
            raise RuntimeError("nothing to wait for: call start(...) first")
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"training still running after {timeout} s")
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["history"]
