"""Tiny random models and a tiny tokenizer, built in-process for unit tests (no hub, no files shipped)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Person1: Hello, how are you? Person2: I am fine, thank you.",
    "Summarize the dialogue. ### Instruct: ### Output: ### End",
    "What is the capital of France? Paris is the capital of France.",
    "assert statement raise AssertionError when debug is true 0123456789",
]


def build_tokenizer(vocab_size: int = 384) -> Any:
    """A byte-level BPE tokenizer trained on a few sentences, with a ChatML chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        pad_token="<pad>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(kind: str = "llama", vocab_size: int = 384, seed: int = 0, **overrides: Any) -> Any:
    """A randomly initialised tiny Llama- or Qwen2-style causal LM in fp32."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    common: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    common.update(overrides)
    config = LlamaConfig(**common) if kind == "llama" else Qwen2Config(**common)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    return model


def save_tiny(path: Path, kind: str = "llama", seed: int = 0, **overrides: Any) -> Path:
    """Write a tiny model + tokenizer directory (loadable with from_pretrained) and return it."""
    tokenizer = build_tokenizer()
    model = build_model(kind, vocab_size=len(tokenizer), seed=seed, **overrides)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_tiny_gguf(out: Path) -> Path:
    """The tiny random Llama as an fp32 GGUF file that llama.cpp loads (about 5 s)."""
    from lmfoundry.quantize.gguf import write_f32_gguf

    tokenizer = build_tokenizer()
    model = build_model("llama", vocab_size=len(tokenizer))
    model.config.architectures = ["LlamaForCausalLM"]
    return write_f32_gguf(model, tokenizer, out, name="tiny")


def save_tiny_lora(base_dir: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter for the tiny model at `base_dir` with non-identity weights (so it changes outputs)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    torch.manual_seed(seed)  # after loading: the LoRA init draws from this seed
    lora = LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False
    )
    with warnings.catch_warnings():  # peft reads transformers' deprecated `is_gradient_checkpointing`
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        get_peft_model(model, lora).save_pretrained(out)
    return out
