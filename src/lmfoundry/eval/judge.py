"""Model-graded evaluation: rubric scores and pairwise preferences from a judge model.

A judge is anything with `complete(prompt, seed=...) -> str`: a local model (`GeneratorJudge`
over `lmfoundry.load(...)`), an OpenAI-compatible endpoint (`OpenAIJudge`), or a rule in a test.
Judges are unreliable instruments, so this module measures them as it uses them:

- output that holds no score/verdict is *counted* (`n_unparseable`) and left out of means
  explicitly, never turned into NaN or a default score;
- pairwise comparisons run in both orders; a verdict that follows the *position* rather than the
  response (A first, A again after swapping) is a contradiction, counted and scored as a tie;
- repeats with different seeds give the spread of the headline number;
- `agreement` measures the judge against human labels (accuracy and Cohen's kappa).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lmfoundry.config import load_yaml
from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.types import Message, SamplingParams

DEFAULT_RUBRIC_TEXT = (
    "5: fully correct, complete and clear; 4: correct with minor gaps; 3: partly correct or "
    "partly relevant; 2: mostly wrong or off-topic; 1: wrong, empty or nonsensical."
)
VERDICTS = ("a", "b", "tie")


class JudgeBackend(Protocol):
    """Turns a judging prompt into the judge's raw text."""

    def complete(self, prompt: str, *, seed: int) -> str: ...


@dataclass(frozen=True)
class Rubric:
    """An integer scale and the text that says what each score means."""

    text: str = DEFAULT_RUBRIC_TEXT
    min_score: int = 1
    max_score: int = 5
    name: str = "quality"

    def __post_init__(self) -> None:
        if self.min_score >= self.max_score:
            raise InvalidInputError(f"rubric scale needs min < max, got {self.min_score}..{self.max_score}")
        if not self.text.strip():
            raise InvalidInputError("rubric text is empty")


def load_rubric(path: str | Path) -> Rubric:
    """A YAML file `{name, min, max, text}` or any other file whose text is the rubric (1-5)."""
    path = Path(path)
    if not path.is_file():
        raise LmfError(f"rubric file not found: {path}")
    if path.suffix not in (".yaml", ".yml"):
        return Rubric(text=path.read_text(encoding="utf-8"))
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: a rubric YAML is a mapping with name/min/max/text")
    unknown = set(data) - {"name", "min", "max", "text"}
    if unknown:
        raise InvalidInputError(
            f"{path}: unknown rubric keys {sorted(unknown)} (allowed: name, min, max, text)"
        )
    try:
        return Rubric(
            text=str(data["text"]),
            min_score=int(data.get("min", 1)),
            max_score=int(data.get("max", 5)),
            name=str(data.get("name", "quality")),
        )
    except KeyError as exc:
        raise InvalidInputError(f"{path}: rubric needs a 'text' key") from exc
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{path}: rubric min/max must be integers ({exc})") from exc


# ---------------------------------------------------------------------------------------------
# Prompts and parsing


def rubric_prompt(rubric: Rubric, prompt: str, response: str, reference: str = "") -> str:
    lines = [
        "You are an impartial grader. Rate the response to the task below using this rubric.",
        "",
        f"Rubric ({rubric.name}, integer from {rubric.min_score} to {rubric.max_score}):",
        rubric.text.strip(),
        "",
        "[Task]",
        prompt.strip(),
    ]
    if reference.strip():
        lines += ["", "[Reference answer]", reference.strip()]
    lines += [
        "",
        "[Response]",
        response.strip(),
        "",
        f"Explain briefly, then end with a line 'Score: N' where N is an integer from "
        f"{rubric.min_score} to {rubric.max_score}.",
    ]
    return "\n".join(lines)


