"""The model store: pull a directory, show, list, rm, profiles, and failure paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lmfoundry
from lmfoundry.errors import InvalidInputError, LmfError, ModelNotFoundError
from lmfoundry.models import profile, store
from lmfoundry.models.load import resolve


def test_pull_directory_then_show_list_rm(tiny_llama_dir: Path, lmf_home: Path) -> None:
    folder = store.pull(str(tiny_llama_dir), name="tiny")
    assert folder == lmf_home / "models" / "tiny"
    info = store.show("tiny")
    config = json.loads((tiny_llama_dir / "config.json").read_text())
    import torch  # noqa: F401  (the count below is checked against the real model)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["context_length"] == config["max_position_embeddings"]
    assert info["architecture"] == "LlamaForCausalLM"
    assert info["chat_template"] is True
    assert info["dtype"] == "F32"
    assert info["size_bytes"] > 0
    names = {row["name"]: row["status"] for row in store.list_models()}
    assert names["tiny"] == "pulled" and names["smollm2-135m-instruct"] in ("available", "pulled")
    assert resolve("tiny").kind == "store"
    store.remove("tiny")
    assert not folder.exists()
    with pytest.raises(ModelNotFoundError):
        store.remove("tiny")


def test_failed_pull_leaves_nothing_that_looks_finished(tmp_path: Path, lmf_home: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama", "architectures": ["LlamaForCausalLM"]')
    with pytest.raises(Exception):  # noqa: B017 - any failure must leave the store clean
        store.pull(str(broken), name="broken")
    assert not store.is_pulled("broken")
    leftovers = list((lmf_home / "models").iterdir()) if (lmf_home / "models").exists() else []
    assert leftovers == []


def test_corrupt_and_missing_gguf_are_clear_errors(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"NOTGGUF" + b"\0" * 64)
    with pytest.raises(LmfError, match="not a GGUF file"):
        resolve(str(fake))
    with pytest.raises(ModelNotFoundError, match="not found"):
        resolve(str(tmp_path / "missing.gguf"))


def test_unknown_names_and_bad_names() -> None:
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        resolve("no-such-model")
    with pytest.raises(InvalidInputError):
        store.pull("smollm2-135m-instruct", name="../escape")


def test_hub_id_offline_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE"):
        store.pull("someorg/some-model-that-is-not-cached")


def test_profile_applies_system_prompt_and_sampling(tiny_llama_dir: Path, tmp_path: Path) -> None:
    spec = tmp_path / "profile.yaml"
    spec.write_text(
        f"base: {tiny_llama_dir}\nsystem: Be brief.\nparameters:\n  temperature: 0\n  max_new_tokens: 5\n"
    )
    profile.create("brief", spec)
    model = lmfoundry.load("brief", backend="transformers")
    assert model.defaults.temperature == 0 and model.defaults.max_new_tokens == 5
    from lmfoundry.types import Message

    ids = model.prompt_ids([Message("user", "hi")])
    assert "Be brief." in model.tokenizer.decode(ids)
    assert model.generate([Message("user", "hi")]).completion_tokens <= 5


def test_invalid_profiles_are_rejected(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("system: no base here\n")
    with pytest.raises(InvalidInputError, match="base"):
        profile.create("bad", spec)
    spec.write_text("base: x\nparameters: {top_p: 3}\n")
    with pytest.raises(InvalidInputError, match="top_p"):
        profile.create("bad", spec)
    spec.write_text("base: x\ncolour: blue\n")
    with pytest.raises(InvalidInputError, match="colour"):
        profile.create("bad", spec)
