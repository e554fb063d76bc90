"""The alignment stages (reward model, DPO, PPO) from YAML-shaped configs on the tiny Llama."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.finetune.config import finetune_config_from_dict
from lmfoundry.finetune.run import run_finetune

CHOSEN = "The quick brown fox."
REJECTED = "lazy dog dog dog."


@pytest.fixture(scope="module")
def prefs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pairs with a learnable preference: one fixed answer is always preferred over another."""
    path = tmp_path_factory.mktemp("prefs") / "prefs.jsonl"
    rows = [
        {"prompt": f"Question {i}: which animal?", "chosen": CHOSEN, "rejected": REJECTED} for i in range(40)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _config(stage: str, model: Path, data_path: Path, out: Path, **sections: dict[str, Any]) -> Any:
    raw: dict[str, Any] = {
        "stage": stage,
        "model": {"name": str(model)},
        "data": {"path": str(data_path), "template": "plain", "max_length": 48, "eval_limit": 8},
        "training": {
            "max_steps": 6,
            "lr": 5e-3,
            "batch_size": 4,
            "eval_every": 3,
            "save_every": 3,
            "seed": 0,
        },
        "align": {"eval_pairs": 8},
        "output_dir": str(out),
    }
    for key, values in sections.items():
        raw[key] = {**raw.get(key, {}), **values}
    return finetune_config_from_dict(raw)


def _metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reward_run(tiny_llama_dir: Path, prefs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("align") / "reward"
    run_finetune(_config("reward", tiny_llama_dir, prefs, out, training={"max_steps": 8}), progress=False)
    return out


def test_reward_stage_learns_to_rank_and_writes_its_run_folder(reward_run: Path) -> None:
    summary = json.loads((reward_run / "summary.json").read_text())
    assert summary["stage"] == "reward" and summary["heldout_pairs"] == 4
    assert summary["heldout_after"]["accuracy"] == 1.0
    assert summary["heldout_after"]["margin"] > summary["heldout_before"]["margin"] + 1.0
    records = _metrics(reward_run)
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 9))
    assert train[-1]["loss"] < train[0]["loss"] and "accuracy" in train[0] and "margin" in train[0]
    assert any(r["kind"] == "eval" and "eval_loss" in r for r in records)
    assert (reward_run / "curves.png").stat().st_size > 1000
    assert (reward_run / "resolved_config.yaml").is_file()


