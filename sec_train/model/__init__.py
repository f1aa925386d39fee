"""SeC's model: InternVL + SAM 2 + the concept parts, the trainable policy and weight I/O.

Public names resolve lazily, so `from sec_train.model.config import ModelConfig` (used by the
data and trainer configs) does not import transformers' models.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ModelConfig": "sec_train.model.config",
    "TrainableConfig": "sec_train.model.config",
    "LoraConfig": "sec_train.model.config",
    "LossConfig": "sec_train.model.config",
    "SeCModel": "sec_train.model.sec",
    "build_sec_model": "sec_train.model.sec",
    "apply_trainable": "sec_train.model.trainable",
    "save_trainable": "sec_train.model.weights",
    "load_trainable": "sec_train.model.weights",
    "save_model_dir": "sec_train.model.weights",
    "load_model_config": "sec_train.model.weights",
    "Sam2Tracker": "sec_train.model.tracker",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sec_train.model' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
