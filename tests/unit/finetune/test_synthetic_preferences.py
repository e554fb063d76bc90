"""The synthetic preference set: corruptions that really are wrong, determinism, files, CLI."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from lmfoundry.cli.main import main
from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.finetune.data.formats import validate_record
from lmfoundry.finetune.data.records import load_records
from lmfoundry.finetune.data.synthetic import MAKERS, make
from lmfoundry.finetune.data.synthetic_dialogsum import dialogsum_records
from lmfoundry.finetune.data.synthetic_preferences import (
    CORRUPTIONS,
    make_preferences_synthetic,
    preference_records,
)
from lmfoundry.finetune.data.synthetic_vocab import DAYS, FIRST_NAMES, MONTHS
from lmfoundry.finetune.data.templates import render_preference, render_prompt

N, SEED = 300, 4
KINDS = {"wrong_name", "wrong_time", "off_topic", "too_long", "truncated"}
# A fact a summary may state: a clock time, a number, a day or a month.
FACT = re.compile(r"\b\d+(?::\d\d)?(?: [ap]m)?\b|\b(?:" + "|".join(DAYS + MONTHS) + r")\b")


@pytest.fixture(scope="module")
def sources() -> list[dict]:
    return dialogsum_records(N, SEED)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return preference_records(N, SEED)


def names_in(text: str) -> set[str]:
    return {name for name in FIRST_NAMES if re.search(rf"\b{name}\b", text)}


def of_kind(records: list[dict], kind: str) -> list[dict]:
    found = [r for r in records if r["corruption"] == kind]
    assert found, kind
    return found


def test_records_pair_reference_with_a_different_rejected(records: list[dict], sources: list[dict]) -> None:
    assert len(records) == N and len({r["id"] for r in records}) == N
    for record, source in zip(records, sources, strict=True):
        assert set(record) == {"id", "prompt", "chosen", "rejected", "corruption", "topic"}
        assert validate_record(record) == "preference"
        assert record["chosen"] == source["summary"] and record["topic"] == source["topic"]
        assert source["dialogue"] in record["prompt"]
        assert record["rejected"].strip() and record["rejected"] != record["chosen"]


def test_every_kind_is_present_and_about_even(records: list[dict]) -> None:
    assert set(CORRUPTIONS) == KINDS
    counts = Counter(r["corruption"] for r in records)
    assert set(counts) == KINDS
    assert max(counts.values()) - min(counts.values()) <= 0.1 * N


def test_wrong_name_swaps_a_name_for_one_the_dialogue_never_says(records: list[dict]) -> None:
    for record in of_kind(records, "wrong_name"):
        chosen, rejected = names_in(record["chosen"]), names_in(record["rejected"])
        removed, added = chosen - rejected, rejected - chosen
        assert len(removed) == 1 and len(added) == 1, (record["chosen"], record["rejected"])
        (old,), (new,) = removed, added
        assert new not in names_in(record["prompt"])
        # nothing else changed: putting the old name back gives the reference
        assert re.sub(rf"\b{new}\b", old, record["rejected"]) == record["chosen"]


def facts(text: str) -> tuple[list[str], str]:
    """The clock times, days, months and numbers of `text`, and the text with each one blanked."""
    text = re.sub(r"#Person\d#", "#Person#", text)
    return FACT.findall(text), FACT.sub("<FACT>", text)


def test_wrong_time_changes_one_fact_and_nothing_else(records: list[dict]) -> None:
    for record in of_kind(records, "wrong_time"):
        (old, old_frame), (new, new_frame) = facts(record["chosen"]), facts(record["rejected"])
        assert old_frame == new_frame, (record["chosen"], record["rejected"])
        assert len(old) == len(new) and sum(a != b for a, b in zip(old, new, strict=True)) == 1


def test_off_topic_is_the_summary_of_another_topic(records: list[dict], sources: list[dict]) -> None:
    topics_of: dict[str, set[str]] = {}
    for source in sources:
        topics_of.setdefault(source["summary"], set()).add(source["topic"])
    for record in of_kind(records, "off_topic"):
        assert record["rejected"] in topics_of
        assert record["topic"] not in topics_of[record["rejected"]]


def test_too_long_starts_with_the_reference_and_is_much_longer(records: list[dict]) -> None:
    for record in of_kind(records, "too_long"):
        assert record["rejected"].startswith(record["chosen"] + " ")
        assert len(record["rejected"]) >= 2.5 * len(record["chosen"])


def test_truncated_is_cut_mid_sentence(records: list[dict]) -> None:
    for record in of_kind(records, "truncated"):
        words, cut = record["chosen"].split(), record["rejected"].split()
        assert 2 <= len(cut) < len(words)
        assert [w.rstrip(".,;") for w in words[: len(cut)]] == [w.rstrip(".,;") for w in cut]
        assert not record["rejected"].endswith(".")


def test_summarize_template_renders_the_sft_prompt(records: list[dict], sources: list[dict]) -> None:
    for record, source in list(zip(records, sources, strict=True))[:20]:
        prompt, chosen, rejected = render_preference("summarize", record)
        assert prompt == render_prompt("summarize", {"dialogue": source["dialogue"]})
        assert chosen.startswith(record["chosen"]) and rejected.startswith(record["rejected"])
        alpaca_prompt, alpaca_chosen, alpaca_rejected = render_preference("auto", record)
        assert "### Instruction:" in alpaca_prompt and source["dialogue"] in alpaca_prompt
        assert alpaca_prompt.endswith("### Response:\n")
        assert (alpaca_chosen, alpaca_rejected) == (record["chosen"], record["rejected"])


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = make_preferences_synthetic(60, 5, tmp_path / "a")
    b = make_preferences_synthetic(60, 5, tmp_path / "b")
    c = make_preferences_synthetic(60, 6, tmp_path / "c")
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "README.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a["train"].read_bytes() != c["train"].read_bytes()
    assert preference_records(30, 1) != preference_records(30, 2)
    assert sum(len(load_records(path)) for path in b.values()) == 60


def test_readme_says_synthetic_and_counts_kinds(tmp_path: Path) -> None:
    make_preferences_synthetic(50, 0, tmp_path / "set")
    readme = (tmp_path / "set" / "README.md").read_text()
    records = [json.loads(line) for p in (tmp_path / "set").glob("*.jsonl") for line in p.open()]
    assert "synthetic" in readme.lower()
    for kind, count in Counter(r["corruption"] for r in records).items():
        assert f"`{kind}` ({count})" in readme


def test_cli_make_writes_files_and_inspect_reads_them(
    lmf_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "preferences-synthetic" in MAKERS
    assert main(["data", "make", "preferences-synthetic", "--n", "40"]) == 0
    folder = lmf_home / "data" / "preferences-synthetic"
    sizes = {s: sum(1 for _ in (folder / f"{s}.jsonl").open()) for s in ("train", "validation", "test")}
    assert sizes == {"train": 32, "validation": 4, "test": 4}
    assert (folder / "README.md").is_file()
    capsys.readouterr()
    assert (
        main(["data", "inspect", "preferences-synthetic", "-n", "1", "--template", "summarize", "--json"])
        == 0
    )
    shown = json.loads(capsys.readouterr().out)
    assert shown["format"] == "preference" and shown["n_records"] == 32
    assert "### Instruct: Summarize the dialogue below." in shown["examples"][0]["prompt"]


def test_bad_input_gives_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for n in (0, -3):
        with pytest.raises(InvalidInputError, match="n must be"):
            preference_records(n, 0)
    with pytest.raises(InvalidInputError, match="fractions"):
        make("preferences-synthetic", n=10, seed=0, out_dir=tmp_path / "x", fractions=(0.5, 0.6))
    assert not (tmp_path / "x").exists()
    assert main(["data", "make", "preferences-synthetic", "--n", "0"]) == 1
    assert "n must be" in capsys.readouterr().err
    assert main(["data", "make", "preferences-synthetic", "--n", "10", "--fractions", "0.9,0.9"]) == 1
    assert "fractions" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(LmfError, match="refusing to replace"):
        make_preferences_synthetic(10, 0, tmp_path / "taken")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
