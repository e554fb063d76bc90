"""TextStream: incremental detokenizing gives exactly the text of one decode of the whole, on a
byte-level BPE and a SentencePiece-style (Metaspace) tokenizer; stop strings and hold-back."""

from __future__ import annotations

import random
from typing import Any

import pytest

from lmfoundry.generate.text_stream import TextStream
from tiny import build_tokenizer

EOS = 10_000


def _metaspace_tokenizer() -> Any:
    """A SentencePiece-like tokenizer: words carry a leading "▁" that decoding turns into a space,
    and the first token of a decode loses its space (prepend_scheme "first")."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(byte_fallback=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    alphabet = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", *alphabet])
    backend.train_from_iterator(["The café serves crème brûlée, naïve 日本語 text."] * 8, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend)


@pytest.fixture(scope="module", params=["byte-level", "metaspace"])
def tokenizer(request: pytest.FixtureRequest) -> Any:
    return build_tokenizer() if request.param == "byte-level" else _metaspace_tokenizer()


def _stream(tokenizer: Any, ids: list[int], stops: tuple[str, ...] = ()) -> tuple[list[str], TextStream]:
    def decode(part: list[int]) -> str:
        return str(tokenizer.decode(part, skip_special_tokens=True))

    text = TextStream(decode, frozenset({EOS}), stops, prompt_tokens=3, backend="test")
    deltas = []
    for token in ids:
        deltas.append(text.feed(token))
        if text.finished:
            break
    deltas.append(text.final().delta)
    return deltas, text


def _random_ids(tokenizer: Any, rng: random.Random, length: int) -> list[int]:
    return [rng.randrange(len(tokenizer)) for _ in range(length)]


def test_deltas_join_to_one_decode_of_the_whole(tokenizer: Any) -> None:
    rng = random.Random(0)
    for _ in range(200):  # random ids split multi-byte characters and mix special tokens in
        ids = _random_ids(tokenizer, rng, rng.randrange(1, 40))
        deltas, text = _stream(tokenizer, ids)
        whole = tokenizer.decode(ids, skip_special_tokens=True)
        assert "".join(deltas) == text.final().result.text == whole  # type: ignore[union-attr]
        assert text.final().result.completion_tokens == len(ids)  # type: ignore[union-attr]


def test_real_text_streams_in_order_and_complete(tokenizer: Any) -> None:
    ids = tokenizer.encode("The café serves crème brûlée, naïve 日本語 text.", add_special_tokens=False)
    deltas, _ = _stream(tokenizer, ids)
    assert "".join(deltas) == tokenizer.decode(ids)
    assert sum(bool(d) for d in deltas) > 3, "text should arrive piece by piece, not at the end"


def test_a_stop_string_cuts_the_text_and_is_never_emitted(tokenizer: Any) -> None:
    rng = random.Random(1)
    checked = 0
    for _ in range(200):
        ids = _random_ids(tokenizer, rng, 30)
        full = tokenizer.decode(ids, skip_special_tokens=True)
        stop = full[5:8]
        if len(stop) < 3 or "\ufffd" in full[:8]:  # a stop must be text the stream shows
            continue
        deltas, text = _stream(tokenizer, ids, (stop,))
        assert text.finished and text.stopped_by == stop and text.finish_reason == "stop"
        assert "".join(deltas) == full[: full.find(stop)]
        checked += 1
    assert checked > 20


def test_eos_ends_the_stream_and_counts_as_a_token(tokenizer: Any) -> None:
    ids = tokenizer.encode("The café serves", add_special_tokens=False)
    deltas, text = _stream(tokenizer, [*ids, EOS, *ids])
    result = text.final().result
    assert result is not None
    assert "".join(deltas) == tokenizer.decode(ids) and result.finish_reason == "stop"
    assert result.completion_tokens == len(ids) + 1 and result.token_ids == ids


def test_a_possible_stop_start_is_held_back_until_it_is_not_one() -> None:
    tokenizer = build_tokenizer()
    ids = tokenizer.encode("The capital of France", add_special_tokens=False)
    deltas, text = _stream(tokenizer, ids, ("France is",))
    assert text.finish_reason == "length" and not any("France" in d for d in deltas[:-1])
    assert deltas[-1].endswith("France"), "the held-back start is released by the last event"
