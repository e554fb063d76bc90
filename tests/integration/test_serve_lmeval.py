"""lm-evaluation-harness's own OpenAI-API model (`local-completions`) evaluates a multiple-choice
task through our server: loglikelihoods come from `/v1/completions` with echo + logprobs, and must
equal what lm-eval's HF model computes on the same weights in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
TASK_YAML = Path(__file__).resolve().parents[2] / "configs" / "lmeval" / "world_facts.yaml"
LIMIT = 6


@pytest.fixture(autouse=True)
def lmf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Only the tiny model is needed: skip the integration conftest's packaged-model pull."""
    monkeypatch.setenv("LMF_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture()
def server(tiny_llama_dir: Path) -> Iterator[str]:
    import lmfoundry
    from lmfoundry.serve.app import create_app
    from lmfoundry.serve.http_server import running_server
    from lmfoundry.serve.service import ServedModel, ServeOptions

    options = ServeOptions(embedder=None)
    served = ServedModel.create(lmfoundry.load(str(tiny_llama_dir), backend="transformers"), name="tiny")
    try:
        with running_server(create_app(served, options)) as url:
            yield url
    finally:
        served.close()


def _requests(pairs: list[tuple[str, str]]) -> list[Any]:
    from lm_eval.api.instance import Instance

    return [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]


def test_local_completions_through_our_server(server: str, tiny_llama_dir: Path, lmf_home: Path) -> None:
    pytest.importorskip("lm_eval")
    pytest.importorskip("tenacity", reason="lm-eval's API models need tenacity (pip install 'lm-eval[api]')")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    from lmfoundry.eval.lmeval_adapter import load_lmeval_task

    config = load_lmeval_task(TASK_YAML)
    config["dataset_kwargs"]["cache_dir"] = str(lmf_home / "datasets")
    model_args = (
        f"base_url={server}/v1/completions,model=tiny,tokenizer_backend=huggingface,"
        f"tokenizer={tiny_llama_dir},max_length=255,num_concurrent=1,max_retries=1"
    )
    output = simple_evaluate(
        model="local-completions", model_args=model_args, tasks=[config], limit=LIMIT, log_samples=True
    )
    assert output is not None
    samples = output["samples"]["lmf_world_facts"]
    assert len(samples) == LIMIT
    # the reference: lm-eval's HF model on the same weights, no server
    reference = HFLM(pretrained=str(tiny_llama_dir), batch_size=1, device="cpu", max_length=255)
    correct = 0
    for sample in samples:
        pairs = [tuple(a) for a in sample["arguments"]]  # (context, continuation) per choice
        expected = reference.loglikelihood(_requests(pairs))
        got = [r[0] for r in sample["resps"]]
        for (g_lp, g_greedy), (e_lp, e_greedy) in zip(got, expected, strict=True):
            assert float(g_lp) == pytest.approx(e_lp, rel=1e-4, abs=1e-3)
            assert bool(g_greedy) == e_greedy
        scores = [lp for lp, _ in expected]
        correct += scores.index(max(scores)) == sample["target"]
    assert output["results"]["lmf_world_facts"]["acc,none"] == pytest.approx(correct / LIMIT)
