"""What an evaluation asks: a model used as it comes, or a fine-tuning run.

`lmf eval run|compare|approaches` take either. A model name (store, packaged, profile, folder,
GGUF) is loaded as it is; a fine-tuning run or adapter folder is its base model with the trained
adapter (or the fully tuned model), asked through the template it was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.finetune.train.artifacts import find_artifact, is_run, load_tuned, read_info
from lmfoundry.generate.engine import LoadedModel, load_model
from lmfoundry.generate.hf_backend import TransformersBackend


@dataclass
class Subject:
    name: str
    """How results name it: the model, or `BASE+RUN`."""
    model: Any
    run: str | None = None
    """The run or adapter folder of a fine-tune (its training template applies), else None."""


def load_subject(spec: str, *, backend: str = "auto") -> Subject:
    """A model name or a fine-tuning run (see the module docstring)."""
    if not is_run(spec):
        return Subject(spec, load_model(spec, backend=backend))
    folder = find_artifact(spec)
    info = read_info(folder)
    if info.stage == "reward":
        raise LmfError(f"{spec} is a reward model: it scores answers, it does not write them")
    model, tokenizer, _ = load_tuned(folder)
    name = f"{Path(info.base_model).name}+{Path(spec).resolve().name}"
    return Subject(name, LoadedModel(name, TransformersBackend(model, tokenizer)), str(folder))