def pairwise_prompt(prompt: str, response_a: str, response_b: str) -> str:
    return "\n".join(
        [
            "You are an impartial judge. Compare the two responses to the task below and decide which "
            "is better (more correct, complete and helpful). The order of the responses is random; "
            "do not let it influence you.",
            "",
            "[Task]",
            prompt.strip(),
            "",
            "[Response A]",
            response_a.strip(),
            "",
            "[Response B]",
            response_b.strip(),
            "",
            "Explain briefly, then end with a line 'Verdict: A', 'Verdict: B' or 'Verdict: tie'.",
        ]
    )


_NUMBER = r"(-?\d+(?:\.\d+)?)"
_LABELLED_SCORE = re.compile(
    r"\b(?:score|rating|grade)\b\s*(?:is|of|=|:)?\s*[*_\"'\[(]*\s*" + _NUMBER, re.IGNORECASE
)
_OUT_OF = re.compile(_NUMBER + r"\s*(?:/|out of)\s*(\d+)\b", re.IGNORECASE)
_BARE = re.compile(r"^[\s*_\"'\[(]*" + _NUMBER + r"[\s*_\"'\].)!]*$")


def parse_score(text: str, min_score: int = 1, max_score: int = 5) -> int | None:
    """The integer score in a judge's text, or None when there is no unambiguous in-range score.

    Looks, in order, for the last labelled score ("Score: 4", "**Rating:** 4/5", "score = 4"),
    then the last "N/M" or "N out of M" with M the scale maximum, then a reply that is only a
    number. Fractions, out-of-range numbers and unlabelled numbers inside prose are rejected:
    a wrong score is worse than a counted unparseable one.
    """
    candidates = [m.group(1) for m in _LABELLED_SCORE.finditer(text)]
    if not candidates:
        candidates = [m.group(1) for m in _OUT_OF.finditer(text) if int(m.group(2)) == max_score]
    if not candidates:
        bare = _BARE.match(text)
        candidates = [bare.group(1)] if bare else []
    if not candidates:
        return None
    value = float(candidates[-1])
    if not value.is_integer() or not min_score <= value <= max_score:
        return None
    return int(value)


_LABELLED_VERDICT = re.compile(
    r"\b(?:verdict|winner|answer|choice|better response)\b\s*(?:is|:|=)?\s*[*_\"'\[(]*\s*"
    r"(?:response\s+)?(a|b|tie|draw|equal)\b",
    re.IGNORECASE,
)
_BRACKETED = re.compile(r"\[\[\s*(a|b|c|tie)\s*\]\]", re.IGNORECASE)
_SENTENCE = re.compile(r"\bresponse\s+(a|b)\s+is\s+better\b", re.IGNORECASE)
_BARE_VERDICT = re.compile(r"^[\s*_\"'\[(]*(a|b|tie)[\s*_\"'\].)!]*$", re.IGNORECASE)


def parse_verdict(text: str) -> str | None:
    """ "a", "b" or "tie" (positions, not models) from a judge's text, or None.

    Accepts "Verdict: B", "[[A]]" (MT-Bench style, "[[C]]" = tie), "Response A is better" and a
    bare "A"; when several appear, the last one wins (judges reason first, then conclude).
    """
    for pattern in (_LABELLED_VERDICT, _BRACKETED, _SENTENCE, _BARE_VERDICT):
        found = [m.group(1).lower() for m in pattern.finditer(text)]
        if found:
            last = found[-1]
            return last if last in ("a", "b") else "tie"
    return None


# ---------------------------------------------------------------------------------------------
# Judges


@dataclass
class GeneratorJudge:
    """A judge backed by anything with `generate(prompt, params)` (e.g. `lmfoundry.load(...)`).

    The prompt goes through the chat template when the model has one (instruction-tuned judges
    expect it) and as raw text otherwise.
    """

    model: Any
    params: SamplingParams = field(
        default_factory=lambda: SamplingParams(temperature=0.0, max_new_tokens=128)
    )

    def complete(self, prompt: str, *, seed: int) -> str:
        tokenizer = getattr(self.model, "tokenizer", None)
        chat = bool(getattr(tokenizer, "chat_template", None))
        request: str | list[Message] = [Message("user", prompt)] if chat else prompt
        return str(self.model.generate(request, self.params.replace(seed=seed)).text)


