"""Property-based API fuzzing with schemathesis against our own OpenAPI schema (in-process ASGI app,
tiny model): no generated request, valid or not, may get a 5xx or break the server.

Bounded (few examples per operation, derandomized) so it stays fast and reproducible; the cases it
found once (empty token-id prompts, denormal temperature/top_p/repetition_penalty) are pinned below
as plain regression tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lmfoundry.generate.engine import LoadedModel
from lmfoundry.serve.service import ServedModel, ServeOptions
from lmfoundry.types import Message, SamplingParams

EXAMPLES_PER_OPERATION = 6
GENERATING = ("/v1/chat/completions", "/v1/completions")


def _fuzz(operation: Any, mode: Any, server_errors: list[str]) -> int:
    """Run the bounded examples of one operation in one mode; return how many requests were sent."""
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode

    calls = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        nonlocal calls
        positive = mode == GenerationMode.POSITIVE
        if positive and operation.path in GENERATING and isinstance(case.body, dict):
            case.body["model"] = "tiny"  # otherwise nearly every generated request is a 404
        response = case.call()  # an exception raised inside the app propagates here
        calls += 1
        if response.status_code >= 500:
            server_errors.append(f"{operation.label}: {response.status_code} {case.as_curl_command()}")

    try:
        check()
    except Exception as exc:
        if type(exc).__name__ != "Unsatisfiable":  # e.g. no invalid input exists for a path-only call
            raise
    return calls


def test_fuzzed_requests_never_get_a_server_error(
    served: ServedModel, options: ServeOptions, tmp_path: Path
) -> None:
    pytest.importorskip("schemathesis")
    from fastapi.testclient import TestClient
    from schemathesis import GenerationMode
    from schemathesis.openapi import from_asgi

    from lmfoundry.serve.app import create_app

    app = create_app(served, options, batch_dir=tmp_path)
    server_errors: list[str] = []
    calls = 0
    for result in from_asgi("/openapi.json", app).get_all_operations():
        operation = result.ok()
        calls += _fuzz(operation, GenerationMode.POSITIVE, server_errors)
        # invalid inputs exist only where there is a body or a query (hypothesis would search in vain)
        if operation.method.upper() == "POST" or any(True for _ in operation.query):
            calls += _fuzz(operation, GenerationMode.NEGATIVE, server_errors)
    assert calls > 100
    assert server_errors == []
    client = TestClient(app)  # and the server still answers afterwards
    assert client.get("/health").json()["status"] == "ok"
    reply = client.post(
        "/v1/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
    )
    assert reply.status_code == 200 and reply.json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_cases_schemathesis_found(client: Any, tiny_model: LoadedModel) -> None:
    def complete(**kw: Any) -> Any:
        return client.post("/v1/completions", json={"model": "tiny", "prompt": "Hi", "max_tokens": 4, **kw})

    assert complete(prompt=[[]]).status_code == 400  # an empty token-id prompt was a 500
    assert complete(prompt=[[5], []]).status_code == 400
    greedy = tiny_model.generate("Hi", temperature=0, max_new_tokens=4).text.rstrip("\ufffd")
    assert complete(temperature=5e-324).json()["choices"][0]["text"] == greedy  # overflowed the logits
    assert complete(temperature=0.7, top_p=5e-324, top_k=3).json()["choices"][0]["text"] == greedy
    assert complete(repetition_penalty=5e-324).status_code == 400


def test_a_request_whose_sampling_fails_fails_alone(served: ServedModel) -> None:
    """A failed sampling step used to leave the request waiting forever (it was not in the batch yet)."""
    ids = served.prompt_ids([Message("user", "hello")])
    # a denormal penalty turns the seen tokens' logits into inf: torch refuses to sample from NaNs
    bad = SamplingParams(temperature=1.0, top_k=1, repetition_penalty=5e-324, max_new_tokens=4)
    generation = served.start(ids, bad, None, timeout_s=20)
    with pytest.raises(RuntimeError):
        list(generation.events())
    good = served.start(ids, SamplingParams(temperature=0, max_new_tokens=3), None, timeout_s=20)
    assert [e.result for e in good.events()][-1] is not None
