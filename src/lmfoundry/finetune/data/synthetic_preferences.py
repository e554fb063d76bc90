"""A synthetic preference set: the reference summary preferred over a corrupted one.

`preference_records` turns dialogsum-synthetic records into ``{id, prompt, chosen, rejected,
corruption, topic}`` records for DPO and reward models. ``chosen`` is the faithful reference
summary; ``rejected`` is the same summary with one kind of damage a summarizer really does:

- ``wrong_name``: a person's first name swapped for one the dialogue never says;
- ``wrong_time``: a clock time, day, month or number changed;
- ``off_topic``: the summary of another record with a different topic;
- ``too_long``: the reference followed by rambling, repeated sentences (>= 2.5x longer);
- ``truncated``: the reference cut off mid-sentence.

``prompt`` is ``SUMMARY_INSTRUCTION + "\\n\\n" + dialogue``, so the ``summarize`` template
renders exactly the prompt SFT on dialogsum-synthetic used, and ``alpaca`` (what ``auto`` picks
for preference records) renders a clean Alpaca instruction. Same seed, same bytes.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.finetune.data import synthetic_vocab as V
from lmfoundry.finetune.data.synthetic_dialogsum import dialogsum_records
from lmfoundry.finetune.data.synthetic_io import FRACTIONS, make_set
from lmfoundry.finetune.data.templates import SUMMARY_INSTRUCTION

NAME = "preferences-synthetic"
CORRUPTIONS = ("wrong_name", "wrong_time", "off_topic", "too_long", "truncated")
MIN_LONG_RATIO = 2.5

_NAME_RE = re.compile(r"\b(" + "|".join(V.FIRST_NAMES) + r")\b")
_PERSON_RE = re.compile(r"#Person\d#")
# Order matters: a clock time ("7:30 pm") must win over the bare numbers inside it.
_TIME_RE = re.compile(
    r"\b\d{1,2}(?::\d{2})? ?[ap]m\b"
    r"|\b(?:" + "|".join(V.DAYS + V.MONTHS) + r")\b"
    r"|(?<![\w#])\d+(?![\w#])"
)
Pool = dict[str, list[str]]  # topic -> the summaries of that topic, for off-topic answers
_SENTENCE_END_RE = re.compile(r"(?<!Dr)\. ")  # "Dr. Taylor" does not end a sentence
_CLOCK_TIMES = V.EVENING_TIMES + V.DAY_TIMES
_WORD_RE = re.compile(r"\b\d{1,2}(?::\d{2})? ?[ap]m\b|\d+|[A-Za-z]+")

# Sentences a rambling summarizer pads its answer with.
_RAMBLE = [
    "The conversation goes on for a while.",
    "Both of them talk about several different things during the conversation.",
    "It is a fairly ordinary conversation between two people.",
    "There are a number of details that come up along the way.",
    "Overall, the two speakers discuss the situation and what to do about it.",
    "They both seem to agree on most of the points that are raised.",
    "Some small talk also happens before and after the main part.",
    "In general, it is the kind of exchange that happens every day.",
    "To sum up the summary, the main points are the ones mentioned above.",
    "It is worth noting that the dialogue covers quite a lot of ground.",
]
_RESTATE = ["As mentioned,", "Again,", "To repeat,", "In other words,", "Once more,"]
_COMMON_STARTS = {"A", "An", "After", "Before", "Both", "For", "It", "The", "There", "They"}


def _summarize_prompt(dialogue: str) -> str:
    """The instruction and dialogue the `summarize` template lays out exactly as SFT saw them."""
    return f"{SUMMARY_INSTRUCTION}\n\n{dialogue}"


def _words(text: str) -> set[str]:
    """Clock times, numbers and words of `text`, to tell whether a replacement is already said."""
    return set(_WORD_RE.findall(text))


def _wrong_name(rng: random.Random, record: dict[str, Any], pool: Pool) -> str | None:
    summary = record["summary"]
    names = sorted(set(_NAME_RE.findall(summary)))
    if not names:
        return None
    old = rng.choice(names)
    said = _words(record["dialogue"]) | _words(summary)
    fresh = [n for n in V.FIRST_NAMES if n not in said]
    return re.sub(rf"\b{old}\b", rng.choice(fresh), summary)


def _replacement(rng: random.Random, token: str, dialogue: str) -> str:
    """Another value of the same kind as `token`, absent from the dialogue when possible."""
    if token in V.DAYS or token in V.MONTHS:
        options = [t for t in (V.DAYS if token in V.DAYS else V.MONTHS) if t != token]
    elif token[-2:] in ("am", "pm"):
        options = [t for t in _CLOCK_TIMES if t != token]
    else:
        value = int(token)
        spread = max(2, value // 2)
        # never 1: "within 1 days" would give the answer away by its grammar, not its facts
        options = [str(v) for v in range(max(2, value - spread), value + spread + 1) if v != value]
    said = _words(dialogue)
    unseen = [t for t in options if t not in said]
    return rng.choice(unseen or options)


def _wrong_time(rng: random.Random, record: dict[str, Any], pool: Pool) -> str | None:
    summary = record["summary"]
    masked = _PERSON_RE.sub(lambda m: "_" * len(m.group()), summary)  # "#Person1#" holds no fact
    spans = [
        m.span()
        for m in _TIME_RE.finditer(masked)
        if not (m.group() == "1" and masked[m.end() : m.end() + 1] == " ")  # "1 day" -> "3 day"
    ]
    if not spans:
        return None
    start, end = rng.choice(spans)
    new = _replacement(rng, summary[start:end], record["dialogue"])
    return summary[:start] + new + summary[end:]


def _off_topic(rng: random.Random, record: dict[str, Any], pool: Pool) -> str | None:
    topics = [topic for topic in pool if topic != record["topic"]]
    return rng.choice(pool[rng.choice(topics)]) if topics else None


def _too_long(rng: random.Random, record: dict[str, Any], pool: Pool) -> str:
    summary = record["summary"]
    sentences = [s.rstrip(".") + "." for s in _SENTENCE_END_RE.split(summary) if s.strip(". ")]
    parts = [summary]
    while len(" ".join(parts)) < MIN_LONG_RATIO * len(summary) or len(parts) < 4:
        if rng.random() < 0.35:
            first, _, rest = rng.choice(sentences).partition(" ")
            first = first.lower() if first in _COMMON_STARTS else first  # keep names capitalised
            parts.append(f"{rng.choice(_RESTATE)} {first} {rest}")
        else:
            parts.append(rng.choice(_RAMBLE))
    return " ".join(parts)


def _truncated(rng: random.Random, record: dict[str, Any], pool: Pool) -> str | None:
    words = record["summary"].split()
    if len(words) < 4:
        return None
    cut = rng.randint(max(2, int(0.4 * len(words))), max(2, int(0.7 * len(words))))
    if words[cut - 1].endswith("."):  # would end on a full stop: keep it mid-sentence
        cut -= 1
    return " ".join(words[:cut]).rstrip(".,;")


_CORRUPT: dict[str, Callable[..., str | None]] = {
    "wrong_name": _wrong_name,
    "wrong_time": _wrong_time,
    "off_topic": _off_topic,
    "too_long": _too_long,
    "truncated": _truncated,
}


def _corrupt(rng: random.Random, counts: Counter[str], record: dict[str, Any], pool: Pool) -> tuple[str, str]:
    """(kind, rejected) using the least-used kind that applies, so all kinds stay about even.

    A kind applies when its function returns a text that differs from the reference (a summary
    with no name cannot get `wrong_name`); `too_long` always applies.
    """
    options = {}
    for kind in CORRUPTIONS:
        rejected = _CORRUPT[kind](rng, record, pool)
        if rejected is not None and rejected.strip() != record["summary"].strip():
            options[kind] = rejected
    fewest = min(counts[kind] for kind in options)
    kind = rng.choice([k for k in options if counts[k] == fewest])
    counts[kind] += 1
    return kind, options[kind]


def preference_records(n: int, seed: int) -> list[dict[str, Any]]:
    """`n` records `{id, prompt, chosen, rejected, corruption, topic}` from dialogsum-synthetic.

    Each record gets the least-used corruption kind that applies to its summary (ties broken by
    the seeded generator), so every kind is about equally common.
    """

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidInputError(f"n must be an integer >= 1, got {n!r}")
    sources = dialogsum_records(n, seed)
    rng = random.Random(f"{NAME}:{seed}")
    counts: Counter[str] = Counter()
    pool: Pool = {}
    for source in sources:
        pool.setdefault(source["topic"], []).append(source["summary"])
    records = []
    for i, source in enumerate(sources):
        kind, rejected = _corrupt(rng, counts, source, pool)
        records.append(
            {
                "id": f"pref_{i:05d}",
                "prompt": _summarize_prompt(source["dialogue"]),
                "chosen": source["summary"],
                "rejected": rejected,
                "corruption": kind,
                "topic": source["topic"],
            }
        )
    return records


_KIND_DOCS = {
    "wrong_name": "a person's first name replaced by one the dialogue never mentions.",
    "wrong_time": "a clock time, day, month or number replaced by another value.",
    "off_topic": "the summary of a different dialogue with another topic.",
    "too_long": f"the reference followed by rambling, repeated sentences (>= {MIN_LONG_RATIO}x the characters).",
    "truncated": "the reference cut off mid-sentence.",
}


def _readme(n: int, seed: int, records: list[dict[str, Any]], splits: str) -> str:
    counts = Counter(r["corruption"] for r in records)
    kind_lines = "\n".join(f"- `{kind}` ({counts.get(kind, 0)}): {_KIND_DOCS[kind]}" for kind in CORRUPTIONS)
    return f"""# {NAME}

