"""Figures: grids from either pixel range, NaN-aware smoothing, curves and animations that render."""
import pytest
import math

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
from gan_utils import train, viz  # noqa: E402


def test_make_grid_accepts_both_ranges_and_agrees():
    u8 = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    as_float = u8.float() / 127.5 - 1
    a, b = viz.make_grid(u8, nrow=3), viz.make_grid(as_float, nrow=3)
    assert a.shape == b.shape == (2 * 30 + 2, 3 * 30 + 2)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert viz.make_grid(torch.zeros(2, 3, 8, 8)).shape[-1] == 3


def test_smooth_skips_gaps():
    out = viz.smooth([math.nan, math.nan, 1.0, 3.0, 5.0], window=2)
    assert math.isnan(out[0]) and math.isnan(out[1])
    np.testing.assert_allclose(out[2:], [1.0, 2.0, 4.0])
    np.testing.assert_allclose(viz.smooth([1.0, 2.0, 3.0], window=1), [1.0, 2.0, 3.0])


def test_history_figures_render(tmp_path):
    history = train.History()
    for i in range(120):
        for key in train.STEP_KEYS:
            history.steps[key].append(math.sin(i / 10) if key != "loss_G" or i > 3 else math.nan)
    history.samples = [torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8) for _ in range(3)]
    axes = viz.plot_history(history, window=10)
    assert len(axes[0].lines) == 2 and len(axes[1].lines) == 2
    html = viz.animate(history.samples, nrow=4)
    assert "<script" in html.data and html.data.count("data:image/png") >= 3
    path = viz.save_grid(history.samples[0], tmp_path / "grid.png", nrow=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inline_figures_are_retina():
    # Outside IPython nothing changes; inside, a Figure shows as a PNG of twice its pixels at its own size.
    import base64
    import struct

    import matplotlib.pyplot as plt
    from IPython.core.interactiveshell import InteractiveShell

    assert viz.sharp_inline_figures() is False
    shell = InteractiveShell.instance()
    try:
        assert viz.sharp_inline_figures() is True
        fig = plt.figure(figsize=(2, 1), dpi=80)
        fig.gca().plot([0, 1])
        data, metadata = shell.display_formatter.format(fig)
        png = data["image/png"]
        png = base64.b64decode(png) if isinstance(png, str) else png
        width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR
        assert abs(metadata["image/png"]["width"] * 2 - width) <= 1  # shown at half its pixels
        assert width >= 2 * 100  # about 2 x 160 px: bbox_inches="tight" trims the border
    finally:
        InteractiveShell.clear_instance()
        plt.close("all")


def test_source_is_a_highlighted_block_that_fits_the_column():
    from gan_utils import models

    block = viz.source(train.update_D).data
    assert block.startswith("```python\n# gan_utils.train.update_D\ndef update_D(")
    assert block.endswith("\n```")
    # a method's source loses its class indentation, so the block starts at column 0
    method = viz.source(models.MLPGenerator.forward).data
    assert method.startswith("```python\n# gan_utils.models.MLPGenerator.forward\ndef forward(")
    assert all(len(line) <= 88 for line in block.splitlines())
    both = viz.source(train.update_D, train.update_G).data  # one block: one output box on the page
    assert both.count("```") == 2 and "def update_D(" in both and "def update_G(" in both


def test_source_refuses_lines_that_would_scroll_sideways():
    def wide():
        return "................................................................................"

    with pytest.raises(ValueError, match=r"wide: lines \[2\] are wider than 60 columns"):
        viz.source(wide, width=60)
    with pytest.raises(ValueError, match="at least one"):
        viz.source()
    assert "wide" in viz.source(wide, width=100).data
