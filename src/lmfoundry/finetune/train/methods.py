"""Fine-tuning methods as peft configs: which weights train, and how the adapter is shaped.

Every method is peft's own implementation; this module only holds the defaults that suit small
causal LMs and turns `method.name` + `method.options` into a wrapped model:

- ``full``: every parameter trains (no adapter; the run saves a whole model).
- ``lora`` / ``qlora``: low-rank updates on all linear layers; qlora first swaps the frozen base
  linears for 4-bit `QuantLinear`s (`lmfoundry.quantize.modules`).
- ``adalora``: LoRA whose rank budget is re-allocated during training (needs the total steps).
- ``ia3``: learned rescaling vectors on keys, values and the MLP down projection.
- ``prefix``: trainable key/value prefixes on every layer (prefix tuning).
- ``ptuning_v2``: prefix tuning with a reparameterising MLP (`prefix_projection`).
- ``prompt``: trainable soft-prompt embeddings before the input (prompt tuning).
- ``ptuning``: soft prompt produced by an MLP prompt encoder (P-tuning, `PromptEncoderConfig`).
- ``adaption_prompt``: LLaMA-Adapter-style zero-initialised gated prompts on the top layers.
"""

from __future__ import annotations

from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.finetune.config import MethodConfig, check_method
from lmfoundry.quantize.linear import quant_linear_class
from lmfoundry.quantize.modules import quantize_model, register_lora_layers

DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "lora": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": "all-linear"},
    "qlora": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05},
    "adalora": {"init_r": 12, "target_r": 8, "lora_alpha": 16, "target_modules": "all-linear"},
    "ia3": {},
    "prefix": {"num_virtual_tokens": 16},
    "ptuning_v2": {"num_virtual_tokens": 16, "prefix_projection": True, "encoder_hidden_size": 128},
    "prompt": {"num_virtual_tokens": 16},
    "ptuning": {"num_virtual_tokens": 16, "encoder_hidden_size": 128},
    "adaption_prompt": {"adapter_len": 10, "adapter_layers": 2},
}


def _peft_class(name: str) -> Any:
    import peft

    return {
        "lora": peft.LoraConfig,
        "qlora": peft.LoraConfig,
        "adalora": peft.AdaLoraConfig,
        "ia3": peft.IA3Config,
        "prefix": peft.PrefixTuningConfig,
        "ptuning_v2": peft.PrefixTuningConfig,
        "prompt": peft.PromptTuningConfig,
        "ptuning": peft.PromptEncoderConfig,
        "adaption_prompt": peft.AdaptionPromptConfig,
    }[name]


def peft_config(method: MethodConfig, model: Any, total_steps: int, task_type: str = "CAUSAL_LM") -> Any:
    """The peft config for `method` on `model` (None for full fine-tuning).

    User options override the defaults; an unknown option is an InvalidInputError listing the
    valid ones. AdaLoRA needs the run's total step count for its rank schedule.
    """
    import dataclasses

    name = check_method(method.name)
    if name == "full":
        if method.options:
            raise InvalidInputError("method 'full' takes no options")
        return None
    options = {**DEFAULT_OPTIONS[name], **method.options}
    if name == "qlora" and "target_modules" not in options:
        options["target_modules"] = sorted(_quantized_leaf_names(model))
    if name == "adalora":
        options.setdefault("total_step", max(total_steps, 2))
        options.setdefault("tinit", 0)
        options.setdefault("tfinal", 0)
    if name == "adaption_prompt":
        options["adapter_layers"] = min(options["adapter_layers"], model.config.num_hidden_layers)
    cls = _peft_class(name)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidInputError(
            f"method {name!r}: unknown option(s) {', '.join(unknown)} for {cls.__name__} "
            f"(valid: {', '.join(sorted(k for k in known if not k.startswith('_')))})"
        )
    try:
        config = cls(task_type=task_type, **options)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"method {name!r}: invalid options {options}: {exc}") from exc
    if name == "qlora":
        register_lora_layers(config)
    return config


def _quantized_leaf_names(model: Any) -> set[str]:
    cls = quant_linear_class()
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, cls)}


def prepare_model(model: Any, method: MethodConfig, total_steps: int, seed: int) -> Any:
    """Quantize (qlora), then wrap with the method's adapter; return the model to train.

    The adapter's random initialisation is seeded so two runs of one config start equal.
    """
    import torch

    if method.name == "qlora":
        q = method.quant
        quantize_model(model, method=q.method, double_quant=q.double_quant, block_size=q.block_size)
    config = peft_config(method, model, total_steps)
    torch.manual_seed(seed)
    if config is None:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model
    from peft import get_peft_model

    return get_peft_model(model, config)


def trainable_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights counted once."""
    seen: set[int] = set()
    trainable = total = 0
    for parameter in model.parameters():
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        total += parameter.numel()
        trainable += parameter.numel() if parameter.requires_grad else 0
    return trainable, total


def adalora_orthogonal_loss(model: Any) -> Any:
    """AdaLoRA's regulariser, weight x mean ||P P^T - I||_F over its A and B matrices.

    peft adds it only when the model computes the loss itself; our loop computes the loss from
    hidden states (see loss.py), so it adds the same term here.
    """
    import torch

    name = model.active_adapter
    weight = model.peft_config[name].orth_reg_weight
    terms = []
    for param_name, p in model.named_parameters():
        if ("lora_A" in param_name or "lora_B" in param_name) and name in param_name and p.requires_grad:
            cov = p @ p.T if "lora_A" in param_name else p.T @ p
            terms.append(torch.linalg.matrix_norm(cov - torch.eye(*cov.shape), ord="fro"))
    return weight * torch.stack(terms).mean() if terms else 0.0