**This data is synthetic.** It was generated by lmfoundry (`lmf data make {NAME}
--n {n} --seed {seed}`) from the synthetic dialogue-summarization set (dialogsum-synthetic, same
seed), not collected from people or labelled by them.

Each record is `{{id, prompt, chosen, rejected, corruption, topic}}`:

- `prompt`: "{SUMMARY_INSTRUCTION}", a blank line, then the dialogue. The `summarize` template
  renders it exactly like the dialogsum-synthetic prompts used for SFT; `auto` picks the Alpaca
  layout for preference records.
- `chosen`: the reference summary (faithful to the dialogue).
- `rejected`: the reference damaged in one way, named by `corruption`.

Corruption kinds (records in all splits):
{kind_lines}

Each record gets the least-used kind that applies to its summary (one with no name cannot get
`wrong_name`), so the kinds are about equally common. `rejected` always differs from `chosen`.

{splits}"""


def make_preferences_synthetic(
    n: int = 2000, seed: int = 0, out_dir: Path | str | None = None, fractions: Sequence[float] = FRACTIONS
) -> dict[str, Path]:
    """Write the set into `out_dir` (default $LMF_HOME/data/preferences-synthetic); see `make_set`."""
    return make_set(NAME, preference_records, _readme, n, seed, out_dir, fractions)