@dataclass
class OpenAIJudge:
    """A judge behind an OpenAI-compatible chat endpoint (vLLM, `lmf serve`, OpenAI itself)."""

    base_url: str
    model: str = "default"
    api_key: str = "not-needed"
    temperature: float = 0.0
    max_tokens: int = 256
    timeout_s: float = 120.0
    max_retries: int = 2
    _client: Any = field(default=None, init=False, repr=False)

    def complete(self, prompt: str, *, seed: int) -> str:
        from lmfoundry.plugins import require

        if self._client is None:
            openai = require("openai", extra="dev")
            self._client = openai.OpenAI(
                base_url=self.base_url,
                api_key=self.api_key,
                timeout=self.timeout_s,
                max_retries=self.max_retries,
            )
        try:
            response = self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                seed=seed,
            )
        except Exception as exc:  # the openai package raises its own hierarchy
            raise LmfError(f"judge endpoint {self.base_url} failed: {exc}") from exc
        return response.choices[0].message.content or ""


def make_judge(model_or_url: str, params: SamplingParams, *, judge_model: str = "default") -> JudgeBackend:
    """An http(s) URL becomes an `OpenAIJudge`; anything else is loaded with `lmfoundry.load`."""
    if model_or_url.startswith(("http://", "https://")):
        return OpenAIJudge(
            model_or_url, model=judge_model, temperature=params.temperature, max_tokens=params.max_new_tokens
        )
    import lmfoundry

    return GeneratorJudge(lmfoundry.load(model_or_url), params)


# ---------------------------------------------------------------------------------------------
# Items and outputs files


@dataclass(frozen=True)
class JudgeItem:
    """One thing to judge: the task prompt, one or two responses, and an optional reference."""

    id: str
    prompt: str
    response: str
    reference: str = ""
    other: str = ""
    """The second response (pairwise only)."""


def read_outputs(path: str | Path) -> list[dict[str, Any]]:
    """Records of an `outputs.jsonl` written by `lmf eval run` (a run folder also works)."""
    path = Path(path)
    if path.is_dir():
        path = path / "outputs.jsonl"
    if not path.is_file():
        raise LmfError(f"outputs file not found: {path} (write one with `lmf eval run ... --out DIR`)")
    records = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path}:{line_no}: invalid JSON: {exc.msg}") from exc
        if not isinstance(record, dict) or not {"id", "input", "output"} <= set(record):
            raise InvalidInputError(f"{path}:{line_no}: an outputs record needs id, input and output")
        records.append(record)
    if not records:
        raise InvalidInputError(f"{path}: no records")
    return records


def rubric_items(records: Sequence[dict[str, Any]]) -> list[JudgeItem]:
    return [JudgeItem(str(r["id"]), r["input"], r["output"], r.get("reference", "")) for r in records]


def pairwise_items(
    records_a: Sequence[dict[str, Any]], records_b: Sequence[dict[str, Any]]
) -> list[JudgeItem]:
    """Pair two runs by example id; runs on different examples are an error, not a partial result."""
    by_id = {str(r["id"]): r for r in records_b}
    ids_a = [str(r["id"]) for r in records_a]
    if set(ids_a) != set(by_id):
        only_a = sorted(set(ids_a) - set(by_id))[:5]
        only_b = sorted(set(by_id) - set(ids_a))[:5]
        raise LmfError(
            f"the two outputs files cover different examples (only first: {only_a}, only second: {only_b})"
        )
    return [
        JudgeItem(i, r["input"], r["output"], r.get("reference", ""), by_id[i]["output"])
        for i, r in zip(ids_a, records_a, strict=True)
    ]


# ---------------------------------------------------------------------------------------------
# Rubric scoring


