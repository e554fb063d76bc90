"""The float16 GGUF of a store entry: made once on first use, safe under concurrent first uses,
refused (with the reason) where the writer cannot make it."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from lmfoundry.errors import LmfError
from lmfoundry.models import store
from lmfoundry.models.convert import gguf_summary
from lmfoundry.models.fast_gguf import FAST_GGUF, ensure_fast_gguf, unsupported_reason


@pytest.fixture
def tiny_entry(tiny_llama_dir: Path, lmf_home: Path) -> str:
    store.pull(str(tiny_llama_dir), name="tiny")
    return "tiny"


def test_created_once_as_float16_in_the_entry_folder(tiny_entry: str) -> None:
    messages: list[str] = []
    path = ensure_fast_gguf(tiny_entry, progress=messages.append)
    assert path == store.entry_dir(tiny_entry) / FAST_GGUF
    assert len(messages) == 1 and str(path) in messages[0]
    summary = gguf_summary(path)
    assert "F16" in summary["tensor_types"], summary  # matrices in f16, norms stay f32
    assert path.stat().st_mode & 0o044, "the file is readable like the rest of the store"
    mtime = path.stat().st_mtime_ns
    assert ensure_fast_gguf(tiny_entry, progress=messages.append) == path
    assert len(messages) == 1 and path.stat().st_mtime_ns == mtime  # reused, not rewritten


def test_concurrent_first_uses_write_one_file(tiny_entry: str) -> None:
    messages: list[str] = []
    results: list[Path] = []
    errors: list[BaseException] = []

    def first_use() -> None:
        try:
            results.append(ensure_fast_gguf(tiny_entry, progress=messages.append))
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(results)) == 1 and len(messages) == 1
    folder = store.entry_dir(tiny_entry)
    assert not list(folder.glob("*.partial")), "no temp file is left behind"
    assert gguf_summary(results[0])["parameters"] > 0


def _edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_unsupported_entries_are_refused_with_the_reason(tiny_entry: str, tiny_qwen2_dir: Path) -> None:
    assert unsupported_reason(tiny_entry) is None
    assert "not in the store" in str(unsupported_reason("nothing-here"))
    folder = store.entry_dir(tiny_entry)
    _edit_json(folder / "config.json", architectures=["GemmaForCausalLM"])
    assert "GemmaForCausalLM" in str(unsupported_reason(tiny_entry))
    with pytest.raises(LmfError, match="GemmaForCausalLM"):
        ensure_fast_gguf(tiny_entry)
    _edit_json(folder / "config.json", architectures=["LlamaForCausalLM"], rope_scaling={"rope_type": "yarn"})
    assert "rope scaling" in str(unsupported_reason(tiny_entry))
    _edit_json(folder / "config.json", rope_scaling=None)
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["model"]["type"] = "Unigram"
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    assert "BPE" in str(unsupported_reason(tiny_entry))
    store.pull(str(tiny_qwen2_dir), name="tiny-q")
    manifest = store.read_manifest("tiny-q")
    manifest.quantization = {"method": "nf4", "format": "torch"}
    store.write_manifest(store.entry_dir("tiny-q"), manifest)
    assert "quantized" in str(unsupported_reason("tiny-q"))
    assert not (folder / FAST_GGUF).exists()
