"""Grammar-constrained decoding with llguidance: JSON schemas, regexes, choices and grammars.

Why llguidance for both backends: one grammar dialect everywhere (JSON schema, regex, choice,
Lark, and llama.cpp's GBNF converted to Lark), masks computed in Rust in tens of microseconds per
token, and the same answer whichever library runs the forward pass. llama.cpp's own GBNF sampler
has no regexes and a different JSON-schema converter; one implementation keeps the two backends'
outputs comparable.

A `TokenConstraint` is the state of one generation: the engine or scheduler asks it to mask the
next-token logits, samples, then tells it which token was chosen. Text the grammar fixes (JSON
keys, a tool call's frame) is allowed only in the tokenizer's own tokenization, so a model cannot
spell it one character per token. When the grammar is complete only end-of-sequence tokens
remain allowed, so a constrained generation ends on its own.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.types import Constraint

if TYPE_CHECKING:
    import numpy as np
    import torch

JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
"""JSON in one line with the usual separators: free whitespace lets small models loop on newlines."""


def grammar_text(constraint: Constraint) -> str:
    """The llguidance grammar for `constraint` (raises InvalidInputError for malformed specs)."""
    from llguidance import LLMatcher, grammar_from

    try:
        if constraint.kind == "json":
            schema = json.loads(constraint.spec)
            if not isinstance(schema, dict):
                raise InvalidInputError("a JSON schema must be a JSON object")
            return str(LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS))  # type: ignore[arg-type]
        if constraint.kind == "regex":
            return str(LLMatcher.grammar_from_lark(_regex_lark(constraint.spec)))
        if constraint.kind == "choice":
            return str(grammar_from("choice", constraint.spec))
        if constraint.kind == "grammar":
            return str(grammar_from("grammar", constraint.spec))
    except (ValueError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"invalid {constraint.kind} constraint: {exc}") from exc
    raise InvalidInputError(f"unknown constraint kind {constraint.kind!r}")


def _regex_lark(pattern: str) -> str:
    """A one-rule Lark grammar for `pattern`, with \\d, \\w and \\s meaning ASCII as in Python's
    `re.ASCII` (llguidance's Rust regexes would otherwise admit every Unicode digit for \\d)."""
    import re

    from llguidance import regex_to_lark

    ascii_pattern = regex_to_lark(pattern, "dws")
    return "start: /" + re.sub(r"(?<!\\)/", r"\\/", ascii_pattern) + "/"


def compile_for(
    constraint: Constraint, lltokenizer: Any, vocab_size: int, eos_ids: frozenset[int]
) -> TokenConstraint:
    """A fresh grammar state for one generation (InvalidInputError names a bad constraint)."""
    grammar = validate(constraint, lltokenizer)
    return TokenConstraint(
        lltokenizer, grammar, vocab_size, eos_ids=eos_ids, end_on_repeat=constraint.end_on_repeat
    )


def validate(constraint: Constraint, lltokenizer: Any = None) -> str:
    """Compile-check `constraint` and return its grammar; the error names what is wrong."""
    from llguidance import LLMatcher

    grammar = grammar_text(constraint)
    is_error, messages = LLMatcher.validate_grammar_with_warnings(grammar, lltokenizer)
    if is_error:
        raise InvalidInputError(f"invalid {constraint.kind} constraint: {messages[0]}")
    return grammar


class TokenConstraint:
    """The grammar state of one generation over one tokenizer."""

    def __init__(
        self,
        lltokenizer: Any,
        grammar: str,
        vocab_size: int,
        *,
        eos_ids: frozenset[int] = frozenset(),
        end_on_repeat: str = "",
    ) -> None:
        from llguidance import LLMatcher

        self.matcher = LLMatcher(lltokenizer, grammar, log_level=0)
        if self.matcher.is_error():
            raise InvalidInputError(f"invalid constraint: {self.matcher.get_error()}")
        self.lltokenizer = lltokenizer
        self.vocab_size = vocab_size
        self.eos_ids = sorted(i for i in eos_ids if i < vocab_size)
        self.end_on_repeat = end_on_repeat.encode()
        self._text = bytearray()
        """Output bytes since the last delimiter (only tracked with `end_on_repeat`)."""
        self._segments: set[bytes] = set()
        self._repeated = False

    def allowed(self) -> np.ndarray:
        """A boolean vector over the vocabulary: True where the next token may be."""
        import numpy as np

        if self.matcher.is_error():
            raise InvalidInputError(f"constrained decoding failed: {self.matcher.get_error()}")
        if self._repeated and self.eos_ids:
            allowed = np.zeros(self.vocab_size, dtype=bool)
            allowed[self.eos_ids] = True
            return allowed
        forced = self.matcher.compute_ff_tokens()
        if forced:  # text the grammar fixes goes in its usual tokenization, not spelled out
            allowed = np.zeros(self.vocab_size, dtype=bool)
            allowed[forced[0]] = True
            return allowed
        bits = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        allowed = np.unpackbits(bits, bitorder="little")[: self.vocab_size].astype(bool)
        if allowed.shape[0] < self.vocab_size:  # logits wider than the tokenizer: padding ids
            allowed = np.pad(allowed, (0, self.vocab_size - allowed.shape[0]))
        return allowed

    def mask_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """`logits` [vocab] with every disallowed token at -inf."""
        import torch

        allowed = torch.from_numpy(self.allowed()[: logits.shape[-1]])
        return logits.masked_fill(~allowed, float("-inf"))

    def mask_scores(self, scores: np.ndarray) -> np.ndarray:
        """The same for llama.cpp's numpy logits (a logits processor)."""
        import numpy as np

        allowed = self.allowed()[: scores.shape[-1]]
        return np.where(allowed, scores, -np.inf).astype(scores.dtype)

    def accept(self, token: int) -> None:
        """Advance the grammar past the token that was sampled."""
        if self.end_on_repeat:
            self._note_segment(token)
        if not self.matcher.consume_token(token):
            raise InvalidInputError(
                f"constrained decoding rejected token {token}: {self.matcher.get_error()}"
            )

    def _note_segment(self, token: int) -> None:
        """Track delimited segments as they close; a segment seen before ends the output."""
        self._text += self.lltokenizer.decode_bytes([token])
        *closed, rest = bytes(self._text).split(self.end_on_repeat)
        for segment in (s.strip() for s in closed):
            self._repeated = self._repeated or segment in self._segments
            self._segments.add(segment)
        self._text = bytearray(rest)

    def done(self) -> bool:
        return bool(self.matcher.is_stopped())


def hf_lltokenizer(tokenizer: Any, vocab_size: int, eos_ids: frozenset[int]) -> Any:
    """An llguidance tokenizer for a transformers fast tokenizer (about a second: cache it)."""
    from llguidance.hf import from_tokenizer

    return from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=sorted(eos_ids) or None)


