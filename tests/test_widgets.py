"""The interactive widgets, driven without a browser: set slider values, click buttons, check the state."""
import ast
import base64
import math
import sys
import threading
from pathlib import Path

import pytest
import torch

ipywidgets = pytest.importorskip("ipywidgets")

from gan_utils import data, models, train, widgets  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_png(value) -> bool:
    """An Image widget's value: bytes in ipywidgets 7, a memoryview in 8."""
    return bytes(value).startswith(PNG_SIGNATURE)


@pytest.fixture(scope="module")
def net_G():
    torch.manual_seed(0)
    return models.MLPGenerator()


@pytest.fixture(scope="module")
def cond_G():
    torch.manual_seed(0)
    net_G = models.DCGANGenerator(num_classes=10, width=8)  # narrow: fast on a CPU
    net_G.apply(models.dcgan_init)
    return net_G


# --- pure functions against closed forms -------------------------------------------------------------

def _unit(*shape, seed=0):
    return torch.nn.functional.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed),
                                                     dtype=torch.float64), dim=-1)


def test_slerp_keeps_unit_norm_and_hits_both_endpoints():
    z0, z1 = _unit(4, 16, seed=1), _unit(4, 16, seed=2)  # a batch of 4 pairs
    torch.testing.assert_close(widgets.slerp(z0, z1, 0.0), z0)
    torch.testing.assert_close(widgets.slerp(z0, z1, 1.0), z1)
    omega = torch.arccos((z0 * z1).sum(-1))  # (4,)
    for t in (0.1, 0.25, 0.5, 0.9):
        z = widgets.slerp(z0, z1, t)
        torch.testing.assert_close(z.norm(dim=-1), torch.ones(4, dtype=torch.float64))
        # the angle to z0 grows linearly with t: constant speed along the great circle
        torch.testing.assert_close(torch.arccos((z * z0).sum(-1).clamp(-1, 1)), t * omega)


def test_slerp_and_lerp_of_orthogonal_unit_vectors():
    e0, e1 = torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(widgets.slerp(e0, e1, 0.5), (e0 + e1) / math.sqrt(2))
    third = torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6)], dtype=torch.float64)  # 1/3 of 90 degrees
    torch.testing.assert_close(widgets.slerp(e0, e1, 1 / 3), third)
    mid = widgets.lerp(e0, e1, 0.5)
    assert mid.norm() == pytest.approx(math.sqrt(0.5))  # lerp cuts the corner: its midpoint is shorter
    torch.testing.assert_close(widgets.lerp(e0, e1, 0.0), e0)
    torch.testing.assert_close(widgets.lerp(e0, e1, 1.0), e1)


def test_slerp_of_nearly_parallel_vectors_is_finite_and_equals_lerp():
    z0 = torch.tensor([3.0, 4.0])
    for z1 in (z0.clone(), z0 * 2, z0 + 1e-7):
        out = widgets.slerp(z0, z1, 0.3)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, widgets.lerp(z0, z1, 0.3))


def test_objective_at_the_optimum_is_minus_log_4():
    out = widgets.objective_values(4.0, 0.5, data_mean=4.0, data_std=0.5)
    assert out["JSD"] == pytest.approx(0.0, abs=1e-9)
    assert out["V"] == pytest.approx(-math.log(4), abs=1e-8)
    x, d = out["D_star"]
    assert x.shape == d.shape and abs(d - 0.5).max() < 1e-12  # D* = 1/2 everywhere: D cannot tell


@pytest.mark.parametrize("mean_g,std_g", [(0.0, 1.0), (3.5, 0.5), (4.0, 2.0), (6.0, 0.1), (-2.0, 3.0)])
def test_objective_identity_v_equals_minus_log4_plus_2_jsd(mean_g, std_g):
    out = widgets.objective_values(mean_g, std_g)
    assert out["V"] == pytest.approx(-math.log(4) + 2 * out["JSD"], abs=1e-6)
    assert 0 < out["JSD"] < math.log(2) + 1e-9
    x, d = out["D_star"]
    assert d.min() >= 0 and d.max() <= 1


