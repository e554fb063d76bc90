from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lmfoundry.agents.toolbox import ToolOptions, build_tools
from lmfoundry.agents.tools.base import ToolError
from lmfoundry.agents.tools.http_get import http_get
from lmfoundry.errors import InvalidInputError

REQUESTS: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        REQUESTS.append(self.path)
        body = ("x" * 10_000 if self.path == "/big" else "hello from the test server").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_allowed_host_is_fetched_and_truncated(server: str) -> None:
    tool = http_get(["127.0.0.1"])
    assert tool.invoke({"url": f"{server}/page"}) == "HTTP 200\nhello from the test server"
    big = tool.invoke({"url": f"{server}/big"})
    assert "truncated, 10000 characters" in big and len(big) < 4200


def test_disallowed_host_is_refused_without_a_request(server: str) -> None:
    REQUESTS.clear()
    tool = http_get(["127.0.0.1"])
    port = server.rsplit(":", 1)[1]
    with pytest.raises(ToolError, match=r"host 'localhost' is not allowed \(allowed hosts: 127.0.0.1\)"):
        tool.invoke({"url": f"http://localhost:{port}/page"})
    with pytest.raises(ToolError, match="only http and https"):
        tool.invoke({"url": "file:///etc/passwd"})
    assert REQUESTS == []


def test_off_by_default() -> None:
    with pytest.raises(InvalidInputError, match="at least one allowed host"):
        http_get([])
    with pytest.raises(InvalidInputError, match="without scheme or port"):
        http_get(["http://127.0.0.1:8000"])
    assert [t.name for t in build_tools(None, ToolOptions())] == ["calculator"]
    assert "http_get" in [t.name for t in build_tools(None, ToolOptions(allow_hosts=["127.0.0.1"]))]
    with pytest.raises(InvalidInputError, match="at least one allowed host"):
        build_tools(["http_get"], ToolOptions())
