"""The stacked mixed-adapter LoRA forward (models/adapters.py) against peft's own mixed-batch
forward: same logits for batches mixing adapters of different ranks with base rows, correct after
an adapter is replaced, and peft's path for layers it does not handle (LoRA with a bias)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from lmfoundry.models.adapters import BASE_ADAPTER, attach_lora, detach_lora

ROWS = ["a", BASE_ADAPTER, "b", "a", "b"]


def _base(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def _make_adapter(model_dir: Path, out: Path, seed: int, r: int, alpha: int, **config: Any) -> Path:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    lora = LoraConfig(
        r=r,
        lora_alpha=alpha,
        target_modules=["q_proj", "v_proj", "down_proj"],
        init_lora_weights=False,
        **config,
    )
    get_peft_model(_base(model_dir), lora).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stack-adapters")
    return {  # different ranks and scalings that are not powers of two
        "a": _make_adapter(tiny_llama_dir, root / "a", seed=1, r=4, alpha=5),
        "b": _make_adapter(tiny_llama_dir, root / "b", seed=2, r=2, alpha=7),
        "c": _make_adapter(tiny_llama_dir, root / "c", seed=3, r=3, alpha=4),
        "bias": _make_adapter(tiny_llama_dir, root / "bias", seed=4, r=4, alpha=5, lora_bias=True),
    }


def _peft_reference(model_dir: Path, named: dict[str, Path]) -> Any:
    """The same adapters loaded by peft alone: its own per-adapter mixed-batch forward."""
    from peft import PeftModel

    (first, path), *rest = named.items()
    model = PeftModel.from_pretrained(_base(model_dir), str(path), adapter_name=first)
    for name, other in rest:
        model.load_adapter(str(other), adapter_name=name)
    return model.eval()


def _logits(model: Any, rows: list[str]) -> torch.Tensor:
    torch.manual_seed(0)
    ids = torch.randint(0, 300, (len(rows), 6))
    with torch.inference_mode():
        return model(input_ids=ids, adapter_names=rows).logits


def _stacked_layers(model: Any) -> list[Any]:
    """Layers whose mixed-adapter forward built a stack (`(key, stack)`; stack None = peft's path)."""
    return [m for m in model.modules() if (getattr(m, "_lmf_lora_stack", None) or (0, None))[1] is not None]


def test_mixed_batch_matches_peft(tiny_llama_dir: Path, adapters: dict[str, Path]) -> None:
    served = _base(tiny_llama_dir)
    for name in ("a", "b"):
        served = attach_lora(served, name, adapters[name])
    got = _logits(served, ROWS)
    assert _stacked_layers(served), "the stacked path did not run"
    want = _logits(_peft_reference(tiny_llama_dir, {"a": adapters["a"], "b": adapters["b"]}), ROWS)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    base_only = _logits(served, [BASE_ADAPTER] * len(ROWS))
    assert (got[0] - base_only[0]).abs().max() > 1e-3, "adapter a must change its row"
    torch.testing.assert_close(got[1], base_only[1], rtol=1e-5, atol=1e-6)


def test_replaced_adapter_is_not_served_stale(tiny_llama_dir: Path, adapters: dict[str, Path]) -> None:
    served = _base(tiny_llama_dir)
    for name in ("a", "b"):
        served = attach_lora(served, name, adapters[name])
    _logits(served, ROWS)  # builds the stacks
    served = detach_lora(served, "b")
    served = attach_lora(served, "b", adapters["c"])  # same name, other weights and rank
    want = _logits(_peft_reference(tiny_llama_dir, {"a": adapters["a"], "b": adapters["c"]}), ROWS)
    torch.testing.assert_close(_logits(served, ROWS), want, rtol=1e-4, atol=1e-5)


def test_lora_with_bias_falls_back_to_peft(tiny_llama_dir: Path, adapters: dict[str, Path]) -> None:
    served = _base(tiny_llama_dir)
    for name in ("a", "bias"):
        served = attach_lora(served, name, adapters[name])
    rows = ["a", "bias", BASE_ADAPTER, "bias"]
    got = _logits(served, rows)
    want = _logits(_peft_reference(tiny_llama_dir, {"a": adapters["a"], "bias": adapters["bias"]}), rows)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert not _stacked_layers(served), "a layer with a LoRA bias must use peft's own forward"


def test_decode_sized_forward_restores_the_thread_count(
    tiny_llama_dir: Path, adapters: dict[str, Path]
) -> None:
    """The low-rank GEMMs of a decode step run on one thread; the pool size must come back."""
    served = attach_lora(_base(tiny_llama_dir), "a", adapters["a"])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ids = torch.randint(0, 300, (3, 1))
        with torch.inference_mode():
            served(input_ids=ids, adapter_names=["a", BASE_ADAPTER, "a"])
        assert torch.get_num_threads() == 2
        assert _stacked_layers(served)
    finally:
        torch.set_num_threads(before)
