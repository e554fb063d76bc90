"""Prompt-injection heuristics for retrieved text: does a document talk *to the model*?

Retrieved chunks are data, but a poisoned page can carry instructions ("ignore the previous
instructions and ...") that a small reader follows. These regexes look for the common shapes:
instruction overrides, role or persona switches, spoofed chat-template markers, requests to reveal
the system prompt, exfiltration links and tool hijacking. They are cheap (microseconds per chunk)
and pure (no model), so RAG (`ask(..., screen_injection=True)`) and the server's guardrails
(`serve.guardrails`) share them. They catch the known phrasings, not a determined attacker; a
safety classifier (the guardrails' classifier hook) is the next layer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lmfoundry.types import Hit

SIGNALS: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern, re.IGNORECASE | re.MULTILINE)
    for name, pattern in {
        "instruction_override": r"\b(?:ignore|disregard|forget|override)\b.{0,40}\b(?:previous|prior|above|earlier|"
        r"all|any|system|original)\b.{0,30}\b(?:instructions?|prompts?|rules|directions|guidelines)\b",
        "role_switch": r"\byou are now\b|\bfrom now on,? you (?:are|will|must)\b|\b(?:developer|god|jailbreak|DAN) mode\b|"
        r"\bact as (?:an? )?(?:unrestricted|unfiltered|jailbroken)\b",
        "template_marker": r"<\|im_start\|>|<\|im_end\|>|<\|system\|>|\[/?INST\]|<</?SYS>>|^\s*#{2,}\s*(?:system|instruction)\b|"
        r"^\s*(?:system|assistant)\s*:",
        "prompt_leak": r"\b(?:reveal|print|repeat|show|output|leak)\b.{0,30}\b(?:system prompt|hidden instructions|"
        r"your (?:instructions|prompt|rules))\b",
        "exfiltration": r"!\[[^\]]*\]\(https?://[^)\s]*\?[^)\s]*=|\b(?:send|post|forward|upload)\b.{0,40}\b(?:to|at)\s+https?://",
        "tool_hijack": r"\b(?:call|invoke|run|execute|use)\b.{0,20}\b(?:tool|function|command|shell)\b.{0,40}"
        r"\b(?:delete|rm -rf|drop table|transfer|wire|password)",
    }.items()
}


def injection_signals(text: str) -> list[str]:
    """Names of the injection heuristics that match `text` (empty: nothing suspicious)."""
    return [name for name, pattern in SIGNALS.items() if pattern.search(text)]


def screen_hits(hits: Sequence[Hit]) -> tuple[list[Hit], list[tuple[Hit, list[str]]]]:
    """(clean hits, [(suspicious hit, its signals)]): retrieval results split by the heuristics."""
    clean: list[Hit] = []
    flagged: list[tuple[Hit, list[str]]] = []
    for hit in hits:
        signals = injection_signals(hit.chunk.text)
        if signals:
            flagged.append((hit, signals))
        else:
            clean.append(hit)
    return clean, flagged
