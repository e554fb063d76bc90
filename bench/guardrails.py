"""Latency cost of each guardrail of `lmf serve --guardrails`.

    .venv/bin/python bench/guardrails.py [--model smollm2-135m-instruct] [--requests 12] [--max-tokens 16]
                                         [--iterations 2000] [--skip-e2e]

Two measurements, baseline in the same run:

- `checks`: microseconds per request for each guardrail alone (pii, injection, output, classifier
  with a trivial callable) and all together, on a RAG-style chat request (a system turn holding
  three retrieved documents, ~1.8 kB, and a question) and a ~600-character reply. This is the
  guardrails' own cost, independent of the model.
- `e2e`: the packaged model served in-process (`create_app`, FastAPI's test client, transformers
  backend) answering the same request `--requests` times, greedy, with no guardrails and with all
  of them, interleaved so a load change on the machine hits both; median latency and the ratio.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from lmfoundry import plugins
from lmfoundry.serve.guardrails import Guardrails, GuardrailsConfig

DOCS = [
    "Python lists are ordered, mutable sequences. list.sort() sorts in place and returns None; "
    "sorted() returns a new list. Both accept key= and reverse= arguments. " * 3,
    "A dictionary maps hashable keys to values. Since Python 3.7 dictionaries keep insertion order. "
    "Use dict.get(key, default) to avoid a KeyError on a missing key. " * 3,
    "Exceptions are caught with try/except; finally always runs. Raise your own with raise "
    "ValueError('message'); chain causes with raise ... from exc. " * 3,
]
REQUEST = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "Answer from the context.\n\n" + "\n\n".join(DOCS)},
        {"role": "user", "content": "How do I sort a list in place, and what does it return?"},
    ],
}
REPLY = (
    "Use list.sort() to sort the list in place; it returns None, so do not assign its result. "
    "If you need a new sorted list and want to keep the original, call sorted(my_list). "
) * 4
CONFIGS: dict[str, dict[str, Any]] = {
    "none": {},
    "pii": {"pii": {}},
    "injection": {"injection": {}},
    "output": {
        "output": {
            "block_words": ["bomb", "ransomware"],
            "block_patterns": [r"\bpassword\s*="],
            "max_chars": 8000,
        }
    },
    "classifier": {"classifier": {"name": "bench-constant"}},
}
CONFIGS["all"] = {k: v for c in CONFIGS.values() for k, v in c.items()}


def _constant_classifier(text: str) -> float:
    return 0.0


def bench_checks(iterations: int) -> dict[str, dict[str, float]]:
    """Microseconds per request check and per reply check, for each configuration."""
    out = {}
    for name, config in CONFIGS.items():
        guardrails = Guardrails(GuardrailsConfig.model_validate(config))
        start = time.perf_counter()
        for _ in range(iterations):
            guardrails.check_request("/v1/chat/completions", REQUEST)
        request_us = (time.perf_counter() - start) / iterations * 1e6
        start = time.perf_counter()
        for _ in range(iterations):
            guardrails.check_reply(REPLY)
        reply_us = (time.perf_counter() - start) / iterations * 1e6
        out[name] = {"request_us": round(request_us, 1), "reply_us": round(reply_us, 1)}
    return out


def bench_e2e(model: str, requests: int, max_tokens: int) -> dict[str, Any]:
    """Median end-to-end latency through the app, without and with every guardrail, interleaved."""
    from fastapi.testclient import TestClient

    import lmfoundry
    from lmfoundry.serve.app import create_app
    from lmfoundry.serve.service import ServedModel, ServeOptions
    from lmfoundry.studio.config import StudioConfig

    options = ServeOptions(embedder=None, max_tokens=max_tokens)
    served = ServedModel.create(lmfoundry.load(model, backend="transformers"), name="m", options=options)
    all_guardrails = Guardrails(GuardrailsConfig.model_validate(CONFIGS["all"]))
    clients = {
        "none": TestClient(create_app(served, options, studio=StudioConfig(enabled=False))),
        "all": TestClient(
            create_app(served, options, guardrails=all_guardrails, studio=StudioConfig(enabled=False))
        ),
    }
    body = {**REQUEST, "max_tokens": max_tokens, "temperature": 0}
    times: dict[str, list[float]] = {name: [] for name in clients}
    try:
        for client in clients.values():  # warm-up
            client.post("/v1/chat/completions", json=body).raise_for_status()
        for _ in range(requests):
            for name, client in clients.items():
                start = time.perf_counter()
                client.post("/v1/chat/completions", json=body).raise_for_status()
                times[name].append(time.perf_counter() - start)
    finally:
        served.close()
    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    return {"none_ms": round(medians["none"], 1), "all_ms": round(medians["all"], 1),
            "ratio": round(medians["all"] / medians["none"], 3), "requests": requests, "max_tokens": max_tokens}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()
    plugins.register("safety_classifier", "bench-constant", _constant_classifier)
    result: dict[str, Any] = {"bench": "guardrails", "checks": bench_checks(args.iterations)}
    if not args.skip_e2e:
        result["e2e"] = bench_e2e(args.model, args.requests, args.max_tokens)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
