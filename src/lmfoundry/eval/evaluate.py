"""Run a task against any generator and keep every output, score and timing.

`run_task` needs only an object with `generate(prompt, params)` returning something with `.text,
.prompt_tokens, .completion_tokens, .ttft_s, .total_s` (a `LoadedModel`, a remote client, a stub),
so the same code evaluates local models, servers and the tests' deterministic generators. How each
example is asked is an `AskPlan` (`prompting.py`): by default the form the model was made for.

Outputs are checked as well as scored: an empty output, one a stop string cut at its first
character (the model answered in a format the prompt did not expect), and one the length limit
cut are counted per example and as rates, because a score over outputs that say nothing is not
a measurement of the model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lmfoundry.errors import LmfError
from lmfoundry.eval.latency import DEFAULT_PRICE_PER_HOUR, Timing, latency_summary
from lmfoundry.eval.metrics import corpus_scores, score_example
from lmfoundry.eval.prompting import AskPlan, plan_for
from lmfoundry.eval.tasks import Task
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.types import Example, Message, SamplingParams


class Generation(Protocol):
    """The parts of a generation result that evaluation reads."""

    @property
    def text(self) -> str: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def ttft_s(self) -> float: ...
    @property
    def total_s(self) -> float: ...


class Generator(Protocol):
    """Anything that turns a prompt into a generation (e.g. `lmfoundry.load(...)`)."""

    def generate(self, prompt: str | list[Message], params: SamplingParams) -> Generation: ...


@dataclass
class ExampleOutput:
    """One example's output, scores and timings (one line of `outputs.jsonl`)."""

    id: str
    input: str
    output: str
    reference: str
    scores: dict[str, float]
    latency: dict[str, float]
    finish_reason: str = "stop"
    empty: bool = False
    """Nothing left after stop strings and whitespace are removed."""
    cut_at_start: bool = False
    """Empty because a stop string came first: the model answered in another format."""
    truncated: bool = False
    """The length limit (`max_new_tokens` or the context) ended the answer."""
    shots: int = 0
    """Demonstrations in this example's prompt."""

    @property
    def timing(self) -> Timing:
        return Timing(self.latency["ttft_s"], self.latency["total_s"], int(self.latency["completion_tokens"]))