def judge_rubric(
    judge: JudgeBackend, items: Sequence[JudgeItem], rubric: Rubric, seed: int = 0
) -> list[dict[str, Any]]:
    """One judgment per item: the raw judge text and the parsed score (None when unparseable)."""
    rows = []
    for item in items:
        raw = judge.complete(rubric_prompt(rubric, item.prompt, item.response, item.reference), seed=seed)
        rows.append(
            {"id": item.id, "score": parse_score(raw, rubric.min_score, rubric.max_score), "raw": raw}
        )
    return rows


def summarize_rubric(rows: Sequence[dict[str, Any]], rubric: Rubric) -> dict[str, Any]:
    """Mean score over parseable judgments; unparseable ones are counted, never averaged in."""
    scores = [r["score"] for r in rows if r["score"] is not None]
    histogram = {str(s): scores.count(s) for s in range(rubric.min_score, rubric.max_score + 1)}
    mean = sum(scores) / len(scores) if scores else None
    span = rubric.max_score - rubric.min_score
    return {
        "n": len(rows),
        "n_scored": len(scores),
        "n_unparseable": len(rows) - len(scores),
        "mean": mean,
        "mean_normalized": None if mean is None else (mean - rubric.min_score) / span,
        "histogram": histogram,
    }


# ---------------------------------------------------------------------------------------------
# Pairwise comparison


def combine_orders(first: str | None, swapped: str | None) -> dict[str, Any]:
    """Merge the verdicts of both orders into a model-level outcome.

    `first` judged (A=model a, B=model b); `swapped` judged (A=model b, B=model a). Each order
    gives model b a point (1, 0.5 tie, 0); the outcome is their mean, so a judge that always
    picks the same *position* gives 0.5 -- a tie -- and position bias cancels. Such a pair is
    flagged `contradiction`. None when either order was unparseable.
    """
    if first is None or swapped is None:
        return {"outcome": None, "b_score": None, "contradiction": False}
    points_first = {"a": 0.0, "tie": 0.5, "b": 1.0}[first]
    points_swapped = {"a": 1.0, "tie": 0.5, "b": 0.0}[swapped]  # position A now holds model b
    b_score = (points_first + points_swapped) / 2
    outcome = "b" if b_score > 0.5 else "a" if b_score < 0.5 else "tie"
    contradiction = first == swapped and first != "tie"
    return {"outcome": outcome, "b_score": b_score, "contradiction": contradiction}


def judge_pairwise(judge: JudgeBackend, items: Sequence[JudgeItem], seed: int = 0) -> list[dict[str, Any]]:
    """Judge each pair in both orders; `a` is `item.response`, `b` is `item.other`."""
    rows = []
    for item in items:
        raw_first = judge.complete(pairwise_prompt(item.prompt, item.response, item.other), seed=seed)
        raw_swapped = judge.complete(pairwise_prompt(item.prompt, item.other, item.response), seed=seed)
        first, swapped = parse_verdict(raw_first), parse_verdict(raw_swapped)
        rows.append(
            {
                "id": item.id,
                "verdict_first": first,
                "verdict_swapped": swapped,
                **combine_orders(first, swapped),
                "raw_first": raw_first,
                "raw_swapped": raw_swapped,
            }
        )
    return rows


