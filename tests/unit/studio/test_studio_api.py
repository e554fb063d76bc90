"""The studio's pages and JSON API through `create_app()` with an in-process client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.finetune.data.records import load_records
from lmfoundry.studio.api import STATIC_FILES
from lmfoundry.studio.runs import list_runs, run_detail

VOTE = {"prompt": [{"role": "user", "content": "Name a river"}], "chosen": "The Seine.", "rejected": "Blue."}


def _error(response: Any) -> str:
    return str(response.json()["error"]["message"])


def test_the_page_and_its_assets_ship_in_the_package_with_a_strict_policy(make_client: Any) -> None:
    client = make_client()
    page = client.get("/ui")
    assert page.status_code == 200 and "<title>lmfoundry studio</title>" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for name in STATIC_FILES:
        assert client.get(f"/ui/static/{name}").status_code == 200, name
    assert client.get("/ui/static/../api.py").status_code == 404
    assert client.get("/ui/static/secret.txt").status_code == 404
    assert "/ui" not in json.dumps(client.get("/openapi.json").json()["paths"])


def test_the_shell_is_open_but_the_api_needs_the_servers_key(make_client: Any) -> None:
    client = make_client(api_keys=["sk-studio"])
    assert client.get("/ui").status_code == 200
    assert client.get("/ui/static/app.js").status_code == 200
    assert client.get("/ui/api/runs").status_code == 401
    assert client.post("/ui/api/arena/vote", json=VOTE).status_code == 401
    assert client.get("/ui/api/runs", headers={"Authorization": "Bearer sk-studio"}).status_code == 200


def test_cors_is_off_unless_an_origin_is_configured(make_client: Any) -> None:
    origin = {"Origin": "http://elsewhere.test"}
    closed = make_client().get("/ui/api/runs", headers=origin)
    assert "access-control-allow-origin" not in closed.headers
    opened = make_client(cors_origins=("http://elsewhere.test",)).get("/ui/api/runs", headers=origin)
    assert opened.headers["access-control-allow-origin"] == "http://elsewhere.test"


def test_the_studio_can_be_left_out(make_client: Any) -> None:
    assert make_client(enabled=False).get("/ui").status_code == 404


def test_a_vote_is_a_preference_pair_appended_to_the_file(make_client: Any, tmp_path: Path) -> None:
    client = make_client()
    assert client.post("/ui/api/arena/vote", json=VOTE).json()["pairs"] == 1
    assert client.post("/ui/api/arena/vote", json={**VOTE, "chosen": "The Loire."}).json()["pairs"] == 2
    records = load_records(tmp_path / "preferences.jsonl")
    assert records[0] == VOTE and records[1]["chosen"] == "The Loire."


@pytest.mark.parametrize(
    ("vote", "message"),
    [
        ({**VOTE, "rejected": VOTE["chosen"]}, "identical"),
        ({**VOTE, "prompt": [{"role": "system", "content": "be brief"}]}, "user message"),
        ({**VOTE, "prompt": []}, "prompt"),
    ],
)
def test_a_vote_training_could_not_use_is_refused(
    make_client: Any, vote: dict[str, Any], message: str
) -> None:
    response = make_client().post("/ui/api/arena/vote", json=vote)
    assert response.status_code == 400 and message in _error(response)


def test_rag_context_numbers_the_documents_the_answer_cites(make_client: Any) -> None:
    body = {"store": "docs", "question": "What is the capital of France?", "mode": "bm25"}
    context = make_client().post("/ui/api/rag/context", json=body).json()
    assert context["hits"][0]["source"].endswith("france.txt")
    assert "Document 0:::" in context["messages"][-1]["content"]
    missing = make_client().post("/ui/api/rag/context", json={**body, "store": "nope"})
    assert missing.status_code == 400 and "no RAG store named 'nope'" in _error(missing)


def _write(path: Path, records: list[dict[str, Any]], partial: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + partial, encoding="utf-8")


def test_runs_are_found_by_their_files_and_polled_by_line(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _write(
        root / "sft" / "metrics.jsonl", [{"kind": "train", "step": 1, "loss": 2.0}], partial='{"kind": "tr'
    )
    (root / "sft" / "summary.json").write_text('{"steps": 1}')
    (root / "pipe").mkdir()
    stages = {
        "gate": {"kind": "gate", "status": "failed", "error": "| metric | ok |"},
        "eval": {"kind": "evaluate", "status": "done"},
    }
    (root / "pipe" / "state.json").write_text(json.dumps({"stages": stages}))
    runs = {r["id"]: r for r in list_runs(root)}
    assert {k: (v["kind"], v["status"]) for k, v in runs.items()} == {
        "sft": ("finetune", "done"),
        "pipe": ("pipeline", "failed"),
    }
    first = run_detail(root, "sft")
    assert [r["step"] for r in first["metrics"]] == [1] and first["lines"] == 1  # the half line waits
    assert run_detail(root, "sft", after=1)["metrics"] == []
    assert run_detail(root, "pipe")["stages"][0]["gate_report"] == "| metric | ok |"


@pytest.mark.parametrize("run_id", ["../outside", "/etc", "sft/../../outside", "missing"])
def test_a_run_outside_the_runs_root_is_refused(make_client: Any, tmp_path: Path, run_id: str) -> None:
    _write(tmp_path / "outside" / "metrics.jsonl", [{"step": 1, "loss": 1.0}])
    _write(tmp_path / "runs" / "sft" / "metrics.jsonl", [{"step": 1, "loss": 1.0}])
    response = make_client().get("/ui/api/run", params={"id": run_id})
    assert response.status_code == 400 and "no run" in _error(response)


def test_the_dashboard_reads_the_servers_own_statistics(make_client: Any) -> None:
    client = make_client()
    client.post(
        "/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    )
    stats = client.get("/ui/api/server").json()
    assert stats["queue_depth"] == 0
    row = next(r for r in stats["rows"] if r["model"] == "tiny")
    assert row["requests"] == 1 and row["ttft_p50"] > 0 and row["tpot_p95"] is not None


def test_the_store_lists_shows_and_refuses_unknown_models(make_client: Any) -> None:
    client = make_client()
    assert any(m["name"] == "smollm2-135m-instruct" for m in client.get("/ui/api/models").json()["models"])
    response = client.get("/ui/api/models/not-pulled")
    assert response.status_code in (400, 404) and "not-pulled" in _error(response)


def test_registry_versions_promote_and_roll_back_through_the_studio(
    make_client: Any, mlflow_db: Path
) -> None:
    from lmfoundry.track import registry

    registry.register("summ", registry.Pointer("tiny"))
    registry.register("summ", registry.Pointer("tiny-tuned"))
    client = make_client(tracking=True)
    assert [(m["name"], m["versions"]) for m in client.get("/ui/api/registry").json()["models"]] == [
        ("summ", 2)
    ]
    assert client.post("/ui/api/registry/summ/promote", json={"version": 1}).json()["version"] == 1
    assert client.post("/ui/api/registry/summ/promote", json={"version": 2}).json()["previous"] == 1
    assert client.get("/ui/api/registry/summ").json()["aliases"] == {"champion": 2}
    assert client.post("/ui/api/registry/summ/rollback", json={}).json()["version"] == 1
    unknown = client.post("/ui/api/registry/nope/promote", json={"version": 1})
    assert unknown.status_code in (400, 404) and "nope" in _error(unknown)
    off = make_client().get("/ui/api/registry")
    assert off.status_code == 400 and "registry is off" in _error(off)


def test_the_chat_offers_the_prompt_templates_the_server_applies(make_client: Any) -> None:
    client = make_client()
    names = [p["name"] for p in client.get("/ui/api/prompts").json()["prompts"]]
    assert "dialogsum-summary" in names
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "prompt_template": names[0]}
    assert client.post("/v1/chat/completions", json={**body, "max_tokens": 2}).status_code == 200
