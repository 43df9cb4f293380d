"""Committed notebooks: real outputs, run in order, no errors, the chapter shape, the one repository URL."""
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import strip_progress_bars  # noqa: E402
import sync_notebooks  # noqa: E402


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def test_every_toc_entry_exists_and_every_notebook_is_in_the_toc():
    listed = toc_files()
    for entry in listed:
        assert (ROOT / f"{entry}.md").exists() or (ROOT / f"{entry}.ipynb").exists(), entry
    for path in NOTEBOOKS:
        assert f"notebooks/{path.stem}" in listed, f"{path.name} is not in _toc.yml"


def test_there_are_chapters():
    assert len(NOTEBOOKS) >= 6


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_of_a_real_run(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = code_cells(nb)
    counts = [c.get("execution_count") for c in cells]
    assert all(isinstance(n, int) for n in counts), f"{path.name}: a code cell was never run"
    assert counts == sorted(counts) and len(set(counts)) == len(counts), f"{path.name}: cells run out of order"
    assert counts[0] == 1, f"{path.name}: not run top to bottom in one kernel"
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: stored error output {errors[0].get('ename')}"
    with_output = sum(bool(c.get("outputs")) for c in cells)
    assert with_output >= len(cells) // 2, f"{path.name}: most code cells have no output"
    images = sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))
    assert images >= 1, f"{path.name}: no figure"
    assert path.stat().st_size < 6_000_000, f"{path.name}: notebook over 6 MB"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_shape(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    markdown = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    first = "".join(nb["cells"][0]["source"])
    assert re.match(r"# \d+\. .+\(.*[\u4e00-\u9fff].*\)", first), f"{path.name}: title '# N. English (中文)'"
    assert "Learning objectives" in markdown
    assert re.search(r"^## Summary", markdown, re.M) and re.search(r"^## Exercises", markdown, re.M)
    assert markdown.count(":class: dropdown") >= 3, f"{path.name}: at least 3 exercises with hidden solutions"
    sources = "\n".join("".join(c["source"]) for c in nb["cells"])  # not outputs: base64 images hold any letters
    assert not re.search(r"\b(TODO|FIXME|TBD)\b", sources), f"{path.name}: a placeholder in the text"
    # a generator script's unfilled slot, e.g. a paragraph that reads VERDICT_TEXT
    slot = re.search(r"^\s*[A-Z][A-Z0-9]*(_[A-Z0-9]+)+\s*$", markdown, re.M)
    assert not slot, f"{path.name}: an unfilled placeholder {slot.group(0).strip()!r} in the text"
    imports = "".join("".join(c["source"]) for c in code_cells(nb))
    assert "from gan_utils import" in imports


CODE_COLUMNS = 88  # what the book's text column shows at 1400 px without a sideways scrollbar


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_cells_fit_the_column(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    too_long = [(number, line) for number, cell in enumerate(nb["cells"]) if cell["cell_type"] == "code"
                for line in "".join(cell["source"]).splitlines()
                if len(line) > CODE_COLUMNS]
    assert not too_long, (f"{path.name}: {len(too_long)} code lines over {CODE_COLUMNS} columns, the first in "
                          f"cell {too_long[0][0]}: {too_long[0][1][:70]}... (wrap it; ruff format helps)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_progress_bar_residue(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    bars = [number for number, cell in enumerate(nb["cells"]) for output in cell.get("outputs", [])
            if strip_progress_bars.is_progress_bar(output)]
    assert not bars, f"{path.name}: progress bars saved in cells {bars}: run scripts/strip_progress_bars.py"


def test_strip_progress_bars_keeps_everything_else(tmp_path):
    bar = {"output_type": "display_data", "metadata": {},
           "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2},
                    "text/plain": ["training:   0%|          | 0/1407 [00:00<?, ?batch/s]"]}}
    console_bar = {"output_type": "stream", "name": "stderr", "text": ["\r 50%|#####     | 5/10 [00:01<00:01]"]}
    note = {"output_type": "stream", "name": "stderr", "text": ["Resuming from runs/x/checkpoint.pt\n"]}
    widget = {"output_type": "display_data", "metadata": {},
              "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "y", "version_major": 2},
                       "text/plain": ["DigitPicker (run the notebook to use its controls)"]}}
    cell = {"cell_type": "code", "source": [], "metadata": {}, "execution_count": 1,
            "outputs": [note, bar, console_bar, widget]}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert strip_progress_bars.strip(path) == 2
    assert json.loads(path.read_text())["cells"][0]["outputs"] == [note, widget]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_training_run_honours_classroom_mode(path):
    # GAN_SKIP_TRAINING=1 (make test runs every chapter so) must load a pretrained G or shrink the run.
    code = "\n".join("".join(c["source"]) for c in code_cells(json.loads(path.read_text(encoding="utf-8"))))
    trains = re.search(r"train\.fit\(|\.start\(|for epoch in range\(", code)
    if trains:
        assert re.search(r"train\.SKIP_TRAINING|train\.train_budget\(", code), (
            f"{path.name} trains ({trains.group(0)}...) but ignores classroom mode: use train.SKIP_TRAINING "
            "with train.load_pretrained, or size the run with train.train_budget")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_installs_from_the_one_repository_url(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert "".join(code_cells(nb)[0]["source"]) == sync_notebooks.setup_cell(), \
        f"{path.name}: run `make sync` (the URL lives in _config.yml)"


def test_setup_cell_never_reinstalls_torch():
    cell = sync_notebooks.setup_cell()
    assert 'if "google.colab" in sys.modules:' in cell
    requirements = [t.strip('"') for t in cell.split("%pip install")[1].split() if not t.startswith("-")]
    assert requirements[0] == "gan_utils[metrics]" and requirements[1] == "@" and len(requirements) == 3
    assert not any(re.match(r"torch(vision)?\b", t) for t in requirements)  # Colab keeps its own torch


def test_book_pages_have_no_placeholders():
    for page in (ROOT / "book").glob("*.md"):
        text = page.read_text(encoding="utf-8")
        assert "TODO" not in text and "<!-- runtime-table -->" not in text, page.name
