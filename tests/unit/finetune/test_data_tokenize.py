"""Tokenization: prompt masking, EOS, BOS handling, truncation reports, packing, collation."""

from __future__ import annotations

from typing import Any

import pytest

from lmfoundry.errors import LmfError
from lmfoundry.finetune.data.templates import render
from lmfoundry.finetune.data.tokenize import (
    IGNORE_INDEX,
    build_dataset,
    collate,
    length_stats,
    max_length_from_config,
    pack_examples,
    tokenize_example,
)


@pytest.fixture(scope="module")
def tok() -> Any:
    from tiny import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="module")
def bos_tok() -> Any:
    """A tokenizer whose default encoding prepends BOS (like Llama-2's)."""
    from tokenizers.processors import TemplateProcessing

    from tiny import build_tokenizer

    tokenizer = build_tokenizer()
    bos_id = tokenizer.convert_tokens_to_ids("<|im_start|>")
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos_id)]
    )
    return tokenizer


def ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def summary_records(n: int) -> list[dict[str, str]]:
    return [
        {"dialogue": "#Person1#: Hello there. " * (1 + i), "summary": f"They greet {i} times.", "id": str(i)}
        for i in range(n)
    ]


def test_prompt_tokens_masked_completion_kept(tok: Any) -> None:
    prompt, completion = "### Instruct: Summarize.\n\nPerson1: Hello\n\n### Output:\n", "They greet."
    out = tokenize_example(tok, prompt, completion, max_length=512)
    prompt_ids, completion_ids = ids(tok, prompt), ids(tok, completion) + [tok.eos_token_id]
    assert out["input_ids"] == prompt_ids + completion_ids
    assert out["labels"] == [IGNORE_INDEX] * len(prompt_ids) + completion_ids
    assert out["attention_mask"] == [1] * len(out["input_ids"])
    assert out["labels"][-1] == tok.eos_token_id


def test_bos_prefix_is_masked_and_not_doubled(bos_tok: Any) -> None:
    bos = bos_tok.bos_token_id
    out = tokenize_example(bos_tok, "Question:", " answer", max_length=64)
    assert out["input_ids"][0] == bos and out["input_ids"].count(bos) == 1
    assert out["labels"][: 1 + len(ids(bos_tok, "Question:"))] == [IGNORE_INDEX] * (
        1 + len(ids(bos_tok, "Question:"))
    )
    already = tokenize_example(bos_tok, "<|im_start|>user\nhi", "yo", max_length=64)
    assert already["input_ids"].count(bos) == 1


def test_text_records_train_on_every_token(tok: Any) -> None:
    prompt, completion = render("plain", {"text": "The quick brown fox."})
    out = tokenize_example(tok, prompt, completion, max_length=64)
    assert prompt == ""
    assert out["labels"] == out["input_ids"] == ids(tok, "The quick brown fox.") + [tok.eos_token_id]


def test_chat_completion_keeps_template_eos_once(tok: Any) -> None:
    record = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
    prompt, completion = render("chat", record, tok)
    out = tokenize_example(tok, prompt, completion, max_length=128)
    full = tok.apply_chat_template(record["messages"], tokenize=False)
    assert out["input_ids"] == ids(tok, prompt) + ids(tok, completion)  # no EOS appended: it is there
    assert tok.decode(out["input_ids"]) == full
    kept = [t for t in out["labels"] if t != IGNORE_INDEX]
    assert tok.decode(kept) == "Hello!<|im_end|>\n"


def test_max_length_from_config() -> None:
    from transformers import GPT2Config, LlamaConfig

    assert max_length_from_config(GPT2Config(n_positions=333)) == 333
    assert max_length_from_config(LlamaConfig(max_position_embeddings=2048)) == 2048
    assert max_length_from_config({"seq_length": 4096}) == 4096
    assert max_length_from_config({"text_config": {"max_position_embeddings": 512}}) == 512
    assert max_length_from_config({"hidden_size": 64}) == 1024
    assert max_length_from_config(object()) == 1024


def test_truncation_counted_and_warned(tok: Any, capsys: pytest.CaptureFixture[str]) -> None:
    records = [{"dialogue": "#Person1#: Hi.", "summary": "They greet. " * (1 + i)} for i in range(8)]
    lengths = []
    for record in records:
        prompt, completion = render("summarize", record)
        lengths.append(len(ids(tok, prompt)) + len(ids(tok, completion)) + 1)
    max_length = sorted(lengths)[4]  # the 3 longest are over the limit
    examples, report = build_dataset(records, tok, "summarize", max_length)
    expected_over = sum(n > max_length for n in lengths)
    assert report.n_truncated == expected_over == 3
    assert report.n_examples == 8 and report.n_dropped == 0 and report.n_sequences == 8
    assert (report.min_tokens, report.max_tokens) == (min(lengths), max(lengths))
    assert report.mean_tokens == pytest.approx(sum(lengths) / len(lengths))
    assert all(len(e["input_ids"]) <= max_length for e in examples)
    assert f"3 of 8 examples are longer than max_length {max_length}" in capsys.readouterr().err


def test_no_warning_without_truncation(tok: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, report = build_dataset(summary_records(3), tok, "auto", 1024)
    assert report.n_truncated == 0 and report.warning() is None
    assert capsys.readouterr().err == ""


def test_examples_without_room_for_the_answer_are_dropped(
    tok: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    records = summary_records(2)
    prompt_len = len(ids(tok, render("summarize", records[0])[0]))
    examples, report = build_dataset(records, tok, "summarize", prompt_len)
    assert report.n_dropped == 2 and report.n_truncated == 2 and examples == []
    assert "dropped" in capsys.readouterr().err


def test_packing_keeps_all_tokens_and_masks(tok: Any) -> None:
    records = summary_records(6)
    plain_examples, _ = build_dataset(records, tok, "summarize", 4096, warn=False)
    blocks, report = build_dataset(records, tok, "summarize", 64, packing=True, warn=False)
    flat_ids = [t for e in plain_examples for t in e["input_ids"]]
    flat_labels = [t for e in plain_examples for t in e["labels"]]
    assert [t for b in blocks for t in b["input_ids"]] == flat_ids
    assert [t for b in blocks for t in b["labels"]] == flat_labels
    assert all(len(b["input_ids"]) == 64 for b in blocks[:-1]) and 0 < len(blocks[-1]["input_ids"]) <= 64
    assert report.packing and report.n_sequences == len(blocks) == -(-len(flat_ids) // 64)
    assert report.max_tokens > 64 and report.n_truncated == 0  # long examples span blocks, none cut
    with pytest.raises(LmfError, match="block size"):
        pack_examples(plain_examples, 0)


def test_collate_pads_right(tok: Any) -> None:
    batch = collate(
        [
            {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]},
            {"input_ids": [8], "attention_mask": [1], "labels": [8]},
        ],
        pad_token_id=3,
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 3, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]


def test_length_stats_nearest_rank() -> None:
    stats = length_stats(list(range(1, 101)))
    assert stats == {"min": 1, "mean": 50.5, "p95": 95, "max": 100}
    assert length_stats([])["max"] == 0


def test_bad_max_length_and_missing_eos(tok: Any) -> None:
    with pytest.raises(LmfError, match="max_length"):
        tokenize_example(tok, "a", "b", 0)
    with pytest.raises(LmfError, match="max_length"):
        build_dataset(summary_records(1), tok, "summarize", 0)

    class NoEos:
        eos_token_id = None
        eos_token = None
        bos_token = None

    with pytest.raises(LmfError, match="no EOS token"):
        tokenize_example(NoEos(), "a", "b", 8)
