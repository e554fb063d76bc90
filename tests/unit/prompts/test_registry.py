"""Where templates come from: built-ins, files, and versions in MLflow's prompt registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.prompts.registry import (
    builtin_names,
    link_to_run,
    list_prompts,
    register_prompt,
    resolve_prompt,
)
from lmfoundry.prompts.template import parse_prompt


def test_builtins_and_files_resolve_without_a_registry(tmp_path: Path) -> None:
    assert {"dialogsum-summary", "closed-book-qa", "instruct"} <= set(builtin_names())
    ref = resolve_prompt("dialogsum-summary")
    assert (ref.version, ref.source) == ("builtin", "builtin") and "{input}" in ref.template.input
    path = tmp_path / "mine.yaml"
    path.write_text(parse_prompt({"name": "mine", "instruction": "Go."}).to_yaml())
    assert resolve_prompt(str(path)).describe()["source"] == str(path)
    with pytest.raises(InvalidInputError, match="prompt file not found"):
        resolve_prompt(str(tmp_path / "missing.yaml"))
    with pytest.raises(InvalidInputError, match="no built-in prompt 'nope'"):
        resolve_prompt("nope")


def test_versions_live_in_mlflow_and_shadow_a_builtin(mlflow_db: Path) -> None:
    first = register_prompt(parse_prompt({"name": "dialogsum-summary", "instruction": "v1"}), "first")
    second = register_prompt(parse_prompt({"name": "dialogsum-summary", "instruction": "v2", "shots": 2}))
    assert (first.version, second.version) == ("1", "2")
    assert resolve_prompt("dialogsum-summary").template.instruction == "v2"
    pinned = resolve_prompt("dialogsum-summary@1")
    assert pinned.template.instruction == "v1" and pinned.describe()["source"] == "mlflow"
    rows = list_prompts()
    assert {"name": "dialogsum-summary", "version": "2", "source": "mlflow"} in rows
    assert {"name": "dialogsum-summary", "version": "builtin", "source": "builtin"} in rows
    with pytest.raises(InvalidInputError, match="no registered prompt dialogsum-summary@9"):
        resolve_prompt("dialogsum-summary@9")
    with pytest.raises(InvalidInputError, match="must be a number"):
        resolve_prompt("dialogsum-summary@latest")


def test_an_eval_run_links_the_prompt_version_it_used(mlflow_db: Path) -> None:
    from lmfoundry.track.runs import client, log_run

    ref = register_prompt(parse_prompt({"name": "linked", "instruction": "go"}))
    run_id = log_run("eval", {"prompt": ref.describe()}, {"rougeL": 0.5}, [], None, run_name="t")
    link_to_run(ref.describe(), run_id)
    linked = client().get_run(run_id).data.tags.get("mlflow.linkedPrompts", "")
    assert "linked" in linked and '"version": "1"' in linked
    link_to_run({"name": "dialogsum-summary", "version": "builtin", "source": "builtin"}, run_id)  # no-op
