"""The global random generators of a process as a checkpointable state (JSON, no pickle)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


class RNGState:
    """`state_dict()` captures Python's, NumPy's and torch's (CPU and every CUDA device's) global
    generators; `load_state_dict()` sets them back. Every value is a JSON number, string or list,
    so a checkpoint can store it without pickle."""

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss_next = random.getstate()
        kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return {
            "python": [version, list(internal), gauss_next],
            "numpy": [kind, keys.tolist(), pos, has_gauss, cached_gaussian],
            "torch": torch.get_rng_state().tolist(),
            "cuda": [state.tolist() for state in cuda],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
        kind, keys, pos, has_gauss, cached_gaussian = state["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached_gaussian))
        torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])
