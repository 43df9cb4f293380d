"""The widgets driven through a real Jupyter kernel, the way a browser drives them.

A notebook front end (JupyterLab, Colab, VS Code) talks to widgets only through comm messages: it
receives `comm_open` with each model's state, sends `update` messages when a slider moves or a
dropdown changes, and a `custom` {"event": "click"} when a button is pressed; the kernel answers with
`update` messages for whatever the callbacks changed. These tests start an ipykernel, build each widget
in it, and send exactly those messages, so they check the wiring between ipywidgets (7.7 as in Colab, or
8.x) and our callbacks, not only the callbacks themselves (tests/test_widgets.py does that).
"""
import json
import os

import pytest

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")
from jupyter_client.manager import start_new_kernel  # noqa: E402

TIMEOUT = 120


@pytest.fixture(scope="module")
def kernel():
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=TIMEOUT)
    try:
        reply = run(kc, "import ipywidgets, torch\nprint(ipywidgets.__version__)\ntorch.set_num_threads(1)")
        assert not errors(reply), errors(reply)
        expected = os.environ.get("EXPECT_IPYWIDGETS")  # `make test-colab-widgets` pins Colab's 7.7.1
        assert expected is None or stdout(reply).strip() == expected, stdout(reply)
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def collect(kc, msg_id):
    """Every iopub message caused by request `msg_id`, up to the kernel going idle."""
    messages = []
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages


def run(kc, code):
    return collect(kc, kc.execute(code))


def send_comm(kc, comm_id, data):
    """What a front end sends when the user touches a control."""
    msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
    kc.shell_channel.send(msg)
    return collect(kc, msg["header"]["msg_id"])


def move(kc, comm_id, **state):
    return send_comm(kc, comm_id, {"method": "update", "state": state, "buffer_paths": []})


def click(kc, comm_id):
    return send_comm(kc, comm_id, {"method": "custom", "content": {"event": "click"}})


def errors(messages):
    return [m["content"] for m in messages if m["msg_type"] == "error"]


def stdout(messages):
    return "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")


def models_opened(messages):
    """comm_id -> (model name, state, buffers) of every widget model the cell created."""
    opened = {}
    for m in messages:
        if m["msg_type"] == "comm_open" and m["content"].get("target_name") == "jupyter.widget":
            data = m["content"]["data"]
            opened[m["content"]["comm_id"]] = (data["state"]["_model_name"], data["state"], data, m["buffers"])
    return opened


def show(kc, code):
    """Run a cell that builds (and displays) widgets; its messages and the models it opened."""
    out = run(kc, code)
    assert not errors(out), errors(out)
    return out, models_opened(out)


def find(opened, model_name, **attrs):
    hits = [cid for cid, (name, state, _, _) in opened.items()
            if name == model_name and all(state.get(k) == v for k, v in attrs.items())]
    assert len(hits) == 1, (model_name, attrs, hits)
    return hits[0]


def updates(messages, comm_id, key):
    """Values the kernel pushed to the front end for `key` of one model (bytes travel as buffers)."""
    values = []
    for m in messages:
        if m["msg_type"] != "comm_msg" or m["content"]["comm_id"] != comm_id:
            continue
        data = m["content"]["data"]
        paths = data.get("buffer_paths", [])
        if data.get("method") not in ("update", "echo_update") or (key not in data["state"] and [key] not in paths):
            continue
        values.append(bytes(m["buffers"][paths.index([key])]) if [key] in paths else data["state"][key])
    return values


def test_latent_explorer_slider_regenerates_the_image(kernel):
    out, opened = show(kernel, "from gan_utils import models, widgets\n"
                               "torch.manual_seed(0)\n"
                               "net_G, _ = models.build('dcgan')\n"
                               "explorer = widgets.LatentExplorer(net_G.eval(), num_directions=3, seed=0)\n"
                               "display(explorer)")
    slider = find(opened, "FloatSliderModel", description="u1")
    image = find(opened, "ImageModel")
    first_png = updates(out, image, "value")[-1]  # the image model opens empty; the first callback fills it
    assert first_png[:8] == b"\x89PNG\r\n\x1a\n"

    moved = move(kernel, slider, value=2.5)
    pngs = updates(moved, image, "value")
    assert pngs and pngs[-1][:8] == b"\x89PNG\r\n\x1a\n" and pngs[-1] != first_png
    state = stdout(run(kernel, "print(explorer.direction_sliders[1].value, float(explorer.current_z.norm()))"))
    assert state.split()[0] == "2.5"

    back = move(kernel, slider, value=0.0)
    assert updates(back, image, "value")[-1] == first_png  # the same z again: the same picture


def test_latent_explorer_mode_toggle_swaps_the_controls(kernel):
    _, opened = show(kernel, "explorer2 = widgets.LatentExplorer(net_G.eval(), num_directions=2, seed=3)")
    toggle = find(opened, "ToggleButtonsModel", _options_labels=["directions", "interpolate"])
    move(kernel, toggle, index=1)  # selection widgets sync the index, not the value
    t_slider = find(opened, "FloatSliderModel", description="t")
    image = find(opened, "ImageModel")
    moved = move(kernel, t_slider, value=0.5)
    assert updates(moved, image, "value")
    assert stdout(run(kernel, "print(explorer2.mode.value, explorer2.t_slider.value)")).split() == ["interpolate", "0.5"]


def test_digit_picker_dropdown_changes_the_digits(kernel):
    out, opened = show(kernel, "torch.manual_seed(0)\n"
                               "cond_G, _ = models.build('cgan')\n"
                               "picker = widgets.DigitPicker(cond_G.eval(), num_samples=4)\n"
                               "display(picker)")
    dropdown = find(opened, "DropdownModel", description="digit")
    image = find(opened, "ImageModel")
    moved = move(kernel, dropdown, index=7)
    assert updates(moved, image, "value")[-1] != updates(out, image, "value")[-1]
    assert stdout(run(kernel, "print(picker.digit.value)")).strip() == "7"


def test_objective_playground_slider_updates_the_value(kernel):
    _, opened = show(kernel, "playground = widgets.ObjectivePlayground()\ndisplay(playground)")
    mean = find(opened, "FloatSliderModel", description="mean of p_g")
    info = find(opened, "HTMLModel")
    moved = move(kernel, mean, value=4.0)
    std = find(opened, "FloatSliderModel", description="std of p_g")
    moved += move(kernel, std, value=0.5)
    text = updates(moved, info, "value")[-1]
    assert text.startswith("V(D*, G) = -1.386")  # p_g = p_data: the optimum, -log 4
    reply = stdout(run(kernel, "import json\nprint(json.dumps({k: playground.current[k] for k in ('V', 'JSD')}))"))
    values = json.loads(reply)
    assert values["JSD"] < 1e-6 and values["V"] == pytest.approx(-1.3862944, abs=1e-5)


def test_dashboard_stop_button_click_arrives_from_the_front_end(kernel):
    _, opened = show(kernel, "dashboard = widgets.TrainingDashboard()\ndisplay(dashboard)")
    button = find(opened, "ButtonModel", description="Stop after this epoch")
    status = find(opened, "HTMLModel", value="waiting for the first epoch")
    clicked = click(kernel, button)
    assert any("stop requested" in v for v in updates(clicked, status, "value"))
    assert updates(clicked, button, "disabled")[-1] is True
    assert stdout(run(kernel, "print(dashboard.stop_requested)")).strip() == "True"
