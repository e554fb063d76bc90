"""How examples are asked and what is counted: empty / cut-at-start / truncated outputs, the
training template of a run, and the strongest baseline's prompt search on the validation split."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.eval.baseline import best_prompt
from lmfoundry.eval.evaluate import run_task
from lmfoundry.eval.prompting import TrainingTemplatePlan, plan_for
from lmfoundry.eval.tasks import jsonl_task, load_task
from lmfoundry.types import SamplingParams


@dataclass(frozen=True)
class Reply:
    text: str
    finish_reason: str = "stop"
    stopped_by: str | None = None
    prompt_tokens: int = 5
    completion_tokens: int = 3
    ttft_s: float = 0.01
    total_s: float = 0.02


class Replier:
    """A generator whose reply per input is given (the dependency of run_task, not the unit)."""

    name = "replier"

    def __init__(self, replies: dict[str, Reply]) -> None:
        self.replies = replies

    def generate(self, prompt: Any, params: SamplingParams) -> Reply:
        return next(reply for key, reply in self.replies.items() if key in str(prompt))


def test_empty_cut_at_start_and_truncated_outputs_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"id": k, "input": k, "reference": "yes"}) + "\n" for k in "abcd"))
    replies = {
        "a": Reply("yes"),
        "b": Reply("", stopped_by="###"),  # the model began with the stop string: an empty, cut answer
        "c": Reply("   "),  # EOS after whitespace: empty, not cut
        "d": Reply("yes yes yes", finish_reason="length"),
    }
    result = run_task(Replier(replies), jsonl_task(path), out_dir=tmp_path / "out", progress=False)
    by_id = {o.id: o for o in result.outputs}
    assert [(by_id[k].empty, by_id[k].cut_at_start, by_id[k].truncated) for k in "abcd"] == [
        (False, False, False), (True, True, False), (True, False, False), (False, False, True)]  # fmt: skip
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert summary["counts"] == {"empty": 2, "cut_at_start": 1, "truncated": 1}
    assert (summary["empty_rate"], summary["truncated_rate"], summary["cut_at_start_rate"]) == (
        0.5,
        0.25,
        0.25,
    )
    assert (
        summary["n"] == 4 and summary["prompt"]["name"] == "instruct" and "exact_match" in summary["metrics"]
    )


def test_a_fine_tuning_run_is_asked_with_its_training_template(dialogsum_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run" / "adapter"
    run.mkdir(parents=True)
    (run / "lmf_adapter.json").write_text(
        json.dumps({"base_model": "x", "method": "lora", "template": "summarize"})
    )
    task = load_task("dialogsum-synthetic", data_dir=dialogsum_dir)
    plan = plan_for(object(), task, run=tmp_path / "run")
    assert isinstance(plan, TrainingTemplatePlan) and plan.describe()["name"] == "training-template:summarize"
    rendered = plan.render(task.examples[0])
    assert isinstance(rendered.prompt, str) and rendered.prompt.rstrip().endswith("### Output:")
    assert task.examples[0].input in rendered.prompt and rendered.stop == ("###",)
    explicit = plan_for(object(), task, run=tmp_path / "run", shots=0)  # an explicit prompt wins
    assert explicit.describe()["name"] == "dialogsum-summary"


def _splits(folder: Path) -> Path:
    topics = {
        "party": "will bring cake",
        "printer": "will call the technician",
        "meeting": "move it to Friday",
    }
    for split, n in (("train", 6), ("validation", 4), ("test", 3)):
        rows = [{"id": f"{split}{i}", "dialogue": f"#Person1#: about the {t} {i}.", "summary": f"They {s}."}
                for i, (t, s) in enumerate(list(topics.items()) * 3) if i < n]  # fmt: skip
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


class FewShotLearner:
    """Answers well only when the prompt holds demonstrations (as small models do), else copies."""

    name = "learner"

    def generate(self, prompt: Any, params: SamplingParams) -> Reply:
        text = str(prompt)
        question = text.split("Dialogue:")[-1]
        if "Summary: They" not in text:  # no demonstration shown: it copies the dialogue
            return Reply(question.strip()[:40])
        return Reply("They will bring cake." if "party" in question else "They move it to Friday.")


def test_the_baseline_prompt_is_searched_on_validation_not_test(tmp_path: Path, embedder: Any) -> None:
    task = load_task("dialogsum-synthetic", data_dir=_splits(tmp_path))
    plan, report = best_prompt(FewShotLearner(), task, task.params, limit=4)
    assert plan.describe()["shots"] == 3 and report["winner"]["selection"] == "similar"
    assert report["chosen_on"] == "validation (4 examples)" and report["metric"] == "rougeL"
    zero, few = report["candidates"]
    assert few["score"] > zero["score"] and report["margin"] == pytest.approx(few["score"] - zero["score"])
    no_validation = task.__class__(**{**task.__dict__, "data_dir": None})
    fallback, note = best_prompt(FewShotLearner(), no_validation, task.params)
    assert fallback.describe()["shots"] == 0 and "zero-shot prompt is used" in note["note"]
