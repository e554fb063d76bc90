"""Qdrant server mode: the URL and API key reach the server, failures are clear one-line errors,
non-qdrant stores refuse the flags, and local mode keeps working. Nothing external is started:
the "server" is an in-process HTTP listener on 127.0.0.1 that records requests and answers 401."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.cli.main import main
from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.rag import index_paths
from lmfoundry.rag.stores.qdrant_store import SERVER_FILE, connect_to, open_qdrant

DEAD_URL = "http://127.0.0.1:9"  # the discard port: nothing listens there, the connection is refused


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str | None]]

    def _answer(self) -> None:
        self.seen.append((self.command, self.path, self.headers.get("api-key")))
        body = json.dumps({"status": {"error": "Unauthorized"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def refusing_server() -> Iterator[tuple[str, list[tuple[str, str, str | None]]]]:
    seen: list[tuple[str, str, str | None]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_url_and_api_key_reach_the_server(refusing_server: Any, tmp_path: Path) -> None:
    url, seen = refusing_server
    store = tmp_path / "docs"
    store.mkdir()
    with connect_to(url, "s3cret"), pytest.raises(LmfError) as caught:
        open_qdrant(store, 4)
    message = str(caught.value)
    assert url in message and "HTTP 401" in message and "--qdrant-api-key" in message
    assert "s3cret" not in message
    assert seen and all(key == "s3cret" for _, _, key in seen)
    assert any("/collections/lmf-docs-chunks" in path for _, path, _ in seen)  # one namespace per store
    assert json.loads((store / SERVER_FILE).read_text()) == {"url": url}  # the key is not written


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_env_url_and_the_recorded_server(
    refusing_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = refusing_server
    store = tmp_path / "docs"
    store.mkdir()
    monkeypatch.setenv("LMF_QDRANT_URL", url)
    monkeypatch.setenv("LMF_QDRANT_API_KEY", "from-env")
    with pytest.raises(LmfError, match="LMF_QDRANT_URL"):
        open_qdrant(store, 4)
    assert seen and seen[-1][2] == "from-env"
    monkeypatch.delenv("LMF_QDRANT_URL")
    before = len(seen)
    with pytest.raises(LmfError, match=SERVER_FILE):  # reopened without a URL: the server it lives on
        open_qdrant(store, 4)
    assert len(seen) > before


def test_unreachable_url_is_a_clear_error(tmp_path: Path) -> None:
    store = tmp_path / "docs"
    store.mkdir()
    with pytest.raises(LmfError, match=r"cannot reach the Qdrant server http://127\.0\.0\.1:9 \(from url\)"):
        open_qdrant(store, 4, url=DEAD_URL)


def test_cli_bad_url_is_one_line(corpus_dir: Path, embedder: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rag", "index", str(corpus_dir), "--store", "remote", "--qdrant-url", DEAD_URL]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach the Qdrant server {DEAD_URL} (from --qdrant-url)" in err
    assert "Traceback" not in err and "UserWarning" not in err
    # --qdrant-url made it a qdrant store that remembers its server
    assert main(["rag", "stores", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stores"][0]["backend"] == "qdrant"
    assert main(["rag", "search", "remote", "cats"]) == 1
    assert f"cannot reach the Qdrant server {DEAD_URL}" in capsys.readouterr().err


def test_cli_refuses_qdrant_flags_for_other_backends(
    corpus_dir: Path, embedder: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["rag", "index", str(corpus_dir), "--store", "x", "--backend", "lancedb", "--qdrant-url", DEAD_URL]
    assert main(argv) == 1
    assert "need --backend qdrant, not 'lancedb'" in capsys.readouterr().err

    index_paths([corpus_dir], "lance", embedder=embedder, backend="lancedb", progress=False)
    for argv in (
        ["rag", "search", "lance", "cats", "--qdrant-url", DEAD_URL],
        ["rag", "index", str(corpus_dir), "--store", "lance", "--qdrant-api-key", "k"],
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "applies only to qdrant stores" in err and "'lancedb'" in err and "Traceback" not in err


def test_local_mode_stays_the_default_and_refuses_a_server(
    corpus_dir: Path,
    embedder: Any,
    capsys: pytest.CaptureFixture[str],
    lmf_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index_paths([corpus_dir], "local", embedder=embedder, backend="qdrant", progress=False)
    folder = lmf_home / "rag" / "local"
    assert (folder / "qdrant").is_dir() and not (folder / SERVER_FILE).exists()

    assert main(["rag", "search", "local", "capital of France", "-k", "1", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits[0]["source"].endswith("paris.md")

    # vectors that live locally are never silently swapped for an (empty) server
    assert main(["rag", "search", "local", "cats", "--qdrant-url", DEAD_URL]) == 1
    assert "keeps its vectors in local mode" in capsys.readouterr().err
    monkeypatch.setenv("LMF_QDRANT_URL", DEAD_URL)
    with pytest.raises(InvalidInputError, match="from LMF_QDRANT_URL"):
        open_qdrant(folder, embedder.dimension)
