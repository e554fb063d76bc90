"""llama.cpp backend through llama-cpp-python: GGUF files, fast quantized CPU inference.

Sampling uses llama.cpp's own sampler chain (top-k, top-p, min-p, temperature, repeat penalty)
seeded per request; temperature 0 is llama.cpp's greedy sampler.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.generate.chat_template import render_chat
from lmfoundry.generate.constraints import TokenConstraint, compile_for, llamacpp_lltokenizer
from lmfoundry.generate.llamacpp_batched import LlamaBatchedDecoder
from lmfoundry.generate.prompt_lookup import greedy_stream
from lmfoundry.models.load import ResolvedModel
from lmfoundry.plugins import require
from lmfoundry.types import Constraint, Message, SamplingParams


class LlamaCppBackend:
    name = "llama_cpp"
    tokenizer = None

    def __init__(
        self,
        gguf_path: Path,
        *,
        n_ctx: int = 4096,
        threads: int | None = None,
        chat_template: str | None = None,
        lora_path: Path | None = None,
        speculative: str | None = None,
    ) -> None:
        llama_cpp = require("llama_cpp", extra="llamacpp", package="llama-cpp-python")
        self.speculative = speculative
        self._lookup: Any = None
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(gguf_path),
                n_ctx=n_ctx,
                n_threads=threads or os.cpu_count() or 2,
                lora_path=str(lora_path) if lora_path else None,
                # llama.cpp's own tools default to flash attention where the backend has it;
                # llama-cpp-python defaults it off. A 16-row decode step measured ~20% faster with it
                flash_attn=True,
                verbose=False,
            )
        except ValueError as exc:
            raise LmfError(f"llama.cpp cannot load {gguf_path}: {exc}") from exc
        self.context_length = min(n_ctx, int(self.llm.n_ctx()))
        self.eos_ids = frozenset({int(self.llm.token_eos())} | _eog_ids(self.llm))
        self.chat_template = chat_template or self.llm.metadata.get("tokenizer.chat_template")
        self._bos = self.llm.detokenize([self.llm.token_bos()], special=True).decode("utf-8", "ignore")
        self._eos = self.llm.detokenize([self.llm.token_eos()], special=True).decode("utf-8", "ignore")
        self._lltokenizer: Any = None
        self._lltokenizer_lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=self._adds_bos(), special=True))

    def _adds_bos(self) -> bool:
        return str(self.llm.metadata.get("tokenizer.ggml.add_bos_token", "true")).lower() == "true"

    def decode(self, ids: list[int]) -> str:
        ids = [i for i in ids if i not in self.eos_ids]
        return self.llm.detokenize(ids).decode("utf-8", errors="replace")

    def has_chat_template(self) -> bool:
        return bool(self.chat_template)

    def supports_tools(self) -> bool:
        return "tools" in str(self.chat_template or "")

    def chat_ids(self, messages: list[Message], tools: list[dict[str, Any]] | None = None) -> list[int]:
        if not self.chat_template:
            raise LmfError(
                "this model has no chat template: give a raw prompt, or set chat_template in a profile"
            )

        text = render_chat(
            self.chat_template, messages, bos_token=self._bos, eos_token=self._eos, tools=tools
        )
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _lookup_decoder(self) -> LlamaBatchedDecoder:
        """A one-row context for prompt-lookup decoding (made on first use, kept)."""
        if self._lookup is None:
            self._lookup = LlamaBatchedDecoder(
                self.llm, max_rows=1, row_context=self.context_length, scoring=False
            )
        return self._lookup  # type: ignore[no-any-return]

    def constrain(self, constraint: Constraint) -> TokenConstraint:
        """A fresh grammar state for one generation (InvalidInputError names a bad constraint)."""
        with self._lltokenizer_lock:
            if self._lltokenizer is None:
                self._lltokenizer = llamacpp_lltokenizer(self.llm, self.eos_ids)
        return compile_for(constraint, self._lltokenizer, int(self.llm.n_vocab()), self.eos_ids)

    def token_stream(self, prompt_ids: list[int], params: SamplingParams) -> Iterator[int]:
        if params.seed is not None:
            self.llm.set_seed(params.seed)
        if params.max_new_tokens == 0:
            return
        grammar = self.constrain(params.constraint) if params.constraint else None
        if self.speculative and grammar is None and params.greedy and params.repetition_penalty == 1.0:
            yield from greedy_stream(self._lookup_decoder(), prompt_ids, params.max_new_tokens, self.eos_ids)
            return
        processors = None
        if grammar is not None:
            import llama_cpp

            processors = llama_cpp.LogitsProcessorList([lambda _ids, scores: grammar.mask_scores(scores)])
        tokens = self.llm.generate(
            prompt_ids,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            temp=params.temperature,
            repeat_penalty=params.repetition_penalty,
            reset=True,
            logits_processor=processors,
        )
        for produced, token in enumerate(tokens, start=1):
            if grammar is not None:
                grammar.accept(int(token))
            yield int(token)
            if token in self.eos_ids or produced >= params.max_new_tokens:
                return


def _eog_ids(llm: Any) -> set[int]:
    """End-of-generation ids beyond EOS (e.g. <|im_end|>, <end_of_turn>), from the vocabulary."""
    ids: set[int] = set()
    for text in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>"):
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if len(tokens) == 1:
            ids.add(int(tokens[0]))
    return ids


def load_backend(
    resolved: ResolvedModel,
    *,
    adapters: list[str],
    threads: int | None = None,
    speculative: str | None = None,
) -> LlamaCppBackend:
    """The `llama_cpp` backend plugin: the model's GGUF file, with at most one GGUF LoRA adapter
    (`speculative="prompt-lookup"`: n-gram drafting for greedy requests, generate/prompt_lookup.py)."""
    if resolved.gguf is None:
        raise LmfError(
            f"{resolved.name} has no GGUF file for the llama_cpp backend (use --backend transformers)"
        )
    every_adapter = [*resolved.adapters, *adapters]
    gguf_adapters = [a for a in every_adapter if str(a).endswith(".gguf")]
    if len(gguf_adapters) != len(every_adapter) or len(gguf_adapters) > 1:
        raise LmfError(
            "the llama_cpp backend takes one GGUF LoRA adapter (`lmf export gguf RUN --lora`); "
            "PEFT adapter folders need the transformers backend"
        )
    lora = Path(gguf_adapters[0]) if gguf_adapters else None
    if lora is not None and not lora.is_file():
        raise LmfError(f"GGUF adapter not found: {lora}")
    template = resolved.profile.chat_template if resolved.profile else None
    return LlamaCppBackend(
        resolved.gguf, threads=threads, chat_template=template, lora_path=lora, speculative=speculative
    )
