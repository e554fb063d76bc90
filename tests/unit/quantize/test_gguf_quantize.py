"""llama.cpp quantization of a GGUF the project wrote, and sizes read back from the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmfoundry.errors import InvalidInputError, LmfError

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def f32_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny import write_tiny_gguf

    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "f32.gguf")


def test_q8_0_is_8_5_bits_per_linear_weight_and_q4_0_smaller(f32_gguf: Path, tmp_path: Path) -> None:
    from lmfoundry.models.convert import gguf_summary
    from lmfoundry.quantize.gguf import quantize_gguf

    source = gguf_summary(f32_gguf)
    assert source["bits_per_param"] == 32.0 and set(source["tensor_types"]) == {"F32"}
    q8 = gguf_summary(quantize_gguf(f32_gguf, tmp_path / "q8.gguf", "q8_0"))
    # Q8_0 block: 32 int8 codes + one fp16 scale = 34 bytes per 32 weights (GGML's block_q8_0)
    assert q8["bits_per_param"] == pytest.approx(34 * 8 / 32)
    assert q8["parameters"] == source["parameters"]
    q4 = gguf_summary(quantize_gguf(f32_gguf, tmp_path / "q4.gguf", "q4_0"))
    assert "Q4_0" in q4["tensor_types"] and q4["bits_per_param"] < q8["bits_per_param"]
    assert (tmp_path / "q4.gguf.log").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unknown_type_missing_and_broken_sources(f32_gguf: Path, tmp_path: Path) -> None:
    from lmfoundry.quantize.gguf import quantize_gguf

    with pytest.raises(InvalidInputError, match="unknown GGUF type"):
        quantize_gguf(f32_gguf, tmp_path / "x.gguf", "q3_z")
    with pytest.raises(LmfError, match="not found"):
        quantize_gguf(tmp_path / "missing.gguf", tmp_path / "x.gguf", "q8_0")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(LmfError, match="could not quantize"):
        quantize_gguf(junk, tmp_path / "x.gguf", "q8_0")
    assert not (tmp_path / "x.gguf").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
