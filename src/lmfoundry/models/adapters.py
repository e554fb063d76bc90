"""LoRA adapters on a loaded model: apply one for good, attach and detach named ones at run time,
and run a batch whose rows use different adapters in a fixed number of ops per layer.

`apply_adapter` wraps a model with one PEFT adapter (what `load_hf_model(adapters=...)` does).
`attach_lora` / `detach_lora` add and remove named adapters on a live model (the server's pool
decides which and when; this module does the model work). `BASE_ADAPTER` is peft's name for
"no adapter" in a mixed-adapter batch.

Why the stacked forward: peft's mixed-adapter forward (`adapter_names=[...]`) loops over the
adapters present in the batch in every LoRA layer (gather the rows, two matmuls, scatter back).
On a small model that is thousands of tiny ops per decode step and made a batch spread over 4
adapters ~1.5x slower per step than a base-only one. Here each layer keeps its adapters' A
matrices concatenated along the rank axis ([sum of ranks, in]) and B*scaling likewise ([out, sum
of ranks]); one GEMM computes every adapter's low-rank projection for every row, a 0/1 mask keeps
each row's own adapter columns (none for base rows), and a second GEMM maps back. The extra FLOPs
(rows x sum of ranks) are tiny next to the base layer.

Only plain LoRA on `nn.Linear` layers takes this path; any other layer or adapter variant (DoRA,
aLoRA, embeddings) falls back to peft's own method. Stacks are rebuilt when a layer's adapter set
or weight tensors change, and `invalidate_stacks` drops them after an adapter is (re)loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError, ModelNotFoundError

BASE_ADAPTER = "__base__"
"""peft's name for "no adapter" in a mixed-adapter batch."""


_STACK_ATTR = "_lmf_lora_stack"
_SMALL_ROWS = 64
"""Token rows (batch x positions) up to which the low-rank GEMMs run on one thread."""


def install_stacked_forward(model: Any) -> int:
    """Route the mixed-adapter forward of every plain LoRA Linear in `model` here; return how many."""
    from peft.tuners.lora.layer import Linear

    count = 0
    for module in model.modules():
        if isinstance(module, Linear) and not hasattr(module, "_lmf_peft_mixed_forward"):
            # instance attributes shadow the class method peft's forward calls for `adapter_names`
            module.__dict__["_lmf_peft_mixed_forward"] = module._mixed_batch_forward
            module.__dict__["_mixed_batch_forward"] = _bind(module)
            count += 1
    invalidate_stacks(model)
    return count


def invalidate_stacks(model: Any) -> None:
    """Forget every stacked copy (call after adapter weights were loaded or removed)."""
    for module in model.modules():
        if hasattr(module, _STACK_ATTR):
            setattr(module, _STACK_ATTR, None)


def _bind(layer: Any) -> Any:
    def forward(x: Any, *args: Any, adapter_names: list[str], **kwargs: Any) -> Any:
        return _stacked_forward(layer, x, *args, adapter_names=adapter_names, **kwargs)

    return forward


class _Stack:
    """One layer's adapters side by side along the rank axis, plus row masks per adapter mix."""

    def __init__(self, layer: Any, names: list[str]) -> None:
        import torch

        self.slots = {n: i for i, n in enumerate(names)}
        a = torch.cat([layer.lora_A[n].weight.detach() for n in names])  # [R, in]
        b = torch.cat([layer.lora_B[n].weight.detach() * layer.scaling[n] for n in names], dim=1)
        self.a_t, self.b_t = a.T.contiguous(), b.T.contiguous()  # [in, R], [R, out]
        ranks = [layer.lora_A[n].weight.shape[0] for n in names]
        self.column_slot = torch.repeat_interleave(torch.arange(len(names)), torch.tensor(ranks))
        self._masks: dict[tuple[str, ...], Any] = {}

    def mask(self, adapter_names: list[str]) -> Any:
        """[rows, 1, R]: 1 where a rank column belongs to the row's adapter; None if no row has one."""
        import torch

        key = tuple(adapter_names)
        if key not in self._masks:
            if len(self._masks) > 64:  # the batch's mix changes as requests come and go
                self._masks.clear()
            slot = torch.tensor([self.slots.get(n, -1) if n != BASE_ADAPTER else -1 for n in adapter_names])
            hit = self.column_slot[None, :] == slot[:, None]
            self._masks[key] = hit.to(self.a_t.dtype).unsqueeze(1) if bool(hit.any()) else None
        return self._masks[key]


