"""`OpenAIJudge` against a real HTTP server on 127.0.0.1 that speaks the chat-completions API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lmfoundry.cli.main import main
from lmfoundry.errors import LmfError
from lmfoundry.eval.judge import JudgeItem, run_judge
from lmfoundry.eval.judges import OpenAIJudge, make_judge
from lmfoundry.types import SamplingParams


class _Handler(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, **body})
        prompt = body["messages"][0]["content"]
        content = (
            "Verdict: A" if "[Response A]" in prompt else ("Score: 5" if "good" in prompt else "no idea")
        )
        reply = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server_url() -> Iterator[str]:
    _Handler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openai_judge_rubric_and_pairwise(server_url: str) -> None:
    judge = make_judge(server_url, SamplingParams(temperature=0.3, max_new_tokens=50), judge_model="judge-m")
    assert isinstance(judge, OpenAIJudge)
    items = [JudgeItem("1", "q", "good answer"), JudgeItem("2", "q", "meh")]
    result = run_judge(judge, items, repeats=2, seed=7)
    assert result["summary"]["n_unparseable"] == 2 and result["variance"]["mean"] == 5.0
    sent = _Handler.requests
    assert [r["seed"] for r in sent] == [7, 7, 8, 8]
    assert all(r["model"] == "judge-m" and r["temperature"] == 0.3 and r["max_tokens"] == 50 for r in sent)
    assert sent[0]["path"] == "/v1/chat/completions"

    pairwise = run_judge(judge, [JudgeItem("1", "q", "x", other="y")], pairwise=True)
    assert pairwise["summary"]["n_contradictions"] == 1  # the server always says "A"


def test_openai_judge_unreachable_is_a_clear_error() -> None:
    judge = OpenAIJudge("http://127.0.0.1:9/v1", timeout_s=2.0, max_retries=0)
    with pytest.raises(LmfError, match="judge endpoint http://127.0.0.1:9/v1 failed"):
        judge.complete("hi", seed=0)


def _outputs(folder: Path, outputs: dict[str, str], model: str) -> Path:
    folder.mkdir(parents=True)
    rows = [{"id": i, "input": f"question {i}", "output": o, "reference": "r"} for i, o in outputs.items()]
    (folder / "outputs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "results.json").write_text(json.dumps({"model": model}))
    return folder / "outputs.jsonl"


def test_cli_judge_rubric_writes_judge_json(
    server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = _outputs(tmp_path / "run", {"1": "good", "2": "bad", "3": "good too"}, "m1")
    argv = ["eval", "judge", server_url, "--outputs", str(outputs), "--repeats", "2", "--seed", "3",
            "--out", str(tmp_path / "run"), "--json", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_unparseable"] == 2 and printed["summary"]["mean"] == 5.0
    assert printed["variance"]["std"] == 0.0 and printed["model_a"] == "m1"
    assert {r["temperature"] for r in _Handler.requests} == {0.7}  # repeats sample by default
    assert [r["seed"] for r in _Handler.requests] == [3, 3, 3, 4, 4, 4]
    saved = json.loads((tmp_path / "run" / "judge.json").read_text())
    assert len(saved["runs"]) == 2 and saved["runs"][0]["judgments"][1]["raw"] == "no idea"

    assert main(["eval", "judge", server_url, "--outputs", str(outputs), "--out", str(tmp_path / "j")]) == 0
    text = capsys.readouterr().out
    assert "unparseable judge replies: 1" in text and "judge.json" in text
    assert _Handler.requests[-1]["temperature"] == 0.0  # one repeat: greedy


def test_cli_judge_pairwise(server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _outputs(tmp_path / "a", {"1": "x", "2": "y"}, "champ")
    b = _outputs(tmp_path / "b", {"2": "y2", "1": "x2"}, "chall")
    argv = [
        "eval",
        "judge",
        server_url,
        "--outputs",
        str(a),
        "--pairwise",
        str(b),
        "--out",
        str(tmp_path / "j"),
        "--json",
    ]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["mode"] == "pairwise" and printed["model_b"] == "chall"
    assert printed["summary"]["contradiction_rate"] == 1.0 and printed["summary"]["b_preference"] == 0.5


def test_cli_judge_agreement(server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = tmp_path / "labels.jsonl"
    rows = [{"prompt": "p", "response": "good", "human_score": 5}, {"prompt": "p", "response": "good", "human_score": 4},
            {"prompt": "p", "response": "meh", "human_score": 1}]  # fmt: skip
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["eval", "judge-agreement", server_url, "--labels", str(labels), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_unparseable"] == 1 and printed["accuracy"] == 0.5
    assert printed["kappa"] == 0.0  # judge always 5: agreement is exactly what chance gives
    assert main(["eval", "judge-agreement", server_url, "--labels", str(labels)]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_cli_judge_errors(server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "judge", server_url, "--outputs", str(tmp_path / "none.jsonl")]) == 1
    assert "outputs file not found" in capsys.readouterr().err
    a = _outputs(tmp_path / "a", {"1": "x"}, "m")
    b = _outputs(tmp_path / "b", {"2": "y"}, "m")
    assert main(["eval", "judge", server_url, "--outputs", str(a), "--pairwise", str(b)]) == 1
    assert "different examples" in capsys.readouterr().err
    assert main(["eval", "judge", server_url, "--outputs", str(a), "--repeats", "0"]) == 1
    assert "--repeats must be >= 1" in capsys.readouterr().err
