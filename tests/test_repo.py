"""Set-up files that cannot run here: workflows, Binder, pins, the package's loose dependencies."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def load(path):
    return yaml.safe_load((ROOT / path).read_text())


def triggers(workflow):
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True


def test_book_workflow_publishes_pages_on_push_to_main():
    wf = load(".github/workflows/book.yml")
    assert triggers(wf)["push"]["branches"] == ["main"]
    steps = wf["jobs"]["build"]["steps"]
    runs = " ".join(s.get("run", "") for s in steps)
    uses = [s.get("uses", "") for s in steps] + [s.get("uses", "") for s in wf["jobs"]["deploy"]["steps"]]
    assert "make book" in runs
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses)
    assert any(u.startswith("actions/deploy-pages") for u in uses)
    assert wf["permissions"]["pages"] == "write" and wf["permissions"]["id-token"] == "write"
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"


def test_test_workflow_runs_make_test_on_pull_requests():
    wf = load(".github/workflows/test.yml")
    assert "pull_request" in triggers(wf)
    runs = " ".join(s.get("run", "") for s in wf["jobs"]["test"]["steps"])
    assert "make test" in runs


def test_ci_entry_point_calls_make_test():
    assert "make test" in (ROOT / ".ci/run").read_text()


def test_binder_gets_a_cpu_only_torch():
    lines = (ROOT / "binder/requirements.txt").read_text().splitlines()
    assert any("download.pytorch.org/whl/cpu" in line for line in lines)
    assert any(re.match(r"torch==[\d.]+\+cpu$", line) for line in lines)


def test_pins_for_the_book_and_loose_deps_for_colab():
    req = (ROOT / "requirements.txt").read_text()
    for pin in ("torch==2.14.1", "torchvision==0.29.1", "jupyter-book==1.0.4.post1"):
        assert pin in req
    pyproject = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"dependencies = \[(.*?)\]", pyproject, re.S).group(1)
    assert "torch>=" in deps and "==" not in deps  # Colab (torch 2.11, Python 3.13) keeps its own torch
    assert "numpy<" not in deps


def test_readme_gives_exactly_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert commands == ["make book", "make test"]
    assert "_config.yml" in readme  # where the repository URL lives


def test_config_is_jupyter_book_1_with_parts():
    config = load("_config.yml")
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["only_build_toc_files"] is True
    # make test creates .venv-colab-widgets beside .venv: markdown in site-packages must not become pages
    assert {".venv*", ".pytest_cache"} <= set(config["exclude_patterns"])
    assert "sphinxcontrib.mermaid" in config["sphinx"]["extra_extensions"]
    toc = load("_toc.yml")
    assert toc["format"] == "jb-book" and all("caption" in p for p in toc["parts"])


def test_the_wheel_ships_the_classifier_and_the_pretrained_generators():
    """Colab installs a (non-editable) wheel from git: data folders must be packages with their .pt files."""
    import tomllib
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for folder in ("assets", "pretrained"):
        assert f"gan_utils.{folder}" in config["packages"]
        assert "*.pt" in config["package-data"][f"gan_utils.{folder}"]
        assert list((ROOT / "gan_utils" / folder).glob("*.pt")), folder
    # the applications chapters keep their nets one folder down (paired/, unpaired/, ...): every such
    # file must match a package-data pattern, or Colab's classroom mode finds no weights
    import fnmatch
    patterns = config["package-data"]["gan_utils.pretrained"]
    pretrained = ROOT / "gan_utils" / "pretrained"
    nested = [p.relative_to(pretrained).as_posix() for p in pretrained.glob("*/*.pt")]
    assert any(n.startswith("paired/sr4-") for n in nested)
    missed = [n for n in nested if not any(fnmatch.fnmatch(n, pat) for pat in patterns)]
    assert not missed, f"not in the wheel: {missed}; add their folder to package-data in pyproject.toml"
