"""Record formats: detection, loading from JSONL/JSON/CSV/Parquet, bad-record errors, splits."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lmfoundry.errors import LmfError
from lmfoundry.finetune.data.formats import detect_format
from lmfoundry.finetune.data.records import load_records
from lmfoundry.finetune.data.splits import split_records

SUMMARY = {
    "id": "a",
    "dialogue": "#Person1#: Hi.\n#Person2#: Hello.",
    "summary": "They greet.",
    "topic": "greeting",
}
INSTRUCTION = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
TEXT = {"text": "Some domain text for continued pre-training."}
PREFERENCE = {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "Go away."}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (SUMMARY, "summarization"),
        (INSTRUCTION, "instruction"),
        (CHAT, "chat"),
        (TEXT, "text"),
        (PREFERENCE, "preference"),
        ({"instruction": "x", "output": "y"}, "instruction"),
    ],
)
def test_detect_format_from_keys(record: dict, expected: str) -> None:
    assert detect_format(record) == expected


def test_detect_format_rejects_unknown_keys_and_non_objects() -> None:
    with pytest.raises(LmfError, match="match no format"):
        detect_format({"question": "q", "answer": "a"})
    with pytest.raises(LmfError, match="JSON object"):
        detect_format(["not", "a", "dict"])  # type: ignore[arg-type]


@pytest.mark.parametrize("record", [SUMMARY, INSTRUCTION, CHAT, TEXT, PREFERENCE])
def test_jsonl_round_trip_every_format(tmp_path: Path, record: dict) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", [record, record])
    assert load_records(path) == [record, record]


def test_json_list_file(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps([INSTRUCTION, {**INSTRUCTION, "output": "6"}]), encoding="utf-8")
    assert [r["output"] for r in load_records(path)] == ["5", "6"]


def test_csv_summarization_and_chat(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(SUMMARY))
        writer.writeheader()
        writer.writerow(SUMMARY)  # the dialogue holds a newline: a multi-line CSV cell
        writer.writerow({**SUMMARY, "id": "b"})
    assert load_records(path) == [SUMMARY, {**SUMMARY, "id": "b"}]

    chat_path = tmp_path / "chat.csv"
    with chat_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["messages"])
        writer.writeheader()
        writer.writerow({"messages": json.dumps(CHAT["messages"])})
    assert load_records(chat_path) == [CHAT]


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [INSTRUCTION, {**INSTRUCTION, "input": None, "output": "7"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data.parquet")
    loaded = load_records(tmp_path / "data.parquet")
    assert loaded[0] == INSTRUCTION
    assert loaded[1]["input"] == ""  # a missing Alpaca input becomes the empty string

    pq.write_table(pa.Table.from_pylist([CHAT]), tmp_path / "chat.parquet")
    assert load_records(tmp_path / "chat.parquet") == [CHAT]


def test_bad_parquet_file(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(LmfError, match="broken.parquet.*Parquet"):
        load_records(path)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([json.dumps(SUMMARY), "{not json"], r"bad\.jsonl line 2: invalid JSON"),
        ([json.dumps(SUMMARY), "", json.dumps({"dialogue": "x"})], r"bad\.jsonl line 3: .*missing 'summary'"),
        ([json.dumps({"foo": 1})], r"bad\.jsonl line 1: .*match no format"),
        (
            [json.dumps(SUMMARY), json.dumps(TEXT)],
            r"bad\.jsonl line 2: record is text but earlier records are summarization",
        ),
        ([json.dumps({"text": 5})], r"line 1: 'text' must be a string"),
        ([json.dumps({"text": "  "})], r"line 1: 'text' is empty"),
        ([json.dumps({"messages": []})], r"line 1: 'messages' must be a non-empty list"),
        (
            [json.dumps({"messages": [{"role": "robot", "content": "x"}]})],
            r"line 1: messages\[0\] has role 'robot'",
        ),
        ([json.dumps({"messages": [{"role": "user"}]})], r"line 1: messages\[0\] must be an object"),
        ([json.dumps({"prompt": "p", "chosen": "c"})], r"line 1: preference record is missing 'rejected'"),
        ([json.dumps({"prompt": "p", "chosen": 3, "rejected": "r"})], r"'chosen' must be a string or a list"),
        ([json.dumps([1, 2])], r"line 1: a record must be a JSON object"),
    ],
)
def test_bad_records_name_file_and_line(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(LmfError, match=message):
        load_records(path)


def test_bad_csv_messages_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('messages\n"[{""role"": ""user""}]"\n"[not json"\n', encoding="utf-8")
    with pytest.raises(LmfError, match=r"bad\.csv line 2: messages\[0\]"):
        load_records(path)
    path.write_text('messages\n"[not json"\n', encoding="utf-8")
    with pytest.raises(LmfError, match=r"bad\.csv line 2: 'messages' is not valid JSON"):
        load_records(path)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(LmfError, match="data file not found"):
        load_records(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(LmfError, match="no records"):
        load_records(tmp_path / "empty.jsonl")
    (tmp_path / "data.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(LmfError, match="unsupported data file type '.txt'"):
        load_records(tmp_path / "data.txt")
    (tmp_path / "obj.json").write_text("{}", encoding="utf-8")
    with pytest.raises(LmfError, match="must hold a list"):
        load_records(tmp_path / "obj.json")


def test_directory_splits_and_bundled_names(tmp_path: Path, lmf_home: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", [TEXT])
    write_jsonl(tmp_path / "test.jsonl", [SUMMARY])
    assert load_records(tmp_path) == [TEXT]
    assert load_records(tmp_path, split="test") == [SUMMARY]
    with pytest.raises(LmfError, match="no 'validation' split file .*test.jsonl, train.jsonl"):
        load_records(tmp_path, split="validation")

    with pytest.raises(LmfError, match="lmf data make dialogsum-synthetic"):
        load_records("dialogsum-synthetic")
    bundled = lmf_home / "data" / "dialogsum-synthetic"
    bundled.mkdir(parents=True)
    write_jsonl(bundled / "validation.jsonl", [SUMMARY])
    assert load_records("dialogsum-synthetic", split="validation") == [SUMMARY]


def test_hub_id_offline_names_hf_hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LmfError, match="HF_HUB_OFFLINE"):
        load_records("lmfoundry-test/does-not-exist")


# ------------------------------------------------------------------------- splits

RECORDS = [{"text": f"record {i}"} for i in range(103)]


def test_split_is_deterministic_disjoint_and_complete() -> None:
    first = split_records(RECORDS, seed=7)
    again = split_records(RECORDS, seed=7)
    assert first == again
    assert list(first) == ["train", "validation", "test"]
    texts = [r["text"] for part in first.values() for r in part]
    assert sorted(texts) == sorted(r["text"] for r in RECORDS)  # every record exactly once
    assert len(set(texts)) == len(RECORDS)
    assert [len(p) for p in first.values()] == [82, 11, 10]  # round(82.4), round(92.7) - 82, rest
    assert split_records(RECORDS, seed=8)["train"] != first["train"]


def test_split_two_fractions_and_bad_fractions() -> None:
    parts = split_records(RECORDS, seed=0, fractions=(0.5, 0.5))
    assert list(parts) == ["train", "validation"]
    assert len(parts["train"]) + len(parts["validation"]) == len(RECORDS)
    for bad in [(0.5, 0.6), (1.0,), (0.5, 0.5, 0.2), (1.2, -0.1, -0.1)]:
        with pytest.raises(LmfError, match="fractions"):
            split_records(RECORDS, seed=0, fractions=bad)