def test_objective_far_apart_jsd_is_log_2_and_grows_with_distance():
    assert widgets.objective_values(40.0, 0.5)["JSD"] == pytest.approx(math.log(2), abs=1e-6)
    assert widgets.objective_values(40.0, 0.5)["V"] == pytest.approx(0.0, abs=1e-6)
    jsds = [widgets.objective_values(4.0 + shift, 0.5)["JSD"] for shift in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert jsds == sorted(jsds)
    with pytest.raises(ValueError, match="standard deviations"):
        widgets.objective_values(0.0, 0.0)


# --- LatentExplorer ----------------------------------------------------------------------------------

def test_latent_explorer_sliders_move_the_image_and_moving_back_restores_it(net_G):
    explorer = widgets.LatentExplorer(net_G, num_directions=3, seed=5)
    image = explorer.current_image.clone()
    assert image.shape == (1, 28, 28) and image.min() >= -1 and image.max() <= 1
    # the base image is G of the seed's noise, the same as train.generate(net_G, 1, seed=5)
    torch.testing.assert_close(image, train.generate(net_G, 1, seed=5)[0])
    png = bytes(explorer.image.value)
    assert png.startswith(PNG_SIGNATURE)

    explorer.set_direction(1, 2.5)
    assert explorer.direction_sliders[1].value == 2.5
    assert not torch.equal(explorer.current_image, image)
    assert bytes(explorer.image.value) != png
    explorer.direction_sliders[1].value = 0.0  # a plain slider move goes through the same callback
    torch.testing.assert_close(explorer.current_image, image)

    explorer.seed_slider.value = 6
    assert not torch.equal(explorer.current_image, image)


def test_latent_explorer_directions_are_orthonormal(net_G):
    explorer = widgets.LatentExplorer(net_G, num_directions=4)
    u = explorer.directions  # (4, 100)
    torch.testing.assert_close(u @ u.T, torch.eye(4), atol=1e-5, rtol=0)
    z_before = explorer.current_z
    explorer.set_direction(2, 1.5)
    torch.testing.assert_close(explorer.current_z - z_before, 1.5 * u[2])
    axes = widgets.LatentExplorer(net_G, num_directions=2, directions="axes")
    z_before = axes.current_z
    axes.set_direction(0, -1.0)
    torch.testing.assert_close(axes.current_z - z_before, -torch.eye(100)[0])
    with pytest.raises(ValueError, match="num_directions"):
        widgets.LatentExplorer(net_G, num_directions=101)
    with pytest.raises(ValueError, match="directions"):
        widgets.LatentExplorer(net_G, directions="pca")


def test_latent_explorer_interpolation_mode(net_G):
    explorer = widgets.LatentExplorer(net_G, seed=1)
    explorer.mode.value = "interpolate"
    assert explorer.t_slider in explorer._controls.children
    assert explorer.direction_sliders[0] not in explorer._controls.children
    image_a, image_b = train.generate(net_G, 1, seed=1)[0], train.generate(net_G, 1, seed=2)[0]
    for method in ("linear", "spherical"):
        explorer.method.value = method
        explorer.t_slider.value = 0.0
        torch.testing.assert_close(explorer.current_image, image_a)
        explorer.t_slider.value = 1.0
        torch.testing.assert_close(explorer.current_image, image_b, atol=1e-5, rtol=0)
    explorer.t_slider.value = 0.5
    explorer.method.value = "linear"
    norm_linear = explorer.current_z.norm()
    explorer.method.value = "spherical"
    assert explorer.current_z.norm() > norm_linear  # slerp stays near the shell where Gaussian z live
    assert "||z||" in explorer.info.value
    explorer.mode.value = "directions"
    assert explorer._controls.children == tuple(explorer.direction_sliders)


def test_latent_explorer_on_a_conditional_generator(cond_G):
    explorer = widgets.LatentExplorer(cond_G, num_directions=2, label=7)
    assert explorer.current_image.shape == (1, 28, 28)
    assert explorer.snapshot().axes


# --- DigitPicker -------------------------------------------------------------------------------------

def test_digit_picker_needs_a_conditional_generator(net_G):
    with pytest.raises(ValueError, match="conditional"):
        widgets.DigitPicker(net_G)


def test_digit_picker_class_and_seed_change_the_samples(cond_G):
    picker = widgets.DigitPicker(cond_G, num_samples=6)
    assert [value for _, value in picker.digit.options] == list(range(10))
    images = picker.current_images.clone()
    assert images.shape == (6, 1, 28, 28) and images.min() >= -1 and images.max() <= 1
    png = bytes(picker.image.value)
    picker.digit.value = 3
    assert not torch.equal(picker.current_images, images) and bytes(picker.image.value) != png
    picker.digit.value = 0
    torch.testing.assert_close(picker.current_images, images)
    picker.seed_slider.value = 9
    assert not torch.equal(picker.current_images, images)
    assert cond_G.training  # the widget samples in eval mode and restores the mode
    assert len(picker.snapshot().axes) == 1


# --- ObjectivePlayground -----------------------------------------------------------------------------

def test_objective_playground_sliders_update_the_values_and_the_plot():
    playground = widgets.ObjectivePlayground(data_mean=4.0, data_std=0.5)
    first_v, first_png = playground.current["V"], bytes(playground.image.value)
    assert first_png.startswith(PNG_SIGNATURE)
    playground.mean_slider.value = 4.0
    playground.std_slider.value = 0.5
    assert playground.current["JSD"] == pytest.approx(0.0, abs=1e-9)
    assert playground.current["V"] == pytest.approx(-math.log(4), abs=1e-8)
    assert playground.current["V"] < first_v  # the optimum of G minimises V(D*, G)
    assert bytes(playground.image.value) != first_png
    assert "-log 4 + 2 JSD" in playground.info.value
    assert playground.mean_slider.min <= 4.0 <= playground.mean_slider.max


# --- TrainingDashboard -------------------------------------------------------------------------------

def _tiny_run(tmp_path):
    loader = data.mnist_loader(subset=256, batch_size=64)
    train.seed_everything(0)
    net_G, net_D = models.build("mlp")
    cfg = train.TrainConfig(num_epochs=3, progress=False, device="cpu", num_samples=16)
    return net_G, net_D, loader, cfg


def test_dashboard_stop_button_ends_fit_after_the_current_epoch(tmp_path):
    net_G, net_D, loader, cfg = _tiny_run(tmp_path)
    dashboard = widgets.TrainingDashboard()
    assert "waiting" in dashboard.status.value
    calls = []

    def hook(epoch, history):
        calls.append(epoch)
        if epoch == 0:
            dashboard.stop_button.click()  # what a reader's click does
        dashboard(epoch, history)

    history = train.fit(net_G, net_D, loader, cfg, out_dir=tmp_path, on_epoch_end=hook)
    assert calls == [0] and history.num_epochs == 1
    assert train.load_checkpoint(tmp_path)["epoch"] == 1  # the epoch just finished is kept
    assert dashboard.stop_requested and dashboard.stop_button.disabled
    assert "stopped after epoch 1" in dashboard.status.value
    assert _is_png(dashboard.curves.value) and _is_png(dashboard.samples.value)
    assert len(dashboard.snapshot().axes) == 3
    dashboard.reset()
    assert not dashboard.stop_requested and not dashboard.stop_button.disabled


def test_dashboard_background_run_stops_from_another_thread(tmp_path):
    net_G, net_D, loader, cfg = _tiny_run(tmp_path)
    dashboard = widgets.TrainingDashboard()
    first_epoch, clicked = threading.Event(), threading.Event()

    def wait_for_click(epoch, history):  # runs in the training thread
        first_epoch.set()
        assert clicked.wait(60)

    thread = dashboard.start(net_G, net_D, loader, cfg, out_dir=tmp_path, on_epoch_end=wait_for_click)
    assert thread.daemon
    assert first_epoch.wait(120)
    dashboard.stop_button.click()  # from the main thread, as the kernel would while idle
    clicked.set()
    history = dashboard.wait(timeout=120)
    assert history.num_epochs == 1 and train.load_checkpoint(tmp_path)["epoch"] == 1
    with pytest.raises(RuntimeError, match="start"):
        widgets.TrainingDashboard().wait()


def test_dashboard_on_a_toy_run_draws_curves_only():
    history = train.History(steps={k: [0.5, 0.4] for k in train.STEP_KEYS}, epoch_time=[0.1], img_per_s=[100.0],
                            samples=[torch.randn(16, 2)], device="cpu")  # 2-D toy points, not images
    dashboard = widgets.TrainingDashboard()
    dashboard(0, history)
    assert _is_png(dashboard.curves.value) and "epoch 1" in dashboard.status.value
    assert len(dashboard.snapshot().axes) == 2


def test_dashboard_before_training_shows_no_picture():
    dashboard = widgets.TrainingDashboard()
    assert "no epoch" in dashboard.snapshot().texts[0].get_text()
    bundle, _ = dashboard._repr_mimebundle_()
    assert "image/png" not in bundle  # a static page shows the text, not an empty plot


# --- display: live view plus a static picture --------------------------------------------------------

def test_mimebundle_holds_the_widget_view_and_a_png(net_G, monkeypatch):
    explorer = widgets.LatentExplorer(net_G, num_directions=2)
    assert isinstance(explorer.widget, ipywidgets.Box)
    bundle, metadata = explorer._repr_mimebundle_()
    view = bundle[widgets.WIDGET_VIEW_MIMETYPE]
    assert view["model_id"] == explorer.widget.model_id and view["version_major"] == 2
    png = base64.b64decode(bundle["image/png"])
    assert png.startswith(PNG_SIGNATURE)
    # a retina picture: twice the pixels of the width it is shown at, so it stays sharp in the book
    assert abs(int.from_bytes(png[16:20], "big") - 2 * metadata["image/png"]["width"]) <= 1
    assert "text/plain" in bundle
    monkeypatch.setitem(sys.modules, "google.colab", object())  # Colab: widgets always live, no picture
    assert "image/png" not in explorer._repr_mimebundle_()[0]


# --- only what ipywidgets 7.7 (Colab) also has -------------------------------------------------------

# Widget classes and constructor arguments of the ipywidgets 7.7 API (docs "Widget List", 7.7.x), restricted
# to what this module may use. Traits set after construction: value, children, disabled, description.
IPYWIDGETS_7_API = {
    "FloatSlider": {"value", "min", "max", "step", "description", "continuous_update", "readout_format", "disabled"},
    "IntSlider": {"value", "min", "max", "step", "description", "continuous_update", "disabled"},
    "Dropdown": {"options", "value", "description", "disabled"},
    "ToggleButtons": {"options", "value", "description", "tooltips", "button_style", "disabled"},
    "Button": {"description", "button_style", "tooltip", "icon", "disabled"},
    "Image": {"value", "format", "width", "height"},
    "HTML": {"value", "description"},
    "Label": {"value", "description"},
    "Output": set(),
    "HBox": {"children"},
    "VBox": {"children"},
}
IPYWIDGETS_8_ONLY = {"TagsInput", "ColorsInput", "FloatsInput", "IntsInput", "Stack", "TimePicker",
                     "DatetimePicker", "NaiveDatetimePicker"}


def _ipywidgets_calls():
    """(class name, keyword names) of every `ipw.X(...)` call in gan_utils/widgets.py, and every `ipw.X` name."""
    tree = ast.parse(Path(widgets.__file__).read_text())
    names = {node.attr for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ipw"}
    calls = [(node.func.attr, {kw.arg for kw in node.keywords}) for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and isinstance(node.func.value, ast.Name) and node.func.value.id == "ipw"]
    return names, calls


def test_module_uses_only_the_ipywidgets_7_api():
    names, calls = _ipywidgets_calls()
    assert names, "the module should build its widgets through `ipw.`"
    assert names <= set(IPYWIDGETS_7_API), f"not in the 7.7 list: {names - set(IPYWIDGETS_7_API)}"
    assert not names & IPYWIDGETS_8_ONLY
    for cls, kwargs in calls:
        assert kwargs <= IPYWIDGETS_7_API[cls], f"{cls}: {kwargs - IPYWIDGETS_7_API[cls]} not in the 7.7 API"
        # and the installed ipywidgets (8.x here) knows them as traits too
        assert kwargs <= set(getattr(ipywidgets, cls).class_trait_names()), cls
    tree = ast.parse(Path(widgets.__file__).read_text())
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "layout"], \
        "Layout features differ between 7 and 8: keep the default layouts"
