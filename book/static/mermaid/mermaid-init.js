// Renders the page's diagrams with the vendored mermaid.min.js (loaded before this file, as a classic
// script: module imports do not run from file://). Natural size: labels stay at 14 px, and a diagram
// wider than a narrow screen scrolls inside its own box (book.css) instead of shrinking to a smudge.
// Tight spacing keeps two side-by-side columns within the text column at 1400 px.
document.addEventListener("DOMContentLoaded", function () {
  var blocks = Array.prototype.slice.call(document.querySelectorAll("pre.mermaid"));
  if (!blocks.length) return;
  if (!window.mermaid) {
    console.error("mermaid.min.js did not load: the diagrams stay as text");
    return;
  }
  window.mermaid.initialize({
    startOnLoad: false,
    theme: "neutral",
    fontSize: 14,
    themeVariables: { fontSize: "14px" },
    flowchart: { useMaxWidth: false, htmlLabels: true, nodeSpacing: 24, rankSpacing: 30, padding: 8 },
  });
  // A diagram inside a closed dropdown has no size yet, and mermaid would lay it out with empty labels:
  // render it when it first becomes visible. One render at a time (mermaid.run is not re-entrant).
  var queue = Promise.resolve();
  function render(nodes) {
    // On a phone-width column, side-by-side (LR) layouts are stacked top to bottom instead.
    nodes.forEach(function (el) {
      if (el.clientWidth < 600) el.textContent = el.textContent.replace(/^(\s*flowchart) LR/, "$1 TB");
    });
    queue = queue.then(function () { return window.mermaid.run({ nodes: nodes }); });
  }
  var visible = blocks.filter(function (el) { return el.offsetParent !== null; });
  if (visible.length) render(visible);
  var hidden = blocks.filter(function (el) { return el.offsetParent === null; });
  if (!hidden.length || typeof IntersectionObserver === "undefined") return;
  var observer = new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) {
      if (entry.isIntersecting) {
        observer.unobserve(entry.target);
        render([entry.target]);
      }
    });
  });
  hidden.forEach(function (el) { observer.observe(el); });
});
