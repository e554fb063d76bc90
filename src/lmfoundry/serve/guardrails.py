"""Guardrails on the request path of `lmf serve --guardrails FILE`: each one optional, each set in
the YAML file (configs/guardrails/default.yaml shows every key).

- `pii`: personal data (e-mail addresses, phone, card and social-security numbers, IPs, IBANs,
  plus your own regexes) in requests and replies is redacted with capture's `Redactor` (the same
  `[REDACTED]` marker `--redact` writes into the capture) or the request is blocked.
- `injection`: the RAG injection heuristics (`rag.injection`) over the request's messages, e.g.
  retrieved context a client put in a system or user turn; block, or flag in a response header.
- `output`: block-listed words, regexes and a length limit on replies. A blocked reply is replaced
  by an empty one with `finish_reason: "content_filter"`, as OpenAI's own filter does.
- `classifier`: a hook for a safety classifier, `f(text) -> float` (probability of unsafe) or
  `bool`, named as a `safety_classifier` plugin or a `module:function` path.

A blocked request gets the OpenAI error object with status 400 and code `content_policy_violation`.
The checks here work on plain dicts (request and response bodies); `guardrail_middleware.py`
applies them to HTTP traffic.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lmfoundry import plugins
from lmfoundry.config import load_yaml
from lmfoundry.errors import InvalidInputError
from lmfoundry.rag.injection import injection_signals
from lmfoundry.serve.capture import Redactor
from lmfoundry.serve.errors import APIError

log = logging.getLogger("lmfoundry.serve.guardrails")

PII_PATTERNS = {
    "email": r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
    "phone": r"(?<![\w+])\+?\d{1,3}?[ .-]?\(?\d{2,4}\)?[ .-]\d{3,4}[ .-]\d{3,4}\b",
    "credit_card": r"\b(?:\d[ -]?){13,19}\b",
    "ssn": r"\b\d{3}-\d{2}-\d{4}\b",
    "ipv4": r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b",
    "iban": r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b",
}
BLOCKED_CODE = "content_policy_violation"
GUARDED_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PiiConfig(_Strict):
    detect: list[str] = Field(default_factory=lambda: list(PII_PATTERNS))
    """Built-in detectors: email, phone, credit_card, ssn, ipv4, iban."""
    patterns: list[str] = Field(default_factory=list)
    """Extra regexes treated as personal data."""
    requests: Literal["redact", "block", "off"] = "redact"
    responses: Literal["redact", "block", "off"] = "redact"

    @field_validator("detect")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        unknown = sorted(set(names) - set(PII_PATTERNS))
        if unknown:
            raise ValueError(f"unknown PII detector(s) {unknown}; known: {', '.join(PII_PATTERNS)}")
        return names


class InjectionConfig(_Strict):
    action: Literal["block", "flag"] = "block"
    roles: list[str] = Field(default_factory=lambda: ["system", "user", "tool"])
    """Chat roles whose messages are scanned (a completion's prompt is always scanned)."""


class OutputConfig(_Strict):
    block_words: list[str] = Field(default_factory=list)
    """Case-insensitive whole words or phrases that block a reply."""
    block_patterns: list[str] = Field(default_factory=list)
    max_chars: int | None = Field(default=None, ge=1)
    """Longer replies are cut to this length (finish_reason "length")."""


class ClassifierConfig(_Strict):
    name: str
    """A `safety_classifier` plugin name or a `module:function` path; f(text) -> float or bool."""
    threshold: float = Field(default=0.5, ge=0, le=1)
    requests: bool = True
    responses: bool = True


class GuardrailsConfig(_Strict):
    pii: PiiConfig | None = None
    injection: InjectionConfig | None = None
    output: OutputConfig | None = None
    classifier: ClassifierConfig | None = None


def load_guardrails(path: str | Path) -> Guardrails:
    """Guardrails from a YAML file; unknown keys and bad regexes are errors naming the file."""
    try:
        config = GuardrailsConfig.model_validate(load_yaml(path) or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidInputError(f"{path}: invalid guardrails: {problems}") from exc
    return Guardrails(config)


class GuardrailBlocked(APIError):
    def __init__(self, guardrail: str, reason: str) -> None:
        super().__init__(400, f"request blocked by the {guardrail} guardrail: {reason}", code=BLOCKED_CODE)
        self.guardrail = guardrail


@dataclass
class ReplyVerdict:
    text: str
    blocked: str | None = None
    """Why the reply was blocked (None: it may be returned)."""
    truncated: bool = False


class Guardrails:
    """The configured checks; each method is a no-op for a guardrail that is not configured."""

    def __init__(self, config: GuardrailsConfig) -> None:
        self.config = config
        pii = config.pii
        patterns = [PII_PATTERNS[n] for n in pii.detect] + pii.patterns if pii else []
        self.redactor = Redactor(patterns)
        output = config.output or OutputConfig()
        words = [rf"\b{re.escape(w)}\b" for w in output.block_words]
        try:
            self.blocklist = [re.compile(p, re.IGNORECASE) for p in words + output.block_patterns]
        except re.error as exc:
            raise InvalidInputError(f"invalid output block pattern: {exc}") from exc
        self.classifier = _load_classifier(config.classifier.name) if config.classifier else None

    def check_request(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """(the body, PII redacted, flags raised); raises GuardrailBlocked when a guardrail blocks."""
        flags: list[str] = []
        texts = request_texts(path, body, None)
        pii = self.config.pii
        if pii and pii.requests != "off" and any(self._has_pii(t) for t in texts):
            if pii.requests == "block":
                raise GuardrailBlocked("pii", "the request contains personal data")
            body = {k: self.redactor(v) if k in ("messages", "prompt") else v for k, v in body.items()}
            flags.append("pii_redacted")
        if self.config.injection:
            scanned = request_texts(path, body, self.config.injection.roles)
            signals = sorted({s for t in scanned for s in injection_signals(t)})
            if signals and self.config.injection.action == "block":
                raise GuardrailBlocked("injection", f"possible prompt injection ({', '.join(signals)})")
            flags += [f"injection:{s}" for s in signals]
        if self._classifies("requests") and any(self._unsafe(t) for t in texts):
            raise GuardrailBlocked("classifier", "the safety classifier flagged the request")
        return body, flags

    def check_reply(self, text: str) -> ReplyVerdict:
        """A reply after the output guardrails: redacted, cut to length, or blocked."""
        pii = self.config.pii
        if pii and pii.responses != "off" and self._has_pii(text):
            if pii.responses == "block":
                return ReplyVerdict("", blocked="pii")
            text = self.redactor(text)
        for pattern in self.blocklist:
            if pattern.search(text):
                return ReplyVerdict("", blocked="output")
        if self._classifies("responses") and self._unsafe(text):
            return ReplyVerdict("", blocked="classifier")
        limit = self.config.output.max_chars if self.config.output else None
        if limit is not None and len(text) > limit:
            return ReplyVerdict(text[:limit], truncated=True)
        return ReplyVerdict(text)

    def filter_response(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A completion body with every choice through `check_reply`."""
        for choice in body.get("choices") or []:
            holder, key = (
                (choice.get("message") or {}, "content") if "message" in choice else (choice, "text")
            )
            if not isinstance(holder.get(key), str):
                continue
            verdict = self.check_reply(holder[key])
            holder[key] = verdict.text
            if verdict.blocked:
                choice["finish_reason"] = "content_filter"
                log.info("reply blocked by the %s guardrail on %s", verdict.blocked, path)
            elif verdict.truncated:
                choice["finish_reason"] = "length"
        return body

    def _has_pii(self, text: str) -> bool:
        return any(p.search(text) for p in self.redactor.patterns)

    def _classifies(self, side: str) -> bool:
        config = self.config.classifier
        return self.classifier is not None and config is not None and bool(getattr(config, side))

    def _unsafe(self, text: str) -> bool:
        assert self.classifier is not None and self.config.classifier is not None
        score = self.classifier(text)
        return bool(score) if isinstance(score, bool) else float(score) >= self.config.classifier.threshold


class StreamGuard:
    """The output guardrails over a streamed reply, one OpenAI chunk at a time: block-lists, the
    classifier and the length limit see each choice's text so far; PII redaction applies per chunk."""

    def __init__(self, guardrails: Guardrails) -> None:
        self.guardrails = guardrails
        self.texts: dict[int, str] = {}

    def filter_chunk(self, chunk: dict[str, Any]) -> bool:
        """Filter `chunk` in place; True when a guardrail tripped and the stream must end here (the
        chunk then carries `finish_reason` "content_filter", or "length" with the text cut)."""
        for choice in chunk.get("choices") or []:
            holder, key = (choice.get("delta") or {}, "content") if "delta" in choice else (choice, "text")
            piece = holder.get(key)
            if not isinstance(piece, str) or not piece:
                continue
            index = int(choice.get("index", 0))
            self.texts[index] = self.texts.get(index, "") + piece
            verdict = self.guardrails.check_reply(self.texts[index])
            if verdict.blocked or verdict.truncated:
                holder[key] = verdict.text[len(self.texts[index]) - len(piece) :] if verdict.truncated else ""
                choice["finish_reason"] = "length" if verdict.truncated else "content_filter"
                return True
            holder[key] = self.guardrails.redactor(piece)
        return False


def request_texts(path: str, body: dict[str, Any], roles: list[str] | None) -> list[str]:
    """The strings a request sends to the model: chat message contents (of `roles`, all when None)
    or the completion prompt(s)."""
    if path == "/v1/completions":
        prompt = body.get("prompt")
        return [prompt] if isinstance(prompt, str) else [p for p in prompt or [] if isinstance(p, str)]
    texts = []
    for message in body.get("messages") or []:
        if not isinstance(message, dict) or (roles is not None and message.get("role") not in roles):
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if isinstance(content, str):
            texts.append(content)
    return texts


def _load_classifier(name: str) -> Callable[[str], Any]:
    """A `safety_classifier` plugin, or `module:function` imported from the Python path."""
    return plugins.load_hook("safety_classifier", name, "guardrail classifier")
