// An ES module around the vendored UMD build of mermaid 11.4.1 (MIT), so the book renders its
// diagrams without a CDN (offline classrooms, the headless-browser test). sphinxcontrib-mermaid
// imports this file as `import mermaid from "./mermaid-shim.mjs"`.
await new Promise((resolve, reject) => {
  const script = document.createElement("script");
  script.src = new URL("./mermaid.min.js", import.meta.url).href;
  script.onload = resolve;
  script.onerror = () => reject(new Error("could not load the vendored mermaid.min.js"));
  document.head.appendChild(script);
});
export default window.mermaid;
