"""GPTQ for our blockwise formats: choose codes that keep each layer's outputs close, not its weights.

Round-to-nearest (RTN, what `quantize_model` does by default) rounds every weight on its own, so
the rounding errors of one output add up over the inputs. GPTQ (Frantar et al., 2022) rounds the
columns of a linear layer one at a time and moves each column's rounding error onto the columns
not yet rounded, weighted by the inverse of H = XᵀX, the Gram matrix of the layer's inputs X on
some calibration text; the errors then largely cancel in X Wᵀ. The result is stored in exactly the
format RTN produces (nf4/fp4/int8 codes plus one absmax per block of `block_size` weights,
optionally double-quantized), so loading, decoding speed, QLoRA and the bitsandbytes-compatible
layout do not change; only which code each weight gets does.

The decoder blocks are processed in order. Each block's Gram matrices are collected on the hidden
states that the already-quantized earlier blocks produce, so a block also compensates for the
error of the blocks before it. By default (`act_order`) the columns with the largest inputs are
rounded first, and each block's scale is fixed before the sweep: the one among a few fractions of
its absmax with the least input-weighted rounding error. Left to right (`act_order=False`), a
block's absmax is measured when the sweep reaches its first column, from the weights as updated so
far. Weights that outgrow their block's scale are clamped, as RTN clamps. Layers whose input width
is not a multiple of the block size, and everything outside the decoder stack (e.g. an untied
output head), keep RTN.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.quantize import blockwise as qb
from lmfoundry.quantize.heldout import TOPICS, heldout_text

if TYPE_CHECKING:
    import torch

DEFAULT_SEQUENCES = 32
DEFAULT_SEQ_LEN = 256
DEFAULT_DAMP = 0.01
LAZY_BATCH = 128
"""Columns updated together before the error is pushed to the rest of the matrix (GPTQ's lazy batch)."""

Step = Callable[[str], None]
Solved = dict[str, tuple["torch.Tensor", "torch.Tensor"]]
"""Layer name -> (codes in `QuantLinear.qweight` layout, fp32 absmax per block)."""


@dataclass(frozen=True)
class Calibration:
    """Token sequences to calibrate on, and the damping added to the Gram matrix's diagonal."""

    sequences: list[list[int]]
    damp: float = DEFAULT_DAMP
    source: str = "python-reference"
    act_order: bool = True

    def describe(self) -> dict[str, Any]:
        lengths = [len(s) for s in self.sequences]
        return {
            "method": "gptq",
            "source": self.source,
            "sequences": len(lengths),
            "tokens": sum(lengths),
            "damp": self.damp,
            "act_order": self.act_order,
        }


@dataclass(frozen=True)
class CalibrationSource:
    """Where calibration tokens come from (a UTF-8 text file, or the built-in text) and how many."""

    path: str | None = None
    sequences: int = DEFAULT_SEQUENCES
    seq_len: int = DEFAULT_SEQ_LEN

    def load(self, tokenizer: Any) -> Calibration:
        if self.path is None:
            text, source = default_calibration_text(), "python-reference"
        else:
            text, source = _read_text(Path(self.path)), str(self.path)
        return Calibration(
            calibration_sequences(tokenizer, text, self.sequences, self.seq_len), source=source
        )


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise InvalidInputError(f"calibration file {path} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"calibration file {path} is not UTF-8 text") from exc


def default_calibration_text() -> str:
    """Python's language-reference topics minus everything the quality report scores on.

    The report's held-out text is the topics in `heldout.TOPICS`; calibrating on it would
    flatter the perplexity it measures. Other topics repeat parts of it (the "compound" topic
    holds the whole "if" statement section), so every paragraph that also occurs in the held-out
    text is dropped, not just the held-out topics themselves.
    """
    from pydoc_data.topics import topics

    held_out = {p.strip() for p in heldout_text().split("\n\n")}
    paragraphs = (p.strip() for t in sorted(topics) if t not in TOPICS for p in topics[t].split("\n\n"))
    return "\n\n".join(p for p in paragraphs if p and p not in held_out)


def calibration_sequences(tokenizer: Any, text: str, sequences: int, seq_len: int) -> list[list[int]]:
    """`sequences` windows of `seq_len` tokens, spread evenly over `text` (no special tokens)."""
    if sequences < 1 or seq_len < 2:
        raise InvalidInputError(
            f"calibration needs at least 1 sequence of at least 2 tokens, got {sequences} x {seq_len}"
        )
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    available = len(ids) // seq_len
    if available < 1:
        raise InvalidInputError(
            f"the calibration text has {len(ids)} tokens, fewer than one sequence of {seq_len}"
        )
    count = min(sequences, available)
    stride = len(ids) // count
    return [ids[i * stride : i * stride + seq_len] for i in range(count)]


# ---- one layer ----


def inverse_hessian_factor(hessian: torch.Tensor, damp: float = DEFAULT_DAMP) -> torch.Tensor:
    """Upper Cholesky factor of (H + λI)⁻¹ with λ = damp · mean(diag H), in fp32.

    Inputs that were always zero (a zero diagonal entry) get 1 there, so their columns are simply
    rounded. When the damped matrix is still not positive definite, λ grows tenfold, three times.
    """
    import torch

    h = hessian.detach().double().clone()
    diag = torch.diagonal(h)
    diag[diag == 0] = 1.0
    eye = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    for attempt in range(4):
        lam = damp * (10**attempt) * float(diag.mean())
        lower, info = torch.linalg.cholesky_ex(h + lam * eye)
        if int(info) == 0:
            upper, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(lower), upper=True)
            if int(info) == 0:
                return upper.float()
    raise LmfError("the calibration inputs' Gram matrix is not positive definite even with 1000x damping")


def _column_quantizer(method: str, device: Any) -> Callable[[Any, Any], tuple[Any, Any]]:
    """(weights, their block scales) -> (codes, dequantized values), rounding exactly as RTN does."""
    import torch

    if method == "int8":

        def int8(column: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            unit = (column * (1.0 / scale.clamp(min=1e-38))).clamp(-1, 1)
            codes = torch.round(unit * qb.INT8_MAX).to(torch.int8)
            return codes, codes.float() * (1.0 / qb.INT8_MAX) * scale

        return int8
    code = qb.codebook(method, str(device))
    nearest = qb.code_rounder(code)

    def four_bit(column: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        unit = (column * (1.0 / scale.clamp(min=1e-38))).clamp(-1, 1)
        codes = nearest(unit)
        return codes, code[codes.int()] * scale

    return four_bit


SCALE_SHRINK = (1.0, 0.95, 0.9, 0.85, 0.8)
"""Block scales tried (times the block's absmax) when the scales are fixed before the sweep."""


def _searched_scales(
    w: torch.Tensor, blocks: torch.Tensor, importance: torch.Tensor, quantize_column: Any, block_size: int
) -> torch.Tensor:
    """Per block, the scale among SCALE_SHRINK x absmax with the least input-weighted rounding error.

    Shrinking the scale clips the block's largest weight a little and gives every other weight a
    finer grid; which wins depends on the block, and on how large each input is (diag of H).
    """
    import torch

    rows, cols = w.shape
    weight_of_column = importance.float().clamp(min=0).view(1, cols)
    best, best_error = blocks.clone(), None
    for shrink in SCALE_SHRINK:
        scale = (blocks * shrink).repeat_interleave(block_size, dim=1)
        _codes, values = quantize_column(w, scale)
        error = ((w - values) ** 2 * weight_of_column).view(rows, cols // block_size, block_size).sum(dim=2)
        if best_error is None:
            best_error = error
            continue
        better = error < best_error
        best = torch.where(better, blocks * shrink, best)
        best_error = torch.where(better, error, best_error)
    return best


def gptq_layer(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    method: str = "nf4",
    block_size: int = 64,
    damp: float = DEFAULT_DAMP,
    act_order: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GPTQ one weight [out, in] against the inputs' Gram matrix [in, in].

    Without `act_order` columns go left to right and a block's absmax is taken from the updated
    weights when the sweep reaches it. With `act_order` the columns with the largest inputs
    (largest diagonal of H) go first, and every block's scale is chosen beforehand from the
    original weights (`_searched_scales`: its columns are visited out of order, so there is no
    "start of the block" to measure at).

    Returns (codes [out, in] uint8 for 4-bit or int8, absmax [out * in / block_size] in the flat
    block order `quantize_model` uses, dequantized weight [out, in]).
    """
    import torch

    qb.check_method(method)
    rows, cols = weight.shape
    if cols % block_size:
        raise InvalidInputError(
            f"GPTQ needs the input width ({cols}) to be a multiple of the block size ({block_size})"
        )
    quantize_column = _column_quantizer(method, weight.device)
    w = weight.detach().float()
    absmax = w.abs().view(rows, cols // block_size, block_size).amax(dim=2)
    if act_order and SCALE_SHRINK:
        absmax = _searched_scales(w, absmax, torch.diagonal(hessian), quantize_column, block_size)
    order = torch.argsort(torch.diagonal(hessian), descending=True) if act_order else None
    # the sweep works on Wᵀ so that every column it visits is one contiguous row
    wt = (w[:, order] if order is not None else w).t().contiguous()
    scales_t = absmax.t().repeat_interleave(block_size, dim=0)  # [cols, rows]: each column's block scales
    if order is not None:
        scales_t, hessian = scales_t[order], hessian[order][:, order]
    hinv = inverse_hessian_factor(hessian, damp)
    codes_t = torch.empty(cols, rows, dtype=torch.int8 if method == "int8" else torch.uint8, device=w.device)
    values_t = torch.empty_like(wt)
    batch = max(block_size, LAZY_BATCH // block_size * block_size)  # a batch holds whole blocks
    for start in range(0, cols, batch):
        stop = min(start + batch, cols)
        part, h = wt[start:stop].clone(), hinv[start:stop, start:stop]
        errors = torch.empty_like(part)
        for i in range(stop - start):
            col = start + i
            if order is None and col % block_size == 0:  # left to right: measure the block as it stands
                absmax[:, col // block_size] = part[i : i + block_size].abs().amax(dim=0)
                scales_t[col : col + block_size] = absmax[:, col // block_size]
            codes_t[col], values_t[col] = quantize_column(part[i], scales_t[col])
            torch.div(part[i] - values_t[col], h[i, i], out=errors[i])
            part[i:].addr_(h[i, i:], errors[i], alpha=-1.0)
        wt[stop:].addmm_(hinv[start:stop, stop:].t(), errors, alpha=-1.0)
    if order is not None:
        inverse = torch.argsort(order)
        codes_t, values_t = codes_t[inverse], values_t[inverse]
    return codes_t.t().contiguous(), absmax.reshape(-1), values_t.t().contiguous()


def stored_codes(codes: torch.Tensor, method: str) -> torch.Tensor:
    """One code per weight -> `QuantLinear.qweight` layout (4-bit codes packed two per byte)."""
    return codes.reshape(-1) if method == "int8" else qb.pack_4bit(codes)


# ---- the decoder stack ----


class _Stop(Exception):
    """Raised by the capture hook to end a forward pass at the first decoder block."""


def decoder_blocks(model: Any) -> tuple[str, Any]:
    """(name, ModuleList) of the model's decoder blocks: the list with `num_hidden_layers` entries."""
    import torch

    count = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and count and len(module) == count:
            return name, module
    raise InvalidInputError(
        "GPTQ needs a decoder model whose config names num_hidden_layers and whose blocks are one "
        f"ModuleList of that length; {type(model).__name__} has none (quantize without --gptq)"
    )


def _first_block_inputs(model: Any, first: Any, sequences: Sequence[Sequence[int]]) -> list[Any]:
    """[(hidden states, other positional args, keyword args)] the first block receives, per sequence."""
    import torch

    captured: list[Any] = []

    def grab(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = args[0] if args else kwargs.pop("hidden_states")
        captured.append((hidden.detach(), tuple(args[1:]), dict(kwargs)))
        raise _Stop

    device = next(model.parameters()).device
    handle = first.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            for seq in sequences:
                with contextlib.suppress(_Stop):
                    model(torch.tensor([list(seq)], device=device), use_cache=False)
    finally:
        handle.remove()
    return captured


def _gram_matrices(block: Any, linears: dict[str, Any], states: list[Any]) -> dict[str, torch.Tensor]:
    """XᵀX of every named linear's inputs over all states; linears fed the same tensor share the work."""
    import torch

    grams = {
        name: torch.zeros(m.in_features, m.in_features, device=m.weight.device) for name, m in linears.items()
    }
    seen: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_pre_hook(lambda _m, args, name=name: seen.__setitem__(name, args[0]))
        for name, m in linears.items()
    ]
    try:
        with torch.no_grad():
            for hidden, args, kwargs in states:
                seen.clear()
                block(hidden, *args, **kwargs)
                products: dict[int, torch.Tensor] = {}
                for name, x in seen.items():
                    if id(x) not in products:
                        flat = x.reshape(-1, x.shape[-1]).float()
                        products[id(x)] = flat.t() @ flat
                    grams[name] += products[id(x)]
    finally:
        for handle in handles:
            handle.remove()
    return grams


def _run_block(block: Any, states: list[Any]) -> list[Any]:
    import torch

    out = []
    with torch.no_grad():
        for hidden, args, kwargs in states:
            result = block(hidden, *args, **kwargs)
            out.append((result[0] if isinstance(result, tuple) else result, args, kwargs))
    return out


def solve(
    model: Any,
    calibration: Calibration,
    method: str,
    block_size: int,
    eligible: Callable[[str], bool] = lambda _name: True,
    step: Step | None = None,
) -> Solved:
    """GPTQ every linear of the decoder blocks that `eligible(name)` accepts, block by block, in place.

    Each solved linear's fp32 weight is overwritten with its dequantized GPTQ values, so the next
    block is calibrated on the quantized model's hidden states; the returned codes and absmax
    are what `quantize_model` stores for it.
    """
    import torch

    step = step or (lambda _msg: None)
    if not calibration.sequences:
        raise InvalidInputError("GPTQ needs at least one calibration sequence")
    prefix, blocks = decoder_blocks(model)
    states = _first_block_inputs(model, blocks[0], calibration.sequences)
    solved: Solved = {}
    for index, block in enumerate(blocks):
        step(f"GPTQ: block {index + 1}/{len(blocks)}")
        linears = {
            f"{prefix}.{index}.{name}": m
            for name, m in block.named_modules()
            if type(m) is torch.nn.Linear
            and m.in_features % block_size == 0
            and eligible(f"{prefix}.{index}.{name}")
        }
        grams = _gram_matrices(block, linears, states)
        with _one_thread():
            solved.update(_solve_block(linears, grams, method, block_size, calibration))
        states = _run_block(block, states)
    return solved


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """The column sweep is thousands of tiny ops: extra threads only add fork-join waits.

    Measured on a 576x1536 layer, 2 cores shared with another job: 0.09 s on one thread, 7.3 s on two.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _solve_block(
    linears: dict[str, Any], grams: dict[str, Any], method: str, block_size: int, calibration: Calibration
) -> Solved:
    """GPTQ each linear of one block; its weight becomes the dequantized result for what follows."""
    solved: Solved = {}
    for name, linear in linears.items():
        codes, absmax, values = gptq_layer(
            linear.weight, grams.pop(name), method, block_size, calibration.damp, calibration.act_order
        )
        linear.weight.data.copy_(values.to(linear.weight.dtype))
        solved[name] = (stored_codes(codes, method), absmax)
    return solved
