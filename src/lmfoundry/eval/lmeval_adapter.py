"""lm-evaluation-harness interop: evaluate lmfoundry models on lm-eval tasks, offline.

`lmeval_model_class()` defines (once) and registers an `lm_eval.api.model.LM` subclass named
"lmfoundry" -- subclassing is lm-eval's plugin API. It loads a model with
`lmfoundry.load(..., backend="transformers")`, scores log-likelihoods with the underlying HF
model and generates through our engine (same stop handling as everywhere else). lm_eval is
imported only inside functions: it is an optional dependency (`pip install lm-eval`).

Task YAML files with a relative `dataset_kwargs.data_files` are resolved against the YAML's
folder (`load_lmeval_task`), so a task and its local JSONL travel together (configs/lmeval/).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from lmfoundry.config import load_yaml
from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.generate.engine import load_model
from lmfoundry.paths import lmf_home
from lmfoundry.plugins import require
from lmfoundry.types import SamplingParams

REQUIRED_TASK_KEYS = ("task", "dataset_path", "output_type")


# ---------------------------------------------------------------------------------------------
# Scoring math (plain functions over a transformers causal LM; no lm_eval needed)


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of context and continuation, split the way lm-eval's HF model does.

    Trailing spaces of the context move to the continuation, and the continuation's ids are the
    tail of the *joint* encoding, so merges across the boundary are scored as the model sees them.
    """
    stripped = context.rstrip(" ")
    continuation = context[len(stripped) :] + continuation
    whole = tokenizer(stripped + continuation, add_special_tokens=False)["input_ids"]
    context_ids = tokenizer(stripped, add_special_tokens=False)["input_ids"] if stripped else []
    return list(whole[: len(context_ids)]), list(whole[len(context_ids) :])


def prefix_token_id(tokenizer: Any) -> int:
    """What an empty context is conditioned on: BOS when the tokenizer has one, else EOS."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        raise LmfError("the tokenizer has neither a BOS nor an EOS token to condition an empty context on")
    return int(token)


def continuation_logprob(
    model: Any, context_ids: Sequence[int], continuation_ids: Sequence[int], max_length: int
) -> tuple[float, bool]:
    """log P(continuation | context) summed over its tokens, and whether greedy decoding produces it.

    The input is the last `max_length` tokens of context + continuation[:-1] (left truncation).
    """
    import torch

    if not continuation_ids:
        raise InvalidInputError("an lm-eval request has an empty continuation")
    tokens = [*context_ids, *continuation_ids][-(max_length + 1) :]
    inputs = torch.tensor([tokens[:-1]])
    with torch.no_grad():
        logits = model(input_ids=inputs).logits[0].float()
    logprobs = torch.log_softmax(logits[-len(continuation_ids) :], dim=-1)
    target = torch.tensor(tokens[-len(continuation_ids) :])
    picked = logprobs.gather(1, target.unsqueeze(1)).squeeze(1)
    greedy = bool((logprobs.argmax(dim=-1) == target).all())
    return float(picked.sum()), greedy


def rolling_logprob(model: Any, token_ids: Sequence[int], prefix: int, max_length: int) -> float:
    """log P(text) over disjoint rolling windows, each token predicted exactly once (perplexity)."""
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    total = 0.0
    windows = get_rolling_token_windows(list(token_ids), prefix, max_length, context_len=1)
    for context, continuation in map(make_disjoint_window, windows):
        total += continuation_logprob(model, context, continuation, max_length)[0]
    return total


# ---------------------------------------------------------------------------------------------
# The lm-eval model class


@cache
def lmeval_model_class() -> type:
    """The "lmfoundry" lm-eval model class, defined and registered on first use.

    `lm_eval --model lmfoundry --model_args pretrained=NAME` works once this has run. The methods
    are the module functions below; the class only binds them to lm-eval's `LM` base.
    """
    require("lm_eval", extra="lmeval", package="lm-eval")
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model

    @register_model("lmfoundry")
    class LmfoundryLM(LM):  # type: ignore[misc]
        def __init__(
            self, pretrained: Any = None, max_length: int | None = None, max_gen_toks: int = 256, **_: Any
        ):
            super().__init__()
            _attach_model(self, pretrained, max_length, max_gen_toks)

        tokenizer_name = property(_tokenizer_name)
        loglikelihood = _loglikelihood
        loglikelihood_rolling = _loglikelihood_rolling
        generate_until = _generate_until
        apply_chat_template = _apply_chat_template

    return LmfoundryLM


def _attach_model(lm: Any, pretrained: Any, max_length: int | None, max_gen_toks: int) -> None:
    """Load (or take) the model on the transformers backend, whose HF model scores log-likelihoods."""
    if pretrained is None:
        raise LmfError("the lmfoundry lm-eval model needs pretrained=NAME_OR_PATH (or a LoadedModel)")
    loaded = load_model(pretrained, backend="transformers") if isinstance(pretrained, str) else pretrained
    lm.loaded = loaded
    runtime: Any = loaded.runtime
    lm.hf_model = runtime.model
    lm.tokenizer = loaded.tokenizer
    lm.max_length = int(max_length or loaded.context_length)
    lm.max_gen_toks = int(max_gen_toks)


def _tokenizer_name(lm: Any) -> str:
    return str(getattr(lm.tokenizer, "name_or_path", "lmfoundry")).replace("/", "__")


def _loglikelihood(lm: Any, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
    results = []
    for request in requests:
        context, continuation = request.args
        context_ids, continuation_ids = encode_pair(lm.tokenizer, context, continuation)
        if not context_ids:
            context_ids = [prefix_token_id(lm.tokenizer)]
        result = continuation_logprob(lm.hf_model, context_ids, continuation_ids, lm.max_length)
        lm.cache_hook.add_partial("loglikelihood", (context, continuation), result)
        results.append(result)
    return results


def _loglikelihood_rolling(lm: Any, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
    prefix = prefix_token_id(lm.tokenizer)
    results = []
    for request in requests:
        (text,) = request.args
        ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        results.append(rolling_logprob(lm.hf_model, ids, prefix, lm.max_length))
        lm.cache_hook.add_partial("loglikelihood_rolling", (text,), results[-1])
    return results


def _generate_until(lm: Any, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
    results = []
    for request in requests:
        context, gen_kwargs = request.args
        text = lm.loaded.generate(context, _sampling(gen_kwargs, lm.max_gen_toks)).text
        lm.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        results.append(text)
    return results


def _apply_chat_template(
    lm: Any, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
) -> str:
    return str(
        lm.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    )


def _sampling(gen_kwargs: dict[str, Any], default_max: int) -> SamplingParams:
    """lm-eval's generation kwargs (`until`, `max_gen_toks`, `do_sample`, `temperature`) as SamplingParams."""
    until = gen_kwargs.get("until") or []
    stop = tuple([until] if isinstance(until, str) else until)
    sample = bool(gen_kwargs.get("do_sample", False))
    temperature = float(gen_kwargs.get("temperature", 1.0 if sample else 0.0)) if sample else 0.0
    return SamplingParams(
        temperature=temperature, max_new_tokens=int(gen_kwargs.get("max_gen_toks", default_max)), stop=stop
    )


