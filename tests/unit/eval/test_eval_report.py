"""The HTML report: sections, inline PNG figures, escaping, report.json; built from real run folders."""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path

import pytest

from lmfoundry.cli.main import main
from lmfoundry.errors import LmfError
from lmfoundry.eval.compare import compare_results, save_comparison
from lmfoundry.eval.evaluate import run_task
from lmfoundry.eval.report import load_report_data, render_html, write_report
from lmfoundry.eval.tasks import load_task

ROWS = [
    {"id": "q1", "input": "What is <script>alert(1)</script> 2+2?", "reference": "4"},
    {"id": "q2", "input": "Capital of France?", "reference": "Paris"},
    {"id": "q3", "input": "Colour of the sky?", "reference": "blue"},
    {"id": "q4", "input": "Opposite of hot?", "reference": "cold"},
]
GOOD = {"What": "4", "Capital": "Paris", "Colour": "blue", "Opposite": "cold"}


def _task(tmp_path: Path):  # noqa: ANN202
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return load_task(f"jsonl:{path}")


@pytest.fixture
def run_dir(tmp_path: Path, scripted) -> Path:  # noqa: ANN001
    task = _task(tmp_path)
    run_task(
        scripted(lambda p: GOOD[p.split()[1]], name="good"), task, out_dir=tmp_path / "run", progress=False
    )
    return tmp_path / "run"


@pytest.fixture
def compare_dir(tmp_path: Path, scripted) -> Path:  # noqa: ANN001
    task = _task(tmp_path)
    out = tmp_path / "cmp"
    champion = run_task(
        scripted(lambda p: "no idea", name="old"), task, out_dir=out / "champion", progress=False
    )
    challenger = run_task(
        scripted(lambda p: GOOD[p.split()[1]], name="new", ttft_s=0.2),
        task,
        out_dir=out / "challenger",
        progress=False,
    )
    save_comparison(compare_results(champion, challenger, n_boot=200), out / "comparison.json")
    return out


def _images(html: str) -> list[bytes]:
    sources = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', html)
    return [base64.b64decode(s) for s in sources]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    return width, height


def test_run_report_sections_and_figures(run_dir: Path) -> None:
    html_path, json_path = write_report(run_dir)
    assert html_path == run_dir / "report.html" and json_path == run_dir / "report.json"
    html = html_path.read_text()
    results = json.loads((run_dir / "results.json").read_text())
    for metric, value in results["metrics"].items():
        assert re.search(rf"<td>{metric}</td><td class=\"num\">{value:.4f}</td>", html), metric
    assert f"{results['latency']['e2e_s']['p95']:.4f}" in html
    assert "cost per 1M tokens (USD)" in html
    images = _images(html)
    assert len(images) == 2  # latency histograms + score distributions
    assert all(w > 100 and h > 100 for w, h in map(_png_size, images))
    assert html.count("<details>") == len(ROWS)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "http://" not in html and "https://" not in html  # self-contained
    data = json.loads(json_path.read_text())
    assert data["kind"] == "run" and data["runs"]["run"]["metrics"] == results["metrics"]
    assert data["per_example_scores"]["run"]["q2"]["exact_match"] == 1.0


def test_compare_report_has_ci_table_and_bars(compare_dir: Path) -> None:
    html = render_html(load_report_data(compare_dir))
    comparison = json.loads((compare_dir / "comparison.json").read_text())
    m = comparison["metrics"]["exact_match"]
    assert f"[{m['ci_low']:+.4f}, {m['ci_high']:+.4f}]" in html
    assert f"{m['wins']}/{m['ties']}/{m['losses']}" in html
    assert "old vs new" in html
    assert len(_images(html)) == 3  # CI bars, latency, distributions
    assert html.count("<details>") == len(ROWS)
    assert html.count("champion output") == len(ROWS) and html.count("challenger output") == len(ROWS)


def test_report_includes_judge_section(run_dir: Path) -> None:
    judge = {
        "judge": "http://127.0.0.1:1/v1",
        "mode": "rubric",
        "headline": "mean",
        "repeats": 2,
        "summary": {"n": 8, "n_scored": 6, "n_unparseable": 2, "mean": 3.5},
        "variance": {"n": 2, "mean": 3.5, "std": 0.25, "min": 3.25, "max": 3.75},
        "n_unparseable": 2,
        "runs": [],
    }
    (run_dir / "judge.json").write_text(json.dumps(judge))
    html_path, json_path = write_report(run_dir, run_dir / "elsewhere" / "r.html")
    html = html_path.read_text()
    assert json_path == run_dir / "elsewhere" / "r.json"
    assert "Judge (rubric)" in html and "n_unparseable" in html and "3.5000" in html
    assert json.loads(json_path.read_text())["judge"]["summary"]["n_unparseable"] == 2


def test_report_errors(tmp_path: Path, run_dir: Path) -> None:
    with pytest.raises(LmfError, match="must be a folder"):
        load_report_data(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LmfError, match="neither results.json"):
        load_report_data(tmp_path / "empty")
    (run_dir / "judge.json").write_text("[1, 2]")
    with pytest.raises(LmfError, match="not a judge result"):
        load_report_data(run_dir)
    (run_dir / "judge.json").write_text("{oops")
    with pytest.raises(LmfError, match="invalid JSON"):
        load_report_data(run_dir)


def test_cli_report(compare_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "report", str(compare_dir), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert Path(printed["report"]).is_file() and Path(printed["json"]).is_file()
    assert main(["eval", "report", str(compare_dir / "nope")]) == 1
    assert "must be a folder" in capsys.readouterr().err


def test_cli_run_with_report_flag(
    tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    task = tmp_path / "qa.jsonl"
    task.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:2]), encoding="utf-8")
    argv = ["eval", "run", str(tiny_llama_dir), "--task", f"jsonl:{task}", "--out", str(out), "--report",
            "--json", "--no-progress", "--max-new-tokens", "3"]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["report"] == str(out / "report.html")
    assert len(_images((out / "report.html").read_text())) == 2
