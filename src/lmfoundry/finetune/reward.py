"""Reward models: a causal LM turned into a scalar-head scorer of (prompt, response) pairs.

Training uses trl's `RewardTrainer` (pairwise loss -log sigmoid(r_chosen - r_rejected)) on
pairs we tokenize and truncate ourselves (see `preference_data`). The model is transformers'
`*ForSequenceClassification` with one label: the backbone comes from the starting model, the
head is freshly initialised (seeded), and LoRA adapters also train the head (peft's SEQ_CLS
task saves it with the adapter). The score of a sequence is the head's output at its last token.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError


def as_reward_model(causal_lm: Any, tokenizer: Any, seed: int) -> Any:
    """A one-label sequence classifier with `causal_lm`'s backbone weights and a seeded head."""
    import torch
    from transformers import AutoModelForSequenceClassification

    config = causal_lm.config
    config.num_labels = 1
    config.pad_token_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    torch.manual_seed(seed)
    try:
        model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    except ValueError as exc:
        raise LmfError(
            f"{config.model_type} models have no sequence-classification head in transformers"
        ) from exc
    backbone = getattr(model, model.base_model_prefix)
    missing, _ = backbone.load_state_dict(
        getattr(causal_lm, causal_lm.base_model_prefix).state_dict(), strict=False
    )
    if missing:
        raise LmfError(
            f"could not copy the backbone into the reward model (missing {', '.join(missing[:3])})"
        )
    model.eval()
    return model


def load_full_reward_model(folder: Path) -> tuple[Any, Any]:
    """A fully fine-tuned reward model saved with `save_pretrained`."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(str(folder))


def load_reward_model(path: str | Path) -> tuple[Any, Any, Any]:
    """(model, tokenizer, ArtifactInfo) of a `stage: reward` run folder."""
    from lmfoundry.finetune.artifacts import load_tuned

    model, tokenizer, info = load_tuned(path)
    if info.stage != "reward":
        raise LmfError(f"{path} is a {info.stage} run, not a reward model (train one with `stage: reward`)")
    return model, tokenizer, info


def score_sequences(
    model: Any, sequences: Sequence[Sequence[int]], pad_id: int, batch_size: int = 8
) -> list[float]:
    """The reward of each token sequence (prompt + response), right-padded in batches."""
    import torch

    scores: list[float] = []
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start : start + batch_size]
            width = max(len(s) for s in chunk)
            ids = torch.tensor([list(s) + [pad_id] * (width - len(s)) for s in chunk])
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in chunk])
            logits = model(input_ids=ids, attention_mask=mask).logits
            scores.extend(logits[:, 0].float().tolist())
    return scores


def pair_accuracy(model: Any, pairs: Sequence[Any], pad_id: int) -> dict[str, float | None]:
    """Share of pairs whose chosen answer scores above the rejected one, and the mean margin."""
    if not pairs:
        return {"accuracy": None, "margin": None}
    model.eval()
    chosen = score_sequences(model, [p.sequence("chosen") for p in pairs], pad_id)
    rejected = score_sequences(model, [p.sequence("rejected") for p in pairs], pad_id)
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    return {
        "accuracy": sum(m > 0 for m in margins) / len(margins),
        "margin": sum(margins) / len(margins),
    }


def score(path: str | Path, prompt: str, responses: Sequence[str]) -> list[float]:
    """Score each response to `prompt` with a reward model, rendering the prompt as in training."""
    from lmfoundry.finetune.data import encode_pair
    from lmfoundry.finetune.preference_data import render_pair

    if not responses:
        raise LmfError("give at least one response to score")
    model, tokenizer, info = load_reward_model(path)
    sequences = []
    for response in responses:
        record = {"prompt": prompt, "chosen": response, "rejected": response}
        rendered_prompt, rendered_answer, _ = render_pair(record, info.template, tokenizer)
        prompt_ids, answer_ids = encode_pair(tokenizer, rendered_prompt, rendered_answer)
        sequences.append(prompt_ids + answer_ids)
    return score_sequences(model, sequences, model.config.pad_token_id or 0)
