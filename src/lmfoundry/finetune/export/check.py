"""`lmf adapters check`: the same prompts through adapter, merged model and GGUF must agree.

Three ways to run a fine-tuned model can silently diverge: a merge that drops a scaling factor, an
export that permutes a tensor wrongly, a tokenizer that splits text differently. This runs each
prompt through (1) the adapter on transformers, (2) the merged model on transformers and (3) the
merged model exported to an f32 GGUF on llama.cpp, and reports the largest difference in the
next-token logits after the prompt and how far the greedy continuations agree.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.finetune.export.gguf_lora import write_lora_gguf
from lmfoundry.finetune.export.merge import merged_model
from lmfoundry.finetune.train.artifacts import load_base, load_tuned
from lmfoundry.generate.engine import LoadedModel, load_model
from lmfoundry.generate.hf_backend import TransformersBackend
from lmfoundry.generate.llamacpp_backend import LlamaCppBackend
from lmfoundry.models.gguf_writer import write_gguf
from lmfoundry.types import SamplingParams

DEFAULT_PROMPTS = (
    "Summarize the dialogue below.\n\n#Person1#: Are you coming to the party tonight?\n#Person2#: Yes, I'll bring some drinks.\n\n",
    "The capital of France is",
    "Write one sentence about the sea:",
)


_RUNNERS = ("merged", "gguf", "lora_gguf")
"""What the adapter's outputs are compared with (PromptCheck fields are prefixed with these)."""


@dataclass
class PromptCheck:
    prompt: str
    adapter_text: str
    merged_text: str
    gguf_text: str | None
    merged_max_logit_diff: float
    gguf_max_logit_diff: float | None
    merged_agreement: float
    gguf_agreement: float | None
    lora_gguf_max_logit_diff: float | None = None
    """Base f32 GGUF + the adapter as a GGUF LoRA on llama.cpp (LoRA runs only)."""
    lora_gguf_agreement: float | None = None


@dataclass
class CheckReport:
    threshold: float
    max_diff: float = 0.1
    """Largest tolerated next-token logit difference (f32 export: rounding only, ~1e-4)."""
    prompts: list[PromptCheck] = field(default_factory=list)
    gguf_backend: str | None = None

    def _measured(self, measure: str) -> list[float]:
        """`measure` (agreement or max_logit_diff) of every comparison that ran, on every prompt."""
        values = (getattr(p, f"{runner}_{measure}") for p in self.prompts for runner in _RUNNERS)
        return [value for value in values if value is not None]

    @property
    def agreement(self) -> float:
        return min(self._measured("agreement"), default=0.0)

    @property
    def max_logit_diff(self) -> float:
        return max(self._measured("max_logit_diff"), default=0.0)

    @property
    def ok(self) -> bool:
        return self.agreement >= self.threshold and self.max_logit_diff <= self.max_diff

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "agreement": self.agreement,
            "threshold": self.threshold,
            "max_diff": self.max_diff,
            "max_logit_diff": self.max_logit_diff,
            "gguf_backend": self.gguf_backend,
            "prompts": [asdict(p) for p in self.prompts],
        }


def agreement(reference: list[int], other: list[int]) -> float:
    """Share of the longer greedy sequence covered by the common prefix (1.0 = identical)."""
    longest = max(len(reference), len(other))
    if longest == 0:
        return 1.0
    common = 0
    for a, b in zip(reference, other, strict=False):
        if a != b:
            break
        common += 1
    return common / longest


def _hf_runner(model: Any, tokenizer: Any, name: str) -> Any:
    return LoadedModel(name, TransformersBackend(model, tokenizer))


def _hf_last_logits(model: Any, ids: list[int]) -> Any:
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float().numpy()


def _gguf_last_logits(loaded: Any, ids: list[int]) -> Any:
    """llama.cpp's next-token logits after `ids` (the context keeps only the last row)."""
    import numpy as np

    llm = loaded.runtime.llm
    llm.reset()
    llm.eval(ids)
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()


def check(
    path: str | Path,
    *,
    prompts: list[str] | None = None,
    max_new_tokens: int = 24,
    threshold: float = 0.9,
    max_diff: float = 0.1,
    gguf: bool = True,
) -> CheckReport:
    """Compare adapter, merged model and GGUF on `prompts` (greedy, `max_new_tokens`)."""
    import numpy as np

    if not 0 <= threshold <= 1:
        raise LmfError(f"--threshold must be in [0, 1], got {threshold}")
    tuned, tokenizer, info = load_tuned(path)
    merged, _, _ = merged_model(path)
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    runners = {
        "adapter": _hf_runner(tuned, tokenizer, "adapter"),
        "merged": _hf_runner(merged, tokenizer, "merged"),
    }
    report = CheckReport(threshold, max_diff)
    with tempfile.TemporaryDirectory(prefix="lmf-check-") as tmp:
        if gguf:
            file = write_gguf(merged, tokenizer, Path(tmp) / "merged-f32.gguf", outtype="f32")
            runners["gguf"] = load_model(str(file), backend="llama_cpp")
            report.gguf_backend = "llama_cpp"
            if info.method == "lora":
                runners["lora_gguf"] = _lora_gguf_runner(tuned, info, Path(tmp))
        for prompt in prompts or list(DEFAULT_PROMPTS):
            ids = runners["adapter"].prompt_ids(prompt)
            out = {k: r.generate(prompt, params) for k, r in runners.items()}
            reference = _hf_last_logits(tuned, ids)
            gguf_out = out.get("gguf")
            report.prompts.append(
                PromptCheck(
                    prompt=prompt,
                    adapter_text=out["adapter"].text,
                    merged_text=out["merged"].text,
                    gguf_text=gguf_out.text if gguf_out else None,
                    merged_max_logit_diff=float(np.abs(_hf_last_logits(merged, ids) - reference).max()),
                    gguf_max_logit_diff=float(
                        np.abs(_gguf_last_logits(runners["gguf"], ids) - reference).max()
                    )
                    if gguf
                    else None,
                    merged_agreement=agreement(out["adapter"].token_ids, out["merged"].token_ids),
                    gguf_agreement=agreement(out["adapter"].token_ids, gguf_out.token_ids)
                    if gguf_out
                    else None,
                    **_lora_gguf_fields(runners, out, ids, reference),
                )
            )
        for key in ("gguf", "lora_gguf"):
            if key in runners:
                runners[key].runtime.llm.close()
    return report


def _lora_gguf_runner(tuned: Any, info: Any, folder: Path) -> Any:
    """The unmerged base as an f32 GGUF with the adapter applied by llama.cpp as a GGUF LoRA."""

    lora = write_lora_gguf(tuned, folder / "adapter-f32.gguf")
    base_model, tokenizer = load_base(info)
    base = write_gguf(base_model, tokenizer, folder / "base-f32.gguf", outtype="f32")
    return LoadedModel("lora_gguf", LlamaCppBackend(base, lora_path=lora))


def _lora_gguf_fields(
    runners: dict[str, Any], out: dict[str, Any], ids: list[int], reference: Any
) -> dict[str, Any]:
    import numpy as np

    if "lora_gguf" not in runners:
        return {}
    return {
        "lora_gguf_max_logit_diff": float(
            np.abs(_gguf_last_logits(runners["lora_gguf"], ids) - reference).max()
        ),
        "lora_gguf_agreement": agreement(out["adapter"].token_ids, out["lora_gguf"].token_ids),
    }
