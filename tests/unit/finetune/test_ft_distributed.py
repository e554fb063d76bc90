"""Data-parallel fine-tuning: 2 processes x batch 2 train exactly like 1 process x batch 4.

Two real processes form a gloo process group (over a file rendezvous, so nothing listens beyond
loopback) and each runs the real `lmf finetune`; accelerate wraps the model in DDP as it does
under `accelerate launch` or torchrun.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmfoundry.errors import InvalidInputError
from lmfoundry.finetune.config import finetune_config_from_dict
from lmfoundry.finetune.train.distributed import Ranks, launched_world_size, make_ranks


def _equal_length_records(tokenizer_dir: Path, path: Path) -> Path:
    """20 distinct records whose prompts and summaries all have the same token counts.

    Then every process's mean loss weighs tokens like the single process's mean does, and the
    averaged gradients of 2 x 2 examples equal the gradient of the 4 examples together.
    """
    from transformers import AutoTokenizer

    from lmfoundry.finetune.data.templates import plain
    from lmfoundry.finetune.data.tokenize import IGNORE_INDEX, tokenize_example

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    by_shape: dict[tuple[int, int], list[dict[str, str]]] = {}
    for i in range(400):
        dialogue = f"Person1: Is {i} ready? Person2: Yes, {i * 7 % 100} is."
        record = {"dialogue": dialogue, "summary": f"{i} is ready."}
        example = tokenize_example(tokenizer, *plain(record, "summarization"), max_length=64)
        targets = sum(label != IGNORE_INDEX for label in example["labels"])
        by_shape.setdefault((len(example["input_ids"]), targets), []).append(record)
    records = max(by_shape.values(), key=len)[:20]
    assert len(records) == 20
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _config_file(model: Path, data: Path, out: Path, batch: int) -> Path:
    config = {
        "model": {"name": str(model)},
        # 5 validation examples: the processes' shares differ (3 and 2), which must not hang the run
        "data": {
            "path": str(data),
            "template": "plain",
            "max_length": 64,
            "eval_limit": 8,
            "validation_fraction": 0.25,
        },
        "method": {"name": "lora", "options": {"lora_dropout": 0.0}},
        "training": {
            "batch_size": batch,
            "max_steps": 3,
            "eval_every": 2,
            "save_every": 0,
            "threads": 1,
            "lr": 1e-2,
        },
        "output_dir": str(out / "run"),
    }
    finetune_config_from_dict(config)  # valid as written
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def single_run(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the training data, the run folder) of 1 process x batch 4, which the launched runs match."""
    root = tmp_path_factory.mktemp("single")
    data = _equal_length_records(tiny_llama_dir, root / "train.jsonl")
    single = _lmf_finetune(_config_file(tiny_llama_dir, data, root, batch=4), 1, root)
    assert single.returncode == 0, single.stderr[-3000:]
    return data, root / "run"


_RANK_SCRIPT = """
import sys
import torch.distributed as dist
# the process group over a file rendezvous: no TCP server (torchrun's store listens on every
# address); accelerate then finds the group initialised and uses it, as under a launcher
dist.init_process_group("gloo", init_method=sys.argv[1], rank=int(sys.argv[2]), world_size=int(sys.argv[3]))
from lmfoundry.cli.main import main
sys.exit(main(sys.argv[4:]))
"""


