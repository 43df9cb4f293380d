"""Tensors handed to numpy or matplotlib must be on the CPU: a lint over every module and notebook code cell.

On a CPU `t.numpy()` works, so the book's own runs never notice; on Colab's GPU the same line raises
("can't convert cuda:0 device type tensor to numpy"). Chapter 9 shipped such a line. This test reads
the code (Python's `ast`, no execution) and flags the three ways a tensor reaches the host:

- `x.numpy()` unless the chain before it passes `.cpu()` (or `.to("cpu")`), or starts at a torch
  factory called without `device=` (`torch.linspace(0, 1, 41).numpy()`: CPU by construction);
- `np.asarray(x)` / `np.array(x)` of an expression that is visibly a tensor (a torch call, or a chain
  through a tensor-only method such as `.detach()` or `.float()`) without `.cpu()`;
- the same expressions passed to a plotting call (`ax.hist(t.detach())`, `plt.plot(torch.sigmoid(t))`).

A tensor behind a plain name (`ax.hist(scores)`) is invisible to a syntax check; write
`ax.hist(scores.cpu())` or `.cpu().numpy()` anyway, so that the next reader copies the safe form.
Lines that are CPU by construction in a way the rules cannot see go in ALLOWED, with the reason.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Methods that only a torch.Tensor has (numpy arrays have reshape, flatten, squeeze ... too, so not those).
TENSOR_ONLY = {"detach", "float", "double", "half", "long", "view", "unsqueeze", "permute", "contiguous",
               "clamp", "sigmoid", "softmax", "cuda", "requires_grad_"}
TORCH_FACTORIES = {"tensor", "as_tensor", "linspace", "logspace", "arange", "zeros", "ones", "full", "eye",
                   "rand", "randn", "randint", "empty", "from_numpy"}
PLOT_CALLS = {"hist", "plot", "scatter", "imshow", "bar", "barh", "fill_between", "errorbar", "step",
              "semilogy", "semilogx", "loglog", "contour", "contourf", "pcolormesh", "boxplot", "stem"}
NUMPY_CONVERSIONS = {"asarray", "array", "asanyarray"}

# (file, the flagged expression as ast.unparse writes it): CPU for a reason the rules cannot see.
ALLOWED = {
    # Checked by hand: CPU tensors (made by torch factories, data.* or metrics.*, or moved by .cpu() where
    # they were computed). These chapters are edited by others; write .cpu() there on their next edit.
    ("notebooks/01_background.ipynb", "normal_scores"),
    ("notebooks/01_background.ipynb", "scores"),
    ("notebooks/04_models.ipynb", "torch.sigmoid(logits[:4, 0]).detach()"),
    ("notebooks/05_losses.ipynb", "p_grid"),
    ("notebooks/05_losses.ipynb", "loss_mm.detach()"),
    ("notebooks/05_losses.ipynb", "loss_ns.detach()"),
    ("notebooks/05_losses.ipynb", "grad_mm"),
    ("notebooks/05_losses.ipynb", "grad_ns"),
    ("notebooks/10_evaluation.ipynb", "h"),
    ("notebooks/10_evaluation.ipynb", "real_2d"),
    ("notebooks/10_evaluation.ipynb", "radius"),
    ("notebooks/11_latent_space.ipynb", "norms"),
    ("notebooks/11_latent_space.ipynb", "midpoint_norms"),
    ("notebooks/11_latent_space.ipynb", "nn_dist[name, space]"),
}


def _chain(node: ast.AST) -> list[ast.AST]:
    """The receiver chain of an expression, outermost first: a.b().c()[0].d -> [that, ..., a]."""
    out = [node]
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        else:
            return out
        out.append(node)


def _methods(node: ast.AST) -> list[str]:
    return [n.func.attr for n in _chain(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]


def _goes_to_cpu(node: ast.AST) -> bool:
    for n in _chain(node):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            if n.func.attr in ("cpu", "tolist", "item"):
                return True
            if n.func.attr == "to" and any(isinstance(a, ast.Constant) and a.value == "cpu" for a in n.args):
                return True
    return False


def _is_torch_call(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id in ("torch", "F"))


def _cpu_by_construction(node: ast.AST) -> bool:
    """A chain that starts at torch.linspace(...) etc. without device=: the tensor was made on the CPU."""
    calls = [n for n in _chain(node) if isinstance(n, ast.Call)]
    root = calls[-1] if calls else None  # the innermost call of the chain: where the tensor comes from
    return (root is not None and _is_torch_call(root) and root.func.attr in TORCH_FACTORIES
            and not any(k.arg == "device" for k in root.keywords))


def _visibly_tensor(node: ast.AST) -> bool:
    return any(_is_torch_call(n) for n in _chain(node)) or bool(TENSOR_ONLY & set(_methods(node)))


def host_transfers_without_cpu(source: str) -> list[tuple[int, str]]:
    """(line, expression) of every tensor the code hands to numpy or matplotlib without `.cpu()`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name, owner = node.func.attr, node.func.value
        if name == "numpy" and not node.args:
            if not (_goes_to_cpu(owner) or _cpu_by_construction(owner)):
                found.append((node.lineno, ast.unparse(owner)))
        elif (name in NUMPY_CONVERSIONS and isinstance(owner, ast.Name) and owner.id in ("np", "numpy")) \
                or name in PLOT_CALLS:
            for arg in node.args:
                already = isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr == "numpy"
                if not already and _visibly_tensor(arg) and not (_goes_to_cpu(arg) or _cpu_by_construction(arg)):
                    found.append((node.lineno, ast.unparse(arg)))
    return found


