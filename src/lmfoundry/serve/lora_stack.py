"""Mixed-adapter LoRA in a fixed number of ops: every loaded adapter's A and B stacked per layer.

Why: peft's mixed-adapter forward (`adapter_names=[...]`) loops over the adapters present in the
batch in every LoRA layer (gather the rows, two matmuls, scatter back). On a small model that is
thousands of tiny ops per decode step and made a batch spread over 4 adapters ~1.5x slower per
step than a base-only one. Here each layer keeps its adapters' A matrices concatenated along the
rank axis ([sum of ranks, in]) and B*scaling likewise ([out, sum of ranks]); one GEMM computes
every adapter's low-rank projection for every row, a 0/1 mask keeps each row's own adapter
columns (none for base rows), and a second GEMM maps back. That is a fixed handful of ops per
layer instead of a loop over adapters with gathers and scatters; the extra FLOPs (rows x sum of
ranks) are tiny next to the base layer.

Only plain LoRA on `nn.Linear` layers takes this path; any other layer or adapter variant (DoRA,
aLoRA, embeddings) falls back to peft's own method. Stacks are rebuilt when a layer's adapter set
or weight tensors change, and `invalidate` drops them after an adapter is (re)loaded.
"""

from __future__ import annotations

from typing import Any

_STACK_ATTR = "_lmf_lora_stack"
_BASE = "__base__"
_SMALL_ROWS = 64
"""Token rows (batch x positions) up to which the low-rank GEMMs run on one thread."""


def install(model: Any) -> int:
    """Route the mixed-adapter forward of every plain LoRA Linear in `model` here; return how many."""
    from peft.tuners.lora.layer import Linear

    count = 0
    for module in model.modules():
        if isinstance(module, Linear) and not hasattr(module, "_lmf_peft_mixed_forward"):
            # instance attributes shadow the class method peft's forward calls for `adapter_names`
            module.__dict__["_lmf_peft_mixed_forward"] = module._mixed_batch_forward
            module.__dict__["_mixed_batch_forward"] = _bind(module)
            count += 1
    invalidate(model)
    return count


def invalidate(model: Any) -> None:
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
            slot = torch.tensor([self.slots.get(n, -1) if n != _BASE else -1 for n in adapter_names])
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
