"""Reward models: a causal LM turned into a scalar-head scorer of (prompt, response) pairs.

Training uses trl's `RewardTrainer` (pairwise loss -log sigmoid(r_chosen - r_rejected)) on
pairs we tokenize and truncate ourselves (see `data/preferences.py`). The model is transformers'
`*ForSequenceClassification` with one label: the backbone comes from the starting model, the
head is freshly initialised (seeded), and LoRA adapters also train the head (peft's SEQ_CLS
task saves it with the adapter). The score of a sequence is the head's output at its last token; the model itself is built
by `train/reward_head.py`, which loading a run's artifact needs too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.finetune.data.preferences import render_pair
from lmfoundry.finetune.data.tokenize import encode_pair
from lmfoundry.finetune.train import trl_stage
from lmfoundry.finetune.train.artifacts import load_tuned
from lmfoundry.finetune.train.trl_stage import TrlSetup


def load_reward_model(path: str | Path) -> tuple[Any, Any, Any]:
    """(model, tokenizer, ArtifactInfo) of a `stage: reward` run folder."""

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


def train_reward(
    model: Any, tokenizer: Any, train_pairs: Sequence[Any], eval_pairs: Sequence[Any], setup: TrlSetup
) -> Any:
    """Build and run trl's RewardTrainer on our tokenized pairs; return it (`.model` is trained)."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    def rows(pairs: Sequence[Any]) -> Any:
        return Dataset.from_list(
            [{"chosen_ids": p.sequence("chosen"), "rejected_ids": p.sequence("rejected")} for p in pairs]
        )

    args = trl_stage.trainer_arguments(
        RewardConfig, setup.config.training, setup.run_dir, bool(eval_pairs), max_length=None
    )
    return trl_stage.fit(
        RewardTrainer,
        setup,
        model=model,
        args=args,
        train_dataset=rows(train_pairs),
        eval_dataset=rows(eval_pairs) if eval_pairs else None,
        processing_class=tokenizer,
    )
