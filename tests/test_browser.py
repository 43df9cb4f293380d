"""The built book in a real headless browser (Debian's chromium): pages, math, mermaid, images, links, Colab,
and the layout a reader meets at 1400 px and at 400 px.

The book is built strictly (`jupyter-book build . -W -n --keep-going`), served on 127.0.0.1, and a harness
page on the same origin loads every page in an iframe of the reader's width and reports what rendered and
what does not fit; chromium's --dump-dom prints the report. The diagrams are also opened from file://, as
the README tells readers to. Skipped where chromium is absent, except in CI (`.ci/run` installs it).
"""
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                reason="Debian's chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def built_book():
    assert CHROMIUM, "CI must have chromium: .ci/run installs it"
    jb = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(jb), "build", str(ROOT), "-W", "-n", "--keep-going"], capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, "strict book build failed:\n" + (result.stdout + result.stderr)[-4000:]
    return HTML


def toc_pages():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [f"{p}.html" for p in pages]


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.images = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])


def parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def test_no_broken_internal_links_or_images(built_book):
    for name in toc_pages():
        page = built_book / name
        assert page.is_file(), f"{name} was not built"
        parsed = parse(page)
        for href in parsed.links + parsed.images:
            url = urlparse(href)
            if url.scheme or href.startswith(("#", "mailto:", "//")):
                continue
            target = (page.parent / unquote(url.path)).resolve()
            assert target.exists(), f"{name}: broken link {href}"
            if url.fragment and target.suffix == ".html":
                text = target.read_text(encoding="utf-8")
                assert f'id="{url.fragment}"' in text, f"{name}: broken anchor {href}"


def test_colab_buttons_point_at_each_notebook(built_book):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = urlparse(config["repository"]["url"]).path.strip("/")
    branch = config["repository"].get("branch", "main")
    notebooks = [p for p in toc_pages() if p.startswith("notebooks/")]
    assert notebooks
    for name in notebooks:
        links = parse(built_book / name).links
        want = f"https://colab.research.google.com/github/{repo}/blob/{branch}/{name[:-5]}.ipynb"
        assert want in links, f"{name}: no Colab button to {want}"
        assert any(link.startswith("https://mybinder.org/v2/gh/" + repo) for link in links), f"{name}: no Binder button"


WIDE, NARROW = 1400, 400  # a laptop browser window and a phone, in CSS pixels
MIN_LABEL_PX = 11  # smallest diagram label a reader can read at 100 % zoom

HARNESS = """<!doctype html><html><body><pre id="report">pending</pre><script>
const pages = %s;
const width = %d;
const results = {};
// What a reader would have to scroll sideways to read: the element, and the section it is in.
function describe(el) {
  const section = el.closest('section');
  return (section ? section.id : '?') + ': ' + el.textContent.trim().replace(/\\s+/g, ' ').slice(0, 60);
}
function layout(doc, win) {
  const shown = el => el.getClientRects().length > 0 && !el.closest('details:not([open])');
  const overflowing = sel => [...doc.querySelectorAll(sel)]
    .filter(el => shown(el) && el.scrollWidth > el.clientWidth + 1).map(describe);
  const labels = [];
  for (const svg of doc.querySelectorAll('pre.mermaid svg')) {
    const box = svg.getBoundingClientRect(), view = svg.viewBox && svg.viewBox.baseVal;
    if (!box.width || !view || !view.width) continue;
    for (const label of svg.querySelectorAll('.nodeLabel, .edgeLabel, .cluster-label, text')) {
      if (label.textContent.trim())
        labels.push(parseFloat(win.getComputedStyle(label).fontSize) * box.width / view.width);
    }
  }
  return {
    code_overflow: overflowing('div.cell_input pre, div.highlight pre'),
    output_overflow: overflowing('div.cell_output pre, div.cell_output .output'),
    table_overflow: overflowing('.pst-scrollable-table-container, .table-wrapper, article table'),
    math_overflow: overflowing('mjx-container[display="true"]'),
    smallest_label_px: labels.length ? Math.min(...labels) : null,
    page_width: doc.documentElement.scrollWidth,
    window_width: win.innerWidth,
  };
}
function inspect(doc) {
  const imgs = [...doc.querySelectorAll('article img, main img, .bd-article img')];
  return {
    title: doc.title,
    math_elements: doc.querySelectorAll('.math, span.math, div.math').length,
    math_rendered: doc.querySelectorAll('mjx-container').length,
    mermaid_blocks: doc.querySelectorAll('.mermaid, pre.mermaid').length,
    mermaid_rendered: doc.querySelectorAll('.mermaid svg, pre.mermaid svg').length,
    images: imgs.length,
    broken_images: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
  };
}
async function visit(page) {
  return new Promise(resolve => {
    const frame = document.createElement('iframe');
    frame.style.width = width + 'px'; frame.style.height = '900px';
    frame.onload = () => setTimeout(() => {
      try {
        results[page] = Object.assign(inspect(frame.contentDocument),
                                      layout(frame.contentDocument, frame.contentWindow));
      }
      catch (e) { results[page] = {error: String(e)}; }
      frame.remove(); resolve();
    }, 6000);
    frame.src = page;
    document.body.appendChild(frame);
  });
}
(async () => {
  for (const p of pages) await visit(p);
  document.getElementById('report').textContent = JSON.stringify(results);
})();
</script></body></html>"""


