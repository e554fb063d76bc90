"""The engine on tiny random Llama and Qwen2 models: parity with transformers' generate, stops, streams."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import lmfoundry
from lmfoundry.errors import InvalidInputError
from lmfoundry.generate.engine import LoadedModel
from lmfoundry.types import Message, SamplingParams


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tiny(request: pytest.FixtureRequest, tiny_llama_dir: Path, tiny_qwen2_dir: Path) -> LoadedModel:
    path = tiny_llama_dir if request.param == "llama" else tiny_qwen2_dir
    return lmfoundry.load(str(path), backend="transformers")


def test_greedy_matches_transformers_generate(tiny: LoadedModel) -> None:
    prompt = "The quick brown fox"
    ours = tiny.generate(prompt, temperature=0, max_new_tokens=12)
    ids = torch.tensor([tiny.runtime.encode(prompt)])
    with torch.inference_mode():
        reference = tiny.runtime.model.generate(
            ids, do_sample=False, max_new_tokens=12, eos_token_id=list(tiny.runtime.eos_ids), pad_token_id=3
        )
    expected = [t for t in reference[0, ids.shape[1] :].tolist() if t not in tiny.runtime.eos_ids]
    assert ours.token_ids == expected[: len(ours.token_ids)]
    assert len(ours.token_ids) == len(expected)
    assert ours.prompt_tokens == ids.shape[1]
    assert ours.backend == "transformers"


def test_seeded_sampling_is_reproducible_and_seed_matters(tiny: LoadedModel) -> None:
    params = SamplingParams(temperature=1.0, top_k=50, max_new_tokens=16)
    runs = [tiny.generate("Hello", params, seed=s).token_ids for s in (1, 1, 2)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_stream_pieces_join_to_the_result(tiny: LoadedModel) -> None:
    pieces = list(tiny.stream("Person1: Hello", temperature=0, max_new_tokens=20))
    result = tiny.generate("Person1: Hello", temperature=0, max_new_tokens=20)
    assert "".join(pieces) == result.text


def test_stop_string_cuts_text_and_is_never_streamed(tiny: LoadedModel) -> None:
    full = tiny.generate("The capital", temperature=0, max_new_tokens=24)
    assert len(full.text) > 6, "tiny model produced too little text to place a stop string"
    stop = full.text[3:6]
    cut = tiny.generate("The capital", temperature=0, max_new_tokens=24, stop=[stop])
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.finish_reason == "stop"
    streamed = "".join(tiny.stream("The capital", temperature=0, max_new_tokens=24, stop=[stop]))
    assert streamed == cut.text


def test_max_new_tokens_and_length_finish(tiny: LoadedModel) -> None:
    result = tiny.generate("Hello", temperature=0, max_new_tokens=3)
    assert result.completion_tokens <= 3
    if result.finish_reason == "length":
        assert result.completion_tokens == len(result.token_ids) == 3
    else:  # ended by EOS, which is counted but not part of the text
        assert result.finish_reason == "stop" and len(result.token_ids) == result.completion_tokens - 1
    assert result.ttft_s > 0 and result.total_s >= result.ttft_s


def test_chat_messages_use_the_chat_template(tiny: LoadedModel) -> None:
    ids = tiny.prompt_ids([Message("user", "hi")])
    expected = tiny.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    assert ids == list(expected)


def test_prompt_longer_than_context_is_an_error(tiny: LoadedModel) -> None:
    with pytest.raises(InvalidInputError, match="context length"):
        tiny.generate("fox " * 400, max_new_tokens=2)
