"""Does an ONNX export compute what the fp32 transformers model computes? (`lmf export onnx`)

In the style of `lmf adapters check`. Prompts are windows of the held-out text
(`quantize/heldout.py`); each goes through the reference (transformers, fp32) and the export
(onnxruntime-genai on CPU, its KV cache included) twice:

- teacher-forced on the reference's greedy continuation, one token at a time through the KV cache:
  greedy agreement = the share of those positions where the export's argmax is the reference's
  token (the quantization report's definition), and the largest |logit difference| there;
- free-running greedy decoding: prefix agreement = the matching prefix over the longer
  continuation (`lmf adapters check`'s definition; one early flip on a near tie sends the rest
  elsewhere, so it is reported, not gated).

The gate is greedy agreement >= threshold and max |logit difference| <= max_diff; quantized
exports get looser defaults (`TOLERANCES`). It catches a broken export (wrong rotary base, a
permuted tensor, a KV cache fed back wrongly: agreement near 0, differences of 10+), and reports
how close a quantized one is.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.finetune.export.check import agreement
from lmfoundry.plugins import require
from lmfoundry.quantize.heldout import heldout_ids, windows

TOLERANCES = {"fp32": (0.99, 0.01), "int8": (0.85, 3.0)}
"""precision -> (minimum greedy agreement, largest tolerated |logit difference|). fp32 measures
1.0 / 9e-5 on SmolLM2-135M, int8 0.95 / 1.3 (docs/deploy.md)."""


@dataclass
class PromptParity:
    prompt: str
    reference_text: str
    onnx_text: str
    greedy_agreement: float
    """Teacher-forced: share of positions where the export's argmax is the reference's token."""
    max_logit_diff: float
    """Teacher-forced: largest |logit difference| over the positions and the vocabulary."""
    prefix_agreement: float
    """Free-running greedy: matching prefix / longer continuation."""


@dataclass
class ParityReport:
    precision: str
    threshold: float
    max_diff: float
    runtime: str
    decode_tokens_per_s: float = 0.0
    """ONNX Runtime's free-running greedy decode: tokens after the first over the time after the
    first, over all prompts (short runs on whatever else the machine does: a rough figure)."""
    prompts: list[PromptParity] = field(default_factory=list)

    def _mean(self, measure: str) -> float:
        return statistics.fmean(getattr(p, measure) for p in self.prompts) if self.prompts else 0.0

    @property
    def greedy_agreement(self) -> float:
        return self._mean("greedy_agreement")

    @property
    def prefix_agreement(self) -> float:
        return self._mean("prefix_agreement")

    @property
    def max_logit_diff(self) -> float:
        return max((p.max_logit_diff for p in self.prompts), default=0.0)

    @property
    def ok(self) -> bool:
        return self.greedy_agreement >= self.threshold and self.max_logit_diff <= self.max_diff

    def to_dict(self) -> dict[str, Any]:
        summary = ("ok", "greedy_agreement", "max_logit_diff", "prefix_agreement")
        return {
            **{key: getattr(self, key) for key in summary},
            **{key: value for key, value in asdict(self).items() if key != "prompts"},
            "prompts": [asdict(p) for p in self.prompts],
        }


def tolerances(precision: str, threshold: float | None, max_diff: float | None) -> tuple[float, float]:
    """(threshold, max_diff): the given ones, else the precision's defaults; checked."""
    default_threshold, default_diff = TOLERANCES[precision]
    threshold = default_threshold if threshold is None else threshold
    max_diff = default_diff if max_diff is None else max_diff
    if not 0 <= threshold <= 1:
        raise LmfError(f"--threshold must be in [0, 1], got {threshold}")
    if max_diff < 0:
        raise LmfError(f"--max-diff must not be negative, got {max_diff}")
    return threshold, max_diff


def parity_prompts(tokenizer: Any, count: int, tokens: int) -> list[list[int]]:
    """`count` consecutive windows of `tokens` ids of the held-out text."""
    if count < 1:
        raise LmfError(f"the parity check needs at least one prompt, got {count}")
    return windows(heldout_ids(tokenizer, count * tokens), tokens)[:count]


