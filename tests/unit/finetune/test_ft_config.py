"""Every configs/finetune/*.yaml loads, names its command, and its method options are valid peft options."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.finetune.config import METHODS, finetune_config_from_dict, load_finetune_config

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs" / "finetune"
FILES = sorted(CONFIG_DIR.glob("*.yaml"))


def test_every_method_has_a_shipped_config() -> None:
    shipped = {load_finetune_config(path).method.name for path in FILES}
    assert shipped == set(METHODS)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_shipped_config_loads_and_builds_its_peft_config(path: Path) -> None:
    from lmfoundry.finetune.train.methods import peft_config
    from tiny import build_model

    assert path.read_text().startswith(f"# lmf finetune configs/finetune/{path.name}\n")
    config = load_finetune_config(path)
    model = build_model("llama", vocab_size=384)
    if config.method.name == "qlora":
        from lmfoundry.quantize.modules import quantize_model

        quantize_model(model, method=config.method.quant.method)
    built = peft_config(config.method, model, total_steps=10)
    assert (built is None) == (config.method.name == "full")


def test_overrides_apply_and_are_typed(tmp_path: Path) -> None:
    path = FILES[0]
    config = load_finetune_config(path, ["training.max_steps=7", "training.lr=0.001", "method.options.r=4"])
    assert config.training.max_steps == 7 and config.training.lr == pytest.approx(1e-3)
    assert config.method.options["r"] == 4


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"training": {"lrr": 1}}, "unknown config key"),
        ({"training": {"batch_size": 0}}, "batch_size must be >= 1"),
        ({"training": {"scheduler": "step"}}, "scheduler must be one of"),
        ({"method": {"name": "dora"}}, "unknown fine-tuning method"),
        ({"data": {"validation_fraction": 1.5}}, "validation_fraction"),
        ({"training": {"lr": "fast"}}, "expected a number"),
        ({"training": {"precision": "fp8"}}, "precision must be one of"),
    ],
)
def test_bad_config_is_a_clear_error(data: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        finetune_config_from_dict(data)


def test_unknown_method_option_names_the_valid_ones() -> None:
    from lmfoundry.finetune.train.methods import peft_config
    from tiny import build_model

    config = finetune_config_from_dict({"method": {"name": "lora", "options": {"rank": 4}}})
    with pytest.raises(InvalidInputError, match="unknown option.*rank.*valid:.*lora_alpha"):
        peft_config(config.method, build_model("llama", vocab_size=384), 10)
    full = finetune_config_from_dict({"method": {"name": "full", "options": {"r": 4}}})
    with pytest.raises(InvalidInputError, match="takes no options"):
        peft_config(full.method, None, 10)
