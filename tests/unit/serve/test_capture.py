"""Capture: append-only migrations, redaction, retention, feedback and JSONL export the other
commands accept (validated with the fine-tuning and eval loaders themselves)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.cli.main import main
from lmfoundry.serve.capture import MIGRATIONS, CaptureStore, export_records, migrate
from lmfoundry.serve.service import ServedModel, ServeOptions


def test_migrations_apply_once_in_order_and_upgrade_old_databases(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "c.db")
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
    name, sql = MIGRATIONS[0]
    db.execute(sql)
    db.execute("INSERT INTO _migrations VALUES (?, 0)", (name,))  # an "old" database: first migration only
    assert migrate(db) == [n for n, _ in MIGRATIONS[1:]]
    assert migrate(db) == []
    recorded = [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY rowid")]
    assert recorded == [n for n, _ in MIGRATIONS]


def _response(rid: str, *texts: str) -> dict[str, Any]:
    return {
        "id": rid,
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t}} for i, t in enumerate(texts)
        ],
    }


def test_redaction_retention_and_feedback(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path / "c.db", redact=[r"\b\d{3}-\d{4}\b", r"sk-\w+"], max_rows=2)
    for i in range(3):
        request = {
            "model": "m",
            "messages": [{"role": "user", "content": f"call 555-{1000 + i} key sk-abc{i}"}],
        }
        store.record("chat", request, _response(f"c{i}", "ok 555-0000"))
    assert store.count() == 2  # the oldest was dropped
    rows = list(store.exchanges())
    assert [r[0] for r in rows] == ["c1", "c2"]
    assert rows[0][2]["messages"][0]["content"] == "call [REDACTED] key [REDACTED]"
    assert rows[0][3]["choices"][0]["message"]["content"] == "ok [REDACTED]"
    with pytest.raises(Exception, match="no captured exchange"):
        store.add_feedback("c0", 0, 1.0)
    with pytest.raises(Exception, match="no choice"):
        store.add_feedback("c1", 5, 1.0)
    with pytest.raises(Exception, match="invalid --redact"):
        CaptureStore(tmp_path / "d.db", redact=["("])


def test_exports_load_with_the_finetune_and_eval_readers(tmp_path: Path, capsys: Any) -> None:
    from lmfoundry.eval.tasks import load_task
    from lmfoundry.finetune.data.formats import validate_record
    from lmfoundry.finetune.data.records import load_records

    db = tmp_path / "c.db"
    store = CaptureStore(db)
    store.record(
        "chat",
        {
            "model": "m",
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        },
        _response("c1", "hello", "hey there"),
    )
    store.record(
        "completions", {"model": "m", "prompt": "2+2="}, {"id": "t1", "choices": [{"index": 0, "text": "4"}]}
    )
    store.add_feedback("c1", 0, 1.0)
    store.add_feedback("c1", 1, -1.0)
    store.close()
    for fmt, expected in (("sft", 2), ("dpo", 1), ("eval", 2)):
        out = tmp_path / f"{fmt}.jsonl"
        assert main(["capture", "export", str(db), "--format", fmt, "-o", str(out)]) == 0
        assert json.loads(capsys.readouterr().out)["records"] == expected
        if fmt == "eval":
            examples = load_task(f"jsonl:{out}").examples
            assert [(e.input, e.reference) for e in examples] == [("hi", "hello"), ("2+2=", "4")]
        else:
            records = load_records(out)
            assert {validate_record(r) for r in records} == {"chat" if fmt == "sft" else "preference"}
    dpo = [json.loads(line) for line in (tmp_path / "dpo.jsonl").read_text().splitlines()]
    assert dpo[0]["chosen"] == "hello" and dpo[0]["rejected"] == "hey there"
    assert main(["capture", "export", str(tmp_path / "missing.db"), "--format", "sft"]) == 1


def test_server_captures_and_takes_feedback(served: ServedModel, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from lmfoundry.serve.app import create_app

    store = CaptureStore(tmp_path / "c.db", redact=["secret"])
    options = ServeOptions(embedder=None)
    client = TestClient(create_app(served, options, capture=store))
    reply = client.post(
        "/v1/chat/completions",
        json={
            "model": "tiny",
            "messages": [{"role": "user", "content": "a secret"}],
            "max_tokens": 3,
            "n": 2,
        },
    ).json()
    with client.stream(
        "POST", "/v1/completions", json={"model": "tiny", "prompt": "Hi", "max_tokens": 3, "stream": True}
    ) as r:
        list(r.iter_lines())
    assert store.count() == 2
    request = next(store.exchanges())[2]
    assert request["messages"][0]["content"] == "a [REDACTED]"
    assert client.post("/v1/feedback", json={"id": reply["id"], "index": 1, "rating": 1}).status_code == 200
    assert client.post("/v1/feedback", json={"id": "nope", "rating": 1}).status_code == 404
    assert len(list(export_records(store, "eval"))) == 2