def summarize_pairwise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Win rates over pairs whose two verdicts both parsed, contradiction and position-bias rates."""
    scored = [r for r in rows if r["outcome"] is not None]
    verdicts = [v for r in rows for v in (r["verdict_first"], r["verdict_swapped"]) if v is not None]
    decisive = [v for v in verdicts if v != "tie"]
    n = len(scored)
    contradictions = sum(r["contradiction"] for r in scored)
    return {
        "n": len(rows),
        "n_scored": n,
        "n_unparseable": len(rows) - n,
        "n_unparseable_verdicts": 2 * len(rows) - len(verdicts),
        "wins_a": sum(r["outcome"] == "a" for r in scored),
        "wins_b": sum(r["outcome"] == "b" for r in scored),
        "ties": sum(r["outcome"] == "tie" for r in scored),
        "b_preference": _mean([r["b_score"] for r in scored]),
        "win_rate_b": None if not n else sum(r["outcome"] == "b" for r in scored) / n,
        "n_contradictions": contradictions,
        "contradiction_rate": None if not n else contradictions / n,
        "first_position_rate": None if not decisive else decisive.count("a") / len(decisive),
    }


# ---------------------------------------------------------------------------------------------
# Repeats


def repeat_stats(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, sample standard deviation, min and max of per-repeat values (None ones are skipped)."""
    present = [v for v in values if v is not None]
    if not present:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    mean = sum(present) / len(present)
    std = math.sqrt(sum((v - mean) ** 2 for v in present) / (len(present) - 1)) if len(present) > 1 else 0.0
    return {"n": len(present), "mean": mean, "std": std, "min": min(present), "max": max(present)}


def run_judge(
    judge: JudgeBackend,
    items: Sequence[JudgeItem],
    *,
    rubric: Rubric | None = None,
    pairwise: bool = False,
    repeats: int = 1,
    seed: int = 0,
    on_item: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Judge `items` `repeats` times (seeds seed, seed+1, ...) and summarize each repeat and their spread.

    The headline number is the mean rubric score, or model b's preference (0..1) when pairwise.
    """
    if repeats < 1:
        raise InvalidInputError(f"--repeats must be >= 1, got {repeats}")
    if not items:
        raise InvalidInputError("nothing to judge")
    rubric = rubric or Rubric()
    runs: list[dict[str, Any]] = []
    for offset in range(repeats):
        run_seed = seed + offset
        if pairwise:
            rows = judge_pairwise(_Counting(judge, on_item), items, run_seed)
            summary = summarize_pairwise(rows)
        else:
            rows = judge_rubric(_Counting(judge, on_item), items, rubric, run_seed)
            summary = summarize_rubric(rows, rubric)
        runs.append({"seed": run_seed, "summary": summary, "judgments": rows})
    headline = "b_preference" if pairwise else "mean"
    return {
        "mode": "pairwise" if pairwise else "rubric",
        "rubric": None
        if pairwise
        else {"name": rubric.name, "min": rubric.min_score, "max": rubric.max_score},
        "repeats": repeats,
        "headline": headline,
        "summary": runs[0]["summary"] if repeats == 1 else _pooled(runs),
        "variance": repeat_stats([r["summary"][headline] for r in runs]),
        "n_unparseable": sum(r["summary"]["n_unparseable"] for r in runs),
        "runs": runs,
    }


@dataclass
class _Counting:
    """Calls `on_item` after each judge call (progress bars), passing everything else through."""

    judge: JudgeBackend
    on_item: Callable[[], None] | None

    def complete(self, prompt: str, *, seed: int) -> str:
        text = self.judge.complete(prompt, seed=seed)
        if self.on_item:
            self.on_item()
        return text


def _pooled(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Numeric summary fields averaged over repeats; counts summed."""
    pooled: dict[str, Any] = {}
    for key, first in runs[0]["summary"].items():
        values = [r["summary"][key] for r in runs]
        if key.startswith("n") or key in ("wins_a", "wins_b", "ties"):
            pooled[key] = sum(values)
        elif isinstance(first, dict):
            pooled[key] = {k: sum(v[k] for v in values) for k in first}
        else:
            pooled[key] = _mean(values)
    return pooled


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


# ---------------------------------------------------------------------------------------------
# Agreement with human labels


def cohens_kappa(labels_x: Sequence[Any], labels_y: Sequence[Any]) -> float | None:
    """Cohen's kappa of two raters; None (not NaN) when chance agreement is 1 and kappa is undefined."""
    if len(labels_x) != len(labels_y):
        raise InvalidInputError("kappa needs two equally long label lists")
    n = len(labels_x)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(labels_x, labels_y, strict=True)) / n
    categories = set(labels_x) | set(labels_y)
    expected = sum((list(labels_x).count(c) / n) * (list(labels_y).count(c) / n) for c in categories)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def read_labels(path: str | Path) -> tuple[str, list[dict[str, Any]]]:
    """Human labels: pairwise `{prompt, response_a, response_b, human: a|b|tie}` or rubric
    `{prompt, response, human_score}` records (one kind per file). Returns (kind, records)."""
    path = Path(path)
    if not path.is_file():
        raise LmfError(f"labels file not found: {path}")
    records = []
    kinds = set()
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path}:{line_no}: invalid JSON: {exc.msg}") from exc
        kinds.add(_label_kind(record, path, line_no))
        records.append(record)
    if not records:
        raise InvalidInputError(f"{path}: no labels")
    if len(kinds) > 1:
        raise InvalidInputError(f"{path}: mixes pairwise and rubric labels; use one kind per file")
    return kinds.pop(), records


