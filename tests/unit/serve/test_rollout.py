"""Rollouts on the tiny Llama with two LoRA adapters as champion and challenger: a 90/10 split with
sticky users, shadow pairs, a canary that rolls itself back, run-time changes and promotion."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.serve.app import create_app
from lmfoundry.serve.canary import CanaryMonitor, Outcome, p95
from lmfoundry.serve.rollout import pick, user_point
from lmfoundry.serve.rollout_spec import CanarySpec, load_rollout, parse_rollout
from lmfoundry.serve.rollout_variants import LiveVariant
from lmfoundry.serve.service import ServedModel, ServeOptions
from lmfoundry.serve.shadow_pairs import split_pairs
from tiny import save_tiny_lora

KEY = "sk-rollout"
AUTH = {"Authorization": f"Bearer {KEY}"}
OPTIONS = ServeOptions(embedder=None, max_tokens=16, default_max_tokens=4, max_batch=8, max_queue=64)
USERS = 60
"""Users of the HTTP split test (the router's statistics are checked on 20,000 users without HTTP)."""
SPLIT = {
    "variants": [
        {"name": "champion", "weight": 90, "adapter": "a"},
        {"name": "challenger", "weight": 10, "adapter": "b"},
    ]
}


@pytest.fixture(scope="module")
def adapter_dirs(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rollout_adapters")
    return {name: save_tiny_lora(tiny_llama_dir, root / name, seed) for name, seed in (("a", 1), ("b", 2))}


def _serve(tiny_llama_dir: Path, adapter_dirs: dict[str, Path], served_factory: Any) -> ServedModel:
    adapters = {name: str(path) for name, path in adapter_dirs.items()}
    return served_factory(tiny_llama_dir, OPTIONS, adapters=adapters)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def two(tiny_llama_dir: Path, adapter_dirs: dict[str, Path], served_factory: Any) -> Iterator[ServedModel]:
    served = _serve(tiny_llama_dir, adapter_dirs, served_factory)
    yield served
    served.close()


def _chat(client: Any, user: str | None = None, text: str = "Hello", model: str = "tiny") -> Any:
    headers = {**AUTH, **({"X-LMF-User": user} if user else {})}
    body = {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 4,
        "temperature": 0,
    }
    return client.post("/v1/chat/completions", json=body, headers=headers)


@pytest.fixture(scope="module")
def expected(two: ServedModel) -> dict[str, str]:
    """Each adapter's greedy answer, asked for by name (no rollout involved)."""
    from fastapi.testclient import TestClient

    client = TestClient(create_app(two, OPTIONS, api_keys=[KEY]))
    texts = {v: _chat(client, model=f"tiny:{v}").json()["choices"][0]["message"]["content"] for v in "ab"}
    assert texts["a"] != texts["b"], "the adapters must answer differently"
    return {"champion": texts["a"], "challenger": texts["b"]}


def _samples(client: Any, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(client.get("/metrics", headers=AUTH).text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_router_splits_users_by_weight_deterministically() -> None:
    variants = [LiveVariant("champion", 90, "a"), LiveVariant("challenger", 10, "b")]
    picks = Counter(pick(variants, user_point(f"user-{i}")).name for i in range(20000))  # type: ignore[union-attr]
    share = picks["challenger"] / 20000
    assert abs(share - 0.10) < 4 * (0.1 * 0.9 / 20000) ** 0.5, share  # 4 standard errors
    assert user_point("alice") == user_point("alice") and 0 <= user_point("alice") < 1
    assert pick([LiveVariant("x", 0, None)], 0.5) is None


def test_90_10_split_over_http_is_observed_sticky_and_labelled(
    two: ServedModel, expected: dict[str, str]
) -> None:
    from fastapi.testclient import TestClient

    client = TestClient(create_app(two, OPTIONS, api_keys=[KEY], rollout=parse_rollout(SPLIT)))
    seen: dict[str, str] = {}
    for i in range(USERS):
        reply = _chat(client, user=f"user-{i}")
        variant = reply.headers["X-LMF-Variant"]
        assert (
            reply.json()["choices"][0]["message"]["content"] == expected[variant]
        )  # the header tells the truth
        seen[f"user-{i}"] = variant
    counts = Counter(seen.values())
    assert 1 <= counts["challenger"] <= 13, counts  # binomial(60, 0.1): mean 6, 3 standard deviations
    for i in range(0, USERS, 6):  # sticky: the same user lands on the same variant again
        assert _chat(client, user=f"user-{i}").headers["X-LMF-Variant"] == seen[f"user-{i}"]
    requests = _samples(client, "lmf_variant_requests_total")
    champion = counts["champion"] + sum(seen[f"user-{i}"] == "champion" for i in range(0, USERS, 6))
    assert requests[(("status", "200"), ("variant", "champion"))] == champion
    assert requests[(("status", "200"), ("variant", "challenger"))] == USERS + USERS // 6 - champion
    e2e = _samples(client, "lmf_e2e_seconds_count")
    assert e2e[(("adapter", "a"), ("model", "tiny"))] == champion  # it really ran adapter a
    shares = _samples(client, "lmf_variant_weight_ratio")
    assert shares[(("variant", "challenger"),)] == pytest.approx(0.1)
    explicit = _chat(client, user="user-1", model="tiny:b")  # naming an adapter bypasses the rollout
    assert "X-LMF-Variant" not in explicit.headers


def test_ollama_routes_assign_one_variant_per_generation_only(
    two: ServedModel, expected: dict[str, str]
) -> None:
    from fastapi.testclient import TestClient

    client = TestClient(create_app(two, OPTIONS, api_keys=[KEY], rollout=parse_rollout(SPLIT)))
    greedy = {"temperature": 0, "num_predict": 4}
    replies = []
    for i in range(8):
        headers = {**AUTH, "X-LMF-User": f"user-{i}"}
        chat = {"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "options": greedy}
        replies.append(client.post("/api/chat", json={**chat, "stream": i % 2 == 0}, headers=headers))
        replies.append(client.post("/api/generate", json={"model": "tiny", "prompt": "Hello", "options": greedy,
                                                          "stream": False}, headers=headers))  # fmt: skip
    for reply in replies:
        lines = [json.loads(line) for line in reply.text.splitlines()]
        text = "".join(
            (line.get("message") or {}).get("content", "") or line.get("response", "") for line in lines
        )
        assert text == expected[reply.headers["X-LMF-Variant"]]  # the header names the variant that answered
    assert {r.headers["X-LMF-Variant"] for r in replies[0::2]} == {
        r.headers["X-LMF-Variant"] for r in replies[1::2]
    }
    others = [client.post("/api/chat", json={"model": "tiny", "messages": []}, headers=AUTH),  # load
              client.post("/api/generate", json={"model": "tiny:latest"}, headers=AUTH),
              client.post("/api/show", json={"model": "tiny"}, headers=AUTH)]  # fmt: skip
    assert [r.status_code for r in others] == [200] * 3 and not any(
        "X-LMF-Variant" in r.headers for r in others
    )
    assert client.post("/api/show", json={"model": "nope"}, headers=AUTH).status_code == 404
    requests = _samples(client, "lmf_variant_requests_total")
    assert sum(requests.values()) == len(replies)  # once per generation: not routed twice, nor on load/show


def test_shadow_stores_pairs_and_never_returns_the_challengers_text(
    two: ServedModel, expected: dict[str, str], tmp_path: Path, capsys: Any
) -> None:
    from fastapi.testclient import TestClient

    from lmfoundry.cli.main import main
    from lmfoundry.eval.judge import pairwise_items, read_outputs
    from lmfoundry.eval.tasks import jsonl_task
    from lmfoundry.serve.capture import CaptureStore

    pairs = tmp_path / "pairs.jsonl"
    spec = {
        "variants": [
            {"name": "champion", "weight": 1, "adapter": "a"},
            {"name": "challenger", "weight": 0, "adapter": "b"},
        ],
        "shadow": {"variant": "challenger", "share": 1.0, "pairs": str(pairs)},
    }
    capture = CaptureStore(tmp_path / "capture.db")
    app = create_app(two, OPTIONS, api_keys=[KEY], rollout=parse_rollout(spec), capture=capture)
    with TestClient(app) as client:
        for i in range(4):
            reply = _chat(client, user=f"u{i}", text=f"Hello {i}")
            assert reply.headers["X-LMF-Variant"] == "champion"
        streamed = client.post(
            "/v1/chat/completions",
            json={
                "model": "tiny",
                "messages": [{"role": "user", "content": "Hello"}],
                "max_tokens": 4,
                "temperature": 0,
                "stream": True,
            },
            headers=AUTH,
        )
        assert expected["challenger"] not in streamed.text or expected["challenger"] in expected["champion"]
        deadline = time.monotonic() + 30
        while (not pairs.exists() or len(pairs.read_text().splitlines()) < 5) and time.monotonic() < deadline:
            time.sleep(0.05)
        shadowed = _samples(client, "lmf_shadow_requests_total")
    records = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert len(records) == 5
    hello = next(r for r in records if r["input"] == "Hello")
    assert hello["served_output"] == hello["reference"] == expected["champion"]
    assert hello["shadow_output"] == expected["challenger"] and hello["shadow_variant"] == "challenger"
    assert sorted(r["input"] for r in records) == ["Hello", *(f"Hello {i}" for i in range(4))]
    assert shadowed[(("outcome", "ok"), ("variant", "challenger"))] == 5
    assert capture.count() == 5  # shadow answers are not captured as served traffic
    task = jsonl_task(pairs)  # what `lmf eval compare ... --task jsonl:PAIRS` reads
    assert len(task.examples) == 5 and task.examples[0].metadata["shadow_variant"] == "challenger"
    assert main(["capture", "shadow-pairs", str(pairs), "--out", str(tmp_path / "judge"), "--json"]) == 0
    split = json.loads(capsys.readouterr().out)  # the folders `lmf eval judge --pairwise` reads
    assert split["pairs"] == 5 and (split["served_variants"], split["shadow_variants"]) == (
        ["champion"],
        ["challenger"],
    )
    items = pairwise_items(read_outputs(split["served"]), read_outputs(split["shadow"]))
    assert len(items) == 5 and {(i.response, i.other) for i in items} == {
        (r["served_output"], r["shadow_output"]) for r in records
    }
    assert split_pairs(pairs, tmp_path / "again") == (
        tmp_path / "again" / "served",
        tmp_path / "again" / "shadow",
    )
    assert main(["capture", "shadow-pairs", str(pairs), "-o", str(tmp_path / "text")]) == 0
    assert "judge them: lmf eval judge JUDGE --outputs" in capsys.readouterr().out
    (tmp_path / "broken.jsonl").write_text('{"id": "x", "input": "y"}\n')
    (tmp_path / "empty.jsonl").write_text("")
    for name, message in (("broken.jsonl", "broken.jsonl:1: a shadow pair needs"), ("empty.jsonl", "no shadow pairs yet"),
                          ("missing.jsonl", "shadow pairs file not found")):  # fmt: skip
        assert main(["capture", "shadow-pairs", str(tmp_path / name), "--out", str(tmp_path / "nope")]) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()


def test_a_failing_canary_rolls_itself_back(
    tiny_llama_dir: Path, adapter_dirs: dict[str, Path], served_factory: Any
) -> None:
    from fastapi.testclient import TestClient

    served = _serve(tiny_llama_dir, adapter_dirs, served_factory)
    try:
        spec = {
            "variants": [
                {"name": "champion", "weight": 1, "adapter": "a"},
                {"name": "challenger", "weight": 1, "adapter": "b"},
            ],
            "canary": {"variant": "challenger", "window": 10, "min_samples": 4, "max_error_rate": 0.25},
        }
        client = TestClient(create_app(served, OPTIONS, api_keys=[KEY], rollout=parse_rollout(spec)))
        assert client.delete("/v1/adapters/b", headers=AUTH).status_code == 200  # the challenger breaks
        outcomes = [
            (r.headers["X-LMF-Variant"], r.status_code) for r in (_chat(client, f"u{i}") for i in range(60))
        ]
        failures = [o for o in outcomes if o == ("challenger", 503)]
        assert len(failures) == 4  # min_samples errors, then the canary is out
        last_failure = max(i for i, o in enumerate(outcomes) if o[1] == 503)
        assert all(o == ("champion", 200) for o in outcomes[last_failure + 1 :])
        assert len(outcomes) - last_failure > 20
        state = client.get("/v1/rollout", headers=AUTH).json()
        assert (
            state["rolled_back"]["variant"] == "challenger" and "error_rate" in state["rolled_back"]["reason"]
        )
        assert {v["name"]: v["share"] for v in state["variants"]} == {"champion": 1.0, "challenger": 0.0}
        assert _samples(client, "lmf_canary_rollbacks_total") == {(("variant", "challenger"),): 1.0}
    finally:
        served.close()


JUDGED = {
    "variants": [{"name": "champion", "weight": 1, "adapter": "a"}, {"name": "challenger", "weight": 1, "adapter": "b"}],
    "canary": {"variant": "challenger", "max_error_rate": None, "min_judge_score": 0.5, "judge_share": 1.0,
               "min_judge_samples": 2},
}  # fmt: skip


def _wait_for_rollback(client: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (
        client.get("/v1/rollout", headers=AUTH).json()["rolled_back"] is None and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    return client.get("/v1/rollout", headers=AUTH).json()  # type: ignore[no-any-return]


def test_the_judge_hook_rolls_back_a_canary_with_low_scores(two: ServedModel) -> None:
    from fastapi.testclient import TestClient

    judged: list[tuple[str, str]] = []

    def judge(question: str, answer: str) -> float:
        judged.append((question, answer))
        return 0.1

    app = create_app(two, OPTIONS, api_keys=[KEY], rollout=parse_rollout(JUDGED), canary_judge=judge)
    with TestClient(app) as client:
        variants = [_chat(client, f"u{i}").headers["X-LMF-Variant"] for i in range(12)]
        state = _wait_for_rollback(client)
    assert "challenger" in variants and "champion" in variants
    assert state["rolled_back"]["variant"] == "challenger" and "judge score" in state["rolled_back"]["reason"]
    assert judged and all(question == "Hello" for question, _ in judged)


def test_canary_judge_from_the_command_line(
    tiny_llama_dir: Path, adapter_dirs: dict[str, Path], tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    from fastapi.testclient import TestClient

    from lmfoundry.cli.main import main

    (tmp_path / "my_checks.py").write_text("def low(question, answer):\n    return 0.1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rollout = tmp_path / "rollout.yaml"
    rollout.write_text(json.dumps(JUDGED))
    argv = ["serve", str(tiny_llama_dir), "--served-model-name", "tiny", "--embedder", "none", "--batch-dir", "none",
            "--backend", "transformers",
            "--api-key", KEY, "--rollout", str(rollout), *(f"--adapter={n}={p}" for n, p in adapter_dirs.items())]  # fmt: skip
    for extra, message in (
        ([], "sets min_judge_score but the server has no judge (start it with --canary-judge NAME"),
        (["--canary-judge", "my_checks:nope"], "cannot load canary judge 'my_checks:nope'"),
        (["--canary-judge", "unregistered"], "is neither a canary_judge plugin nor a module:function path"),
    ):
        assert main([*argv, *extra]) == 1  # before the model loads
        assert message in capsys.readouterr().err, extra
    apps: list[Any] = []
    monkeypatch.setattr("lmfoundry.cli.serve.serve_forever", lambda app, host, port: apps.append(app))
    assert main([*argv, "--canary-judge", "my_checks:low"]) == 0
    with TestClient(apps[0]) as client:  # the lifespan closes the served model on exit
        variants = {_chat(client, f"u{i}").headers["X-LMF-Variant"] for i in range(12)}
        state = _wait_for_rollback(client)
    assert variants == {"champion", "challenger"}
    assert (
        state["rolled_back"]["variant"] == "challenger"
        and "judge score 0.100" in state["rolled_back"]["reason"]
    )


def _strict_judge(question: str, answer: str) -> float:
    return 0.0


def test_a_judge_check_without_a_judge_is_refused(two: ServedModel) -> None:
    from fastapi.testclient import TestClient

    from lmfoundry import plugins
    from lmfoundry.serve.canary import load_canary_judge

    client = TestClient(create_app(two, OPTIONS, api_keys=[KEY], rollout=parse_rollout(SPLIT)))
    refused = client.put("/v1/rollout", json=JUDGED, headers=AUTH)
    assert refused.status_code == 400 and "--canary-judge" in refused.json()["error"]["message"]
    assert client.get("/v1/rollout", headers=AUTH).json()["canary"] is None  # the old rollout stays
    with pytest.raises(InvalidInputError, match="sets min_judge_score but the server has no judge"):
        create_app(two, OPTIONS, rollout=parse_rollout(JUDGED))
    plugins.register("canary_judge", "test-strict", _strict_judge)
    assert load_canary_judge("test-strict", parse_rollout(JUDGED)) is _strict_judge
    assert load_canary_judge(None, parse_rollout(SPLIT)) is None


def test_canary_checks_wait_for_min_samples_and_name_the_failed_check() -> None:
    slow = CanaryMonitor(CanarySpec(variant="c", window=5, min_samples=4, max_error_rate=None, max_p95_s=1.0))
    assert [slow.add(Outcome(False, 2.0, False)) for _ in range(3)] == [None] * 3
    assert "p95 latency 2.000s > 1.0s" in (slow.add(Outcome(False, 2.0, False)) or "")
    empty = CanaryMonitor(CanarySpec(variant="c", min_samples=2, max_error_rate=None, max_empty_rate=0.4))
    assert empty.add(Outcome(False, 0.1, False)) is None
    assert "empty_rate 0.500" in (empty.add(Outcome(False, 0.1, True)) or "")
    window = CanaryMonitor(CanarySpec(variant="c", window=3, min_samples=3, max_error_rate=0.5))
    for error in (True, True, False, False, False):  # old errors slide out of the window
        verdict = window.add(Outcome(error, 0.1, False))
    assert verdict is None and window.summary()["error_rate"] == 0.0
    assert p95([float(i) for i in range(1, 101)]) == 95.0


def test_rollout_changes_at_run_time_with_the_api_key(two: ServedModel, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    client = TestClient(create_app(two, OPTIONS, api_keys=[KEY], rollout=parse_rollout(SPLIT)))
    all_challenger = {
        "variants": [
            {"name": "champion", "weight": 0, "adapter": "a"},
            {"name": "challenger", "weight": 1, "adapter": "b"},
        ]
    }
    assert client.put("/v1/rollout", json=all_challenger).status_code == 401
    assert client.put("/v1/rollout", json=all_challenger, headers=AUTH).status_code == 200
    assert {_chat(client, f"u{i}").headers["X-LMF-Variant"] for i in range(5)} == {"challenger"}
    bad = client.put("/v1/rollout", json={**SPLIT, "canary": {"variant": "nope"}}, headers=AUTH)
    assert bad.status_code == 400 and "canary.variant 'nope'" in bad.json()["error"]["message"]
    missing = client.put("/v1/rollout", json={"variants": [{"name": "x", "adapter": "zzz"}]}, headers=AUTH)
    assert missing.status_code == 400 and "serves no adapter 'zzz'" in missing.json()["error"]["message"]
    assert (
        client.get("/v1/rollout", headers=AUTH).json()["variants"][1]["share"] == 1.0
    )  # unchanged by failures
    assert client.delete("/v1/rollout", headers=AUTH).json() == {"active": False, "variants": []}
    assert "X-LMF-Variant" not in _chat(client, "u1").headers
    unknown = client.post("/v1/rollout/promote", json={"variant": "ghost"}, headers=AUTH)
    assert unknown.status_code == 400 and "no variant 'ghost'" in unknown.json()["error"]["message"]
    open_server = TestClient(create_app(two, OPTIONS, rollout=parse_rollout(SPLIT)))
    refused = open_server.put("/v1/rollout", json=SPLIT)
    assert refused.status_code == 403 and "--api-key" in refused.json()["error"]["message"]
    assert open_server.get("/v1/rollout").json()["active"] is True


def test_promote_moves_the_registry_alias_and_the_traffic_without_restart(
    two: ServedModel,
    expected: dict[str, str],
    adapter_dirs: dict[str, Path],
    tiny_llama_dir: Path,
    mlflow_db: Path,
) -> None:
    from fastapi.testclient import TestClient

    from lmfoundry.track import registry

    base = str(tiny_llama_dir)
    for name in ("a", "b"):
        registry.register("summ", registry.Pointer(base, str(adapter_dirs[name])))
    registry.promote("summ", 1, "champion")
    registry.promote("summ", 2, "challenger")
    spec = {
        "variants": [
            {"name": "champion", "weight": 90, "registry": "summ"},
            {"name": "challenger", "weight": 10, "registry": "summ"},
        ],
        "canary": {"variant": "challenger"},
    }
    client = TestClient(create_app(two, OPTIONS, api_keys=[KEY], rollout=parse_rollout(spec)))
    state = client.get("/v1/rollout", headers=AUTH).json()
    assert [(v["name"], v["version"]) for v in state["variants"]] == [("champion", 1), ("challenger", 2)]
    champion_user = next(
        f"u{i}" for i in range(50) if _chat(client, f"u{i}").headers["X-LMF-Variant"] == "champion"
    )
    assert _chat(client, champion_user).json()["choices"][0]["message"]["content"] == expected["champion"]
    promoted = client.post("/v1/rollout/promote", json={"variant": "challenger"}, headers=AUTH).json()
    assert promoted["registry"] == {"name": "summ", "alias": "champion", "previous": 1, "version": 2}
    assert registry.resolve("summ")[0] == 2
    assert [(v["name"], v["version"]) for v in promoted["rollout"]["variants"]] == [("champion", 2)]
    assert promoted["rollout"]["canary"] is None
    reply = _chat(client, champion_user)
    assert reply.headers["X-LMF-Variant"] == "champion"
    assert reply.json()["choices"][0]["message"]["content"] == expected["challenger"]


def test_rollout_files_load_and_bad_ones_are_named(tmp_path: Path) -> None:
    good = tmp_path / "rollout.yaml"
    good.write_text(
        "variants:\n  - {name: champion, weight: 9, registry: summ}\n  - {name: challenger, weight: 1, adapter: b}\n"
        "shadow: {variant: challenger, share: 0.5, pairs: out/pairs.jsonl}\n"
    )
    spec = load_rollout(good)
    assert spec.shadow is not None and spec.shadow.pairs == tmp_path / "out" / "pairs.jsonl"
    as_json = tmp_path / "rollout.json"
    as_json.write_text(json.dumps(SPLIT))
    assert [v.weight for v in load_rollout(as_json).variants] == [90, 10]
    cases = [
        ({"variants": []}, "variants"),
        ({"variants": [{"name": "a", "weight": 0}]}, "weight above 0"),
        ({"variants": [{"name": "a"}, {"name": "a"}]}, "unique"),
        ({"variants": [{"name": "a", "adapter": "x", "registry": "y"}]}, "not both"),
        ({"variants": [{"name": "a", "alias": "x"}]}, "need `registry`"),
        ({"variants": [{"name": "a", "wieght": 2}]}, "variants.0.wieght"),
        ({"variants": [{"name": "a"}], "shadow": {"variant": "a", "share": 2, "pairs": "p"}}, "shadow.share"),
        (
            {"variants": [{"name": "a"}], "canary": {"variant": "a", "min_judge_score": 0.5}},
            "judge_share above 0",
        ),
    ]
    for data, message in cases:
        with pytest.raises(InvalidInputError, match="invalid rollout") as info:
            parse_rollout(data)
        assert message in str(info.value), (data, str(info.value))
    with pytest.raises(InvalidInputError, match="config file not found"):
        load_rollout(tmp_path / "missing.yaml")


def test_serve_refuses_a_bad_rollout_file_before_loading(
    tiny_llama_dir: Path, tmp_path: Path, capsys: Any
) -> None:
    from lmfoundry.cli.main import main

    bad = tmp_path / "rollout.yaml"
    bad.write_text("variants: [{name: a, weight: -1}]\n")
    assert main(["serve", str(tiny_llama_dir), "--embedder", "none", "--rollout", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmf: error:") and "variants.0.weight" in err