def test_reward_score_ranks_the_preferred_answer_higher(
    reward_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lmfoundry.cli.main import main
    from lmfoundry.finetune.align.reward import score

    chosen, rejected = score(reward_run, "Question 99: which animal?", [CHOSEN, REJECTED])
    assert chosen > rejected
    assert (
        main(
            [
                "reward",
                "score",
                str(reward_run),
                "--prompt",
                "Question 7: which animal?",
                "--response",
                CHOSEN,
                "--response",
                REJECTED,
                "--json",
            ]
        )
        == 0
    )
    scores = json.loads(capsys.readouterr().out)["scores"]
    assert scores[0] > scores[1]


def test_reward_score_refuses_a_policy_run(tiny_llama_dir: Path, prefs: Path, tmp_path: Path) -> None:
    from lmfoundry.finetune.align.reward import score

    out = tmp_path / "dpo"
    run_finetune(_config("dpo", tiny_llama_dir, prefs, out, training={"max_steps": 1}), progress=False)
    with pytest.raises(LmfError, match="not a reward model"):
        score(out, "q", ["a"])


def test_dpo_raises_the_margin_and_the_adapter_reloads(
    tiny_llama_dir: Path, prefs: Path, tmp_path: Path
) -> None:
    from lmfoundry.finetune.align.dpo import preference_check
    from lmfoundry.finetune.data.preferences import build_pairs
    from lmfoundry.finetune.train.artifacts import load_tuned
    from lmfoundry.models.load import load_hf_model

    out = tmp_path / "dpo"
    summary = run_finetune(_config("dpo", tiny_llama_dir, prefs, out), progress=False)
    assert summary["heldout_before"]["implicit_margin"] == 0.0
    assert (
        summary["heldout_after"]["implicit_accuracy"] == 1.0
        and summary["heldout_after"]["implicit_margin"] > 0.1
    )
    margins = [r["rewards_margins"] for r in _metrics(out) if r["kind"] == "train"]
    assert margins[-1] > margins[0]
    # The saved adapter, reloaded on its base, gives the same held-out margin as the trained model.
    base, tokenizer = load_hf_model(str(tiny_llama_dir))
    records = [json.loads(line) for line in prefs.read_text().splitlines()]
    pairs, _ = build_pairs(records[-4:], tokenizer, "plain", 48)
    reference = preference_check(base, pairs, 0.1)["logps"]
    tuned, _, info = load_tuned(out)
    assert info.stage == "dpo"
    reloaded = preference_check(tuned, pairs, 0.1, reference)
    assert reloaded["implicit_accuracy"] == 1.0 and reloaded["implicit_margin"] > 0.1


class _InterruptAt:
    """A TrainerCallback pressing Ctrl-C once step `step` is done and logged (as between two steps)."""

    def __init__(self, step: int) -> None:
        from transformers import TrainerCallback

        outer = self

        class _Cb(TrainerCallback):  # type: ignore[misc]
            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
                if state.global_step == outer.step and logs and "loss" in logs:
                    raise KeyboardInterrupt

        self.step, self.callback = step, _Cb()


def test_dpo_resume_after_ctrl_c_matches_an_uninterrupted_run(
    tiny_llama_dir: Path, prefs: Path, tmp_path: Path
) -> None:
    straight = run_finetune(_config("dpo", tiny_llama_dir, prefs, tmp_path / "a"), progress=False)
    config = _config("dpo", tiny_llama_dir, prefs, tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        run_finetune(config, progress=False, callbacks=[_InterruptAt(2).callback])
    resumed = run_finetune(config, resume=True, progress=False)
    assert resumed["steps"] == straight["steps"] == 6
    assert resumed["train_loss"] == pytest.approx(straight["train_loss"], rel=1e-4)
    assert resumed["heldout_after"]["implicit_margin"] == pytest.approx(
        straight["heldout_after"]["implicit_margin"], rel=1e-3
    )
    steps = [r["step"] for r in _metrics(tmp_path / "b") if r["kind"] == "train"]
    assert steps == list(range(1, 7))


def _ppo_config(model: Path, data: Path, out: Path, reward: Path, **align: Any) -> Any:
    return _config(
        "ppo",
        model,
        data,
        out,
        data={"max_length": 96},
        training={"max_steps": 8, "lr": 1e-2, "eval_every": 4, "save_every": 4},
        align={
            "reward_model": str(reward),
            "rollout_batch": 8,
            "max_new_tokens": 10,
            "kl_coef": 0.05,
            **align,
        },
    )


def test_ppo_with_a_reward_model_writes_scores_kl_and_curves(
    tiny_llama_dir: Path, prefs: Path, reward_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ppo"
    summary = run_finetune(_ppo_config(tiny_llama_dir, prefs, out, reward_run), progress=False)
    assert summary["eval_before"]["kl"] == 0.0 and summary["eval_after"]["kl"] > 0.0
    records = _metrics(out)
    train = [r for r in records if r["kind"] == "train"]
    keys = {"score", "kl", "reward", "pg_loss", "vf_loss", "clipfrac", "approx_kl", "response_tokens"}
    assert len(train) == 8 and all(keys <= set(r) for r in train)
    assert [r["step"] for r in records if r["kind"] == "eval"] == [0, 4, 8]
    assert (out / "curves.png").is_file() and (out / "adapter" / "lmf_adapter.json").is_file()


def _low_token_share(prompts: list[list[int]], responses: list[list[int]]) -> list[float]:
    """A dense rule reward: the share of response tokens with an id below half the vocabulary."""
    return [sum(t < 192 for t in r) / max(1, len(r)) for r in responses]


def test_ppo_raises_mean_reward_while_kl_stays_bounded(
    tiny_llama_dir: Path, prefs: Path, tmp_path: Path
) -> None:
    from lmfoundry.finetune.align.ppo_loop import run_ppo
    from lmfoundry.finetune.train.stage import run_stage

    config = _ppo_config(tiny_llama_dir, prefs, tmp_path / "ppo", tmp_path / "unused")
    config.method.name, config.method.options = "full", {}
    summary, _ = run_stage(config, functools.partial(run_ppo, reward_fn=_low_token_share), progress=False)
    train = [r for r in _metrics(tmp_path / "ppo") if r["kind"] == "train"]
    first, last = [r["score"] for r in train[:3]], [r["score"] for r in train[-3:]]
    assert sum(last) / 3 > sum(first) / 3 + 0.05
    assert summary["eval_after"]["score"] > summary["eval_before"]["score"] + 0.2
    # The KL penalty keeps the policy near the reference: a few nats over 10 tokens, not a collapse.
    assert all(abs(r["kl"]) < 10.0 for r in train)


def test_ppo_resume_continues_exactly(
    tiny_llama_dir: Path, prefs: Path, reward_run: Path, tmp_path: Path
) -> None:
    from lmfoundry.finetune.align.ppo_loop import run_ppo
    from lmfoundry.finetune.align.reward import load_reward_model, score_sequences
    from lmfoundry.finetune.train.stage import run_stage

    straight = run_finetune(_ppo_config(tiny_llama_dir, prefs, tmp_path / "a", reward_run), progress=False)
    config = _ppo_config(tiny_llama_dir, prefs, tmp_path / "b", reward_run)
    model, _, _ = load_reward_model(reward_run)
    calls = {"n": 0}

    def reward_then_ctrl_c(prompts: list[list[int]], responses: list[list[int]]) -> list[float]:
        calls["n"] += 1
        if calls["n"] == 7:  # eval at step 0, steps 1-4, eval at 4, then step 5 is interrupted
            raise KeyboardInterrupt
        return score_sequences(
            model, [p + r for p, r in zip(prompts, responses, strict=True)], model.config.pad_token_id
        )

    with pytest.raises(KeyboardInterrupt):
        run_stage(config, functools.partial(run_ppo, reward_fn=reward_then_ctrl_c), progress=False)
    resumed = run_finetune(config, resume=True, progress=False)
    assert resumed["steps"] == 8
    assert resumed["eval_after"]["score"] == pytest.approx(straight["eval_after"]["score"], rel=1e-4)
    first = [r for r in _metrics(tmp_path / "a") if r["kind"] == "train"]
    second = [r for r in _metrics(tmp_path / "b") if r["kind"] == "train"]
    assert [r["step"] for r in second] == list(range(1, 9))
    assert [r["score"] for r in second] == pytest.approx([r["score"] for r in first], rel=1e-4)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stage": "ppo"}, "align.reward_model"),
        ({"stage": "dpo", "method": {"name": "qlora"}}, "full or lora"),
        ({"stage": "rlhf"}, "stage must be one of"),
        ({"stage": "dpo", "align": {"beta": 0}}, "align.beta"),
        ({"stage": "ppo", "align": {"reward_model": "x", "lam": 2}}, "align.gamma and align.lam"),
    ],
)
def test_bad_alignment_configs_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        finetune_config_from_dict(overrides)


def test_dpo_on_non_preference_data_names_the_problem(
    tiny_llama_dir: Path, ft_data: Path, tmp_path: Path
) -> None:
    with pytest.raises(LmfError, match="needs preference records"):
        run_finetune(_config("dpo", tiny_llama_dir, ft_data, tmp_path / "x"), progress=False)


def test_resume_without_a_checkpoint_is_refused(tiny_llama_dir: Path, prefs: Path, tmp_path: Path) -> None:
    config = _config("dpo", tiny_llama_dir, prefs, tmp_path / "never")
    with pytest.raises(LmfError, match="nothing to resume"):
        run_finetune(config, resume=True, progress=False)


def test_dpo_starts_from_an_sft_run_and_reloads_on_its_merged_base(
    tiny_llama_dir: Path, prefs: Path, ft_data: Path, tmp_path: Path
) -> None:
    """The documented chain: SFT run -> DPO with model.name = that run folder -> reload."""
    from lmfoundry.finetune.align.dpo import preference_check
    from lmfoundry.finetune.data.preferences import build_pairs
    from lmfoundry.finetune.data.records import train_validation_records
    from lmfoundry.finetune.train.artifacts import load_starting_point, load_tuned

    sft = _config(
        "sft", tiny_llama_dir, ft_data, tmp_path / "sft", data={"max_length": 96}, training={"max_steps": 2}
    )
    run_finetune(sft, progress=False)
    dpo = _config("dpo", tmp_path / "sft", prefs, tmp_path / "dpo")
    summary = run_finetune(dpo, progress=False)
    tuned, tokenizer, info = load_tuned(tmp_path / "dpo")
    assert Path(info.base_model) == (tmp_path / "sft").resolve()
    start, _ = load_starting_point(str(tmp_path / "sft"))
    _, held_out = train_validation_records(dpo.data)  # the pairs summary.json scored
    pairs, _ = build_pairs(held_out, tokenizer, "plain", 48)
    reference = preference_check(start, pairs, 0.1)["logps"]
    reloaded = preference_check(tuned, pairs, 0.1, reference)
    assert reloaded["implicit_margin"] == pytest.approx(summary["heldout_after"]["implicit_margin"], rel=1e-3)
