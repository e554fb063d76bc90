"""`lmf quantize`'s store entries on the tiny model: torch methods, GGUF methods, failure paths."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from lmfoundry.errors import InvalidInputError, LmfError, ModelNotFoundError
from lmfoundry.models import store
from lmfoundry.models.store import weights_format
from lmfoundry.quantize.gptq import CalibrationSource
from lmfoundry.quantize.store_entry import create_quantized, default_quant_name

IDS = torch.tensor([[5, 17, 99, 200, 3, 42, 7, 300, 11, 64]])


@pytest.fixture
def tiny(tiny_llama_dir: Path) -> str:
    store.pull(str(tiny_llama_dir), "tiny")
    return "tiny"


def _nf4_dq_bytes(n: int, block: int = 64) -> int:
    """Packed nibbles + one uint8 absmax per block + fp32 scale per 256 blocks + fp32 offset."""
    blocks = math.ceil(n / block)
    return math.ceil(n / 2) + blocks + 4 * math.ceil(blocks / 256) + 4


def test_nf4_double_quant_entry_loads_and_generates(tiny: str) -> None:
    import lmfoundry
    from lmfoundry.models.load import load_hf_model
    from lmfoundry.quantize.linear import quant_linear_class

    QuantLinear = quant_linear_class()

    created = create_quantized(tiny, "nf4", double_quant=True)
    assert created["name"] == "tiny-nf4-dq"
    manifest = store.read_manifest("tiny-nf4-dq")
    quant = manifest.quantization
    assert manifest.base == "tiny" and quant is not None
    assert (quant["method"], quant["format"], quant["block_size"], quant["double_quant"]) == (
        "nf4",
        "torch",
        64,
        True,
    )

    fp32, _ = load_hf_model(tiny)
    linears = [m for n, m in fp32.named_modules() if type(m) is torch.nn.Linear and n != "lm_head"]
    params = sum(m.in_features * m.out_features for m in linears)
    expected = 8 * sum(_nf4_dq_bytes(m.in_features * m.out_features) for m in linears) / params
    assert quant["bits_per_param"] == pytest.approx(expected, abs=1e-3)
    assert quant["bits_per_param_overall"] < 32

    model, _ = load_hf_model("tiny-nf4-dq")
    assert sum(isinstance(m, QuantLinear) for m in model.modules()) == len(linears)
    with torch.no_grad():
        ref, out = fp32(IDS).logits, model(IDS).logits
    assert ((out - ref).norm() / ref.norm()).item() < 0.3
    result = lmfoundry.load("tiny-nf4-dq").generate("hello", temperature=0, max_new_tokens=4)
    assert result.backend == "transformers" and result.completion_tokens > 0
    listed = {row["name"]: row for row in store.list_models()}
    assert listed["tiny-nf4-dq"]["quantization"] == "nf4"


def test_gguf_entry_points_at_its_own_file_and_runs_on_llama_cpp(tiny: str) -> None:
    pytest.importorskip("llama_cpp")
    from lmfoundry.generate.engine import load_model

    created = create_quantized(tiny, "gguf-q8_0")
    folder = store.entry_dir("tiny-q8_0")
    manifest = store.read_manifest("tiny-q8_0")
    assert manifest.gguf == str(folder / "model-q8_0.gguf") == created["weights"]
    assert Path(manifest.gguf).read_bytes()[:4] == b"GGUF"
    assert not list(folder.glob("*.safetensors")) and not (folder / "model-f32.gguf").exists()
    assert weights_format(manifest.quantization) == "gguf"
    assert manifest.quantization and manifest.quantization["bits_per_param"] == pytest.approx(8.5)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "llama"
    result = load_model("tiny-q8_0", backend="llama_cpp").generate("hello", temperature=0, max_new_tokens=4)
    assert result.backend == "llama_cpp" and result.completion_tokens > 0


def test_default_names_and_entry_format() -> None:
    assert default_quant_name("smollm2-135m-instruct", "nf4", True) == "smollm2-135m-instruct-nf4-dq"
    assert default_quant_name("smollm2-135m-instruct", "gguf-q4_k_m") == "smollm2-135m-instruct-q4_k_m"
    assert default_quant_name("/some/dir/My Model/", "int8") == "my-model-int8"
    assert default_quant_name("m", "nf4", True, "int8", gptq=True) == "m-nf4-dq-emb-int8-gptq"
    assert weights_format(None) is None
    assert weights_format({"method": "nf4"}) == "torch"
    assert weights_format({"method": "gguf-q8_0"}) == "gguf"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"method": "nf3"}, InvalidInputError, "unknown quantization method"),
        ({"method": "gguf-q8_0", "double_quant": True}, InvalidInputError, "llama.cpp's own blocks"),
        ({"method": "nf4", "block_size": 63}, InvalidInputError, "block size"),
        ({"method": "nf4", "name": "tiny"}, InvalidInputError, "other than its source"),
        ({"method": "nf4", "name": "../escape"}, InvalidInputError, "invalid model name"),
        ({"method": "gguf-q4_0", "calibration": CalibrationSource()}, InvalidInputError, "and rounding"),
        (
            {"method": "nf4", "calibration": CalibrationSource("/no/such.txt")},
            InvalidInputError,
            "does not exist",
        ),
        (
            {"method": "nf4", "calibration": CalibrationSource(seq_len=10**6)},
            InvalidInputError,
            "fewer than one",
        ),
    ],
)
def test_bad_options_are_refused_before_any_work(tiny: str, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        create_quantized(tiny, **kwargs)
    assert [r["name"] for r in store.list_models() if r["status"] == "pulled"] == ["tiny"]


def test_gptq_entry_records_its_calibration_and_runs(tiny: str, tmp_path: Path) -> None:
    from lmfoundry.models.load import load_hf_model

    text = tmp_path / "calibration.txt"
    text.write_text(" ".join(f"hello world number {i} of the text." for i in range(300)), encoding="utf-8")
    created = create_quantized(
        tiny, "nf4", double_quant=True, calibration=CalibrationSource(str(text), 4, 32)
    )
    assert created["name"] == "tiny-nf4-dq-gptq"
    quant = store.read_manifest("tiny-nf4-dq-gptq").quantization
    assert quant is not None
    calibration = quant["calibration"]
    assert calibration["method"] == "gptq" and calibration["source"] == str(text)
    assert (calibration["sequences"], calibration["tokens"], calibration["layers"]) == (4, 128, 2 * 7)
    plain = create_quantized(tiny, "nf4", double_quant=True)["quantization"]
    assert plain["calibration"] is None
    assert quant["bits_per_param"] == pytest.approx(plain["bits_per_param"])  # same format, same size
    model, _ = load_hf_model(created["name"])
    with torch.no_grad():
        assert torch.isfinite(model(IDS).logits).all()


def test_calibration_file_that_is_not_text_is_refused(tiny: str, tmp_path: Path) -> None:
    binary = tmp_path / "weights.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InvalidInputError, match="not UTF-8 text"):
        create_quantized(tiny, "nf4", calibration=CalibrationSource(str(binary)))
    assert not store.entry_dir("tiny-nf4-gptq").exists()


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        create_quantized("no-such-model", "nf4")


def test_name_clash_needs_force_and_quantized_sources_are_refused(tiny: str) -> None:
    create_quantized(tiny, "int8", name="tiny-q")
    with pytest.raises(LmfError, match="--force"):
        create_quantized(tiny, "nf4", name="tiny-q")
    assert store.read_manifest("tiny-q").quantization["method"] == "int8"  # type: ignore[index]
    create_quantized(tiny, "nf4", name="tiny-q", force=True)
    assert store.read_manifest("tiny-q").quantization["method"] == "nf4"  # type: ignore[index]
    with pytest.raises(InvalidInputError, match="already quantized"):
        create_quantized("tiny-q", "int8")


def test_a_failed_quantization_leaves_no_entry(tiny: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from lmfoundry.quantize import store_entry

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store_entry, "save_quantized", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        create_quantized(tiny, "nf4")
    assert not store.entry_dir("tiny-nf4").exists()
    assert not [p for p in store.entry_dir("tiny").parent.iterdir() if p.name.startswith(".")]


def test_quantized_entry_shows_real_parameters_and_runs(tiny_llama_dir, lmf_home) -> None:  # type: ignore[no-untyped-def]
    """`models show` counts parameters, not packed bytes, and generate picks the quantized weights."""
    import lmfoundry
    from lmfoundry.models import store
    from lmfoundry.quantize.store_entry import create_quantized

    store.pull(str(tiny_llama_dir), name="tq")
    create_quantized("tq", "nf4", name="tq-nf4")
    fp32, nf4 = store.show("tq"), store.show("tq-nf4")
    assert nf4["parameters"] == fp32["parameters"]
    assert "nf4" in nf4["dtype"] and nf4["size_bytes"] < fp32["size_bytes"]
    model = lmfoundry.load("tq-nf4")
    assert model.backend == "transformers"
    assert model.generate("Hello", temperature=0, max_new_tokens=3).completion_tokens >= 1


def test_cli_gptq_flags(tiny: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lmfoundry.cli.main import main

    text = tmp_path / "notes.txt"
    text.write_text(" ".join(f"note {i}: the cache is flushed." for i in range(200)), encoding="utf-8")
    argv = ["quantize", tiny, "--method", "int8", "--gptq", "--calibration", str(text)]
    assert (
        main([*argv, "--calibration-samples", "2", "--calibration-length", "32", "--json", "--no-track"]) == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["name"] == "tiny-int8-gptq"
    assert summary["quantization"]["calibration"]["sequences"] == 2
    assert main(["quantize", tiny, "--method", "nf4", "--calibration", str(text), "--no-track"]) == 1
    assert "--calibration is for --gptq" in capsys.readouterr().err
    assert not store.entry_dir("tiny-nf4").exists()