def _lmf_finetune(
    config: Path, world: int, tmp_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`lmf finetune --json` as one process, or as `world` ranks of one process group."""
    args = ["finetune", str(config), "--json", "--no-track"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(extra_env or {})}
    if world == 1:
        command = [sys.executable, "-m", "lmfoundry.cli.main", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    if sys.platform.startswith("linux"):  # gloo's own sockets on loopback only
        env["GLOO_SOCKET_IFNAME"] = "lo"
    rendezvous = f"file://{tmp_path / 'rendezvous'}"
    ranks = []
    for rank in range(world):
        rank_env = {**env, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world)}
        rank_env["LOCAL_WORLD_SIZE"] = str(world)
        command = [sys.executable, "-c", _RANK_SCRIPT, rendezvous, str(rank), str(world), *args]
        ranks.append(
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=rank_env)
        )
    outputs = [p.communicate(timeout=300) for p in ranks]
    code = max(p.returncode for p in ranks)
    return subprocess.CompletedProcess(
        ranks[0].args, code, "".join(o[0] for o in outputs), "".join(o[1] for o in outputs)
    )


def _weights(run: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


@pytest.mark.skipif(shutil.which("true") is None, reason="needs a POSIX system")
def test_two_processes_train_like_one_with_twice_the_batch(
    single_run: tuple[Path, Path], tiny_llama_dir: Path, tmp_path: Path
) -> None:
    import torch

    data, single = single_run
    ddp_dir = tmp_path / "ddp"
    ddp_dir.mkdir()
    ddp = _lmf_finetune(_config_file(tiny_llama_dir, data, ddp_dir, batch=2), 2, tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    # only the main process reports and writes the run folder
    reports = [json.loads(line) for line in ddp.stdout.splitlines() if line.startswith("{")]
    summary = json.loads((ddp_dir / "run" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 3, ddp.stderr[-3000:]
    assert len([r for r in reports if "processes" in r]) <= 1

    expected = json.loads((single / "summary.json").read_text())
    assert summary["tokens"] == expected["tokens"]
    assert expected["data"]["eval"]["n_examples"] == 5
    assert summary["final_step_loss"] == pytest.approx(expected["final_step_loss"], abs=1e-5)
    assert summary["eval_loss"] == pytest.approx(expected["eval_loss"], abs=1e-5)
    ours, theirs = _weights(ddp_dir / "run"), _weights(single)
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-5, rtol=1e-4)
    # and the training did move the adapter (B starts at zero)
    assert any(float(t.abs().max()) > 0 for n, t in ours.items() if "lora_B" in n)


@pytest.mark.skipif(shutil.which("true") is None, reason="needs a POSIX system")
def test_fsdp_two_processes_match_one_and_save_a_gathered_adapter(
    single_run: tuple[Path, Path], tiny_llama_dir: Path, tmp_path: Path
) -> None:
    """FSDP2 (what `accelerate launch` with an FSDP config asks for via ACCELERATE_USE_FSDP): each
    process holds half of every LoRA matrix, and the saved adapter is the gathered whole."""
    import torch

    from lmfoundry.finetune.train.artifacts import load_tuned

    data, single = single_run
    fsdp_dir = tmp_path / "fsdp"
    fsdp_dir.mkdir()
    env = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}
    fsdp = _lmf_finetune(_config_file(tiny_llama_dir, data, fsdp_dir, batch=2), 2, tmp_path, env)
    assert fsdp.returncode == 0, fsdp.stderr[-3000:]
    assert "Warning" not in fsdp.stderr, fsdp.stderr[-3000:]

    summary = json.loads((fsdp_dir / "run" / "summary.json").read_text())
    expected = json.loads((single / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["tokens"] == expected["tokens"]
    assert summary["final_step_loss"] == pytest.approx(expected["final_step_loss"], abs=1e-5)
    assert summary["eval_loss"] == pytest.approx(expected["eval_loss"], abs=1e-5)
    assert not (fsdp_dir / "run" / "checkpoint").exists()  # shards are not resumable checkpoints
    ours, theirs = _weights(fsdp_dir / "run"), _weights(single)
    assert ours.keys() == theirs.keys()
    for name in ours:  # whole matrices (rank 8 x width), not one process's half
        assert ours[name].shape == theirs[name].shape, name
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-5, rtol=1e-4)

    # the saved adapter reloads to the single-process model's outputs
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    logits = []
    for run in (fsdp_dir / "run", single):
        model, _, _ = load_tuned(run)
        with torch.no_grad():
            logits.append(model(input_ids=ids).logits)
    torch.testing.assert_close(logits[0], logits[1], atol=1e-4, rtol=1e-4)


def test_single_process_has_no_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launched_world_size() == 1
    ranks = make_ranks("auto")
    assert ranks.accelerator is None and (ranks.rank, ranks.world, ranks.is_main) == (0, 1, True)
    assert ranks.total(2.5) == 2.5 and ranks.mean(2.5) == 2.5
    assert make_ranks("off").accelerator is None
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert launched_world_size() == 4
    assert make_ranks("off") == Ranks()


def test_unknown_accelerate_mode_is_refused(ft_config: Callable[..., dict[str, Any]]) -> None:
    with pytest.raises(InvalidInputError, match="training.accelerate"):
        finetune_config_from_dict(ft_config(training={"accelerate": "sometimes"}))
    with pytest.raises(InvalidInputError, match="training.accelerate"):
        make_ranks("yes")


def test_ppo_refuses_a_launched_run(
    ft_config: Callable[..., dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lmfoundry.errors import LmfError
    from lmfoundry.finetune.align.ppo_loop import run_ppo
    from lmfoundry.finetune.train.stage import StageJob

    config = finetune_config_from_dict(ft_config(stage="ppo", align={"reward_model": str(tmp_path)}))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LmfError, match="stage ppo runs in one process"):
        run_ppo(StageJob(config, tmp_path, progress=False))


def test_resume_is_refused_under_fsdp_and_no_checkpoint_is_written(tmp_path: Path) -> None:
    """Under FSDP each process holds a shard of the weights and the optimizer state: a checkpoint
    from one process could not restore the run, so none is written and `--resume` says why."""
    from types import SimpleNamespace

    from lmfoundry.errors import LmfError
    from lmfoundry.finetune.train import loop as train_loop

    sharded = SimpleNamespace(ranks=Ranks(cpu_fsdp=True))
    assert sharded.ranks.sharded and sharded.ranks.is_main
    train_loop._save_on_main(sharded, tmp_path / "checkpoint")  # type: ignore[arg-type]
    assert not (tmp_path / "checkpoint").exists()
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "state.pt").write_bytes(b"")
    with pytest.raises(LmfError, match="--resume is not supported under FSDP"):
        train_loop.load_checkpoint(sharded, tmp_path / "checkpoint")  # type: ignore[arg-type]


def _pretrain_config_file(out: Path, batch: int) -> Path:
    """A tiny from-scratch run (BPE trained on 40 templated documents) at `batch` blocks a process."""
    animals, verbs = ["cat", "dog", "bird", "fish", "horse", "mouse"], ["sees", "likes", "follows", "finds"]
    docs = [
        " ".join(
            f"The {animals[(i + j) % 6]} {verbs[(i * j) % 4]} the {animals[(i + 2 * j) % 6]}."
            for j in range(6)
        )
        for i in range(40)
    ]
    corpus = out / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    config = {
        "stage": "pretrain",
        "data": {"path": str(corpus), "max_length": 32, "validation_fraction": 0.2, "eval_limit": 6},
        "pretrain": {
            "vocab_size": 300,
            "layers": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "heads": 4,
            "kv_heads": 2,
            "shard_tokens": 500,
        },  # fmt: skip
        "method": {"name": "full"},
        "training": {
            "max_steps": 3,
            "lr": 1e-2,
            "batch_size": batch,
            "eval_every": 3,
            "save_every": 0,
            "warmup_steps": 1,
            "threads": 1,
        },  # fmt: skip
        "output_dir": str(out / "run"),
    }
    finetune_config_from_dict(config)
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.mark.skipif(shutil.which("true") is None, reason="needs a POSIX system")
def test_fsdp_pretraining_matches_one_process_and_saves_the_whole_model(tmp_path: Path) -> None:
    """`stage: pretrain` under FSDP2 (full weights, tied embeddings): the same losses as one process
    with twice the batch, and `model/` holds every tensor whole, loadable like any model."""
    import torch
    from safetensors.torch import load_file

    runs = {}
    for name, world, batch, env in (("single", 1, 4, {}), ("fsdp", 2, 2, {"ACCELERATE_USE_FSDP": "true"})):
        folder = tmp_path / name
        folder.mkdir()
        done = _lmf_finetune(_pretrain_config_file(folder, batch), world, folder, env)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name] = folder / "run"
    summary, expected = (json.loads((runs[n] / "summary.json").read_text()) for n in ("fsdp", "single"))
    assert summary["processes"] == 2 and summary["tokens"] == expected["tokens"]
    assert summary["eval_loss"] < summary["initial_eval_loss"]
    assert summary["train_loss"] == pytest.approx(expected["train_loss"], abs=1e-5)
    assert summary["eval_loss"] == pytest.approx(expected["eval_loss"], abs=1e-5)
    ours, theirs = (load_file(str(runs[n] / "model" / "model.safetensors")) for n in ("fsdp", "single"))
    assert set(theirs) <= set(ours)  # FSDP's gathered state may also carry the tied head's copy
    for name in theirs:
        assert ours[name].shape == theirs[name].shape, name
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-5, rtol=1e-4)
