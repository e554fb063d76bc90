"""Batch jobs: /v1/files + /v1/batches with the official openai client, low priority behind live
traffic, validation errors, cancel/expiry, and a restart that neither loses nor repeats results."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.generate.engine import LoadedModel
from lmfoundry.serve.batches import BatchStore, parse_lines
from lmfoundry.serve.files import FileStore, StateDB
from lmfoundry.serve.http_server import running_server
from lmfoundry.serve.service import ServedModel, ServeOptions
from lmfoundry.types import Message

NAME = "tiny"
CHAT = "/v1/chat/completions"


def line(custom_id: str, body: dict[str, Any], url: str = CHAT) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def chat_body(content: str, max_tokens: int = 6, **kw: Any) -> dict[str, Any]:
    return {
        "model": NAME,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        **kw,
    }


def reference(model: LoadedModel, content: str, max_tokens: int = 6) -> str:
    return model.generate([Message("user", content)], temperature=0, max_new_tokens=max_tokens).text.rstrip(
        "\ufffd"
    )


def wait_for(predicate: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def slow_served(factory: Any, path: Path, options: ServeOptions, delay_s: float = 0.02) -> ServedModel:
    """The served tiny model with each forward pass slowed (the dependency), so timing is controllable."""
    served: ServedModel = factory(path, options)
    served.scheduler.model.register_forward_pre_hook(lambda *_: time.sleep(delay_s))  # type: ignore[union-attr]
    return served


def test_openai_client_batch_round_trip(
    served: ServedModel, options: ServeOptions, tiny_model: LoadedModel, tmp_path: Path
) -> None:
    import openai

    from lmfoundry.serve.app import create_app

    prompts = {"a": "Hello", "b": "Tell me a story", "c": "Why?"}
    lines = [line(cid, chat_body(text)) for cid, text in prompts.items()]
    lines.append(line("too-long", chat_body("x", max_tokens=1000)))  # over the server's max_tokens: a 400
    lines.append(line("streamed", chat_body("x", stream=True)))
    with running_server(create_app(served, options, batch_dir=tmp_path)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        upload = client.files.create(file=("in.jsonl", "\n".join(lines).encode()), purpose="batch")
        assert upload.purpose == "batch" and upload.filename == "in.jsonl"
        assert client.files.retrieve(upload.id).bytes == len("\n".join(lines).encode())
        batch = client.batches.create(input_file_id=upload.id, endpoint=CHAT, completion_window="24h")
        assert batch.status == "in_progress" and batch.request_counts.total == 5
        wait_for(lambda: client.batches.retrieve(batch.id).status == "completed")
        done = client.batches.retrieve(batch.id)
        assert (done.request_counts.completed, done.request_counts.failed) == (3, 2)
        assert done.completed_at is not None and done.output_file_id and done.error_file_id
        output = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
        errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
        assert [b.id for b in client.batches.list()] == [batch.id]
        assert {f.id for f in client.files.list()} == {upload.id, done.output_file_id, done.error_file_id}
        assert client.files.delete(upload.id).deleted
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(upload.id)
        assert client.batches.retrieve(batch.id).status == "completed"  # the lines were copied
    assert [r["custom_id"] for r in output] == list(prompts)
    for record in output:
        body = record["response"]["body"]
        assert record["response"]["status_code"] == 200 and record["error"] is None
        assert record["id"].startswith("batch_req_") and body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == reference(tiny_model, prompts[record["custom_id"]])
    by_id = {r["custom_id"]: r["response"] for r in errors}
    assert set(by_id) == {"too-long", "streamed"}
    assert (
        by_id["too-long"]["status_code"] == 400
        and "max_tokens" in by_id["too-long"]["body"]["error"]["message"]
    )
    assert "stream" in by_id["streamed"]["body"]["error"]["message"]


def test_restart_mid_batch_neither_loses_nor_repeats_results(
    tiny_llama_dir: Path, options: ServeOptions, served_factory: Any, tiny_model: LoadedModel, tmp_path: Path
) -> None:
    import httpx

    from lmfoundry.serve.app import create_app

    prompts = {f"q{i}": f"Question number {i}" for i in range(8)}
    content = "\n".join(line(cid, chat_body(text)) for cid, text in prompts.items()).encode()
    served = slow_served(served_factory, tiny_llama_dir, options)
    try:
        with running_server(create_app(served, options, batch_dir=tmp_path)) as url:
            http = httpx.Client(base_url=url, timeout=10)
            upload = http.post("/v1/files", files={"file": ("in.jsonl", content)}, data={"purpose": "batch"})
            body = {"input_file_id": upload.json()["id"], "endpoint": CHAT, "completion_window": "24h"}
            batch_id = http.post("/v1/batches", json=body).json()["id"]

            def finished() -> int:
                return int(http.get(f"/v1/batches/{batch_id}").json()["request_counts"]["completed"])

            wait_for(lambda: finished() >= 3)
        # the server is gone mid-batch: what it recorded is durable, the rest is still pending
        db = StateDB(tmp_path)
        store = BatchStore(db, FileStore(db))
        first = store.get(batch_id)
        assert first["status"] == "in_progress" and 3 <= first["request_counts"]["completed"] < 8
        recorded = dict(db.conn.execute("SELECT line, record FROM batch_results").fetchall())
        with running_server(create_app(served, options, batch_dir=tmp_path)) as url:
            http = httpx.Client(base_url=url, timeout=10)
            wait_for(lambda: http.get(f"/v1/batches/{batch_id}").json()["status"] == "completed")
            final = http.get(f"/v1/batches/{batch_id}").json()
            text = http.get(f"/v1/files/{final['output_file_id']}/content").text
    finally:
        served.close()
    output = [json.loads(x) for x in text.splitlines()]
    assert [r["custom_id"] for r in output] == list(prompts)  # each exactly once, in input order
    assert final["request_counts"] == {"total": 8, "completed": 8, "failed": 0}
    assert final["error_file_id"] is None
    for number, raw in recorded.items():  # results from before the restart were kept, not redone
        assert output[number] == json.loads(raw)
    for record in output:
        got = record["response"]["body"]["choices"][0]["message"]["content"]
        assert got == reference(tiny_model, prompts[record["custom_id"]])


def test_batch_work_waits_for_live_traffic(
    tiny_llama_dir: Path, options: ServeOptions, served_factory: Any, tmp_path: Path
) -> None:
    import httpx

    from lmfoundry.serve.app import create_app

    served = slow_served(served_factory, tiny_llama_dir, options, delay_s=0.03)
    content = "\n".join(line(f"b{i}", chat_body("hi", max_tokens=2)) for i in range(2)).encode()
    live = {"model": NAME, "prompt": "Hi", "max_tokens": 60, "temperature": 0, "stream": True}
    try:
        with running_server(create_app(served, options, batch_dir=tmp_path)) as url:
            http = httpx.Client(base_url=url, timeout=20)
            file_id = http.post(
                "/v1/files", files={"file": ("b.jsonl", content)}, data={"purpose": "batch"}
            ).json()["id"]
            with http.stream("POST", "/v1/completions", json=live) as stream:
                lines = stream.iter_lines()
                assert next(x for x in lines if x.startswith("data: "))  # the live request is decoding
                body = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"}
                batch_id = http.post("/v1/batches", json=body).json()["id"]
                time.sleep(0.5)
                assert served.scheduler.active() == 1  # still only the live request
                counts = http.get(f"/v1/batches/{batch_id}").json()["request_counts"]
                assert counts["completed"] + counts["failed"] == 0
                assert [x for x in lines if x][-1] == "data: [DONE]"
            wait_for(lambda: http.get(f"/v1/batches/{batch_id}").json()["status"] == "completed")
    finally:
        served.close()


def test_upload_and_batch_errors(served: ServedModel, options: ServeOptions, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from lmfoundry.serve.app import create_app

    client = TestClient(create_app(served, options, batch_dir=tmp_path))  # no lifespan: no worker runs

    def upload(content: bytes, purpose: str = "batch") -> Any:
        return client.post("/v1/files", files={"file": ("f.jsonl", content)}, data={"purpose": purpose})

    assert upload(b"not json\n").json()["error"]["message"].startswith("line 1 is not valid JSON")
    assert upload(b"\xff\xfe").status_code == 400
    assert upload(b"[1]\n").status_code == 400
    assert upload(b"\n\n").status_code == 400
    assert "purpose" in upload(b'{"a": 1}\n', purpose="fine-tune").json()["error"]["message"]
    assert client.post("/v1/files", data={"purpose": "batch"}).json()["error"]["param"] == "file"
    assert client.get("/v1/files/file-nope").status_code == 404
    assert client.get("/v1/files/file-nope/content").status_code == 404
    assert client.delete("/v1/files/file-nope").status_code == 404

    def create(file_id: str, **kw: Any) -> Any:
        body = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h", **kw}
        return client.post("/v1/batches", json=body)

    assert create("file-nope").status_code == 404
    assert create("x", endpoint="/v1/embeddings").status_code == 400
    assert create("x", completion_window="1h").status_code == 400
    assert create("x", extra=1).json()["error"]["code"] == "unknown_field"
    bad = [
        line("a", chat_body("x")),
        line("a", chat_body("y")),  # duplicate custom_id
        line("b", chat_body("z"), url="/v1/completions"),  # not the batch endpoint
        json.dumps({"custom_id": "c", "method": "GET", "url": CHAT, "body": {}}),
    ]
    failed = create(upload("\n".join(bad).encode()).json()["id"]).json()
    assert failed["status"] == "failed" and failed["failed_at"] is not None
    codes = [(e["line"], e["code"]) for e in failed["errors"]["data"]]
    assert codes == [(2, "duplicate_custom_id"), (3, "mismatched_url"), (4, "invalid_method")]
    assert client.post(f"/v1/batches/{failed['id']}/cancel").status_code == 409
    assert client.get("/v1/batches/batch_nope").status_code == 404
    assert client.post("/v1/batches/batch_nope/cancel").status_code == 404
    # cancelling before any line ran: the batch ends cancelled, with nothing run
    good = create(upload(line("a", chat_body("x")).encode()).json()["id"]).json()
    assert client.post(f"/v1/batches/{good['id']}/cancel").json()["status"] == "cancelling"
    store: BatchStore = client.app.state.lmf_batches.batches  # type: ignore[attr-defined]
    assert store.settle() == [good["id"]]
    cancelled = client.get(f"/v1/batches/{good['id']}").json()
    assert cancelled["status"] == "cancelled" and cancelled["request_counts"]["completed"] == 0
    assert [b["id"] for b in client.get("/v1/batches", params={"limit": 1}).json()["data"]] == [good["id"]]


def test_batches_disabled_without_a_batch_dir(client: Any) -> None:
    response = client.get("/v1/batches")
    assert response.status_code == 404 and "--batch-dir" in response.json()["error"]["message"]
    assert client.post("/v1/files").status_code == 404


def test_expired_batch_reports_unrun_lines(tmp_path: Path) -> None:
    db = StateDB(tmp_path)
    files = FileStore(db)
    upload = files.upload("f.jsonl", "batch", "\n".join(line(c, {}) for c in "xyz").encode())
    batch = BatchStore(db, files).create(upload["id"], CHAT, "24h")
    store = BatchStore(db, files)
    work = store.next_work()
    assert work is not None and work.custom_id == "x"
    store.record(work, True, {"custom_id": "x", "response": {"status_code": 200}, "error": None})
    store.record(work, False, {"custom_id": "x", "duplicate": True})  # a repeat of a recorded line is ignored
    assert store.settle(now=batch["created_at"] + 10) == []  # inside its window: still running
    assert store.settle(now=batch["expires_at"] + 1) == [batch["id"]]
    expired = store.get(batch["id"])
    assert expired["status"] == "expired" and expired["request_counts"] == {
        "total": 3,
        "completed": 1,
        "failed": 2,
    }
    errors = [json.loads(x) for x in files.content(expired["error_file_id"]).decode().splitlines()]
    assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [
        ("y", "batch_expired"),
        ("z", "batch_expired"),
    ]
    output = files.content(expired["output_file_id"]).decode().splitlines()
    assert [json.loads(x)["custom_id"] for x in output] == ["x"]
    reopened = StateDB(tmp_path)  # state survives a new connection (a restarted server)
    assert BatchStore(reopened, FileStore(reopened)).get(batch["id"])["status"] == "expired"


def test_parse_lines_reports_problems_by_line() -> None:
    text = "\n".join(
        ["{", '"str"', json.dumps({"custom_id": "", "method": "POST"}), line("ok", {"m": 1}), ""]
    )
    lines, errors = parse_lines(text, CHAT)
    assert lines == [("ok", {"m": 1})]
    assert [(e["line"], e["code"]) for e in errors] == [
        (1, "invalid_json_line"),
        (2, "invalid_request"),
        (3, "missing_custom_id"),
    ]
    assert parse_lines("\n", CHAT)[1][0]["code"] == "empty_file"
