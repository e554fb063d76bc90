"""The bodies of Ollama's model endpoints (`/api/tags`, `/api/show`, `/api/ps`, `/api/version`)
for what `lmf serve` serves: the model, its `model:adapter` ids and the embedder.

Ollama clients (Open WebUI, editor plugins, the `ollama` CLI) list models and read their details
before they chat, so the listing must describe the real model: its family, size, format,
quantization, context length and chat template. The facts are read once per served model.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.models.convert import gguf_summary

if TYPE_CHECKING:
    from lmfoundry.serve.handlers import ServerState
    from lmfoundry.serve.service import ServedModel

OLLAMA_API_VERSION = "0.6.0"
"""The Ollama release whose API this matches (structured outputs, tools, /api/embed)."""
NEVER = "9999-12-31T23:59:59Z"
"""`expires_at` of a model that is never unloaded."""
TORCH_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}


@dataclass(frozen=True)
class ModelFacts:
    format: str
    """"gguf" (llama.cpp) or "safetensors" (transformers)."""
    family: str
    parameters: int
    size: int
    """Bytes of weights."""
    quantization: str
    context_length: int
    template: str
    """The chat template (Jinja), "" when the model has none."""


EMBEDDER_FACTS = ModelFacts("safetensors", "sentence-transformers", 0, 0, "", 0, "")
"""What is listed for the embedder without loading it (it loads at its first request)."""

_facts: weakref.WeakKeyDictionary[Any, ModelFacts] = weakref.WeakKeyDictionary()


def model_facts(served: ServedModel) -> ModelFacts:
    """Facts about a served model, read once (a GGUF file is parsed, a torch model counted)."""
    if served not in _facts:
        runtime = served.runtime
        reader = _gguf_facts if served.loaded.backend == "llama_cpp" else _torch_facts
        _facts[served] = reader(runtime)
    return _facts[served]


def _torch_facts(runtime: Any) -> ModelFacts:
    model = runtime.model
    weights = [p for name, p in model.named_parameters() if "lora_" not in name]  # the base model only
    dtype = str(weights[0].dtype).removeprefix("torch.") if weights else ""
    return ModelFacts(
        format="safetensors",
        family=str(getattr(model.config, "model_type", "") or ""),
        parameters=sum(int(p.numel()) for p in weights),
        size=sum(int(p.numel()) * int(p.element_size()) for p in weights),
        quantization=TORCH_DTYPES.get(dtype, dtype.upper()),
        context_length=int(runtime.context_length),
        template=str(getattr(runtime.tokenizer, "chat_template", None) or ""),
    )


def _gguf_facts(runtime: Any) -> ModelFacts:
    import gguf

    path = Path(runtime.llm.model_path)
    summary = gguf_summary(path)
    file_type = summary["file_type"]
    quantization = ""
    if file_type in {t.value for t in gguf.LlamaFileType}:
        quantization = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    return ModelFacts(
        format="gguf",
        family=str(runtime.llm.metadata.get("general.architecture", "")),
        parameters=int(summary["parameters"]),
        size=path.stat().st_size,
        quantization=quantization,
        context_length=int(runtime.context_length),
        template=str(getattr(runtime, "chat_template", None) or ""),
    )


def parameter_size(count: int) -> str:
    """Ollama's rounded size label: "135M", "1.7B" ("" when unknown)."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f}".removesuffix(".0") + unit
    return str(count) if count else ""


def details(facts: ModelFacts) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": facts.format,
        "family": facts.family,
        "families": [facts.family] if facts.family else None,
        "parameter_size": parameter_size(facts.parameters),
        "quantization_level": facts.quantization,
    }


def _entry(name: str, facts: ModelFacts, modified_at: str) -> dict[str, Any]:
    """One model as /api/tags lists it. The digest identifies the name, it is not a content hash."""
    return {
        "name": name,
        "model": name,
        "modified_at": modified_at,
        "size": facts.size,
        "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": details(facts),
    }


def _names(state: ServerState, adapters: list[str]) -> list[str]:
    base = state.served.name
    return [f"{base}:latest", *(f"{base}:{a}" for a in adapters)]


def started_at(state: ServerState) -> str:
    return datetime.fromtimestamp(state.created, UTC).isoformat().replace("+00:00", "Z")


def tags(state: ServerState) -> dict[str, Any]:
    """/api/tags: the model (as `name:latest`), each adapter as `name:adapter`, and the embedder."""
    facts = model_facts(state.served)
    adapters = state.served.adapters.names() if state.served.adapters else []
    models = [_entry(name, facts, started_at(state)) for name in _names(state, adapters)]
    if state.options.embedder:
        models.append(_entry(f"{state.options.embedder}:latest", EMBEDDER_FACTS, started_at(state)))
    return {"models": models}


def running(state: ServerState) -> dict[str, Any]:
    """/api/ps: the model and its loaded adapters, all resident until the server stops."""
    facts = model_facts(state.served)
    adapters = state.served.adapters.loaded() if state.served.adapters else []
    models = []
    for name in _names(state, adapters):
        entry = _entry(name, facts, started_at(state))
        del entry["modified_at"]
        models.append({**entry, "expires_at": NEVER, "size_vram": 0, "context_length": facts.context_length})
    return {"models": models}


def _parameters(state: ServerState, facts: ModelFacts) -> list[tuple[str, str]]:
    """The profile's sampling defaults as Ollama parameters (name, value) in Modelfile order."""
    defaults = state.served.loaded.defaults
    values: list[tuple[str, Any]] = [
        ("temperature", defaults.temperature),
        ("top_k", defaults.top_k),
        ("top_p", defaults.top_p),
        ("min_p", defaults.min_p),
        ("repeat_penalty", defaults.repetition_penalty),
        ("num_ctx", facts.context_length),
        *(("stop", json.dumps(stop)) for stop in defaults.stop),
    ]
    return [(key, str(value)) for key, value in values]


def show(state: ServerState, name: str) -> dict[str, Any]:
    """/api/show for the model: details, the profile's sampling defaults as Ollama `parameters`,
    the chat template, and the `model_info` keys Ollama derives from GGUF metadata."""
    facts = model_facts(state.served)
    parameters = _parameters(state, facts)
    modelfile = f"# served by lmfoundry\nFROM {name}\n" + "".join(
        f"PARAMETER {k} {v}\n" for k, v in parameters
    )
    info = {
        "general.architecture": facts.family,
        "general.parameter_count": facts.parameters,
        f"{facts.family or 'model'}.context_length": facts.context_length,
    }
    return {
        "modelfile": modelfile,
        "parameters": "\n".join(f"{key:<30} {value}" for key, value in parameters),
        "template": facts.template,
        "details": details(facts),
        "model_info": info,
        "capabilities": ["completion", "tools"] if facts.template else ["completion"],
        "modified_at": started_at(state),
    }


def show_embedder(state: ServerState, name: str) -> dict[str, Any]:
    """/api/show for the embedder (not loaded before its first request, so no facts read)."""
    return {
        "modelfile": f"FROM {name}\n",
        "parameters": "",
        "template": "",
        "details": details(EMBEDDER_FACTS),
        "model_info": {},
        "capabilities": ["embedding"],
        "modified_at": started_at(state),
    }
