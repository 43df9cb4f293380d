"""Mermaid diagrams from the vendored mermaid.min.js as classic scripts, so they render from file:// too.

sphinxcontrib-mermaid loads mermaid with an inline ES module (`import mermaid from ...`). Browsers refuse
module imports from file:// pages, which is how the README tells readers to open a local build, so every
diagram stayed raw `flowchart LR` text there. This extension runs after sphinxcontrib-mermaid on each
page that has a diagram, drops its module script, and adds two classic scripts from `_static/mermaid/`:
the library and `mermaid-init.js`, which renders every `pre.mermaid` at its natural size.
"""
from __future__ import annotations

from sphinx.application import Sphinx

from sphinxcontrib.mermaid import mermaid


def _use_classic_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    if doctree is None or not doctree.next_node(mermaid):
        return
    scripts = context["script_files"]
    # The module script sphinxcontrib-mermaid added for this page (its only inline script with an import).
    scripts[:] = [js for js in scripts if "import mermaid from" not in (js.attributes.get("body") or "")]
    app.add_js_file("mermaid/mermaid.min.js", defer="defer")
    app.add_js_file("mermaid/mermaid-init.js", defer="defer")


def setup(app: Sphinx) -> dict:
    # Priority 900: after sphinxcontrib-mermaid's own html-page-context handler (the default, 500).
    app.connect("html-page-context", _use_classic_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
