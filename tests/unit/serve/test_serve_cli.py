"""`lmf serve` argument handling: bad flags are one-line errors before any model loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lmfoundry.cli.main import main
from lmfoundry.cli.serve import _batch_dir, _parse_adapters, _served_name


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-batch", "0"], "--max-batch"),
        (["--port", "70000"], "--port"),
        (["--default-max-tokens", "5000"], "--default-max-tokens"),
        (["--adapter", "noequals"], "NAME=PATH"),
        (["--adapter-root", "/definitely/not/here"], "not a directory"),
        (["--api-keys-file", "/definitely/not/here"], "not found"),
        (["--timeout", "-1"], "--timeout"),
        (["--max-file-bytes", "10"], "--max-file-bytes"),
    ],
)
def test_bad_serve_flags_fail_cleanly(
    argv: list[str], message: str, capsys: Any, tiny_llama_dir: Path
) -> None:
    assert main(["serve", str(tiny_llama_dir), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmf: error:") and message in err


def test_unknown_model_fails_cleanly(capsys: Any) -> None:
    assert main(["serve", "no-such-model-anywhere", "--embedder", "none"]) == 1
    assert "unknown model" in capsys.readouterr().err


def test_helpers() -> None:
    assert _parse_adapters(["a=/x", "b=/y=z"]) == {"a": "/x", "b": "/y=z"}
    assert _served_name("/tmp/models/SmolLM2.Q4.gguf") == "SmolLM2.Q4"
    assert _served_name("smollm2-135m-instruct") == "smollm2-135m-instruct"


def test_help_mentions_both_forms(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "lmf serve stats" in out and "--adapter-root" in out


def test_batch_dir_default_and_disable(lmf_home: Path) -> None:
    from argparse import Namespace

    assert _batch_dir(Namespace(batch_dir=None)) == lmf_home / "serve" / "batches"
    assert _batch_dir(Namespace(batch_dir="none")) is None
    assert _batch_dir(Namespace(batch_dir="/srv/b")) == Path("/srv/b")


def test_openmp_wait_policy_follows_the_backend_the_server_will_run() -> None:
    """Spinning OpenMP threads for llama.cpp (its own default; PASSIVE halved its speed), sleeping
    ones where transformers runs (spinning teams made batched torch decoding crawl)."""
    from lmfoundry.serve.service import omp_wait_policy

    assert omp_wait_policy("auto", adapters=False) == "ACTIVE"
    assert omp_wait_policy("llama_cpp", adapters=False) == "ACTIVE"
    assert omp_wait_policy("auto", adapters=True) == "PASSIVE"
    assert omp_wait_policy("transformers", adapters=False) == "PASSIVE"
