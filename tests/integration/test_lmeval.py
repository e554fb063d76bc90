"""lm-evaluation-harness interop: our "lmfoundry" LM matches lm-eval's own HF model on the tiny
model, and the shipped local multiple-choice task runs offline and reports an accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfoundry.cli.main import main
from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.eval.lmeval_adapter import load_lmeval_task

pytestmark = pytest.mark.integration
TASK_YAML = Path(__file__).resolve().parents[2] / "configs" / "lmeval" / "world_facts.yaml"


@pytest.fixture(scope="module")
def ours_and_reference(tiny_llama_dir: Path):  # noqa: ANN201
    pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install 'lmfoundry[lmeval]')")
    from lm_eval.models.huggingface import HFLM

    from lmfoundry.eval.lmeval_adapter import lmeval_model_class

    ours = lmeval_model_class()(pretrained=str(tiny_llama_dir))
    reference = HFLM(pretrained=ours.hf_model, tokenizer=ours.tokenizer, batch_size=1, device="cpu")
    return ours, reference


def _requests(kind: str, args: list[tuple]) -> list:
    from lm_eval.api.instance import Instance

    return [Instance(kind, {}, a, i) for i, a in enumerate(args)]


def test_loglikelihood_matches_lm_eval_hf_model(ours_and_reference) -> None:  # noqa: ANN001
    ours, reference = ours_and_reference
    pairs = [
        ("Question: What is the capital of France?\nAnswer:", " Paris"),
        ("hello ", "world"),  # the trailing space moves to the continuation
        ("", "an empty context"),  # conditioned on the prefix token
        ("x" * 400, " beyond the context window"),  # left truncation (256 positions)
    ]
    got = ours.loglikelihood(_requests("loglikelihood", pairs))
    expected = reference.loglikelihood(_requests("loglikelihood", pairs))
    for (g_lp, g_greedy), (e_lp, e_greedy) in zip(got, expected, strict=True):
        assert g_lp == pytest.approx(e_lp, rel=1e-4, abs=1e-3) and g_greedy == e_greedy


def test_rolling_and_generate_match_lm_eval_hf_model(ours_and_reference) -> None:  # noqa: ANN001
    ours, reference = ours_and_reference
    texts = [("The quick brown fox jumps over the lazy dog. " * 12,), ("short",)]  # the first spans windows
    got = ours.loglikelihood_rolling(_requests("loglikelihood_rolling", texts))
    expected = reference.loglikelihood_rolling(_requests("loglikelihood_rolling", texts))
    assert got == pytest.approx(expected, rel=1e-4)
    generate = _requests("generate_until", [("Hello there", {"until": ["\n"], "max_gen_toks": 6})])
    assert ours.generate_until(generate) == reference.generate_until(generate)


def test_local_multiple_choice_task_runs_offline(tiny_llama_dir: Path, ours_and_reference) -> None:  # noqa: ANN001
    from lmfoundry.eval.lmeval_adapter import run_harness

    _, reference = ours_and_reference
    limit = 6
    result = run_harness(str(tiny_llama_dir), [str(TASK_YAML)], limit=limit)
    metrics = result["results"]["lmf_world_facts"]
    assert result["n_samples"]["lmf_world_facts"]["effective"] == limit
    # independent accuracy: lm-eval's HF model scores each choice; the argmax must be the answer
    docs = [
        json.loads(line)
        for line in (TASK_YAML.parent / "data" / "world_facts.jsonl").read_text().splitlines()
    ]
    correct = 0
    for doc in docs[:limit]:
        context = f"Question: {doc['question']}\nAnswer:"
        scores = reference.loglikelihood(
            _requests("loglikelihood", [(context, " " + c) for c in doc["choices"]])
        )
        logprobs = [lp for lp, _ in scores]
        correct += logprobs.index(max(logprobs)) == doc["answer"]
    assert metrics["acc,none"] == pytest.approx(correct / limit)
    assert 0.0 <= metrics["acc_norm,none"] <= 1.0


def test_cli_harness(tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("lm_eval")
    out = tmp_path / "harness.json"
    argv = [
        "eval",
        "harness",
        str(tiny_llama_dir),
        "--tasks",
        str(TASK_YAML),
        "--limit",
        "3",
        "--out",
        str(out),
        "--json",
    ]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "acc,none" in printed["results"]["lmf_world_facts"]
    assert json.loads(out.read_text()) == printed


def test_task_file_paths_and_errors(tmp_path: Path) -> None:
    config = load_lmeval_task(TASK_YAML)
    assert Path(config["dataset_kwargs"]["data_files"]["test"]).is_file()
    bad = tmp_path / "task.yaml"
    bad.write_text("task: t\ndataset_path: json\n")
    with pytest.raises(InvalidInputError, match="needs output_type"):
        load_lmeval_task(bad)
    bad.write_text(
        "task: t\ndataset_path: json\noutput_type: multiple_choice\ndataset_kwargs:\n  data_files: nope.jsonl\n"
    )
    with pytest.raises(LmfError, match="data file not found"):
        load_lmeval_task(bad)
