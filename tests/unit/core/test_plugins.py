"""Plugins: a package installed next to lmfoundry adds a reranker and a pipeline stage kind through
the `lmfoundry.plugins` entry-point group, without touching lmfoundry; built-ins are resolved the
same way; bad specs are errors before anything is opened.

The plugin distribution is built here (a pyproject + one module), installed with pip into a
temporary folder, and used by a real `lmf` process that finds it on PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmfoundry import plugins
from lmfoundry.cli.main import main
from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.rag.rerank import PerSourceReranker, make_reranker

PLUGIN_MODULE = '''
"""A third-party lmfoundry plugin: a reranker and a pipeline stage kind."""
from dataclasses import dataclass

from lmfoundry.pipeline.stage_kind import StageKind


@dataclass(frozen=True)
class Reverse:
    keep: int

    def __call__(self, index, query, hits, k):
        return list(reversed(hits))[: min(k, self.keep)]


def reverse_reranker(arg):
    return Reverse(int(arg) if arg else 1000)


@dataclass
class EchoOptions:
    """Options of the echo stage."""

    message: str = "hello"


def echo(ctx, options):
    ctx.stage_dir.mkdir(parents=True, exist_ok=True)
    (ctx.stage_dir / "echo.txt").write_text(options.message)
    return {"message": options.message, "path": str(ctx.stage_dir / "echo.txt")}


def register_plugins(register):
    register("reranker", "reverse", reverse_reranker)
    register("stage", "echo", StageKind(EchoOptions, echo, summary="write a message to a file"))
'''

PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "lmf-test-plugin"
version = "0.1"

[project.entry-points."lmfoundry.plugins"]
test_plugin = "lmf_test_plugin:register_plugins"

[tool.setuptools]
py-modules = ["lmf_test_plugin"]
"""


CORPUS = {
    "paris.md": "# Paris\n\nParis is the capital of France and its largest city.",
    "rivers.txt": "The Seine flows through Paris before it reaches the English Channel.",
    "banks.txt": "A bank keeps money; a river bank is the land along a river.",
    "cats.txt": "Cats sleep for most of the day and hunt at dusk.",
}


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin built and installed (pip, offline) into its own folder, as a user would."""
    source = tmp_path_factory.mktemp("plugin_src")
    (source / "pyproject.toml").write_text(PYPROJECT)
    (source / "lmf_test_plugin.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    site = tmp_path_factory.mktemp("plugin_site")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    command += ["--no-build-isolation", "--target", str(site), str(source)]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    assert list(site.glob("lmf_test_plugin-0.1.dist-info/entry_points.txt"))
    return site


def _lmf(site: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site), "LMF_HOME": str(home), "LMF_TRACK": "0"}
    lmf = Path(sys.executable).parent / "lmf"
    return subprocess.run([str(lmf), *args], capture_output=True, text=True, timeout=600, env=env)


def test_a_plugin_adds_a_reranker_used_by_lmf_rag_search(plugin_site: Path, tmp_path: Path) -> None:
    home, corpus_dir = tmp_path / "home", tmp_path / "docs"
    corpus_dir.mkdir()
    for name, text in CORPUS.items():
        (corpus_dir / name).write_text(text)
    indexed = _lmf(plugin_site, home, "rag", "index", str(corpus_dir), "--store", "docs", "--json")
    assert indexed.returncode == 0, indexed.stderr
    query = ["rag", "search", "docs", "capital of France", "-k", "3", "--json"]
    plain = _lmf(plugin_site, home, *query)
    reversed_ = _lmf(plugin_site, home, *query, "--rerank", "reverse")
    assert plain.returncode == 0 and reversed_.returncode == 0, reversed_.stderr
    plain_sources = [h["source"] for h in json.loads(plain.stdout)["hits"]]
    # the plugin reverses the reranking candidates (4k of them), so its first hit is not plain's
    reranked = [h["source"] for h in json.loads(reversed_.stdout)["hits"]]
    assert len(reranked) == 3 and reranked[0] != plain_sources[0]
    bad = _lmf(plugin_site, home, *query, "--rerank", "nosuch")
    assert bad.returncode == 2 and "known: cross-encoder, llm, mmr, per-source, reverse" in bad.stderr


def test_a_plugin_adds_a_pipeline_stage_kind(plugin_site: Path, tmp_path: Path) -> None:
    pipeline = tmp_path / "echo.yaml"
    stages = [{"kind": "echo", "message": "from a plugin"}]
    spec = {
        "name": "echo",
        "workdir": str(tmp_path / "work"),
        "tracking": {"enabled": False},
        "stages": stages,
    }
    pipeline.write_text(yaml.safe_dump(spec))
    run = _lmf(plugin_site, tmp_path / "home", "pipeline", "run", str(pipeline), "--no-progress")
    assert run.returncode == 0, run.stderr
    written = list((tmp_path / "work").rglob("echo.txt"))
    assert [p.read_text() for p in written] == ["from a plugin"]


def test_without_the_plugin_its_names_are_unknown(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown reranker 'reverse'"):
        make_reranker("reverse")
    assert "echo" not in plugins.names("stage")


def test_builtins_resolve_lazily_and_specs_are_checked_up_front(capsys: pytest.CaptureFixture[str]) -> None:
    assert make_reranker("per-source:2") == PerSourceReranker(2)
    for spec, message in [
        ("per-source:x", "per-source limit"),
        ("mmr:2", r"\[0, 1\]"),
        ("cross-encoder", "PATH"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            make_reranker(spec)
    # the CLI rejects a bad spec as a usage error before it opens any store
    with pytest.raises(SystemExit) as exit_info:
        main(["rag", "search", "no-such-store", "q", "--rerank", "per-source:0"])
    assert exit_info.value.code == 2
    assert "per-source limit must be >= 1" in capsys.readouterr().err
    assert plugins.names("backend")[:2] == ["llama_cpp", "transformers"]
    assert plugins.parse_spec("jsonl:/a:b") == ("jsonl", "/a:b")


def test_registering_over_a_builtin_or_an_unknown_kind_is_refused() -> None:
    def factory(arg: str) -> Any:
        return None

    with pytest.raises(LmfError, match="already provided by lmfoundry"):
        plugins.register("reranker", "mmr", factory)
    with pytest.raises(InvalidInputError, match="unknown plugin kind"):
        plugins.register("nonsense", "x", factory)
