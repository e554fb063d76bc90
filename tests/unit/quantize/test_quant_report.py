"""The quantization quality report: metrics, the held-out text, the report on tiny models, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from lmfoundry.cli.main import main
from lmfoundry.errors import InvalidInputError
from lmfoundry.models import store
from lmfoundry.quantize.heldout import heldout_ids, windows
from lmfoundry.quantize.report_quality import (
    QualitySettings,
    Totals,
    evaluate_quality,
    kl_per_position,
    log_probs,
)

SETTINGS = QualitySettings(tokens=96, window=48)


@pytest.fixture
def tiny(tiny_llama_dir: Path) -> str:
    store.pull(str(tiny_llama_dir), "tiny")
    return "tiny"


def test_totals_match_independent_cross_entropy_and_kl() -> None:
    gen = torch.Generator().manual_seed(0)
    ref_logits, logits = torch.randn(20, 50, generator=gen), torch.randn(20, 50, generator=gen)
    targets = torch.randint(0, 50, (20,), generator=gen)
    totals = Totals()
    totals.add(log_probs(ref_logits), log_probs(logits), targets)
    metrics = totals.metrics()
    nll = torch.nn.functional.cross_entropy(logits, targets).item()
    assert metrics["perplexity"] == pytest.approx(math.exp(nll), rel=1e-5)
    kl = torch.nn.functional.kl_div(
        log_probs(logits), log_probs(ref_logits), log_target=True, reduction="batchmean"
    )
    assert metrics["kl_divergence"] == pytest.approx(kl.item(), rel=1e-4)
    agree = (ref_logits.argmax(-1) == logits.argmax(-1)).float().mean().item()
    assert metrics["greedy_agreement"] == pytest.approx(agree)
    same = kl_per_position(log_probs(ref_logits), log_probs(ref_logits))
    assert torch.all(same.abs() < 1e-6)


def test_heldout_text_is_fixed_and_windows_cover_it(tiny_llama_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    ids = heldout_ids(tokenizer, 100)
    assert len(ids) == 100 and ids == heldout_ids(tokenizer, 100)
    pieces = windows(ids, 48)
    assert [len(p) for p in pieces] == [48, 48, 4]
    assert windows(list(range(49)), 48) == [list(range(48))]  # a 1-token tail predicts nothing
    with pytest.raises(InvalidInputError, match="more than the held-out text"):
        heldout_ids(tokenizer, 10**8)
    with pytest.raises(InvalidInputError, match="window"):
        windows(ids, 1)


def test_quality_against_itself_int8_and_nf4(tiny: str) -> None:
    from lmfoundry.models.load import load_hf_model
    from lmfoundry.quantize.store_entry import create_quantized

    create_quantized(tiny, "int8")
    create_quantized(tiny, "nf4")
    results = evaluate_quality(tiny, [tiny, "tiny-int8", "tiny-nf4"], SETTINGS)
    assert results[tiny]["kl_divergence"] == 0.0 and results[tiny]["greedy_agreement"] == 1.0
    # the reference's perplexity, computed here independently with transformers' own loss
    model, tokenizer = load_hf_model(tiny)
    ids = heldout_ids(tokenizer, SETTINGS.tokens)
    nll, count = 0.0, 0
    for piece in windows(ids, SETTINGS.window):
        with torch.no_grad():
            loss = model(torch.tensor([piece]), labels=torch.tensor([piece])).loss.item()
        nll, count = nll + loss * (len(piece) - 1), count + len(piece) - 1
    assert results[tiny]["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-4)
    assert 0 < results["tiny-int8"]["kl_divergence"] < results["tiny-nf4"]["kl_divergence"]
    assert results["tiny-int8"]["greedy_agreement"] >= results["tiny-nf4"]["greedy_agreement"]


def test_gguf_q8_0_scores_through_llama_cpp_close_to_fp32(tiny: str) -> None:
    pytest.importorskip("llama_cpp")
    from lmfoundry.quantize.store_entry import create_quantized

    create_quantized(tiny, "gguf-q8_0")
    create_quantized(tiny, "gguf-q4_0")
    results = evaluate_quality(tiny, ["tiny-q8_0", "tiny-q4_0"], SETTINGS)
    q8, q4 = results["tiny-q8_0"], results["tiny-q4_0"]
    assert q8["tokenizer_match"] is True
    assert q8["kl_divergence"] < 0.01 and q8["greedy_agreement"] > 0.9
    assert q8["perplexity"] == pytest.approx(results[tiny]["perplexity"], rel=0.02)
    assert q8["kl_divergence"] < q4["kl_divergence"]


def test_perf_runs_in_its_own_process(tiny: str) -> None:
    from lmfoundry.quantize.report_speed import measure_perf
    from lmfoundry.quantize.store_entry import create_quantized

    create_quantized(tiny, "int8")
    facts = measure_perf("tiny-int8", new_tokens=6)
    assert facts["backend"] == "transformers" and facts["tokens_per_s"] > 0
    assert facts["peak_rss_bytes"] >= facts["baseline_rss_bytes"] > 0 and facts["load_s"] > 0


def test_cli_quantize_report_json_shape_and_files(
    tiny: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "quantize",
        tiny,
        "--method",
        "int8",
        "--report",
        "--no-perf",
        "--json",
        "--tokens",
        "96",
        "--window",
        "48",
    ]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in (
        "bits_per_param",
        "size_bytes",
        "perplexity",
        "perplexity_fp32",
        "kl_divergence",
        "tokens_per_s",
    ):
        assert key in out
    assert out["name"] == "tiny-int8" and out["size_bytes"] > 0 and out["bits_per_param"] > 8
    assert out["perplexity_fp32"] == out["report"][0]["perplexity"] and out["kl_divergence"] > 0
    saved = json.loads((tmp_path / "quantize_report.json").read_text())
    assert [row["name"] for row in saved["models"]] == [tiny, "tiny-int8"]
    assert (tmp_path / "quantize_report.png").read_bytes()[:4] == b"\x89PNG"

    assert (
        main(
            [
                "quantize",
                "report",
                "tiny-int8",
                "--no-perf",
                "--tokens",
                "96",
                "--window",
                "48",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "tiny-int8" in table and "tiny" in table


def test_cli_without_report_prints_null_quality(tiny: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quantize", tiny, "--method", "fp4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["perplexity"] is None and out["bits_per_param"] > 4 and out["quantization"]["method"] == "fp4"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["quantize", "tiny", "--method", "nf9"], "unknown quantization method"),
        (["quantize", "tiny"], "--method is required"),
        (["quantize", "missing-model", "--method", "nf4"], "unknown model"),
        (["quantize", "report"], "name at least one model"),
        (["quantize", "tiny", "extra", "--method", "nf4"], "unexpected arguments"),
    ],
)
def test_cli_failures_are_one_line_errors(
    tiny: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_name_clash_without_force(tiny: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quantize", tiny, "--method", "int8", "--json"]) == 0
    assert main(["quantize", tiny, "--method", "int8"]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["quantize", tiny, "--method", "int8", "--force", "--json"]) == 0


def test_report_without_an_fp32_reference_is_refused(tiny: str) -> None:
    from lmfoundry.quantize.report import build_report
    from lmfoundry.quantize.store_entry import create_quantized

    create_quantized(tiny, "int8")
    with pytest.raises(InvalidInputError, match="unquantized"):
        build_report(["tiny-int8"], reference="tiny-int8", settings=SETTINGS, perf=False)


def test_plot_axes_are_labelled_by_metric_and_points_by_model() -> None:
    from lmfoundry.quantize.report import report_figure

    rows = [
        {"name": "m", "bits_per_param_overall": 32.0, "perplexity": 10.0, "kl_divergence": 0.0},
        {"name": "m-nf4", "bits_per_param_overall": 4.5, "perplexity": 12.0, "kl_divergence": 0.2},
        {"name": "bnb-nf4:m", "bits_per_param_overall": None, "perplexity": 12.1, "kl_divergence": 0.2},
    ]
    fig = report_figure(rows)
    ppl_axis, kl_axis = fig.axes
    assert ppl_axis.get_ylabel() == "perplexity" and kl_axis.get_ylabel() == "mean KL(fp32 || quant)"
    assert [t.get_text() for t in ppl_axis.texts] == ["m (reference)", "nf4"]


def test_report_metric_names_mlflow_accepts() -> None:
    """A model given as a file path is tracked by its file name: MLflow refuses metric names that
    resolve to other paths (an absolute path made `lmf quantize report` skip tracking)."""
    from lmfoundry.cli.quantize import _metric_key

    assert _metric_key("/root/.cache/models/smol/model-f16.gguf") == "model-f16.gguf"
    assert _metric_key("bnb-nf4:smollm2-135m-instruct") == "bnb-nf4_smollm2-135m-instruct"
