"""The studio's pages and JSON API through `create_app()` with an in-process client."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.errors import LmfError
from lmfoundry.finetune.data.records import load_records
from lmfoundry.studio.api import STATIC_FILES
from lmfoundry.studio.jobs import Jobs
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


def _wait_for_job(client: Any, job_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/ui/api/jobs/{job_id}").json()
        if job["status"] != "running":
            return dict(job)
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running after {timeout_s} s")


def test_a_quantization_runs_as_a_job_and_adds_a_store_entry(make_client: Any, tiny_llama_dir: Path) -> None:
    from lmfoundry.models import store

    store.pull(str(tiny_llama_dir), "qsrc")
    client = make_client()
    assert "gguf-q8_0" in client.get("/ui/api/models").json()["quantize_methods"]
    started = client.post("/ui/api/models/quantize", json={"model": "qsrc", "method": "int8"}).json()
    assert started["status"] == "running" and started["title"] == "quantizing qsrc to int8"
    job = _wait_for_job(client, started["id"])
    assert (job["status"], job["progress"], job["error"]) == ("done", 1.0, None)
    assert job["result"]["name"] == "qsrc-int8" and job["result"]["quantization"]["method"] == "int8"
    listed = {m["name"]: m for m in client.get("/ui/api/models").json()["models"]}
    assert listed["qsrc-int8"]["quantization"] == "int8"
    assert [j["id"] for j in client.get("/ui/api/jobs").json()["jobs"]] == [started["id"]]

    again = client.post("/ui/api/models/quantize", json={"model": "qsrc", "method": "int8"}).json()
    failed = _wait_for_job(client, again["id"])
    assert failed["status"] == "failed" and "'qsrc-int8' already exists" in failed["error"]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/ui/api/models/quantize", {"model": "qsrc", "method": "q3"}, "unknown quantization method 'q3'"),
        ("/ui/api/models/quantize", {"model": "", "method": "int8"}, "model"),
        ("/ui/api/jobs/quantize-99", None, "no studio job 'quantize-99'"),
    ],
)
def test_a_bad_quantization_request_is_refused_at_once(
    make_client: Any, path: str, body: dict[str, Any] | None, message: str
) -> None:
    client = make_client()
    response = client.post(path, json=body) if body is not None else client.get(path)
    assert response.status_code in (400, 422) and message in json.dumps(response.json())


def test_a_jobs_progress_counts_the_stages_the_work_reports() -> None:
    release = [threading.Event() for _ in range(3)]
    reached = [threading.Event() for _ in range(3)]

    def work(step: Any) -> dict[str, Any]:
        for n, stage in enumerate(("load", "convert", "write")):
            step(stage)
            reached[n].set()
            release[n].wait(10)
        return {"name": "out"}

    jobs = Jobs()
    job = jobs.start("quantize", "quantizing m", 3, work)
    seen = []
    for n in range(3):
        assert reached[n].wait(10)
        state = jobs.get(job.id)
        seen.append((state["stage"], state["stage_number"], state["progress"]))
        if n == 0:
            with pytest.raises(LmfError, match="quantizing m is still running"):
                jobs.start("quantize", "another", 3, work)
        release[n].set()
    assert seen == [("load", 1, 0.0), ("convert", 2, 0.333), ("write", 3, 0.667)]
    deadline = time.monotonic() + 10
    while jobs.get(job.id)["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert jobs.get(job.id)["result"] == {"name": "out"} and jobs.get(job.id)["progress"] == 1.0


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (LmfError("model 'm' is not in the store"), "model 'm' is not in the store"),
        (KeyError("w"), "KeyError: 'w'"),
    ],
)
def test_a_failing_job_ends_failed_with_its_reason(error: Exception, message: str) -> None:
    def work(step: Any) -> dict[str, Any]:
        step("loading")
        raise error

    jobs = Jobs()
    job = jobs.start("quantize", "q", 3, work)
    deadline = time.monotonic() + 10
    while jobs.get(job.id)["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    state = jobs.get(job.id)
    assert (state["status"], state["error"], state["stage"]) == ("failed", message, "failed")
    assert jobs.start("quantize", "next", 3, lambda step: {}).id != job.id  # a failed job frees the slot


DOCUMENTS = [
    {"source": "france.txt", "text": "Paris is the capital of France."},
    {"source": "germany.txt", "text": "Berlin is the capital of Germany."},
]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("It is Berlin [1].", [(1, "germany.txt", "model", False)]),
        ("Paris is the capital of France.", [(0, "france.txt", "similarity", True)]),
        ("Berlin is the capital of Germany, the Spree runs there.", [(1, "germany.txt", "similarity", True)]),
        ("The context does not say.", []),
    ],
)
def test_a_rag_answer_is_attributed_as_lmf_rag_ask_does(
    make_client: Any, answer: str, expected: list[tuple[Any, ...]]
) -> None:
    body = {"store": "docs", "answer": answer, "documents": DOCUMENTS}
    citations = make_client().post("/ui/api/rag/cite", json=body).json()["citations"]
    assert [(c["document"], c["source"], c["method"], c["attributed"]) for c in citations] == expected
    assert all(0 < c["score"] <= 1 for c in citations if c["attributed"])


SCHEMA = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}


@pytest.mark.parametrize(
    ("text", "schema", "valid", "error"),
    [
        ('{"age": 3}', SCHEMA, True, None),
        ('{"age": "three"}', SCHEMA, False, "age: 'three' is not of type 'integer'"),
        ('{"ag', SCHEMA, False, "the reply is not JSON"),
        ('{"anything": [1]}', None, True, None),
        ("[1, 2]", None, False, "the reply is JSON but not an object"),
    ],
)
def test_a_json_reply_is_checked_against_its_schema(
    make_client: Any, text: str, schema: dict[str, Any] | None, valid: bool, error: str | None
) -> None:
    checked = make_client().post("/ui/api/json/check", json={"text": text, "schema": schema}).json()
    assert checked["valid"] is valid
    assert (error is None and checked["errors"] == []) or (
        error is not None and error in checked["errors"][0]
    )


def test_a_malformed_schema_is_refused_with_the_reason(make_client: Any) -> None:
    response = make_client().post("/ui/api/json/check", json={"text": "{}", "schema": {"type": "nonsense"}})
    assert response.status_code == 400 and "invalid JSON schema" in _error(response)