def _label_kind(record: Any, path: Path, line_no: int) -> str:
    where = f"{path}:{line_no}"
    if isinstance(record, dict) and {"prompt", "response_a", "response_b", "human"} <= set(record):
        if str(record["human"]).lower() not in VERDICTS:
            raise InvalidInputError(f"{where}: human must be 'a', 'b' or 'tie', got {record['human']!r}")
        return "pairwise"
    if isinstance(record, dict) and {"prompt", "response", "human_score"} <= set(record):
        if not isinstance(record["human_score"], int | float) or isinstance(record["human_score"], bool):
            raise InvalidInputError(f"{where}: human_score must be a number")
        return "rubric"
    raise InvalidInputError(
        f"{where}: a label needs {{prompt, response_a, response_b, human}} or {{prompt, response, human_score}}"
    )


def agreement(
    judge: JudgeBackend,
    kind: str,
    records: Sequence[dict[str, Any]],
    *,
    rubric: Rubric | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Judge the labelled examples and compare with the humans: accuracy, Cohen's kappa, counts.

    Pairwise labels are compared with the both-orders outcome; rubric labels with the parsed
    score (plus mean absolute error and within-one accuracy). Unparseable judgments are counted
    and excluded.
    """
    ids = [str(r.get("id", i)) for i, r in enumerate(records)]
    if kind == "pairwise":
        items = [
            JudgeItem(i, r["prompt"], r["response_a"], other=r["response_b"])
            for i, r in zip(ids, records, strict=True)
        ]
        rows = judge_pairwise(judge, items, seed)
        judged = [row["outcome"] for row in rows]
        human = [str(r["human"]).lower() for r in records]
        extra: dict[str, Any] = {"contradictions": sum(row["contradiction"] for row in rows)}
    else:
        rubric = rubric or Rubric()
        items = [
            JudgeItem(i, r["prompt"], r["response"], r.get("reference", ""))
            for i, r in zip(ids, records, strict=True)
        ]
        rows = judge_rubric(judge, items, rubric, seed)
        judged = [row["score"] for row in rows]
        human = [r["human_score"] for r in records]
        pairs = [(j, h) for j, h in zip(judged, human, strict=True) if j is not None]
        extra = {
            "mae": _mean([abs(j - h) for j, h in pairs]),
            "within_one": _mean([float(abs(j - h) <= 1) for j, h in pairs]),
        }
    kept = [(j, h) for j, h in zip(judged, human, strict=True) if j is not None]
    return {
        "kind": kind,
        "n": len(records),
        "n_scored": len(kept),
        "n_unparseable": len(records) - len(kept),
        "accuracy": _mean([float(j == h) for j, h in kept]),
        "kappa": cohens_kappa([j for j, _ in kept], [h for _, h in kept]),
        **extra,
        "judgments": rows,
    }
