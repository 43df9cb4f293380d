"""Rewrite every notebook's Colab setup cell from the one repository URL in _config.yml.

    python scripts/sync_notebooks.py          # rewrite
    python scripts/sync_notebooks.py --check  # exit 1 if a notebook disagrees (the tests call setup_cell)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKER = "# Setup: in Colab, install the book's helper package"


def repository_url() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return config["repository"]["url"].rstrip("/")


def setup_cell(url: str | None = None) -> str:
    """The first code cell of every chapter: installs gan_utils only in Colab, never touching its torch."""
    url = url or repository_url()
    return (f"{MARKER} (Colab keeps its own torch).\n"
            "import sys\n"
            "if \"google.colab\" in sys.modules:\n"
            f"    repo = \"{url}\"\n"  # a line of its own: the %pip line stays inside the text column
            "    %pip install -q \"gan_utils[metrics] @ git+{repo}\"")


def first_code_cell(nb: dict) -> dict | None:
    return next((c for c in nb["cells"] if c["cell_type"] == "code"), None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    want = setup_cell()
    bad = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        cell = first_code_cell(nb)
        if cell is None:
            bad.append(f"{path.name}: no code cell")
            continue
        source = "".join(cell["source"])
        if source == want:
            continue
        if args.check or not source.startswith(MARKER):
            bad.append(f"{path.name}: the first code cell is not the setup cell of _config.yml's URL")
            continue
        cell["source"] = want.splitlines(keepends=True)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"updated {path.name}")
    for line in bad:
        print(line, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