def check_onnx(
    folder: str | Path,
    model: Any,
    tokenizer: Any,
    *,
    precision: str = "fp32",
    prompts: int = 4,
    prompt_tokens: int = 32,
    max_new_tokens: int = 32,
    threshold: float | None = None,
    max_diff: float | None = None,
    on_step: Callable[[str], None] | None = None,
) -> ParityReport:
    """Compare the export in `folder` with `model` (fp32 transformers) on held-out prompts;
    `threshold` and `max_diff` default to the precision's `TOLERANCES`. The reference runs on
    every prompt first, then the export, so neither runtime's threads compete with the other's."""
    step = on_step or (lambda _message: None)
    limits = tolerances(precision, threshold, max_diff)
    eos = eos_ids(Path(folder))
    references = []
    for i, ids in enumerate(parity_prompts(tokenizer, prompts, prompt_tokens), start=1):
        step(f"parity check: transformers, prompt {i}/{prompts}")
        continuation = hf_greedy(model, ids, max_new_tokens, eos)
        logits = hf_logits(model, ids + continuation)[len(ids) - 1 : len(ids) + len(continuation) - 1]
        references.append((ids, continuation, logits))
    runner = OnnxRunner(folder)
    report = ParityReport(precision, *limits, runner.runtime)
    seconds, decoded = 0.0, 0
    for i, (ids, continuation, logits) in enumerate(references, start=1):
        step(f"parity check: ONNX Runtime, prompt {i}/{prompts}")
        free, elapsed = runner.greedy(ids, max_new_tokens)
        seconds, decoded = seconds + elapsed, decoded + len(free) - 1
        forced = runner.teacher_forced(ids, continuation)
        report.prompts.append(_compare(tokenizer, ids, continuation, logits, forced, free))
    report.decode_tokens_per_s = round(decoded / seconds, 1) if seconds else 0.0
    return report


def _compare(
    tokenizer: Any, ids: list[int], reference: list[int], expected: Any, forced: Any, free: list[int]
) -> PromptParity:
    """One prompt: the reference's greedy tokens and logits against the export's."""
    import numpy as np

    return PromptParity(
        prompt=tokenizer.decode(ids),
        reference_text=tokenizer.decode(reference),
        onnx_text=tokenizer.decode(free),
        greedy_agreement=float((forced.argmax(-1) == np.array(reference)).mean()),
        max_logit_diff=float(np.abs(forced - expected).max()),
        prefix_agreement=agreement(reference, free),
    )


def eos_ids(folder: Path) -> set[int]:
    """The end-of-sequence ids onnxruntime-genai stops at (genai_config.json)."""
    config = json.loads((folder / "genai_config.json").read_text(encoding="utf-8"))
    eos = config["model"]["eos_token_id"]
    return set(eos) if isinstance(eos, list) else {eos}


def hf_greedy(model: Any, ids: list[int], max_new_tokens: int, eos: set[int]) -> list[int]:
    """Greedy continuation with transformers' KV cache, stopping after an `eos` token."""
    import torch

    out: list[int] = []
    with torch.no_grad():
        result = model(input_ids=torch.tensor([ids]), use_cache=True)
        while len(out) < max_new_tokens:
            token = int(result.logits[0, -1].argmax())
            out.append(token)
            if token in eos:
                break
            result = model(input_ids=torch.tensor([[token]]), cache=result.cache, use_cache=True)
    return out


def hf_logits(model: Any, ids: list[int]) -> Any:
    """[len(ids), vocab] next-token logits of one forward pass, as numpy."""
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float().numpy()


class OnnxRunner:
    """An exported folder on onnxruntime-genai (CPU): greedy decoding and teacher-forced logits."""

    def __init__(self, folder: str | Path) -> None:
        og = require("onnxruntime_genai", extra="onnx", package="onnxruntime-genai")
        self.og, self.model = og, og.Model(str(folder))
        self.runtime = f"onnxruntime-genai {og.__version__} (CPU)"

    def _generator(self, max_length: int) -> Any:
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(do_sample=False, max_length=max_length)
        return self.og.Generator(self.model, params)

    def stream(self, ids: list[int], max_new_tokens: int) -> Iterator[int]:
        """Greedy tokens after `ids`, one at a time (stops after EOS or `max_new_tokens`)."""
        generator = self._generator(len(ids) + max_new_tokens)
        generator.append_tokens(ids)
        while not generator.is_done():
            generator.generate_next_token()
            yield int(generator.get_next_tokens()[0])

    def greedy(self, ids: list[int], max_new_tokens: int) -> tuple[list[int], float]:
        """(greedy continuation, seconds from its first token to its last)."""
        out: list[int] = []
        first = time.perf_counter()
        for token in self.stream(ids, max_new_tokens):
            if not out:
                first = time.perf_counter()
            out.append(token)
        return out, time.perf_counter() - first

    def teacher_forced(self, ids: list[int], continuation: list[int]) -> Any:
        """[len(continuation), vocab] logits: after the prompt, then after each forced token."""
        import numpy as np

        generator = self._generator(len(ids) + len(continuation))
        generator.append_tokens(ids)
        rows = [self._last_logits(generator)]
        for token in continuation[:-1]:
            generator.append_tokens([token])
            rows.append(self._last_logits(generator))
        return np.stack(rows)

    @staticmethod
    def _last_logits(generator: Any) -> Any:
        import numpy as np

        logits = np.asarray(generator.get_logits(), dtype=np.float32)
        return logits.reshape(-1, logits.shape[-1])[-1]