@dataclass
class EvalResult:
    """Everything one evaluation run produced; `results.json` + `outputs.jsonl` on disk."""

    task: str
    model: str
    metrics: list[str]
    outputs: list[ExampleOutput]
    aggregates: dict[str, float]
    latency: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    prompt: dict[str, Any] = field(default_factory=dict)
    """Which prompt asked the examples (name, version, source, shots, selection, form)."""

    def output_checks(self) -> dict[str, Any]:
        """Counts and rates of empty, cut-at-start and truncated outputs."""
        n = max(len(self.outputs), 1)
        counts = {
            "empty": sum(o.empty for o in self.outputs),
            "cut_at_start": sum(o.cut_at_start for o in self.outputs),
            "truncated": sum(o.truncated for o in self.outputs),
        }
        rates = {f"{key}_rate": value / n for key, value in counts.items()}
        return {**rates, "counts": counts}

    def summary(self) -> dict[str, Any]:
        """The contents of `results.json`."""
        return {
            "task": self.task,
            "model": self.model,
            "n": len(self.outputs),
            "metrics": self.aggregates,
            **self.output_checks(),
            "prompt": self.prompt,
            "metric_names": self.metrics,
            "latency": self.latency,
            "params": self.params,
        }

    def scores(self, metric: str) -> dict[str, float]:
        """Per-example values of one metric, keyed by example id."""
        return {o.id: o.scores[metric] for o in self.outputs if metric in o.scores}

    def save(self, out_dir: str | Path) -> Path:
        """Write `outputs.jsonl` then `results.json`, each atomically (temp file + rename)."""
        out = Path(out_dir)
        lines = "".join(json.dumps(asdict(o), ensure_ascii=False) + "\n" for o in self.outputs)
        atomic_write_text(out / "outputs.jsonl", lines)
        atomic_write_text(out / "results.json", json.dumps(self.summary(), indent=2) + "\n")
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> EvalResult:
        out = Path(out_dir)
        try:
            summary = json.loads((out / "results.json").read_text(encoding="utf-8"))
            lines = (out / "outputs.jsonl").read_text(encoding="utf-8").splitlines()
            outputs = [ExampleOutput(**json.loads(line)) for line in lines if line.strip()]
            names = summary.get("metric_names") or summary["metrics"]  # older files: names in "metrics"
            return cls(
                task=summary["task"],
                model=summary["model"],
                metrics=list(names),
                outputs=outputs,
                aggregates=summary.get("aggregates") or summary["metrics"],
                latency=summary["latency"],
                params=summary.get("params", {}),
                prompt=summary.get("prompt", {}),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LmfError(f"{out}: not a readable evaluation result ({exc})") from exc


def run_task(
    model: Generator,
    task: Task,
    limit: int | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    *,
    params: SamplingParams | None = None,
    price_per_hour: float = DEFAULT_PRICE_PER_HOUR,
    plan: AskPlan | None = None,
) -> EvalResult:
    """Generate an answer for each example (the first `limit`), score it, summarize, save.

    `params` overrides the task's generation settings; `plan` says how examples are asked (default:
    `plan_for(model, task)`); `price_per_hour` prices the hardware for the cost-per-1M-tokens figure.
    """
    if limit is not None and limit < 1:
        raise LmfError(f"--limit must be >= 1, got {limit}")
    params = params or task.params
    plan = plan or plan_for(model, task, max_new_tokens=params.max_new_tokens)
    examples = task.examples[:limit] if limit else task.examples
    outputs = []
    with _progress_bar(progress) as bar:
        bar_task = bar.add_task(f"eval {task.name}", total=len(examples))
        for example in examples:
            outputs.append(_run_example(model, task, example, params, plan))
            bar.advance(bar_task)
    result = EvalResult(
        task=task.name,
        model=str(getattr(model, "name", type(model).__name__)),
        metrics=sorted({key for o in outputs for key in o.scores}),
        outputs=outputs,
        aggregates=_aggregate(task, outputs),
        latency=latency_summary([o.timing for o in outputs], price_per_hour),
        params={**asdict(params), "stop": list(params.stop)},
        prompt=plan.describe(),
    )
    if out_dir is not None:
        result.save(out_dir)
    return result


def _run_example(
    model: Generator, task: Task, example: Example, params: SamplingParams, plan: AskPlan
) -> ExampleOutput:
    rendered = plan.render(example)
    stop = tuple(dict.fromkeys((*params.stop, *rendered.stop)))
    generation = model.generate(rendered.prompt, params.replace(stop=stop))
    text = clean_output(generation.text, stop)
    timing = Timing(generation.ttft_s, generation.total_s, generation.completion_tokens)
    cut = getattr(generation, "stopped_by", None) is not None or any(s and s in generation.text for s in stop)
    finish = str(getattr(generation, "finish_reason", "stop"))
    return ExampleOutput(
        id=example.id,
        input=example.input,
        output=text,
        reference=example.reference,
        scores=score_example(task.metrics, text, task.references(example)),
        latency={
            "ttft_s": timing.ttft_s,
            "total_s": timing.total_s,
            "tpot_s": timing.tpot_s,
            "tokens_per_s": timing.tokens_per_s,
            "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.completion_tokens,
        },
        finish_reason=finish,
        empty=not text,
        cut_at_start=not text and cut,
        truncated=finish == "length",
        shots=rendered.shots,
    )


def clean_output(text: str, stop: tuple[str, ...]) -> str:
    """Cut at the first stop sequence (backends differ on whether they keep it) and strip."""
    for sequence in stop:
        if sequence:
            text = text.split(sequence, 1)[0]
    return text.strip()


def _aggregate(task: Task, outputs: list[ExampleOutput]) -> dict[str, float]:
    keys = sorted({key for o in outputs for key in o.scores})
    means = {key: sum(o.scores[key] for o in outputs) / len(outputs) for key in keys}
    predictions = [o.output for o in outputs]
    references = [o.reference for o in outputs]
    return {**means, **corpus_scores(task.metrics, predictions, references)}


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=True,
    )
