"""The package as a map: every module is on the maps, small, and nothing points outside the
repository (docs/architecture.md)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "src" / "askdagger_mnist"
MAX_LINES = 300


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_is_on_the_one_map_and_the_root_holds_only_the_face_settings_and_errors():
    architecture = (REPO / "docs" / "architecture.md").read_text()
    for path in _modules():
        if path.name == "__init__.py":
            continue
        relative = path.relative_to(PACKAGE)
        assert re.search(rf"\b{re.escape(path.name)}", architecture), \
            f"{relative} is missing from docs/architecture.md"
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert root == ["__init__.py", "errors.py", "settings.py"], root


def test_no_module_is_over_300_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in _modules()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_nothing_outside_tests_and_benchmarks_points_outside_the_repository():
    places = [REPO / "README.md", REPO / "Snakefile", REPO / "config.yaml",
              *PACKAGE.rglob("*.py"), *(REPO / "docs").rglob("*.md"), *(REPO / "workflow").rglob("*"),
              *(REPO / "envs").rglob("*.yaml")]
    for path in places:
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        text = path.read_text()
        assert "../shared" not in text and "sag-mnist.md" not in text, path.relative_to(REPO)


def test_spec_citations_name_sections_that_exist():
    spec = (REPO / "docs" / "spec.md").read_text()
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", spec, re.M))
    assert {"1", "2", "3", "4", "5", "6", "7", "8", "3.5", "4.5"} <= sections
    cited = set()
    for path in [*PACKAGE.rglob("*.py"), *(REPO / "docs").glob("*.md"), REPO / "config.yaml",
                 *(REPO / "workflow").rglob("*")]:
        if path.is_file() and "__pycache__" not in path.parts:
            cited |= set(re.findall(r"§(\d+(?:\.\d+)?)", path.read_text()))
    assert cited and cited <= sections, f"cited sections that spec.md lacks: {cited - sections}"


def test_data_never_imports_prebuilt():
    """prebuilt/ builds on data/ (atomic writes, hashing, the downloader), never the reverse."""
    import ast

    for path in sorted((PACKAGE / "data").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert not re.match(r"(\.\.|askdagger_mnist\.)prebuilt\b", name), \
                    f"data/{path.name} imports {name}"
