"""run_task with a scripted generator (and the real engine on a tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfoundry.errors import LmfError
from lmfoundry.eval.evaluate import EvalResult, run_task
from lmfoundry.eval.prompting import plan_for
from lmfoundry.eval.tasks import jsonl_task, load_task

SUMMARIES = {
    "party tonight": "#Person2# will come to the party and bring cake.",  # exact reference
    "printer": "The printer is broken.",
    "meeting": "Friday at ten.\nDialogue: junk after a stop sequence",
}


def _summarizer(prompt: str) -> str:
    return next(text for key, text in SUMMARIES.items() if key in prompt)


def test_run_task_scores_saves_and_reloads(scripted, dialogsum_dir: Path, tmp_path: Path) -> None:
    from rouge_score import rouge_scorer

    task = load_task("dialogsum-synthetic", data_dir=dialogsum_dir)
    generator = scripted(_summarizer, name="stub-model")
    out = tmp_path / "run"
    result = run_task(generator, task, out_dir=out, progress=False)

    plan = plan_for(generator, task)
    assert [prompt for prompt, _ in generator.calls] == [plan.render(e).prompt for e in task.examples]
    assert all(params == task.params.replace(stop=("\nDialogue:",)) for _, params in generator.calls)
    by_id = {o.id: o for o in result.outputs}
    assert by_id["d1"].scores["rougeL"] == pytest.approx(1.0)
    assert by_id["d3"].output == "Friday at ten."  # cut at the prompt's "\nDialogue:" stop sequence
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected = scorer.score(task.examples[1].reference, "The printer is broken.")["rougeL"].fmeasure
    assert by_id["d2"].scores["rougeL"] == pytest.approx(expected)
    mean = sum(o.scores["rouge1"] for o in result.outputs) / 3
    assert result.aggregates["rouge1"] == pytest.approx(mean)
    assert result.model == "stub-model"
    assert result.latency["ttft_s"]["p50"] == pytest.approx(0.05)

    lines = (out / "outputs.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["d1", "d2", "d3"]
    assert set(json.loads(lines[0])) == {"id", "input", "output", "reference", "scores", "latency",
                                         "finish_reason", "empty", "cut_at_start", "truncated", "shots"}  # fmt: skip
    summary = json.loads((out / "results.json").read_text())
    assert summary["metrics"] == result.aggregates and summary["prompt"]["name"] == "dialogsum-summary"
    assert summary["latency"]["e2e_s"]["p95"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["outputs.jsonl", "results.json"]  # no temp files left
    assert EvalResult.load(out) == result


def test_limit_and_corpus_metrics(scripted, tmp_path: Path) -> None:
    import sacrebleu

    path = tmp_path / "set.jsonl"
    rows = [
        {"id": f"q{i}", "input": f"say {i}", "reference": f"the number is {i} today ok"} for i in range(5)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = jsonl_task(path, metrics=("bleu", "exact_match"))
    answers = ["the number is 0 today ok", "the number is 9 today", "no"]
    generator = scripted(lambda prompt: answers[int(prompt.split("say ")[-1].split()[0])])
    result = run_task(generator, task, limit=3, progress=False)
    assert len(result.outputs) == 3
    refs = [r["reference"] for r in rows[:3]]
    assert result.aggregates["corpus_bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(answers, [refs]).score / 100
    )
    assert result.aggregates["exact_match"] == pytest.approx(1 / 3)
    with pytest.raises(LmfError, match="limit"):
        run_task(generator, task, limit=0, progress=False)


def test_load_rejects_a_folder_without_results(tmp_path: Path) -> None:
    with pytest.raises(LmfError, match="not a readable evaluation result"):
        EvalResult.load(tmp_path)


def test_run_task_with_the_real_engine(tiny_llama_dir: Path, tmp_path: Path) -> None:
    import lmfoundry

    model = lmfoundry.load(str(tiny_llama_dir))
    task = load_task("closed-book-qa")
    result = run_task(model, task, limit=2, out_dir=tmp_path / "real", progress=False)
    assert [o.id for o in result.outputs] == [e.id for e in task.examples[:2]]
    for output in result.outputs:
        assert 0 <= output.latency["completion_tokens"] <= task.params.max_new_tokens
        assert output.latency["prompt_tokens"] > 0
        assert 0.0 <= output.scores["token_f1"] <= 1.0
    assert (tmp_path / "real" / "results.json").is_file()
