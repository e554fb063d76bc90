"""Transformers backend: fp32 on CPU, any causal LM, PEFT adapters, our own decode loop.

The loop prefills the prompt asking only for the last position's logits (`logits_to_keep=1`, so
a (prompt_len x vocab) tensor never materialises), then decodes one token at a time with the
KV cache, sampling with `lmfoundry.generate.sampling`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.generate.constraints import TokenConstraint, compile_for, hf_lltokenizer
from lmfoundry.generate.sampling import make_generator, sample_next
from lmfoundry.models.load import ResolvedModel, load_hf_model
from lmfoundry.types import Constraint, Message, SamplingParams


class TransformersBackend:
    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, *, threads: int | None = None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.model = model
        self.tokenizer = tokenizer
        config = model.config
        self.context_length = int(
            getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 2048
        )
        eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos.update(
            config_eos if isinstance(config_eos, list) else [config_eos] if config_eos is not None else []
        )
        self.eos_ids = frozenset(i for i in eos if i is not None)
        self._lltokenizer: Any = None
        self._lltokenizer_lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def has_chat_template(self) -> bool:
        return bool(self.tokenizer.chat_template)

    def supports_tools(self) -> bool:
        return "tools" in str(self.tokenizer.chat_template or "")

    def chat_ids(self, messages: list[Message], tools: list[dict[str, Any]] | None = None) -> list[int]:
        if not self.has_chat_template():
            raise LmfError(
                "this model has no chat template: give a raw prompt, or set chat_template in a profile"
            )
        encoded = self.tokenizer.apply_chat_template(
            [m.to_dict() for m in messages],
            tools=tools,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )
        return list(encoded["input_ids"])

    def vocab_size(self) -> int:
        """Width of the logits (may exceed the tokenizer's length by padding ids)."""
        output = self.model.get_output_embeddings()
        return int(output.weight.shape[0]) if output is not None else len(self.tokenizer)

    def constrain(self, constraint: Constraint) -> TokenConstraint:
        """A fresh grammar state for one generation (InvalidInputError names a bad constraint)."""
        with self._lltokenizer_lock:
            if self._lltokenizer is None:
                self._lltokenizer = hf_lltokenizer(self.tokenizer, self.vocab_size(), self.eos_ids)
        return compile_for(constraint, self._lltokenizer, self.vocab_size(), self.eos_ids)

    def token_stream(self, prompt_ids: list[int], params: SamplingParams) -> Iterator[int]:
        import torch

        generator = None if params.greedy else make_generator(params.seed)
        grammar = self.constrain(params.constraint) if params.constraint else None
        history = list(prompt_ids)
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([prompt_ids]), use_cache=True, logits_to_keep=1)
            for _ in range(params.max_new_tokens):
                logits = out.logits[0, -1]
                if grammar is not None:
                    logits = grammar.mask_logits(logits)
                token = sample_next(logits, params, history, generator)
                if grammar is not None:
                    grammar.accept(token)
                history.append(token)
                yield token
                if token in self.eos_ids:
                    return
                out = self.model(input_ids=torch.tensor([[token]]), cache=out.cache, use_cache=True)


def load_backend(
    resolved: ResolvedModel, *, adapters: list[str], threads: int | None = None
) -> TransformersBackend:
    """The `transformers` backend plugin: fp32 (or packed quantized) weights, PEFT adapters."""
    if any(str(a).endswith(".gguf") for a in [*resolved.adapters, *adapters]):
        raise LmfError("GGUF LoRA adapters run on llama.cpp: pass --backend llama_cpp")
    model, tokenizer = load_hf_model(resolved.name, adapters=adapters)
    return TransformersBackend(model, tokenizer, threads=threads)