# ---------------------------------------------------------------------------------------------
# Task files and running


def load_lmeval_task(path: str | Path) -> dict[str, Any]:
    """An lm-eval task YAML as a config dict, with relative local data files made absolute."""
    path = Path(path)
    config = load_yaml(path)
    if not isinstance(config, dict):
        raise InvalidInputError(f"{path}: an lm-eval task file is a mapping")
    missing = [k for k in REQUIRED_TASK_KEYS if k not in config]
    if missing:
        raise InvalidInputError(f"{path}: lm-eval task needs {', '.join(missing)}")
    kwargs = dict(config.get("dataset_kwargs") or {})
    files = kwargs.get("data_files")
    if files is not None:
        kwargs["data_files"] = _resolve_files(files, path.parent)
    config["dataset_kwargs"] = kwargs
    return config


def _resolve_files(files: Any, base: Path) -> Any:
    if isinstance(files, str):
        resolved = Path(files) if Path(files).is_absolute() else base / files
        if not resolved.is_file():
            raise LmfError(f"lm-eval task data file not found: {resolved}")
        return str(resolved)
    if isinstance(files, list):
        return [_resolve_files(f, base) for f in files]
    if isinstance(files, dict):
        return {split: _resolve_files(f, base) for split, f in files.items()}
    raise InvalidInputError(
        f"data_files must be a path, a list or a split mapping, got {type(files).__name__}"
    )


def run_harness(
    model: Any,
    tasks: Sequence[str],
    *,
    limit: int | float | None = None,
    num_fewshot: int | None = None,
    include_path: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Run lm-eval tasks (registered names, or paths to task YAMLs) on `model` (a name or LoadedModel).

    Returns `{"results": {task: {metric: value}}, "n_samples": {...}, "versions": {...}}`, the
    part of lm-eval's output that is plain data.
    """
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    specs: list[str | dict[str, Any]] = []
    for task in tasks:
        if task.endswith((".yaml", ".yml")):
            config = load_lmeval_task(task)
            config["dataset_kwargs"].setdefault("cache_dir", str(lmf_home() / "cache" / "datasets"))
            specs.append(config)
        else:
            specs.append(task)
    lm = lmeval_model_class()(pretrained=model)
    output = simple_evaluate(
        model=lm,
        tasks=specs,
        limit=limit,
        num_fewshot=num_fewshot,
        task_manager=TaskManager(include_path=include_path) if include_path else None,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        bootstrap_iters=1000,
        log_samples=False,
    )
    if output is None:
        raise LmfError("lm-eval returned no results")
    return json.loads(
        json.dumps(
            {
                "results": output["results"],
                "n_samples": output.get("n-samples", {}),
                "versions": output.get("versions", {}),
            },
            default=str,
        )
    )
