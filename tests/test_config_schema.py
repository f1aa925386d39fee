"""Config dataclasses check their own values, document every field, and recipes and saved
`sec_config.json` files go through one dict-to-dataclass path with the same errors."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json

import pytest

from sec_train.data.config import AugmentConfig, DataConfig, Stage1Config, Stage2Config
from sec_train.model.config import LoraConfig, LossConfig, ModelConfig, TrainableConfig
from sec_train.model.weights import CONFIG_FILE, load_model_config, save_model_config
from sec_train.schema import ConfigError
from sec_train.train.config import OptimConfig, TrainConfig, WandbConfig, load_config

SCHEMAS = [
    LoraConfig,
    TrainableConfig,
    LossConfig,
    ModelConfig,
    AugmentConfig,
    Stage1Config,
    Stage2Config,
    DataConfig,
    OptimConfig,
    WandbConfig,
    TrainConfig,
]


@pytest.mark.parametrize(
    ("schema", "kwargs", "message"),
    [
        (LoraConfig, {"r": -1}, "r must be >= 0, got -1"),
        (LoraConfig, {"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
        (LossConfig, {"focal_alpha": 2.0}, "focal_alpha must be in [0, 1], got 2.0"),
        (LossConfig, {"dice": -1.0}, "dice must be >= 0, got -1.0"),
        (TrainableConfig, {"vit": "full"}, "vit: invalid value 'full', expected one of ['frozen', 'lora']"),
        (ModelConfig, {"mode": "stage3"}, "mode: invalid value 'stage3'"),
        (ModelConfig, {"token_attn_init": "zeros"}, "token_attn_init: invalid value 'zeros'"),
        (ModelConfig, {"num_maskmem": 0}, "num_maskmem must be >= 1 or null, got 0"),
        (ModelConfig, {"stage1_tracked_frames": 0}, "stage1_tracked_frames must be >= 1, got 0"),
        (AugmentConfig, {"hflip": 1.5}, "hflip must be in [0, 1], got 1.5"),
        (Stage1Config, {"num_frames": 1}, "num_frames must be >= 2, got 1"),
        (Stage2Config, {"min_refs": 3, "max_refs": 2}, "max_refs must be >= min_refs, got 2"),
        (Stage2Config, {"min_context": 0}, "min_context must be >= 1, got 0"),
        (DataConfig, {"num_workers": -1}, "num_workers must be >= 0, got -1"),
        (DataConfig, {"max_bad_fraction": 2.0}, "max_bad_fraction must be in [0, 1], got 2.0"),
        (OptimConfig, {"lr": 0.0}, "lr must be > 0, got 0.0"),
        (OptimConfig, {"betas": [0.9, 1.0]}, "betas must hold two values in [0, 1), got [0.9, 1.0]"),
        (OptimConfig, {"min_lr_ratio": 1.5}, "min_lr_ratio must be in [0, 1], got 1.5"),
        (WandbConfig, {"mode": "sometimes"}, "mode: invalid value 'sometimes'"),
        (TrainConfig, {"max_nonfinite": 0}, "max_nonfinite must be >= 1, got 0"),
        (TrainConfig, {"val_every": -1}, "val_every must be >= 0, got -1"),
        (TrainConfig, {"precision": "fp16"}, "precision: invalid value 'fp16'"),
    ],
)
def test_post_init_rejects_bad_values_naming_the_key(schema, kwargs, message):
    with pytest.raises(ValueError) as err:
        schema(**kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
def test_every_field_has_a_docstring(schema):
    """Each field assignment in the class body is followed by a string literal (litgpt style)."""
    body = ast.parse(inspect.getsource(schema)).body[0].body
    documented = {
        stmt.target.id
        for stmt, after in zip(body, body[1:])
        if isinstance(stmt, ast.AnnAssign)
        and isinstance(after, ast.Expr)
        and isinstance(after.value, ast.Constant)
        and isinstance(after.value.value, str)
    }
    undocumented = [f.name for f in dataclasses.fields(schema) if f.name not in documented]
    assert not undocumented, f"{schema.__name__} fields without a docstring: {undocumented}"


def _saved_config(tmp_path, **changes):
    """A sec_config.json of the default ModelConfig with nested `changes` ({"a.b": v})."""
    save_model_config(ModelConfig(), tmp_path)
    path = tmp_path / CONFIG_FILE
    raw = json.loads(path.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for key in parents:
            node = node[key]
        node[leaf] = value
    path.write_text(json.dumps(raw))
    return path


def _recipe(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("dotted", "value", "yaml", "message"),
    [
        ("trainable.lora.r", -1, "model:\n  trainable:\n    lora:\n      r: -1\n", "must be >= 0, got -1"),
        ("num_maskmem", 0, "model:\n  num_maskmem: 0\n", "must be >= 1 or null, got 0"),
        ("mode", "stage3", "model:\n  mode: stage3\n", ": invalid value 'stage3', expected one of"),
        ("loss.focal_alpha", 3.0, "model:\n  loss:\n    focal_alpha: 3.0\n", "must be in [0, 1], got 3.0"),
    ],
)
def test_recipe_and_sec_config_give_the_same_error(tmp_path, dotted, value, yaml, message):
    saved = _saved_config(tmp_path, **{dotted: value})
    with pytest.raises(ConfigError) as from_json:
        load_model_config(tmp_path)
    recipe = _recipe(tmp_path, yaml)
    with pytest.raises(ConfigError) as from_yaml:
        load_config(str(recipe))
    # the same key and text, each naming its own file; the recipe key sits under "model."
    assert str(from_json.value).startswith(f"{saved}: {dotted}")
    assert str(from_yaml.value).startswith(f"{recipe}: model.{dotted}")
    assert message in str(from_json.value) and message in str(from_yaml.value)
    assert str(from_json.value).removeprefix(f"{saved}: ") == str(from_yaml.value).removeprefix(
        f"{recipe}: model."
    )


def test_sec_config_unknown_key_names_the_closest_one(tmp_path):
    saved = _saved_config(tmp_path, **{"trainable.lora.dropuot": 0.1})
    with pytest.raises(ConfigError) as err:
        load_model_config(tmp_path)
    assert str(err.value) == (
        f"{saved}: unknown key 'trainable.lora.dropuot'; did you mean 'trainable.lora.dropout'?"
    )
