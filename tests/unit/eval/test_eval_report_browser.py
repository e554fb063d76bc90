"""The HTML report renders in headless Chromium and every figure decodes (naturalWidth > 0).

Needs Debian's chromium (`tests/support/install_test_tools.sh`, which `make test` runs); skipped with
that reason when it is missing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lmfoundry.eval.compare import compare_results, save_comparison
from lmfoundry.eval.evaluate import run_task
from lmfoundry.eval.report import write_report
from lmfoundry.eval.tasks import load_task

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed: run tests/support/install_test_tools.sh (needs apt)"
)

# Appended to a *copy* of the report (the report itself has no scripts): records what the browser decoded.
PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({
    images: images.map(function (i) { return [i.complete, i.naturalWidth, i.naturalHeight]; }),
    details: document.querySelectorAll("details").length,
    tables: document.querySelectorAll("table").length
  });
  document.body.appendChild(out);
});
</script>"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def report(tmp_path: Path, scripted) -> Path:  # noqa: ANN001
    rows = [{"id": f"q{i}", "input": f"Question {i}?", "reference": str(i)} for i in range(6)]
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    task = load_task(f"jsonl:{data}")
    out = tmp_path / "cmp"
    a = run_task(scripted(lambda p: "0", name="old"), task, out_dir=out / "champion", progress=False)
    b = run_task(
        scripted(lambda p: p.split()[1].rstrip("?"), name="new"),
        task,
        out_dir=out / "challenger",
        progress=False,
    )
    save_comparison(compare_results(a, b, n_boot=200), out / "comparison.json")
    html_path, _ = write_report(out)
    return html_path


def test_report_renders_with_figures_in_chromium(report: Path, tmp_path: Path) -> None:
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = _chromium(tmp_path, "--virtual-time-budget=2000", "--dump-dom", probed.as_uri())
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert match, f"the probe did not run; chromium said: {dom.stderr[-2000:]}"
    result = json.loads(match.group(1).replace("&quot;", '"'))
    assert len(result["images"]) == 3
    assert all(complete and width > 0 and height > 0 for complete, width, height in result["images"])
    assert result["details"] == 6 and result["tables"] >= 3

    shot = tmp_path / "shot.png"
    done = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000", report.as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1200)
    colored = (abs(pixels[..., 0] - pixels[..., 2]) > 0.2).mean()  # the blue/orange plot colours
    assert colored > 0.001, "the screenshot shows no figure colours"