def _code_units():
    """(file, label, source) of every package module, script and notebook code cell (magics dropped)."""
    for path in sorted([*ROOT.glob("gan_utils/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("scripts/*.py")]):
        yield path.relative_to(ROOT).as_posix(), "", path.read_text(encoding="utf-8")
    for path in sorted(ROOT.glob("notebooks/*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for i, cell in enumerate(cells):
            if cell["cell_type"] == "code":
                lines = "".join(cell["source"]).splitlines()
                code = "\n".join(line[:len(line) - len(line.lstrip())] + "pass"  # a magic, kept as a statement
                                 if line.lstrip().startswith(("%", "!")) else line for line in lines)
                yield path.relative_to(ROOT).as_posix(), f" cell {i}", code


def test_no_tensor_reaches_numpy_or_matplotlib_without_cpu():
    bad, used = [], set()
    for file, label, source in _code_units():
        for line, expr in host_transfers_without_cpu(source):
            if (file, expr) in ALLOWED:
                used.add((file, expr))
            else:
                bad.append(f"{file}{label}, line {line}: {expr}")
    assert not bad, ("tensors handed to numpy/matplotlib without .cpu() (they fail on a GPU); write "
                     "x.detach().cpu().numpy():\n  " + "\n  ".join(bad))
    assert used == ALLOWED, f"allow-list entries that match nothing any more, remove them: {ALLOWED - used}"


@pytest.mark.parametrize("code", [
    "axes[1].hist(after_w.numpy(), bins=100)",             # chapter 9's line that failed on Colab
    "x = net(z).detach().numpy()",
    "a = np.asarray(torch.sigmoid(logits))",
    "ax.plot(steps, losses.detach())",
    "plt.imshow(images[0].float())",
    "t = torch.linspace(0, 1, 5, device=device).numpy()",  # a factory with device= is not CPU by construction
])
def test_the_lint_flags(code):
    assert host_transfers_without_cpu(code), code


@pytest.mark.parametrize("code", [
    "axes[1].hist(after_w.cpu().numpy(), bins=100)",
    "x = net(z).detach().cpu().numpy()",
    "x = net(z).to('cpu').numpy()",
    "bins = torch.linspace(0, 1, 41).numpy()",
    "a = np.asarray(scores_list)",
    "ax.plot(steps, np.array(history['loss_D']))",
    "plt.imshow(grid.permute(1, 2, 0).cpu())",
])
def test_the_lint_passes(code):
    assert not host_transfers_without_cpu(code), code
