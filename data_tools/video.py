"""Reading video files with PyAV (an optional dependency: the `data` extra)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np


def require_av() -> ModuleType:
    """Imports PyAV, or explains how to get it."""
    try:
        import av
    except ImportError as err:
        raise ImportError("reading or writing mp4 needs PyAV: pip install 'sec-train[data]' (or av)") from err
    return av


def read_frames(path: str | Path, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (index, uint8 [H, W, 3]) for the wanted frame indices only, in increasing order.

    Decoding is sequential (the codec needs the frames in between) but only the wanted frames
    are converted to RGB and kept, so memory holds one frame at a time.
    """
    av = require_av()
    wanted = sorted(set(indices))
    if not wanted:
        return
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        position, next_wanted = 0, 0
        for frame in container.decode(stream):
            if position == wanted[next_wanted]:
                yield position, frame.to_ndarray(format="rgb24")
                next_wanted += 1
                if next_wanted == len(wanted):
                    return
            position += 1
    raise ValueError(f"{path}: has {position} frames, frame {wanted[next_wanted]} was asked for")
