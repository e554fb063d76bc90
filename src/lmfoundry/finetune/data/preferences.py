"""Preference pairs for the alignment stages: render, tokenize, truncate and report.

A `{prompt, chosen, rejected}` record (or its chat-message variant) is rendered with the same
prompt templates as supervised data (`templates.render_preference`), so an aligned model sees
the prompt layout its SFT stage was trained on. Both answers are completions: only their tokens
are scored (the prompt is masked). A pair longer than `max_length` keeps the *end* of its prompt
(the instruction and the answer marker sit there) and its whole answers; a pair whose answers
alone do not fit is dropped. Both are counted and reported, never silent.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.finetune.data.formats import detect_format
from lmfoundry.finetune.data.templates import render_preference
from lmfoundry.finetune.data.tokenize import IGNORE_INDEX, collate, encode_pair, length_stats


@dataclass(frozen=True)
class PreferencePair:
    """One rendered pair: texts for trainers that tokenize themselves, ids for those that do not."""

    prompt: str
    chosen: str
    rejected: str
    prompt_ids: list[int]
    """Prompt tokens after truncation (BOS prefix included)."""
    chosen_ids: list[int]
    """Completion tokens of the chosen answer, ending in EOS."""
    rejected_ids: list[int]

    def sequence(self, which: str) -> list[int]:
        """Prompt + the `which` ("chosen" / "rejected") answer, as one token sequence."""
        return self.prompt_ids + (self.chosen_ids if which == "chosen" else self.rejected_ids)


@dataclass(frozen=True)
class PairReport:
    n_pairs: int
    n_truncated: int
    """Pairs longer than max_length whose prompt lost its start."""
    n_dropped: int
    """Pairs whose answers alone leave no room for a prompt token: skipped."""
    max_length: int
    mean_tokens: float
    max_tokens: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def warning(self) -> str | None:
        if not (self.n_truncated or self.n_dropped):
            return None
        return (
            f"{self.n_truncated} of {self.n_pairs} preference pairs are longer than max_length "
            f"{self.max_length} tokens (longest {self.max_tokens}): their prompts were cut from the start; "
            f"{self.n_dropped} did not fit even without a prompt and were dropped"
        )


def render_pair(record: Mapping[str, Any], template: str, tokenizer: Any) -> tuple[str, str, str]:
    return render_preference(template, record, tokenizer)


def build_pairs(
    records: Sequence[Mapping[str, Any]], tokenizer: Any, template: str, max_length: int, *, warn: bool = True
) -> tuple[list[PreferencePair], PairReport]:
    """Rendered and tokenized pairs that fit `max_length`, and what truncation did to them."""
    if records and detect_format(records[0]) != "preference":
        raise LmfError(
            f"this stage needs preference records {{prompt, chosen, rejected}}, got {detect_format(records[0])!r} "
            "records (make a set with `lmf data make preferences-synthetic`)"
        )
    pairs: list[PreferencePair] = []
    lengths: list[int] = []
    truncated = dropped = 0
    for record in records:
        prompt, chosen, rejected = render_pair(record, template, tokenizer)
        prompt_ids, chosen_ids = encode_pair(tokenizer, prompt, chosen)
        _, rejected_ids = encode_pair(tokenizer, prompt, rejected)
        longest = len(prompt_ids) + max(len(chosen_ids), len(rejected_ids))
        lengths.append(longest)
        room = max_length - max(len(chosen_ids), len(rejected_ids))
        if room < 1:
            dropped += 1
            continue
        if len(prompt_ids) > room:
            truncated += 1
            prompt_ids = prompt_ids[-room:]
        pairs.append(PreferencePair(prompt, chosen, rejected, prompt_ids, chosen_ids, rejected_ids))
    stats = length_stats(lengths)
    report = PairReport(len(records), truncated, dropped, max_length, stats["mean"], int(stats["max"]))
    if warn and report.warning():
        print(f"warning: {report.warning()}", file=sys.stderr)
    return pairs, report


def completion_logps(
    model: Any, pairs: Sequence[PreferencePair], which: str, batch_size: int = 4
) -> list[float]:
    """Sum of log p(answer token | prefix) over the `which` answer of each pair (no grad)."""
    import torch

    out: list[float] = []
    model.eval()
    pad = 0
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            examples = []
            for pair in pairs[start : start + batch_size]:
                answer = pair.chosen_ids if which == "chosen" else pair.rejected_ids
                ids = pair.prompt_ids + answer
                examples.append(
                    {
                        "input_ids": ids,
                        "attention_mask": [1] * len(ids),
                        "labels": [IGNORE_INDEX] * len(pair.prompt_ids) + answer,
                    }
                )
            batch = collate(examples, pad)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            mask = labels != IGNORE_INDEX
            picked = logps.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            out.extend((picked * mask).sum(-1).tolist())
    return out
