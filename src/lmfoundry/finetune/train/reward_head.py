"""The reward model's shape: a causal LM's backbone under a one-label sequence-classification head.

Built here, below the stages, because loading a `stage: reward` run's artifact (`artifacts.py`)
needs it as much as training one does (`align/pairwise.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.quiet import quiet_loading


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

    with quiet_loading():
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(str(folder))
