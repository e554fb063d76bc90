"""Every shipped YAML under configs/ loads against its entry point (litgpt's test_config_hub idea)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.config import load_yaml

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _profile(path: Path) -> Any:
    from lmfoundry.models.profile import parse_profile

    return parse_profile(load_yaml(path), where=str(path))


def _gates(path: Path) -> Any:
    from lmfoundry.eval.gates import load_gates

    return load_gates(path)


def _lmeval(path: Path) -> Any:
    from lmfoundry.eval.lmeval_adapter import load_lmeval_task

    return load_lmeval_task(path)


def _finetune(path: Path) -> Any:
    from lmfoundry.finetune.config import load_finetune_config

    return load_finetune_config(path)


def _pipeline(path: Path) -> Any:
    from lmfoundry.pipeline.spec import load_pipeline

    return load_pipeline(path)


def _monitor(path: Path) -> Any:
    from lmfoundry.monitor.drift import load_thresholds

    return load_thresholds(path)


def _guardrails(path: Path) -> Any:
    from lmfoundry.serve.guardrails import load_guardrails

    return load_guardrails(path)


LOADERS: dict[str, Callable[[Path], Any]] = {
    "pipelines": _pipeline,
    "profiles": _profile,
    "gates": _gates,
    "lmeval": _lmeval,
    "finetune": _finetune,
    "pretrain": _finetune,
    "monitor": _monitor,
    "guardrails": _guardrails,
}
ALL_YAML = sorted(CONFIGS.rglob("*.yaml"))


@pytest.mark.parametrize("path", ALL_YAML, ids=[str(p.relative_to(CONFIGS)) for p in ALL_YAML])
def test_shipped_config_loads(path: Path) -> None:
    kind = path.relative_to(CONFIGS).parts[0]
    assert kind in LOADERS, f"no loader registered for configs/{kind}: add one to this test"
    assert LOADERS[kind](path) is not None
    assert path.read_text().startswith("#"), "each shipped config starts with a comment showing its command"
