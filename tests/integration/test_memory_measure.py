"""`lmf estimate --measure` on the packaged model: the estimate is within 15% of the measured peak RSS."""

from __future__ import annotations

import json

import pytest

from lmfoundry.cli.main import main

PACKAGED = "smollm2-135m-instruct"


@pytest.mark.integration
def test_inference_estimate_within_15_percent(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "estimate",
        PACKAGED,
        "--mode",
        "inference",
        "--seq-len",
        "128",
        "--batch",
        "1",
        "--measure",
        "--json",
    ]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    measured = result["measured_peak_bytes"]
    assert result["ratio"] == pytest.approx(result["total_bytes"] / measured, rel=1e-3)
    assert 0.85 <= result["ratio"] <= 1.15, result
    # the folk rule (4 B/param) misses the runtime: it is well under the measured peak
    assert result["rule_of_thumb_bytes"] < 0.7 * measured