def _stack(layer: Any) -> _Stack | None:
    """This layer's stacked adapters (rebuilt when they change), or None if one is not plain LoRA."""
    names = list(layer.lora_A.keys())
    key = tuple((n, id(layer.lora_A[n].weight), id(layer.lora_B[n].weight)) for n in names)
    cached = getattr(layer, _STACK_ATTR, None)
    if cached is not None and cached[0] == key:
        return cached[1]  # type: ignore[no-any-return]
    plain = not any(n in layer.lora_variant or layer.lora_bias.get(n, False) for n in names)
    stack = _Stack(layer, names) if names and plain else None
    setattr(layer, _STACK_ATTR, (key, stack))
    return stack


def _stacked_forward(layer: Any, x: Any, *args: Any, adapter_names: list[str], **kwargs: Any) -> Any:
    """base(x) + ((x @ A_all^T) * row_mask) @ B_all^T: two small GEMMs whatever the adapter mix."""
    usable = x.dim() == 3 and not layer.merged and not layer.training
    stack = _stack(layer) if usable else None
    if stack is None or kwargs.get("alora_offsets") is not None:
        return layer._lmf_peft_mixed_forward(x, *args, adapter_names=adapter_names, **kwargs)
    kwargs.pop("alora_offsets", None)
    result = layer.base_layer(x, *args, **kwargs)
    mask = stack.mask(adapter_names)
    if mask is None:
        return result
    return result + _low_rank(x.to(stack.a_t.dtype), stack, mask).to(result.dtype)


def _low_rank(x: Any, stack: _Stack, mask: Any) -> Any:
    """((x @ A_all^T) * mask) @ B_all^T, single-threaded when it is decode-sized.

    A GEMM of a few rows by a rank of 32 is microseconds of work, but run on the intra-op thread
    pool it pays a wake-up of the worker threads (measured ~0.5 ms per GEMM with
    OMP_WAIT_POLICY=PASSIVE on a busy 2-core machine, 20x the work itself), twice per layer.
    """
    import torch

    threads = torch.get_num_threads()
    small = threads > 1 and x.shape[0] * x.shape[1] <= _SMALL_ROWS
    if small:
        torch.set_num_threads(1)
    try:
        return ((x @ stack.a_t) * mask) @ stack.b_t
    finally:
        if small:
            torch.set_num_threads(threads)


def apply_adapter(model: Any, adapter_dir: str) -> Any:
    """Wrap `model` with a PEFT adapter from a directory (adapter_config.json + weights)."""
    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise ModelNotFoundError(f"adapter not found: {adapter_dir} (no adapter_config.json)")
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter_dir)


def attach_lora(model: Any, name: str, path: Path) -> Any:
    """Add LoRA adapter `name` to `model` (wrapping it in a PeftModel the first time); return the model.

    Loads into a fresh adapter slot and checks every saved tensor was used, so an adapter for a
    different base model is an error instead of a silently random adapter. On failure the model
    is left as it was.
    """
    from peft import PeftConfig, PeftModel
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    config = PeftConfig.from_pretrained(str(path))
    config.inference_mode = True
    was_peft = hasattr(model, "peft_config")
    try:
        if was_peft:
            model.add_adapter(name, config)
            wrapper = model
        else:
            wrapper = PeftModel(model, config, adapter_name=name)
    except Exception as exc:
        raise InvalidInputError(f"adapter {name!r} does not fit this model: {exc}") from exc
    try:
        result: Any = set_peft_model_state_dict(
            wrapper, load_peft_weights(str(path), device="cpu"), adapter_name=name
        )
        if result.unexpected_keys:
            raise ValueError(
                f"{len(result.unexpected_keys)} weights match no module, e.g. {result.unexpected_keys[0]}"
            )
    except Exception as exc:
        detach_lora(wrapper, name)
        raise InvalidInputError(f"adapter {name!r} does not fit this model: {exc}") from exc
    wrapper.eval()
    install_stacked_forward(wrapper)  # mixed-adapter batches in a fixed number of ops per layer
    return wrapper


def detach_lora(model: Any, name: str) -> Any:
    """Remove adapter `name`; unwrap back to the plain model when it was the last one."""
    if list(model.peft_config) == [name]:
        return model.unload()
    model.delete_adapter(name)
    invalidate_stacks(model)
    return model
