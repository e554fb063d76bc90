"""Train a byte-level BPE tokenizer on a corpus (Hugging Face `tokenizers`), for `stage: pretrain`.

Byte-level, like GPT-2 / Llama-3 / SmolLM: every byte is in the alphabet, so no text is ever
unknown. One special token ends a document (`<|endoftext|>`, also BOS and UNK) and one pads.
The result is a `PreTrainedTokenizerFast` saved like any model's tokenizer, so the pretrained
model folder loads with transformers and every lmf command.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from lmfoundry.errors import LmfError

EOS = "<|endoftext|>"
PAD = "<pad>"


def train_bpe(texts: Iterable[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer of at most `vocab_size` tokens learned from `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    if backend.get_vocab_size() <= 258:
        raise LmfError("the tokenizer corpus is empty: no text to learn merges from")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token=EOS, bos_token=EOS, unk_token=EOS, pad_token=PAD
    )


def tokenizer_hash(tokenizer: Any) -> str:
    """A hash of the tokenizer's full definition (vocabulary, merges, normalisation)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise LmfError("pretraining needs a fast (Rust) tokenizer")
    return hashlib.sha256(backend.to_str().encode()).hexdigest()[:16]


def batch_encoder(tokenizer: Any) -> Any:
    """fn(texts) -> token ids per text, without special tokens (EOS is added between documents)."""

    def encode(texts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    return encode
