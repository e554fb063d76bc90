"""Where prompt templates come from, and their versions: built-ins, YAML files, MLflow's registry.

`resolve_prompt("NAME[@VERSION]" or a path)` finds a template:

- a `.yaml` / `.yml` path: that file (version `file`);
- a registered name: MLflow's prompt registry (MLflow 3), the latest version or `@VERSION`;
- a built-in name (`lmf prompts list`): the YAML shipped in `prompts/builtin/` (version `builtin`).

A registered name shadows a built-in of the same name, so `lmf prompts register` can publish an
improved version of a built-in prompt. `register_prompt` stores a template's YAML as a new
version; every evaluation records the name, version and source of the prompt it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lmfoundry.errors import InvalidInputError
from lmfoundry.prompts.template import PromptTemplate, load_prompt_file, parse_prompt
from lmfoundry.track.runs import client, tracking_uri

BUILTIN_DIR = Path(__file__).with_name("builtin")
TAG = "lmfoundry"
"""Registry tag marking lmfoundry prompt templates (value: the template format)."""
FORMAT = "prompt-template/1"


@dataclass(frozen=True)
class PromptRef:
    """A template and where it came from."""

    template: PromptTemplate
    version: str
    """The registry version number, `builtin` or `file`."""
    source: str
    """`mlflow`, `builtin` or the file's path."""

    def describe(self) -> dict[str, Any]:
        t = self.template
        return {"name": t.name, "version": self.version, "source": self.source, "shots": t.shots,
                "selection": t.selection, "seed": t.seed}  # fmt: skip


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def builtin_prompt(name: str) -> PromptRef:
    path = BUILTIN_DIR / f"{name}.yaml"
    if not path.is_file():
        raise InvalidInputError(f"no built-in prompt {name!r} (built-in: {', '.join(builtin_names())})")
    return PromptRef(load_prompt_file(path), "builtin", "builtin")


def resolve_prompt(spec: str) -> PromptRef:
    """The template `spec` names: a YAML path, `NAME@VERSION`, or `NAME` (latest registered, else built-in)."""
    if spec.endswith((".yaml", ".yml")):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise InvalidInputError(f"prompt file not found: {path}")
        return PromptRef(load_prompt_file(path), "file", str(path))
    name, _, version = spec.partition("@")
    if version:
        found = _registered(name, version)
        if found is None:
            raise InvalidInputError(f"no registered prompt {name}@{version} (see `lmf prompts list`)")
        return found
    found = _registered(name, None) if _tracking_available() else None
    return found or builtin_prompt(name)


def _registered(name: str, version: str | None) -> PromptRef | None:
    """A registered version (the latest when `version` is None), or None when there is none."""
    if version is not None and not version.isdigit():
        raise InvalidInputError(f"prompt version must be a number: {name}@{version}")
    found = client().load_prompt(name, version=int(version) if version else None, allow_missing=True)
    if found is None:
        return None
    template = parse_prompt(yaml.safe_load(found.template), where=f"prompt {name}@{found.version}")
    return PromptRef(template, str(found.version), "mlflow")


def _tracking_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("mlflow") is not None


def register_prompt(template: PromptTemplate, message: str | None = None) -> PromptRef:
    """Store `template` as the next version of its name in MLflow's prompt registry."""
    version = client().register_prompt(
        name=template.name,
        template=template.to_yaml(),
        commit_message=message or template.description or None,
        tags={TAG: FORMAT},
    )
    return PromptRef(template, str(version.version), "mlflow")


def list_prompts() -> list[dict[str, Any]]:
    """Built-in and registered templates, one row each (registered rows carry their latest version)."""
    rows = [{"name": n, "version": "builtin", "source": "builtin"} for n in builtin_names()]
    if _tracking_available():
        for prompt in client().search_prompts(filter_string=f"tags.{TAG} = '{FORMAT}'"):
            latest = client().load_prompt(prompt.name)
            rows.append({"name": prompt.name, "version": str(latest.version), "source": "mlflow"})
    return sorted(rows, key=lambda r: (r["name"], r["source"]))


def link_to_run(prompt: dict[str, Any], run_id: str) -> None:
    """Link a registered prompt version to the MLflow run that used it (nothing for built-ins and files)."""
    if prompt.get("source") != "mlflow":
        return
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())  # the registry store looks the run up through the global URI
    version = client().get_prompt_version(prompt["name"], int(prompt["version"]))
    client().link_prompt_version_to_run(run_id, version)