def llamacpp_lltokenizer(llm: Any, eos_ids: frozenset[int]) -> Any:
    """An llguidance tokenizer for a llama-cpp-python model's vocabulary."""
    import llama_cpp
    from llguidance.llamacpp import lltokenizer_from_vocab

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    return lltokenizer_from_vocab(vocab, n_vocab=int(llm.n_vocab()), eos_token=sorted(eos_ids) or None)


def response_constraint(response_format: dict[str, Any] | None) -> Constraint | None:
    """The constraint of an OpenAI `response_format` (None for plain text)."""
    if response_format is None or response_format.get("type") == "text":
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return Constraint.json()
    if kind != "json_schema":
        raise InvalidInputError(
            f"response_format type must be text, json_object or json_schema, not {kind!r}"
        )
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
        raise InvalidInputError('response_format json_schema must be {"name": ..., "schema": {...}}')
    if "name" in spec and not isinstance(spec["name"], str):
        raise InvalidInputError("response_format json_schema.name must be a string")
    schema = spec.get("schema") or {"type": "object"}
    return Constraint.json(closed_objects(schema) if spec.get("strict") else schema)


def closed_objects(schema: Any) -> Any:
    """OpenAI's strict mode: objects admit no properties beyond those listed, unless the schema
    says otherwise (plain JSON schema would let a model invent keys until it runs out of tokens)."""
    if not isinstance(schema, dict):
        return schema
    closed = dict(schema)
    for key in ("properties", "$defs", "definitions", "patternProperties"):
        if isinstance(closed.get(key), dict):
            closed[key] = {name: closed_objects(sub) for name, sub in closed[key].items()}
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(closed.get(key), list):
            closed[key] = [closed_objects(sub) for sub in closed[key]]
    for key in ("items", "not", "additionalProperties"):
        if isinstance(closed.get(key), dict):
            closed[key] = closed_objects(closed[key])
    if closed.get("type") == "object" or "properties" in closed:
        closed.setdefault("additionalProperties", False)
    return closed
