"""Every module imports with base dependencies only, and `lmf --help` is instant."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import lmfoundry

HEAVY = [
    "torch",
    "transformers",
    "numpy",
    "peft",
    "trl",
    "llama_cpp",
    "lancedb",
    "qdrant_client",
    "sentence_transformers",
    "rouge_score",
    "sacrebleu",
    "bitsandbytes",
    "matplotlib",
    "fastapi",
    "uvicorn",
    "mlflow",
    "datasets",
    "accelerate",
    "bm25s",
    "pypdf",
    "bs4",
    "gguf",
    "safetensors",
    "prometheus_client",
    "httpx",
    "openai",
    "scipy",
    "pandas",
    "pyarrow",
    "tokenizers",
    "jinja2",
]

BLOCKER = """
import importlib.abc, importlib.util, pkgutil, sys
HEAVY = set(%r)
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"blocked heavy import: {name}")
        return None
sys.meta_path.insert(0, Block())
import lmfoundry
names = [m.name for m in pkgutil.walk_packages(lmfoundry.__path__, "lmfoundry.")]
for name in names:
    importlib.import_module(name)
from lmfoundry.cli.main import build_parser
build_parser()
print(len(names))
"""


def test_every_module_imports_without_heavy_dependencies() -> None:
    code = BLOCKER % (HEAVY,)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    n_modules = int(proc.stdout.strip().splitlines()[-1])
    expected = sum(1 for _ in Path(lmfoundry.__path__[0]).rglob("*.py"))
    assert n_modules >= expected - 1  # walk_packages skips only lmfoundry/__init__ itself


def test_lmf_help_is_fast() -> None:
    lmf = Path(sys.executable).parent / "lmf"
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        proc = subprocess.run([str(lmf), "--help"], capture_output=True, text=True, timeout=60)
        timings.append(time.perf_counter() - start)
        assert proc.returncode == 0 and "usage: lmf" in proc.stdout
    assert min(timings) < 0.5, timings


def _function_level_lmfoundry_imports(source: str) -> list[int]:
    """Line numbers of `lmfoundry` imports inside a function body of `source`."""
    lines = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if in_function and isinstance(child, ast.Import | ast.ImportFrom):
                modules = (
                    [a.name for a in child.names] if isinstance(child, ast.Import) else [child.module or ""]
                )
                if any(m.split(".")[0] == "lmfoundry" for m in modules) or getattr(child, "level", 0):
                    lines.append(child.lineno)
            visit(child, inside)

    visit(ast.parse(source), False)
    return lines


def test_lmfoundry_imports_sit_at_module_top() -> None:
    """Imports inside functions are for heavy third-party libraries only, so the import graph that
    import-linter checks (and a reader sees at the top of each file) is the real one."""
    found = {
        str(path.relative_to(Path(lmfoundry.__path__[0]))): lines
        for path in Path(lmfoundry.__path__[0]).rglob("*.py")
        if (lines := _function_level_lmfoundry_imports(path.read_text()))
    }
    assert not found, f"lmfoundry imports inside functions (move them to the module top): {found}"
    probe = "import os\n\n\ndef f():\n    import torch\n    from lmfoundry.models import store\n"
    assert _function_level_lmfoundry_imports(probe) == [6]
