"""Drop progress-bar residue from committed notebook outputs: a tqdm bar saved mid-run.

The static book shows a widget's text/plain (widget views are off), so a saved tqdm widget reads as a bar
frozen at 0 %, and a console bar as a stderr box of carriage returns. Run it after executing a chapter:

    python scripts/strip_progress_bars.py notebooks/*.ipynb
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# tqdm's bar: "  0%|          | 0/1407 [00:00<?, ?batch/s]"
BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+")


def is_progress_bar(output: dict) -> bool:
    """A tqdm widget or console bar; other stderr (warnings, "Resuming from ...") is kept."""
    if output.get("output_type") == "stream" and output.get("name") == "stderr":
        return bool(BAR.search("".join(output.get("text", ""))))
    data = output.get("data", {})
    if "application/vnd.jupyter.widget-view+json" in data:
        return bool(BAR.search("".join(data.get("text/plain", ""))))
    return False


def strip(path: Path) -> int:
    """Remove progress-bar outputs from one notebook in place; returns how many were removed."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    removed = 0
    for cell in nb["cells"]:
        outputs = cell.get("outputs", [])
        kept = [o for o in outputs if not is_progress_bar(o)]
        removed += len(outputs) - len(kept)
        if removed and len(kept) != len(outputs):
            cell["outputs"] = kept
    if removed:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return removed


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{name}: removed {strip(Path(name))} progress-bar outputs")
