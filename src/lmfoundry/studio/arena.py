"""Arena votes as preference pairs: `{"prompt": [messages], "chosen": reply, "rejected": reply}`,
the record `lmf capture export --format dpo` writes and the alignment stages (reward, DPO) read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.finetune.data.formats import validate_record


def preference_record(prompt: list[dict[str, str]], chosen: str, rejected: str) -> dict[str, Any]:
    """The pair a vote makes; raises InvalidInputError for anything `lmf finetune` would refuse."""
    record = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    validate_record(record, "preference")
    if not any(m.get("role") == "user" and m.get("content", "").strip() for m in prompt):
        raise InvalidInputError("an arena vote needs a prompt with a user message")
    if chosen == rejected:
        raise InvalidInputError("both answers are identical: there is nothing to prefer")
    return record


def append_vote(path: Path, record: dict[str, Any]) -> int:
    """Append one pair to the JSONL file (created with its folder); returns the pairs now in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    with path.open(encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())
