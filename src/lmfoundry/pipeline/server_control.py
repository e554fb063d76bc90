"""The pipeline's serving side: start/stop a background `lmf serve`, and put an adapter behind a
fixed name on a running server (ours through POST /v1/adapters, vLLM through its runtime LoRA API).

Loading a new adapter under the same name (`champion`) is how promote and rollback change what
clients of `MODEL:champion` get, with no restart: the old adapter is deleted, the new one loaded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.fsutil import atomic_write_text

SERVER_FILE = "server.json"
SERVER_KINDS = ("lmf", "vllm")


@dataclass
class ServerRecord:
    pid: int
    url: str
    model: str
    log: str
    adapter_root: str
    started: float


def record_path(workdir: Path) -> Path:
    return workdir / SERVER_FILE


def read_record(workdir: Path) -> ServerRecord | None:
    path = record_path(workdir)
    if not path.is_file():
        return None
    try:
        return ServerRecord(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError):
        return None


def is_our_process(pid: int) -> bool:
    """The pid is alive and is an `lmf serve` (not a recycled pid of something else)."""
    try:
        cmdline = " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return "serve" in cmdline and "lmfoundry" in cmdline


def http_client(url: str, api_key: str | None = None, timeout: float = 30.0) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)


def healthy(url: str, api_key: str | None = None) -> bool:
    import httpx

    try:
        with http_client(url, api_key, timeout=5.0) as client:
            return client.get("/health").status_code == 200
    except httpx.HTTPError:
        return False


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_server(
    model: str,
    workdir: Path,
    adapter_root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    threads: int | None = None,
    timeout_s: float = 300.0,
    extra_args: list[str] | None = None,
) -> ServerRecord:
    """Start `lmf serve MODEL` in the background (own session, log in the work folder), wait
    until /health answers, and record its pid in `<workdir>/server.json`."""
    port = port or free_port(host)
    url = f"http://{host}:{port}"
    log = workdir / "server.log"
    workdir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "lmfoundry.cli.main", "serve", model, "--host", host,
               "--port", str(port), "--adapter-root", str(adapter_root), "--embedder", "none",
               *(["--threads", str(threads)] if threads else []), *(extra_args or [])]  # fmt: skip
    with log.open("ab") as handle:
        proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    record = ServerRecord(proc.pid, url, model, str(log), str(adapter_root), time.time())
    atomic_write_text(record_path(workdir), json.dumps(asdict(record), indent=2))
    deadline = time.monotonic() + timeout_s
    while not healthy(url):
        if proc.poll() is not None:
            raise LmfError(f"`lmf serve {model}` exited with code {proc.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            stop_pid(proc.pid)
            raise LmfError(
                f"`lmf serve {model}` did not answer on {url} within {timeout_s:.0f}s:\n{_tail(log)}"
            )
        time.sleep(0.5)
    return record


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_pid(pid: int, timeout_s: float = 15.0) -> None:
    """SIGTERM the process (graceful shutdown), SIGKILL it if it lingers."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        psutil.Process(pid).wait(timeout=timeout_s)
    except psutil.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
    except psutil.NoSuchProcess:
        pass


def stop_server(workdir: Path) -> ServerRecord | None:
    """Stop the server this work folder started (if it still runs); return its record."""
    record = read_record(workdir)
    if record is None:
        return None
    if is_our_process(record.pid):
        stop_pid(record.pid)
    record_path(workdir).unlink(missing_ok=True)
    return record


def running_record(workdir: Path) -> ServerRecord | None:
    """The recorded server, if its process is alive and answering."""
    record = read_record(workdir)
    if record and is_our_process(record.pid) and healthy(record.url):
        return record
    return None


def load_adapter(client: Any, name: str, path: str | Path, kind: str = "lmf") -> dict[str, Any]:
    """Serve adapter `path` under `name` on the server behind `client` (an httpx.Client), replacing
    whatever had that name. Returns what the server reports about it."""
    if kind not in SERVER_KINDS:
        raise InvalidInputError(f"server kind must be one of {', '.join(SERVER_KINDS)}, got {kind!r}")
    path = str(Path(path).expanduser().resolve())
    if kind == "vllm":
        client.post("/v1/unload_lora_adapter", json={"lora_name": name})  # absent is fine
        response = client.post("/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path})
        _check(response, f"loading adapter {name!r}")
        return {"name": name, "path": path}
    listing = client.get("/v1/adapters")
    _check(listing, "listing adapters")
    current = {a["name"]: a for a in listing.json().get("data", [])}
    if name in current and current[name]["path"] == path:
        return dict(current[name])
    if name in current:
        _retry(lambda: client.delete(f"/v1/adapters/{name}"), f"removing adapter {name!r}")
    response = _retry(
        lambda: client.post("/v1/adapters", json={"name": name, "path": path}), f"loading adapter {name!r}"
    )
    return dict(response.json())


def _retry(call: Any, what: str, attempts: int = 20) -> Any:
    """Retry while the server answers 409 (the adapter is serving a request right now)."""
    for _ in range(attempts):
        response = call()
        if response.status_code != 409:
            _check(response, what)
            return response
        time.sleep(0.5)
    _check(response, what)
    return response


def _check(response: Any, what: str) -> None:
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        raise LmfError(f"{what} failed: HTTP {response.status_code}: {message}")
