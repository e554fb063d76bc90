"""`stage: pretrain` and `stage: continued-pretraining`: a tiny model learned from raw text.

The corpus is small and regular (sentences from a few templates) so a 2-layer model's held-out
loss falls within a few steps; the tokenizer is trained on it (BPE, 300 tokens).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.finetune.config import finetune_config_from_dict
from lmfoundry.finetune.run import run_finetune
from support.interrupt import InterruptAt

ANIMALS = ["cat", "dog", "bird", "fish", "horse", "mouse"]
VERBS = ["sees", "likes", "follows", "finds"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 short documents of templated sentences, as JSONL `text` records."""
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    docs = []
    for i in range(60):
        sentences = [
            f"The {ANIMALS[(i + j) % 6]} {VERBS[(i * j) % 4]} the {ANIMALS[(i + 2 * j) % 6]}."
            for j in range(6)
        ]
        docs.append({"text": " ".join(sentences)})
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


def _config(corpus: Path, out: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "stage": "pretrain",
        "data": {"path": str(corpus), "max_length": 32, "validation_fraction": 0.2, "eval_limit": 8},
        "pretrain": {
            "vocab_size": 300,
            "layers": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "heads": 4,
            "kv_heads": 2,
            "shard_tokens": 500,
        },
        "method": {"name": "full"},
        "training": {
            "max_steps": 12,
            "lr": 1e-2,
            "batch_size": 4,
            "eval_every": 6,
            "save_every": 0,
            "warmup_steps": 2,
            "scheduler": "cosine",
            "threads": 1,
        },
        "output_dir": str(out),
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


@pytest.fixture(scope="module")
def scratch_run(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One short from-scratch run (its config file, its summary), shared by the tests below."""
    import yaml

    out = tmp_path_factory.mktemp("scratch")
    path = out / "pretrain.yaml"
    path.write_text(yaml.safe_dump(_config(corpus, out / "run")), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LMF_HOME", str(out / "home"))
        summary = run_finetune(finetune_config_from_dict(yaml.safe_load(path.read_text())), progress=False)
    return path, summary


def test_pretrain_from_scratch_learns_and_saves_a_loadable_model(
    scratch_run: tuple[Path, dict[str, Any]],
) -> None:
    from lmfoundry.models.load import load_hf_model

    path, summary = scratch_run
    assert summary["stage"] == "pretrain" and summary["steps"] == 12
    assert summary["eval_loss"] < summary["initial_eval_loss"]
    assert summary["eval_perplexity"] == pytest.approx(math.exp(summary["eval_loss"]))
    assert 0 < summary["mfu"] < 1 and summary["tokens_per_s"] > 0
    # 12 steps x 4 blocks x 32 tokens, every token a target
    assert summary["tokens"] == 12 * 4 * 32
    assert summary["train_flops"] == 6 * summary["compute_params"] * summary["tokens"]
    assert summary["source_eval"]["docs"]["initial_loss"] == pytest.approx(summary["initial_eval_loss"])
    saved = json.loads((Path(summary["run_dir"]) / "summary.json").read_text())
    assert {"train_loss", "eval_loss", "initial_eval_loss", "eval_perplexity", "tokens_per_s", "mfu"} <= set(
        saved
    )

    # model/ is an ordinary transformers folder with the trained tokenizer: it loads and generates
    model, tokenizer = load_hf_model(summary["adapter_path"])
    assert len(tokenizer) == 300 and model.config.num_hidden_layers == 2
    ids = tokenizer("The cat sees", return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4


def test_pretrain_resumes_exactly_after_an_interrupt(corpus: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    settings = {"training": {"max_steps": 6, "eval_every": 2, "grad_accumulation": 2}}
    straight = finetune_config_from_dict(_config(corpus, tmp_path / "straight", **settings))
    split = finetune_config_from_dict(_config(corpus, tmp_path / "split", **settings))
    expected = run_finetune(straight, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_finetune(split, progress=False, callbacks=[InterruptAt(3)])
    resumed = run_finetune(split, resume=True, progress=False)

    assert resumed["eval_loss"] == pytest.approx(expected["eval_loss"], abs=1e-6)
    assert resumed["initial_eval_loss"] == pytest.approx(expected["initial_eval_loss"], abs=1e-6)
    ours = load_file(str(tmp_path / "split" / "model" / "model.safetensors"))
    theirs = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    for name, tensor in theirs.items():
        assert (ours[name] - tensor).abs().max() < 1e-6, name


def test_continued_pretraining_measures_every_source(
    corpus: Path, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "general"
    folder.mkdir()
    for i in range(10):
        (folder / f"{i}.txt").write_text(
            f"Person{i}: hello there, how are you today? Fine, thanks.", encoding="utf-8"
        )
    config = finetune_config_from_dict(
        _config(
            corpus,
            tmp_path / "run",
            stage="continued-pretraining",
            model={"name": str(tiny_llama_dir)},
            method={"name": "lora"},
            pretrain={"sources": [{"path": str(corpus)}, {"path": str(folder), "weight": 0}]},
            training={"max_steps": 4},
        )
    )
    summary = run_finetune(config, progress=False)
    assert set(summary["source_eval"]) == {"docs", "general"}
    assert summary["data"]["general"]["weight"] == 0.0
    assert summary["source_eval"]["docs"]["loss"] < summary["source_eval"]["docs"]["initial_loss"]
    assert Path(summary["adapter_path"]).name == "adapter"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": {"name": "lora"}}, "method.name must be full"),
        ({"pretrain": {"heads": 3}}, "must divide"),
        ({"pretrain": {"vocab_size": 100}}, "vocab_size"),
        ({"pretrain": {"sources": "docs.jsonl"}}, "list of mappings"),
        ({"stage": "continued-pretraining", "pretrain": {"tokenizer": "x"}}, "own tokenizer"),
    ],
)
def test_bad_pretrain_configs_are_refused(
    change: dict[str, Any], message: str, corpus: Path, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        finetune_config_from_dict(_config(corpus, tmp_path, **change))


def test_bad_sources_are_refused_before_training(corpus: Path, tmp_path: Path) -> None:
    from lmfoundry.errors import LmfError

    bad = [
        ([{"path": str(corpus), "weight": 0}], "weight > 0"),
        ([{"file": str(corpus)}], "needs `path`"),
        ([{"path": str(corpus), "weight": -1}], "weight must be >= 0"),
        ([{"path": str(tmp_path / "missing.jsonl")}], "not found"),
    ]
    for sources, message in bad:
        config = finetune_config_from_dict(
            _config(corpus, tmp_path / message[:4], pretrain={"sources": sources})
        )
        with pytest.raises(LmfError, match=message):
            run_finetune(config, progress=False)


def test_estimate_pretrain_matches_a_short_measured_run(
    scratch_run: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    from lmfoundry.cli.main import main

    path, summary = scratch_run
    tokens = str(summary["tokens"])
    assert (
        main(["estimate", "--pretrain", str(path), "--tokens", tokens, "--measure-steps", "4", "--json"]) == 0
    )
    sized = json.loads(capsys.readouterr().out)
    # the trained tokenizer filled its 300 tokens, so the sized model is the trained one
    assert sized["params"] == summary["compute_params"]
    assert sized["flops"] == summary["train_flops"]
    assert sized["chinchilla_tokens"] == 20 * sized["params"]
    assert sized["memory_bytes"] > 0 and "optimizer" in sized["memory"]
    # wall time at the throughput measured here vs the run's measured training time (busy CI
    # machines: a factor of 4 either way)
    assert summary["train_seconds"] / 4 < sized["seconds"] < summary["train_seconds"] * 4

    assert main(["estimate", "--pretrain", "20M", "--device-tflops", "100", "--mfu", "0.5", "--json"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert spec["tokens"] == 400_000_000 and spec["flops"] == 6 * 20e6 * 400e6
    assert spec["seconds"] == pytest.approx(spec["flops"] / 50e12)
    assert spec["memory_bytes"] is None and spec["notes"]


def test_estimate_pretrain_errors(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lmfoundry.cli.main import main
    from lmfoundry.finetune.train.sizing import parse_param_count

    assert parse_param_count("1.5B") == 1_500_000_000 and parse_param_count("135e6") == 135_000_000
    assert parse_param_count("12m") == 12_000_000 and parse_param_count("1000") == 1000
    assert main(["estimate", "--pretrain", "lots"]) == 1
    assert "neither a config file nor a parameter count" in capsys.readouterr().err
    assert main(["estimate", "--pretrain", str(tmp_path / "missing.yaml")]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["estimate", "--pretrain", "1M", "--device-tflops", "10", "--mfu", "2"]) == 1
    assert "--mfu" in capsys.readouterr().err
    assert main(["estimate"]) == 1
    assert "--pretrain" in capsys.readouterr().err
