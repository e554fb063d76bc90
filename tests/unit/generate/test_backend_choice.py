"""What `auto` runs a model on, the float16 GGUF it uses for store entries, and prompt-lookup
speculative decoding (same greedy output, llama.cpp only)."""

from __future__ import annotations

from pathlib import Path

import pytest

import lmfoundry
from lmfoundry.errors import InvalidInputError
from lmfoundry.generate import backend_choice
from lmfoundry.generate.backend_choice import choose_backend
from lmfoundry.models import store
from lmfoundry.models.fast_gguf import FAST_GGUF

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")


def test_auto_table(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = dict(kind="store", has_gguf=False, has_adapters=False, quantized=False)
    assert choose_backend("auto", **plain) == "transformers"
    assert choose_backend("auto", **plain, fast_gguf=True) == "llama_cpp"
    assert choose_backend("auto", **{**plain, "has_adapters": True}, fast_gguf=True) == "transformers"
    assert choose_backend("auto", **{**plain, "quantized": True}, fast_gguf=True) == "transformers"
    assert choose_backend("auto", **{**plain, "kind": "gguf", "has_gguf": True}) == "llama_cpp"
    assert choose_backend("auto", **{**plain, "quantized": True}, gguf_only=True) == "llama_cpp"
    assert choose_backend("transformers", **plain, fast_gguf=True) == "transformers"
    monkeypatch.setattr(backend_choice, "llama_cpp_available", lambda: False)
    assert choose_backend("auto", **plain, fast_gguf=True) == "transformers"


@pytest.fixture
def tiny_entry(tiny_llama_dir: Path, lmf_home: Path) -> str:
    store.pull(str(tiny_llama_dir), name="tiny")
    return "tiny"


def test_auto_runs_a_store_entry_on_its_float16_gguf(
    tiny_entry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    model = lmfoundry.load(tiny_entry, threads=1)
    assert model.backend == "llama_cpp"
    assert (store.entry_dir(tiny_entry) / FAST_GGUF).is_file()
    assert "creating" in capsys.readouterr().err  # the one-time progress message
    reference = lmfoundry.load(tiny_entry, backend="transformers")
    prompt = "The quick brown fox"
    assert model.prompt_ids(prompt) == reference.prompt_ids(prompt)
    assert model.generate(prompt, temperature=0, max_new_tokens=6).completion_tokens >= 1


def test_what_keeps_auto_on_transformers(tiny_entry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert lmfoundry.load(tiny_entry, fast_gguf=False).backend == "transformers"
    monkeypatch.setattr(backend_choice, "llama_cpp_available", lambda: False)
    assert lmfoundry.load(tiny_entry).backend == "transformers"
    assert not (store.entry_dir(tiny_entry) / FAST_GGUF).exists()


def test_explicit_llama_cpp_on_an_entry_without_a_gguf_makes_one(tiny_entry: str) -> None:
    model = lmfoundry.load(tiny_entry, backend="llama_cpp", threads=1)
    assert model.backend == "llama_cpp" and (store.entry_dir(tiny_entry) / FAST_GGUF).is_file()


def test_an_unwritable_store_falls_back_to_transformers_with_a_warning(
    tiny_entry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The float16 GGUF cannot be written (here its lock file's name is taken by a folder, as an
    OSError a read-only store also raises): auto runs the entry on transformers and says why."""
    folder = store.entry_dir(tiny_entry)
    (folder / f".{FAST_GGUF}.lock").mkdir()
    model = lmfoundry.load(tiny_entry, threads=1)
    assert model.backend == "transformers" and not (folder / FAST_GGUF).exists()
    assert "cannot write the float16 GGUF" in capsys.readouterr().err


def test_speculative_refusals(tiny_entry: str) -> None:
    with pytest.raises(InvalidInputError, match="unknown speculative"):
        lmfoundry.load(tiny_entry, speculative="medusa")
    with pytest.raises(InvalidInputError, match="llama.cpp backend; this model loads on transformers"):
        lmfoundry.load(tiny_entry, backend="transformers", speculative="prompt-lookup")


def test_prompt_lookup_gives_the_same_greedy_output(tiny_entry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = lmfoundry.load(tiny_entry, threads=1)
    fast = lmfoundry.load(tiny_entry, threads=1, speculative="prompt-lookup")
    text = "alpha beta gamma delta " * 6  # a prompt whose n-grams the draft can copy
    for prompt in (text, "Hello there"):
        for max_new_tokens in (1, 2, 40):
            want = plain.generate(prompt, temperature=0, max_new_tokens=max_new_tokens)
            got = fast.generate(prompt, temperature=0, max_new_tokens=max_new_tokens)
            assert got.token_ids == want.token_ids and got.text == want.text
            assert got.completion_tokens == want.completion_tokens
    streamed = "".join(fast.stream(text, temperature=0, max_new_tokens=40))
    assert streamed == plain.generate(text, temperature=0, max_new_tokens=40).text
    decoder = fast.runtime._lookup_decoder()  # type: ignore[attr-defined]
    passes: list[int] = []
    feed = decoder.feed
    monkeypatch.setattr(decoder, "feed", lambda tokens: (passes.append(len(tokens)), feed(tokens))[1])
    result = fast.generate(text, temperature=0, max_new_tokens=40)
    assert len(passes) + 1 < result.completion_tokens, "drafts were accepted: fewer passes than tokens"
    sampled = fast.generate(text, temperature=0.8, seed=3, max_new_tokens=12)  # not greedy: plain path
    assert sampled.token_ids == plain.generate(text, temperature=0.8, seed=3, max_new_tokens=12).token_ids


def test_ngram_drafter_copies_what_followed_the_latest_match() -> None:
    from lmfoundry.generate.prompt_lookup import NgramDrafter

    drafter = NgramDrafter([1, 2, 3, 4, 9, 2, 3, 5, 6, 7, 2, 3])
    assert drafter.draft(3) == [5, 6, 7]  # "2 3" last occurred before 5 (the latest earlier match)
    drafter.extend([5])
    assert drafter.draft(2) == [6, 7]  # "2 3 5" is now the longest match
    assert NgramDrafter([1, 2, 3]).draft(4) == []  # no earlier occurrence of any tail