def run_harness(built_book: Path, profile: Path, width: int) -> dict:
    """Every page of the book loaded at `width` CSS pixels: what rendered and what does not fit."""
    pages = toc_pages()
    (built_book / "_browser_harness.html").write_text(HARNESS % (json.dumps(pages), width), encoding="utf-8")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=%d" % (8000 * (len(pages) + 1)),
             "--dump-dom", f"http://127.0.0.1:{server.server_address[1]}/_browser_harness.html"],
            capture_output=True, text=True, timeout=600)
    finally:
        server.shutdown()
        (built_book / "_browser_harness.html").unlink(missing_ok=True)
    match = re.search(r'<pre id="report">(.*?)</pre>', result.stdout, re.S)
    assert match and match.group(1) != "pending", "the harness did not finish:\n" + result.stderr[-2000:]
    import html as html_lib
    return json.loads(html_lib.unescape(match.group(1)))


@pytest.fixture(scope="module")
def browser_report(built_book, tmp_path_factory):
    return run_harness(built_book, tmp_path_factory.mktemp("chromium-profile"), WIDE)


@pytest.fixture(scope="module")
def narrow_report(built_book, tmp_path_factory):
    return run_harness(built_book, tmp_path_factory.mktemp("chromium-profile"), NARROW)


def test_every_page_loads_in_the_browser(browser_report):
    for page in toc_pages():
        info = browser_report.get(page, {})
        assert "error" not in info and info.get("title"), f"{page}: {info}"
        assert not info["broken_images"], f"{page}: images that did not load: {info['broken_images']}"


def test_math_renders(browser_report):
    pages_with_math = {p: i for p, i in browser_report.items() if i.get("math_elements")}
    assert any(p.startswith("notebooks/03") for p in pages_with_math), "the objective chapter shows no math"
    for page, info in pages_with_math.items():
        assert info["math_rendered"] >= info["math_elements"], f"{page}: MathJax did not render: {info}"


def test_mermaid_renders(browser_report):
    with_mermaid = {p: i for p, i in browser_report.items() if i.get("mermaid_blocks")}
    assert "notebooks/02_core_concepts.html" in with_mermaid, "the core-concepts chapter has no mermaid diagram"
    for page, info in with_mermaid.items():
        assert info["mermaid_rendered"] >= info["mermaid_blocks"], f"{page}: mermaid did not render: {info}"


def test_chapters_show_figures(browser_report):
    for page, info in browser_report.items():
        if page.startswith("notebooks/"):
            assert info["images"] >= 1, f"{page}: no figure shown"


@pytest.mark.parametrize("kind", ["code", "output", "table", "math"])
def test_nothing_scrolls_sideways_at_1400_px(browser_report, kind):
    # Code cells fit 88 columns (test_notebooks), printed lines wrap, tables and equations fit the column.
    for page, info in browser_report.items():
        assert not info[f"{kind}_overflow"], (
            f"{page} at {WIDE} px: {kind} wider than the text column, scrolled sideways: {info[f'{kind}_overflow']}")


def test_diagram_labels_are_legible(browser_report, narrow_report):
    for width, report in ((WIDE, browser_report), (NARROW, narrow_report)):
        labelled = {page: info["smallest_label_px"] for page, info in report.items() if info.get("mermaid_blocks")}
        assert labelled, "no page with a diagram"
        for page, smallest in labelled.items():
            assert smallest is not None and smallest >= MIN_LABEL_PX, (
                f"{page} at {width} px: a diagram label is {smallest} px, under {MIN_LABEL_PX} px")


def test_pages_fit_a_phone(narrow_report):
    for page, info in narrow_report.items():
        assert "error" not in info, f"{page}: {info}"
        assert info["page_width"] <= info["window_width"], (
            f"{page} at {NARROW} px: the page is {info['page_width']} px wide and scrolls sideways")
        assert info["mermaid_rendered"] >= info["mermaid_blocks"], f"{page} at {NARROW} px: {info}"


def test_diagrams_render_from_file_urls(built_book, tmp_path):
    # The README tells readers to open _build/html/index.html: module scripts cannot import from file://.
    pages = [p for p in toc_pages() if "{mermaid}" in _source_text(p)]
    assert pages, "no page with a diagram"
    for page in pages:
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
             "--disable-background-networking", "--disable-component-update", f"--user-data-dir={tmp_path}",
             "--virtual-time-budget=10000", "--dump-dom", (built_book / page).as_uri()],
            capture_output=True, text=True, timeout=120)
        blocks = len(re.findall(r'<pre class="mermaid', result.stdout))
        drawn = len(re.findall(r'<pre class="mermaid"[^>]*><svg', result.stdout))
        assert blocks and drawn == blocks, f"{page} from file://: {drawn} of {blocks} diagrams drawn"


def _source_text(page: str) -> str:
    stem = ROOT / page[: -len(".html")]
    for suffix in (".md", ".ipynb"):
        if stem.with_suffix(suffix).exists():
            return stem.with_suffix(suffix).read_text(encoding="utf-8")
    return ""


def test_one_output_box_per_stream(built_book):
    # nb_merge_streams: an epoch log printed line by line is one box, not one scrolled box per print.
    for page in [p for p in toc_pages() if p.startswith("notebooks/")]:
        # a cell's class list also carries its tags: "cell tag_hide-input docutils container"
        cells = re.split(r'<div class="cell\b[^"]*docutils container', (built_book / page).read_text(encoding="utf-8"))
        for number, cell in enumerate(cells[1:], 1):
            for kind in ("stream", "stderr"):
                boxes = cell.count(f'class="output {kind}')
                assert boxes <= 1, f"{page}: cell {number} shows its {kind} output in {boxes} boxes"


def test_pages_load_no_script_from_a_cdn(built_book):
    # Math and diagrams are vendored; widget views are off, so no require.js or widget manager either.
    for page in toc_pages():
        remote = re.findall(r'<script[^>]*\ssrc="((?:https?:)?//[^"]+)"', (built_book / page).read_text(encoding="utf-8"))
        assert not remote, f"{page} loads scripts from the network: {remote}"
