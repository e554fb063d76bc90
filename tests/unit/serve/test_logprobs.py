"""/v1/completions with `echo` and `logprobs`: values equal a direct forward pass of the same weights
through transformers, in the legacy OpenAI `logprobs` shape that evaluation harnesses read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

NAME = "tiny"


@pytest.fixture(scope="module")
def reference(tiny_llama_dir: Path) -> Any:
    """log-softmax of the same weights, computed with transformers directly: [positions, vocab]."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)

    def logprobs(ids: list[int]) -> Any:
        with torch.no_grad():
            return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)

    return logprobs, tokenizer


def test_echo_scores_the_prompt_without_generating(client: Any, reference: Any) -> None:
    logprobs, tokenizer = reference
    ids = tokenizer("The capital of France is Paris", add_special_tokens=False)["input_ids"]
    body = client.post(
        "/v1/completions",
        json={"model": NAME, "prompt": [ids], "max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0},
    ).json()
    choice = body["choices"][0]
    assert choice["text"] == tokenizer.decode(ids) and body["usage"]["completion_tokens"] == 0
    got = choice["logprobs"]
    expected = logprobs(ids)
    assert got["tokens"] == [tokenizer.decode([t]) for t in ids]
    assert got["token_logprobs"][0] is None and got["top_logprobs"][0] is None
    for i in range(1, len(ids)):
        assert got["token_logprobs"][i] == pytest.approx(float(expected[i - 1, ids[i]]), abs=1e-4)
        best = int(expected[i - 1].argmax())
        top = got["top_logprobs"][i]
        assert top[tokenizer.decode([best])] == pytest.approx(float(expected[i - 1, best]), abs=1e-4)
        assert 1 <= len(top) <= 2  # the most likely token, plus the actual one when it differs
    assert got["text_offset"][0] == 0 and got["text_offset"] == sorted(got["text_offset"])
    # what lm-eval sends: one generated token more, whatever it is (EOS or a cut UTF-8 byte included)
    one = client.post(
        "/v1/completions",
        json={"model": NAME, "prompt": [ids], "max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0},
    ).json()["choices"][0]["logprobs"]
    assert len(one["token_logprobs"]) == len(ids) + 1
    assert one["token_logprobs"][: len(ids)] == pytest.approx(got["token_logprobs"][: len(ids)], abs=1e-5)


def test_logprobs_of_generated_tokens(client: Any, reference: Any) -> None:
    logprobs, tokenizer = reference
    prompt = "Once upon a time"
    body = client.post(
        "/v1/completions",
        json={"model": NAME, "prompt": prompt, "max_tokens": 5, "logprobs": 2, "temperature": 0},
    ).json()
    choice = body["choices"][0]
    got = choice["logprobs"]
    prompt_ids = tokenizer(prompt)["input_ids"]
    expected = logprobs(prompt_ids + [0] * 5)  # positions up to the prompt's end are all we need first
    first = int(expected[len(prompt_ids) - 1].argmax())  # greedy: the first generated token
    assert got["tokens"][0] == tokenizer.decode([first])
    assert got["token_logprobs"][0] == pytest.approx(float(expected[len(prompt_ids) - 1, first]), abs=1e-4)
    for lp, top in zip(got["token_logprobs"], got["top_logprobs"], strict=True):
        assert lp == pytest.approx(max(top.values()), abs=1e-6)  # greedy picks the most likely token
        assert len(top) <= 3
    assert got["text_offset"][0] == len(prompt)
    if choice["finish_reason"] == "length":
        assert len(got["tokens"]) == body["usage"]["completion_tokens"]
    assert "".join(got["tokens"]).startswith(choice["text"].rstrip("\ufffd")[:1])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_tokens": 0}, "echo"),
        ({"logprobs": 6}, "logprobs"),
        ({"logprobs": True}, "count"),
        ({"logprobs": 1, "stream": True}, "stream"),
        ({"echo": True, "stream": True}, "stream"),
    ],
)
def test_echo_and_logprobs_errors(client: Any, fields: dict[str, Any], message: str) -> None:
    response = client.post("/v1/completions", json={"model": NAME, "prompt": "Hi", **fields})
    assert response.status_code == 400 and message in response.json()["error"]["message"]


def test_echo_without_logprobs_prepends_the_prompt(client: Any) -> None:
    plain = client.post(
        "/v1/completions", json={"model": NAME, "prompt": "Hi", "max_tokens": 3, "temperature": 0}
    )
    echoed = client.post(
        "/v1/completions",
        json={"model": NAME, "prompt": "Hi", "max_tokens": 3, "temperature": 0, "echo": True},
    )
    choice = echoed.json()["choices"][0]
    assert choice["text"] == "Hi" + plain.json()["choices"][0]["text"] and choice["logprobs"] is None


def test_llama_cpp_batch_server_scores_like_llama_cpp_alone(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The llama.cpp batching server scores on a sequence of its own between decode steps; the
    values equal llama-cpp-python's own all-position logits for the same GGUF."""
    pytest.importorskip("llama_cpp")
    import llama_cpp
    import numpy as np
    from fastapi.testclient import TestClient

    import lmfoundry
    from lmfoundry.serve.app import create_app
    from lmfoundry.serve.service import ServedModel, ServeOptions
    from tiny import write_tiny_gguf

    path = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    reference = llama_cpp.Llama(str(path), n_ctx=256, logits_all=True, verbose=False)
    served = ServedModel.create(lmfoundry.load(str(path), backend="llama_cpp", threads=2), name=NAME)
    try:
        client = TestClient(create_app(served, ServeOptions(embedder=None)))
        ids = served.runtime.encode("The capital of France is Paris")
        body = client.post(
            "/v1/completions",
            json={"model": NAME, "prompt": [ids], "max_tokens": 0, "echo": True, "logprobs": 2},
        ).json()
    finally:
        served.close()
    reference.eval(ids)
    logits = np.asarray(reference.scores[: len(ids)], dtype=np.float64)
    expected = logits - logits.max(axis=1, keepdims=True)
    expected -= np.log(np.exp(expected).sum(axis=1, keepdims=True))
    got = body["choices"][0]["logprobs"]
    assert got["token_logprobs"][0] is None
    for i in range(1, len(ids)):
        assert got["token_logprobs"][i] == pytest.approx(float(expected[i - 1, ids[i]]), abs=1e-3)
        assert len(got["top_logprobs"][i]) in (2, 3)
