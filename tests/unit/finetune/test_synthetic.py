"""The synthetic dialogue-summarization set: determinism, variety, faithfulness, files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lmfoundry.errors import LmfError
from lmfoundry.finetune.data.synthetic import make
from lmfoundry.finetune.data.synthetic_dialogsum import dialogsum_records, make_dialogsum_synthetic
from lmfoundry.finetune.data.synthetic_vocab import DAYS, FIRST_NAMES

TURN = re.compile(r"^#Person([12])#: \S")
# Facts a summary may state: numbers and clock times, with their unit where there is one.
FACT = re.compile(r"\b\d+(?::\d\d)?(?: [ap]m)?\b")


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return dialogsum_records(600, seed=3)


def names_in(text: str) -> set[str]:
    return {name for name in FIRST_NAMES if re.search(rf"\b{name}\b", text)}


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = make_dialogsum_synthetic(120, 5, tmp_path / "a")
    b = make_dialogsum_synthetic(120, 5, tmp_path / "b")
    c = make_dialogsum_synthetic(120, 6, tmp_path / "c")
    for split in ("train", "validation", "test"):
        assert a[split].read_bytes() == b[split].read_bytes()
    assert (tmp_path / "a" / "README.md").read_bytes() == (tmp_path / "b" / "README.md").read_bytes()
    assert a["train"].read_bytes() != c["train"].read_bytes()


def test_records_have_dialogsum_fields_and_turn_layout(records: list[dict]) -> None:
    assert len({r["id"] for r in records}) == len(records)
    assert len({r["dialogue"] for r in records}) == len(records)
    for record in records:
        assert set(record) == {"id", "dialogue", "summary", "topic"}
        speakers = []
        for line in record["dialogue"].split("\n"):
            match = TURN.match(line)
            assert match, line
            speakers.append(match.group(1))
        assert len(speakers) >= 4 and "1" in speakers and "2" in speakers
        assert all(x != y for x, y in zip(speakers, speakers[1:], strict=False))  # speakers alternate
        assert 1 <= record["summary"].count(".") <= 3 and len(record["summary"].split()) <= 45


def test_variety(records: list[dict]) -> None:
    topics = {r["topic"] for r in records}
    assert len(topics) >= 12
    all_names = set().union(*(names_in(r["dialogue"]) for r in records))
    assert len(all_names) >= 30
    # several phrasings per topic: the opening lines of one topic are not all the same
    for topic in topics:
        openings = {tuple(r["dialogue"].split("\n")[:2]) for r in records if r["topic"] == topic}
        assert len(openings) >= 4, topic
    assert len({r["summary"] for r in records}) > 0.9 * len(records)


def test_summaries_are_faithful_to_the_dialogue(records: list[dict]) -> None:
    for record in records:
        dialogue, summary = record["dialogue"], record["summary"]
        assert names_in(dialogue) == names_in(summary), record  # every name said is in the summary
        for fact in FACT.findall(summary):
            assert fact in dialogue, (fact, record)
        for day in DAYS:
            if day in summary:
                assert day in dialogue, (day, record)
        # proper nouns (companies, airlines, places) not at a sentence start are in the dialogue
        for match in re.finditer(r"(?<![#\w])[A-Z][a-z]+", summary):
            if match.start() and not re.search(r"[.;] $", summary[: match.start()]):
                assert match.group() in dialogue, (match.group(), record)


def test_dialogue_lengths_are_short(records: list[dict]) -> None:
    words = sorted(len(r["dialogue"].split()) for r in records)
    assert words[0] >= 20 and words[-1] <= 160
    assert 40 <= words[len(words) // 2] <= 110


def test_split_files_readme_and_default_dir(lmf_home: Path) -> None:
    paths = make_dialogsum_synthetic(200, 0)
    out = lmf_home / "data" / "dialogsum-synthetic"
    assert paths == {s: out / f"{s}.jsonl" for s in ("train", "validation", "test")}
    rows = {s: [json.loads(line) for line in p.read_text().splitlines()] for s, p in paths.items()}
    assert [len(v) for v in rows.values()] == [160, 20, 20]
    ids = [r["id"] for v in rows.values() for r in v]
    assert len(set(ids)) == 200
    readme = (out / "README.md").read_text()
    assert "synthetic" in readme.lower() and "--seed 0" in readme
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


def test_refuses_to_replace_a_directory_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(LmfError, match="refusing to replace .*notes.txt"):
        make_dialogsum_synthetic(20, 0, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    make_dialogsum_synthetic(20, 0, tmp_path / "set")
    make_dialogsum_synthetic(30, 1, tmp_path / "set")  # its own earlier output may be replaced
    assert sum(1 for _ in (tmp_path / "set" / "train.jsonl").open()) == 24


def test_maker_registry_and_bad_n() -> None:
    with pytest.raises(LmfError, match="unknown data set 'squad'.*known: dialogsum-synthetic"):
        make("squad", n=10, seed=0)
    with pytest.raises(LmfError, match="n must be >= 1"):
        dialogsum_records(0, seed=0)
