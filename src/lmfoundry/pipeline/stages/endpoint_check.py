"""Send evaluated prompts through the endpoint and compare with the evaluated model's greedy outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.eval.evaluate import clean_output
from lmfoundry.eval.prompting import plan_from_record
from lmfoundry.eval.tasks import load_task
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.pipeline.context import StageContext
from lmfoundry.pipeline.remote import RemoteModel
from lmfoundry.pipeline.stage_kind import StageKind
from lmfoundry.types import SamplingParams


@dataclass
class Options:
    url: str = ""
    """The server's base URL (usually `${deploy.url}`)."""
    model: str = ""
    """Model id that should answer like the evaluated candidate (usually `${deploy.model_id}`)."""
    evaluation: str = ""
    """The evaluated candidate's run folder (results.json + outputs.jsonl), e.g. ${evaluate.compare_dir}/challenger."""
    data_dir: str | None = None
    """Task data folder the evaluation used (dialogsum-synthetic), usually `${data.path}`."""
    n: int = 3
    """Prompts to send."""
    min_parity: float = 1.0
    """Share of answers that must equal the evaluated outputs exactly."""
    api_key: str | None = None


def _evaluated(
    ctx: StageContext, options: Options
) -> tuple[Any, list[dict[str, Any]], SamplingParams, dict[str, Any]]:
    folder = ctx.path(options.evaluation)
    try:
        results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        lines = (folder / "outputs.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidInputError(
            f"smoke-test needs an evaluation folder with results.json and outputs.jsonl: {exc}"
        ) from exc
    task = load_task(results["task"], data_dir=ctx.path(options.data_dir) if options.data_dir else None)
    params = dict(results["params"])
    params["stop"] = tuple(params.get("stop") or ())
    records = [json.loads(line) for line in lines if line.strip()][: options.n]
    return task, records, SamplingParams(**params), results.get("prompt", {})


def _comparable(text: str) -> str:
    """Text without a trailing U+FFFD: when generation stops inside a multi-byte character, local
    generation shows the incomplete bytes as U+FFFD while the server drops them."""
    return text.rstrip("\ufffd")


def run(ctx: StageContext, options: Options) -> dict[str, Any]:
    if not (options.url and options.model and options.evaluation):
        raise InvalidInputError("smoke-test stage needs 'url', 'model' and 'evaluation'")
    task, records, params, prompt = _evaluated(ctx, options)
    by_id = {e.id: e for e in task.examples}
    model = RemoteModel(options.url, options.model, api_key=options.api_key)
    plan = plan_from_record(prompt, model, task)
    ctx.progress.total(len(records), "requests")
    checks = []
    for record in records:
        example = by_id.get(record["id"])
        if example is None:
            raise InvalidInputError(f"example {record['id']!r} of the evaluation is not in task {task.name}")
        rendered = plan.render(example)
        stop = tuple(dict.fromkeys((*params.stop, *rendered.stop)))
        served = clean_output(model.generate(rendered.prompt, params.replace(stop=stop)).text, stop)
        match = _comparable(served) == _comparable(record["output"])
        checks.append({"id": record["id"], "match": match, "served": served,
                       "evaluated": record["output"]})  # fmt: skip
        ctx.progress.advance()
    matches = sum(c["match"] for c in checks)
    parity = matches / len(checks) if checks else 0.0
    report = ctx.stage_dir / "smoke_test.json"
    atomic_write_text(report, json.dumps({"model": options.model, "checks": checks}, indent=2) + "\n")
    if not checks or parity < options.min_parity:
        first = next((c for c in checks if not c["match"]), None)
        detail = (
            f"; first mismatch {first['id']}: served {first['served'][:80]!r} vs evaluated {first['evaluated'][:80]!r}"
            if first
            else ""
        )
        raise LmfError(
            f"HTTP parity {matches}/{len(checks)} is below {options.min_parity:.0%}{detail} (see {report})"
        )
    return {"n": len(checks), "matches": matches, "parity": parity, "report": str(report)}


def fresh(ctx: StageContext, outputs: dict[str, Any]) -> bool:
    return Path(outputs["report"]).is_file()


KIND = StageKind(Options, run, fresh, summary=(__doc__ or "").strip().splitlines()[0])
