"""Direct preference optimisation with trl's `DPOTrainer`, plus a held-out preference check.

With LoRA the reference model is the starting model itself with the adapter switched off (trl
does this when given a peft config), so DPO needs one copy of the weights. The held-out check
scores pairs the trainer never saw, before and after training:

- `logp_accuracy`: share of pairs where log pi(chosen) > log pi(rejected) (summed over answer
  tokens): the policy's own ranking, defined for the starting model too;
- `implicit_accuracy`: share where the implicit reward beta * (log pi - log pi_ref) of chosen
  beats rejected's (0.0 for the starting model, where pi = pi_ref gives ties);
- `implicit_margin`: its mean difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from lmfoundry.finetune.data.preferences import completion_logps
from lmfoundry.finetune.train import trl_stage
from lmfoundry.finetune.train.trl_stage import TrlSetup


def preference_check(
    model: Any, pairs: Sequence[Any], beta: float, reference: dict[str, list[float]] | None = None
) -> dict[str, Any]:
    """Held-out preference metrics of `model` (see the module docstring)."""

    if not pairs:
        return {"logp_accuracy": None, "implicit_accuracy": None, "implicit_margin": None}
    chosen = completion_logps(model, pairs, "chosen")
    rejected = completion_logps(model, pairs, "rejected")
    result: dict[str, Any] = {
        "logp_accuracy": sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(pairs),
        "logps": {"chosen": chosen, "rejected": rejected},
    }
    if reference is not None:
        margins = [
            beta * ((c - rc) - (r - rr))
            for c, r, rc, rr in zip(chosen, rejected, reference["chosen"], reference["rejected"], strict=True)
        ]
        result["implicit_accuracy"] = sum(m > 0 for m in margins) / len(margins)
        result["implicit_margin"] = sum(margins) / len(margins)
    return result


def without_adapter(model: Any) -> Any:
    """A context in which a peft model runs as its base (the DPO reference)."""
    disable = getattr(model, "disable_adapter", None)
    return disable() if disable is not None else nullcontext()


def _prompt_text(pair: Any, tokenizer: Any) -> str:
    """The prompt trl will tokenize: the kept end of it when `build_pairs` had to truncate."""
    full = tokenizer(pair.prompt, add_special_tokens=False)["input_ids"]
    if len(full) <= len(pair.prompt_ids):
        return str(pair.prompt)
    return str(tokenizer.decode(pair.prompt_ids, skip_special_tokens=False))


def train_dpo(
    model: Any, tokenizer: Any, train_pairs: Sequence[Any], eval_pairs: Sequence[Any], setup: TrlSetup
) -> Any:
    """Build and run trl's DPOTrainer; return it (its `.model` is the trained policy)."""
    import copy

    from datasets import Dataset, disable_progress_bars
    from trl import DPOConfig, DPOTrainer

    def rows(pairs: Sequence[Any]) -> Any:
        return Dataset.from_list(
            [
                {"prompt": _prompt_text(p, tokenizer), "chosen": p.chosen, "rejected": p.rejected}
                for p in pairs
            ]
        )

    disable_progress_bars()
    config = setup.config
    args = trl_stage.trainer_arguments(
        DPOConfig,
        config.training,
        setup.run_dir,
        bool(eval_pairs),
        beta=config.align.beta,
        loss_type=[config.align.loss_type],
        max_length=config.data.max_length,
        precompute_ref_log_probs=False,
    )
    return trl_stage.fit(
        DPOTrainer,
        setup,
        model=model,
        ref_model=copy.deepcopy(model).eval() if setup.peft_config is None else None,
        args=args,
        train_dataset=rows(train_pairs),
        eval_dataset=rows(eval_pairs) if eval_pairs else None,
        processing_class=tokenizer,
    )
