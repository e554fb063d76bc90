"""Multi-adapter serving: rows for different LoRA adapters share a batch and each matches its
adapter run alone; run-time load/unload, the LRU cap, and the path/name safety rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import lmfoundry
from lmfoundry.serve.adapter_pool import AdapterBusyError, AdapterPool, validate_name
from lmfoundry.serve.service import ServedModel, ServeOptions
from lmfoundry.types import SamplingParams

PROMPT = "The quick brown fox"


def _make_adapter(base_dir: Path, out: Path, seed: int, **config: Any) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    torch.manual_seed(seed)  # after loading: the LoRA init draws from this seed
    lora = LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False, **config
    )
    get_peft_model(model, lora).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapter_root(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("adapters")
    _make_adapter(tiny_llama_dir, root / "a", seed=1)
    _make_adapter(tiny_llama_dir, root / "b", seed=2)
    return root


@pytest.fixture(scope="module")
def alone(tiny_llama_dir: Path, adapter_root: Path) -> dict[str | None, list[int]]:
    """Reference greedy ids: base, and each adapter applied with peft alone (no batching, no pool)."""
    out: dict[str | None, list[int]] = {}
    for name in (None, "a", "b"):
        adapters = [str(adapter_root / name)] if name else None
        model = lmfoundry.load(str(tiny_llama_dir), backend="transformers", adapters=adapters)
        out[name] = model.generate(PROMPT, temperature=0, max_new_tokens=12).token_ids
    assert out["a"] != out[None] and out["b"] != out[None] and out["a"] != out["b"], (
        "adapters must change outputs"
    )
    return out


@pytest.fixture()
def pooled(tiny_llama_dir: Path, adapter_root: Path, served_factory: Any) -> Iterator[ServedModel]:
    options = ServeOptions(embedder=None, adapter_roots=[adapter_root], max_adapters=2)
    served = served_factory(tiny_llama_dir, options, adapters={"a": str(adapter_root / "a")})
    yield served
    served.close()


def _run_together(served: ServedModel, adapters: list[str | None]) -> list[list[int]]:
    """Queue all before reading any, so they are admitted into one decode batch."""
    params = SamplingParams(temperature=0, max_new_tokens=12)
    ids = served.prompt_ids(PROMPT)
    generations = [served.start(ids, params, a, None) for a in adapters]
    results = []
    for generation in generations:
        result = None
        for event in generation.events():
            result = event.result or result
        assert result is not None
        results.append(result.token_ids)
    return results


def test_mixed_adapter_batch_matches_each_adapter_alone(
    pooled: ServedModel, adapter_root: Path, alone: dict
) -> None:
    pooled.adapters.register("b", adapter_root / "b")  # type: ignore[union-attr]
    order: list[str | None] = ["a", None, "b", "a", "b", None]
    got = _run_together(pooled, order)
    for name, tokens in zip(order, got, strict=True):
        assert tokens == alone[name], f"adapter {name} diverged in a mixed batch"


def test_http_routes_load_select_and_unload_adapters(
    pooled: ServedModel, adapter_root: Path, alone: dict, options: ServeOptions
) -> None:
    from fastapi.testclient import TestClient

    from lmfoundry.serve.app import create_app

    client = TestClient(create_app(pooled, ServeOptions(embedder=None, adapter_roots=[adapter_root])))
    assert client.post("/v1/adapters", json={"name": "b", "path": str(adapter_root / "b")}).status_code == 201
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["tiny", "tiny:a", "tiny:b"]
    tokenizer = pooled.runtime.tokenizer
    for name in ("a", "b"):
        body = {"model": f"tiny:{name}", "prompt": PROMPT, "max_tokens": 12, "temperature": 0}
        text = client.post("/v1/completions", json=body).json()["choices"][0]["text"]
        assert text == tokenizer.decode(alone[name], skip_special_tokens=True).rstrip("\ufffd")
    assert client.delete("/v1/adapters/b").json() == {"name": "b", "deleted": True}
    assert client.post("/v1/completions", json={"model": "tiny:b", "prompt": "x"}).status_code == 404
    assert client.delete("/v1/adapters/b").status_code == 404
    # after unloading, base rows are unchanged
    assert _run_together(pooled, [None]) == [alone[None]]


def test_adapter_safety_rules(
    pooled: ServedModel, adapter_root: Path, tmp_path: Path, tiny_llama_dir: Path
) -> None:
    from fastapi.testclient import TestClient

    from lmfoundry.serve.app import create_app

    client = TestClient(create_app(pooled, ServeOptions(embedder=None)))
    outside = _make_adapter(tiny_llama_dir, tmp_path / "outside", seed=3)
    cases = [
        ({"name": "x", "path": str(outside)}, 403),  # outside every root
        ({"name": "x", "path": str(adapter_root / ".." / outside.name)}, 403),
        ({"name": "../x", "path": str(adapter_root / "b")}, 400),
        ({"name": "a/b", "path": str(adapter_root / "b")}, 400),
        ({"name": "x", "path": str(adapter_root)}, 400),  # not an adapter directory
        ({"name": "a", "path": str(adapter_root / "b")}, 409),  # name taken
        ({"name": "x", "path": str(adapter_root / "b"), "extra": 1}, 400),
    ]
    for body, status in cases:
        response = client.post("/v1/adapters", json=body)
        assert response.status_code == status, (body, response.text)
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    link = adapter_root / "sneaky"
    if not link.exists():
        link.symlink_to(outside)
    assert client.post("/v1/adapters", json={"name": "s", "path": str(link)}).status_code == 403


def test_no_roots_means_no_runtime_loading(
    tiny_llama_dir: Path, adapter_root: Path, served_factory: Any
) -> None:
    served = served_factory(tiny_llama_dir, ServeOptions(embedder=None))
    try:
        with pytest.raises(Exception, match="disabled"):
            served.adapters.register("b", adapter_root / "b")
    finally:
        served.close()


def test_adapter_for_another_base_is_rejected_and_model_unharmed(
    pooled: ServedModel, tmp_path: Path, alone: dict, adapter_root: Path
) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parents[2]))
    from tiny import build_model

    other_base = tmp_path / "other"
    build_model("llama", hidden_size=32, intermediate_size=64).save_pretrained(other_base)  # other shapes
    bad = _make_adapter(other_base, adapter_root / "wrong_base", seed=4)
    with pytest.raises(Exception, match="does not fit"):
        pooled.adapters.register("wrong", bad)  # type: ignore[union-attr]
    assert _run_together(pooled, [None, "a"]) == [alone[None], alone["a"]]


def test_lru_cap_evicts_idle_adapters_and_never_busy_ones(
    pooled: ServedModel, adapter_root: Path, alone: dict
) -> None:
    pool = pooled.adapters
    assert pool is not None
    pool.max_loaded = 1
    pool.register("b", adapter_root / "b", load=False)
    assert _run_together(pooled, ["b"]) == [alone["b"]]
    assert pool.loaded() == ["b"]
    assert _run_together(pooled, ["a"]) == [alone["a"]]
    assert pool.loaded() == ["a"]
    pool.acquire("a")  # a request is using "a": "b" cannot evict it, nor can "a" be deleted
    try:
        with pytest.raises(AdapterBusyError):
            pool.acquire("b")
        with pytest.raises(AdapterBusyError):
            pool.remove("a")
    finally:
        pool.release("a")
    pool.remove("a")
    assert pool.names() == ["b"]


@pytest.mark.parametrize("name", ["", "..", "a..b", "/etc", "a/b", "a\\b", "-x", "x" * 65, "a b", "ä"])
def test_invalid_adapter_names(name: str) -> None:
    with pytest.raises(Exception, match="invalid adapter name"):
        validate_name(name)


def test_pool_needs_a_positive_cap() -> None:
    with pytest.raises(Exception, match=">= 1"):
        AdapterPool(load_fn=lambda n, p: None, unload_fn=lambda n: None, max_loaded=0)
