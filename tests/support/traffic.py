"""Synthetic captured traffic for the drift tests: two request mixes (Python questions, cooking
questions) written as capture rows, JSONL or a real capture database."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from lmfoundry.serve.capture import CaptureStore

PYTHON_TOPICS = [
    "reverse a list",
    "read a CSV file",
    "sort a dictionary by value",
    "merge two dictionaries",
    "write a unit test with pytest",
    "parse JSON from a string",
    "define a dataclass",
    "use a list comprehension",
    "catch an exception",
    "create a virtual environment",
    "format a string with f-strings",
    "open a file safely",
    "iterate over two lists at once",
    "remove duplicates from a list",
    "use type hints",
    "write a generator",
    "run code in parallel threads",
    "measure execution time",
    "install a package with pip",
    "use a lambda",
]
PYTHON_FORMS = [
    "How do I {t} in Python?",
    "What is the best way to {t} in Python 3?",
    "Can you show me how to {t} in Python?",
    "In Python, how can I {t}?",
]
COOKING_TOPICS = [
    "bake sourdough bread",
    "make a tomato sauce",
    "roast a chicken",
    "cook rice on the stove",
    "make pancakes from scratch",
    "caramelize onions",
    "poach an egg",
    "grill a steak medium rare",
    "make a vinaigrette",
    "knead pizza dough",
    "steam broccoli",
    "make a risotto",
    "braise short ribs",
    "bake chocolate chip cookies",
    "make a vegetable soup",
    "fry tofu until crispy",
    "boil pasta al dente",
    "make guacamole",
    "season a cast iron pan",
    "whip cream by hand",
]
COOKING_FORMS = [
    "How do I {t}?",
    "What is the secret to {t} at home?",
    "Any tips to {t} for a dinner party?",
    "How long does it take to {t}?",
]


def mix(kind: str, n: int, seed: int) -> list[tuple[str, str]]:
    """n (prompt, reply) pairs of one traffic mix: "python" or "cooking"."""
    rng = random.Random(seed)
    topics, forms = (PYTHON_TOPICS, PYTHON_FORMS) if kind == "python" else (COOKING_TOPICS, COOKING_FORMS)
    pairs = []
    for _ in range(n):
        topic = rng.choice(topics)
        reply = f"To {topic}, " + " ".join(
            rng.choice(["first", "then", "check", "use", "keep", "note"]) for _ in range(rng.randint(8, 30))
        )
        pairs.append((rng.choice(forms).format(t=topic), reply))
    return pairs


def rows(pairs: list[tuple[str, str]], start: float, seed: int) -> list[dict[str, Any]]:
    """Capture rows (the SQLite table's columns plus latency_s), one request per minute from `start`."""
    rng = random.Random(seed)
    out = []
    for i, (prompt, reply) in enumerate(pairs):
        created = start + 60 * i
        latency = rng.uniform(0.5, 1.5)
        out.append(
            {
                "id": f"chatcmpl-{seed}-{i}",
                "created": created + latency,
                "endpoint": "chat",
                "model": "m",
                "latency_s": latency,
                "request": {"model": "m", "messages": [{"role": "user", "content": prompt}]},
                "response": {
                    "id": f"chatcmpl-{seed}-{i}",
                    "object": "chat.completion",
                    "created": int(created),
                    "model": "m",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": 12,
                        "completion_tokens": len(reply.split()),
                        "total_tokens": 12 + len(reply.split()),
                    },
                },
            }
        )
    return out


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_capture(path: Path, records: list[dict[str, Any]]) -> Path:
    """Record through the real CaptureStore, then set each row's time (the store stamps `now`)."""
    store = CaptureStore(path)
    for r in records:
        store.record(r["endpoint"], r["request"], r["response"])
    store.close()
    import sqlite3

    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "UPDATE exchanges SET created = ? WHERE id = ?", [(r["created"], r["id"]) for r in records]
        )
    db.close()
    return path
