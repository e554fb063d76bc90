"""Model profiles (like an Ollama Modelfile): a base model plus prompt, template, sampling, adapters.

```yaml
base: smollm2-135m-instruct
system: You are a concise assistant.
chat_template: null          # a Jinja template string to override the model's own
parameters: {temperature: 0.2, max_new_tokens: 128}
adapters: [runs/lora-dialogsum/adapter]
prompt: dialogsum-summary     # a prompt template (`lmf prompts list`), NAME@VERSION or a YAML file
```
`lmf models create NAME -f profile.yaml` stores it; NAME then works wherever a model name does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lmfoundry import paths
from lmfoundry.config import build, load_yaml
from lmfoundry.errors import InvalidInputError
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.models.store import validate_name
from lmfoundry.types import SamplingParams


@dataclass
class Profile:
    base: str
    """Store name, packaged name, directory, GGUF file or hub id of the base model."""
    system: str | None = None
    """System prompt put before every chat."""
    chat_template: str | None = None
    """Jinja chat template overriding the model's own."""
    parameters: dict[str, Any] = field(default_factory=dict)
    """Sampling defaults (SamplingParams fields)."""
    adapters: list[str] = field(default_factory=list)
    """PEFT adapter directories applied on top of the base (transformers backend)."""
    backend: str | None = None
    """Force a backend (transformers or llama_cpp)."""
    prompt: str | None = None
    """A prompt template (NAME, NAME@VERSION or a YAML file) applied to every request."""

    def sampling(self) -> SamplingParams:
        return SamplingParams().replace(**self.parameters)


def parse_profile(data: dict[str, Any], where: str = "profile") -> Profile:
    if "base" not in data:
        raise InvalidInputError(f"{where}: missing required key 'base'")
    profile = build(Profile, data)
    profile.sampling()  # validates the parameters now, not at first use
    return profile


def profile_path(name: str) -> Path:
    return paths.profiles_dir() / f"{validate_name(name)}.yaml"


def create(name: str, file: str | Path) -> Path:
    """Validate a profile YAML and store it as `name`; adapter paths are made absolute."""
    source = Path(file)
    profile = parse_profile(load_yaml(source), where=str(source))
    profile.adapters = [str((source.parent / a).resolve()) for a in profile.adapters]
    for adapter in profile.adapters:
        if not Path(adapter).is_dir():
            raise InvalidInputError(f"{source}: adapter directory not found: {adapter}")
    target = profile_path(name)
    atomic_write_text(target, yaml.safe_dump(asdict(profile), sort_keys=False))
    return target


def find(name: str) -> Profile | None:
    path = paths.profiles_dir() / f"{name}.yaml"
    if "/" in name or not path.is_file():
        return None
    return parse_profile(load_yaml(path), where=str(path))


def list_profiles() -> list[dict[str, Any]]:
    folder = paths.profiles_dir()
    if not folder.is_dir():
        return []
    return [{"name": p.stem, **json.loads(json.dumps(load_yaml(p)))} for p in sorted(folder.glob("*.yaml"))]
