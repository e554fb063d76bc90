"""A real Prometheus (Debian's package) scrapes a real `lmf serve` that splits traffic between two
LoRA variants of the tiny model, with the shipped scrape config; the per-variant series are checked
through Prometheus's own HTTP query API against what the clients saw in `X-LMF-Variant`."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tiny import save_tiny_lora

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="needs Debian's prometheus (tests/support/install_test_tools.sh)"
)


@pytest.fixture()
def lmf_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty store (this test serves the tiny model): overrides the packaged one of conftest.py."""
    home = tmp_path_factory.mktemp("lmf_home")
    monkeypatch.setenv("LMF_HOME", str(home))
    return home


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes], timeout_s: float, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args[0]} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready after {timeout_s}s: {log.read_text()[-2000:]}")


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture()
def lmf_server(tmp_path: Path, tiny_llama_dir: Path) -> Iterator[str]:
    """`lmf serve` on a free loopback port: champion (adapter a) 70%, challenger (adapter b) 30%."""
    adapters = {
        name: save_tiny_lora(tiny_llama_dir, tmp_path / name, seed) for name, seed in (("a", 1), ("b", 2))
    }
    rollout = tmp_path / "rollout.yaml"
    rollout.write_text(
        "variants:\n  - {name: champion, weight: 70, adapter: a}\n  - {name: challenger, weight: 30, adapter: b}\n"
    )
    port, log = _free_port(), tmp_path / "lmf.log"
    argv = [str(Path(sys.executable).parent / "lmf"), "serve", str(tiny_llama_dir), "--port", str(port)]
    argv += ["--served-model-name", "tiny"]
    argv += ["--embedder", "none", "--batch-dir", "none", "--max-tokens", "8", "--rollout", str(rollout)]
    argv += [f"--adapter=a={adapters['a']}", f"--adapter=b={adapters['b']}"]
    process = _start(argv, log)
    try:
        _wait(f"http://127.0.0.1:{port}/health", process, 90, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)


@pytest.fixture()
def prometheus(tmp_path: Path, lmf_server: str) -> Iterator[str]:
    """Prometheus with deploy/prometheus/prometheus.yml, scraping every second, pointed at the server."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    job = config["scrape_configs"][0]
    job["static_configs"][0]["targets"] = [lmf_server.removeprefix("http://")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port, log = _free_port(), tmp_path / "prometheus.log"
    argv = [str(PROMETHEUS), f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
    argv += [f"--web.listen-address=127.0.0.1:{port}"]
    process = _start(argv, log)
    try:
        _wait(f"http://127.0.0.1:{port}/-/ready", process, 30, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)


def _query(prometheus: str, promql: str) -> dict[str, float]:
    """{variant (or the first label): value} of an instant query through Prometheus's HTTP API."""
    import httpx

    reply = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert reply["status"] == "success", reply
    return {
        r["metric"].get("variant", next(iter(r["metric"].values()), "")): float(r["value"][1])
        for r in reply["data"]["result"]
    }


def _poll(prometheus: str, promql: str, expected: Any, timeout_s: float = 20) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = _query(prometheus, promql)
        if expected(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


def test_prometheus_scrapes_per_variant_series_under_load(lmf_server: str, prometheus: str) -> None:
    import httpx

    seen: Counter[str] = Counter()
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2}
    with httpx.Client(base_url=lmf_server, timeout=30) as client:
        for i in range(40):
            reply = client.post("/v1/chat/completions", json=body, headers={"X-LMF-User": f"user-{i}"})
            assert reply.status_code == 200
            seen[reply.headers["X-LMF-Variant"]] += 1
    assert set(seen) == {"champion", "challenger"}, seen
    requests = _poll(
        prometheus,
        "sum by (variant) (lmf_variant_requests_total)",
        lambda f: f == {k: float(v) for k, v in seen.items()},
    )
    assert requests == {k: float(v) for k, v in seen.items()}
    latency = _query(prometheus, "sum by (variant) (lmf_variant_e2e_seconds_count)")
    assert latency == requests
    shares = _query(prometheus, "lmf_variant_weight_ratio")
    assert shares == pytest.approx({"champion": 0.7, "challenger": 0.3})
    memory = _query(prometheus, 'process_resident_memory_bytes{job="lmf-serve"}')
    assert list(memory.values())[0] > 50e6  # torch and the model are in there
    up = _query(prometheus, 'up{job="lmf-serve"}')
    assert list(up.values()) == [1.0]
