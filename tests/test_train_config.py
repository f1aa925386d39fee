"""The run schema: recipes load, overrides apply, bad keys and values fail with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from sec_train.train.__main__ import main
from sec_train.train.config import ConfigError, TrainConfig, load_config, to_yaml, with_global_batch

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_and_overrides():
    cfg = load_config(
        None, ["optim.lr=1e-3", "data.train=[a,b]", "model.mode=stage1", "optim.lr_groups={sam2: 0.5}"]
    )
    assert isinstance(cfg, TrainConfig)
    assert cfg.optim.lr == 1e-3 and cfg.data.train == ["a", "b"] and cfg.model.mode == "stage1"
    assert cfg.optim.lr_groups == {"sam2": 0.5}
    assert cfg.max_steps == TrainConfig().max_steps


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown key 'optim.lrr'; did you mean 'optim.lr'?"),
        ("modle.mode=stage1", "unknown key 'modle'; did you mean 'model'?"),
        ("model.trainable.lora.rnk=4", "did you mean 'model.trainable.lora.r'?"),
        ("max_steps=ten", "max_steps"),
        ("model.mode=stage3", "model.mode: invalid value 'stage3', expected one of"),
        ("wandb.mode=sometimes", "wandb.mode: invalid value"),
        ("batch_size=0", "batch_size must be >= 1"),
        ("optim.betas=[0.9]", "optim.betas must hold two values"),
    ],
)
def test_bad_override(override, message):
    with pytest.raises(ConfigError, match="command-line override|must|invalid") as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_bad_key_in_file_names_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  weight_decy: 0.1\n")
    with pytest.raises(
        ConfigError, match=r"r\.yaml: unknown key 'optim.weight_decy'; did you mean 'optim.weight_decay'"
    ):
        load_config(str(recipe))


@pytest.mark.parametrize("recipe", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_recipes_load_and_round_trip(recipe, tmp_path):
    cfg = load_config(str(recipe))
    saved = tmp_path / "resolved.yaml"
    saved.write_text(to_yaml(cfg))
    assert load_config(str(saved)) == cfg


def test_entry_point_reports_bad_key_and_exits_2(capsys):
    assert main(["--config", str(CONFIGS / "toy_stage1.yaml"), "optim.lrr=1"]) == 2
    assert "unknown key 'optim.lrr'; did you mean 'optim.lr'?" in capsys.readouterr().err


def test_global_batch_sets_grad_accum_for_the_world_size():
    cfg = TrainConfig(batch_size=2, grad_accum=3)
    assert with_global_batch(cfg, 2, 8).grad_accum == 2
    assert with_global_batch(cfg, 4, 8).grad_accum == 1
    assert with_global_batch(cfg, 2, None) is cfg
    with pytest.raises(ConfigError, match="global_batch 6 is not a multiple of .* = 2 x 2"):
        with_global_batch(cfg, 2, 6)
