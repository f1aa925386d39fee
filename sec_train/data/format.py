"""The shard format: one webdataset tar sample per video, and an `index.json` per directory.

A sample with key K (letters, digits, `_` and `-` only) is three kinds of tar members, in order:

- `K.json`: the header, {"source", "video", "height", "width", "fps", "frame_indices",
  "object_ids", "visible"}; `visible` maps an object id (as a string) to the positions of the
  annotated frames where its mask is non-empty.
- `K.rle.json`: `masks[i][j]`, the COCO RLE ({"size": [h, w], "counts": str}) of object
  `object_ids[j]` on annotated frame i, or null where the object is absent.
- `K.00000.jpg`, `K.00001.jpg`, ...: the annotated frames as JPEG, by position.

TRAIN.md documents this for writers that do not use this code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_util
from webdataset.tariterators import group_by_keys, tar_file_iterator

from sec_train.types import VideoSample

FORMAT = "sec-shards/1"
INDEX_NAME = "index.json"
HEADER_KEYS = ("source", "video", "height", "width", "fps", "frame_indices", "object_ids", "visible")
DEFAULT_SHARD_BYTES = 1 << 30


class SampleError(ValueError):
    """A sample that cannot be decoded; the message names its shard and key."""


def sanitize_key(name: str) -> str:
    """A tar-sample key from a video name: webdataset splits member names at the first dot."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def mask_to_rle(mask: np.ndarray) -> dict | None:
    """COCO RLE of a binary [H, W] mask with `counts` as str, or None if the mask is empty."""
    if not mask.any():
        return None
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict, height: int, width: int) -> np.ndarray:
    """Decodes a COCO RLE dict (compressed `counts`, str or bytes) into a bool [H, W] mask."""
    if list(rle.get("size", ())) != [height, width]:
        raise ValueError(f"RLE size {rle.get('size')} is not the video's [{height}, {width}]")
    counts = rle["counts"]
    coded = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_util.decode(coded).astype(bool)


def make_sample(
    key: str,
    *,
    source: str,
    video: str,
    height: int,
    width: int,
    fps: float,
    frame_indices: list[int],
    object_ids: list[int],
    frames: list[bytes],
    masks: list[list[dict | None]],
) -> VideoSample:
    """Builds a `VideoSample`, turning empty RLEs into None and computing `visible`."""
    if len(frames) != len(frame_indices) or len(masks) != len(frames):
        raise ValueError(
            f"{video}: {len(frames)} frames, {len(frame_indices)} indices, {len(masks)} mask rows"
        )
    cleaned: list[list[dict | None]] = []
    visible: dict[str, list[int]] = {str(o): [] for o in object_ids}
    for i, row in enumerate(masks):
        if len(row) != len(object_ids):
            raise ValueError(f"{video}: frame {i} has {len(row)} masks for {len(object_ids)} objects")
        out_row = []
        for obj, rle in zip(object_ids, row):
            present = rle is not None and _rle_area(rle) > 0
            out_row.append(rle if present else None)
            if present:
                visible[str(obj)].append(i)
        cleaned.append(out_row)
    header = {
        "source": source,
        "video": video,
        "height": int(height),
        "width": int(width),
        "fps": float(fps),
        "frame_indices": [int(i) for i in frame_indices],
        "object_ids": [int(o) for o in object_ids],
        "visible": visible,
    }
    return VideoSample(key=sanitize_key(key), shard="", header=header, frames=frames, masks=cleaned)


def _rle_area(rle: dict) -> int:
    counts = rle["counts"]
    coded = {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return int(mask_util.area(coded))


def encode_sample(sample: VideoSample) -> dict[str, bytes]:
    """The tar members of a sample: member suffix -> bytes, in the order they are written."""
    members = {
        "json": json.dumps(sample.header).encode(),
        "rle.json": json.dumps(sample.masks).encode(),
    }
    for i, jpeg in enumerate(sample.frames):
        members[f"{i:05d}.jpg"] = jpeg
    return members


def decode_record(record: dict[str, Any], shard: str) -> VideoSample:
    """Turns a grouped tar record into a `VideoSample`, checking it is complete and consistent.

    Frames stay JPEG bytes and masks stay RLE; this checks structure, not pixels (see
    `data_tools.verify` for that). Raises `SampleError` naming the shard and key.
    """
    key = record.get("__key__", "?")
    try:
        header = json.loads(record["json"])
        missing = [k for k in HEADER_KEYS if k not in header]
        if missing:
            raise ValueError(f"header lacks {missing}")
        masks = json.loads(record["rle.json"])
        n = len(header["frame_indices"])
        frames = [record[f"{i:05d}.jpg"] for i in range(n)]
        if len(masks) != n or any(len(row) != len(header["object_ids"]) for row in masks):
            raise ValueError(f"mask table does not match {n} frames x {len(header['object_ids'])} objects")
    except (KeyError, ValueError) as err:
        raise SampleError(f"shard {shard} key {key}: {err!r}") from err
    return VideoSample(key=key, shard=shard, header=header, frames=frames, masks=masks)


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Streams the grouped raw records (suffix -> bytes) of one shard tar.

    A truncated or corrupt tar raises (tarfile.ReadError or similar) after the intact samples.
    """
    with open(path, "rb") as stream:
        members = ({**member, "__url__": str(path)} for member in tar_file_iterator(stream))
        yield from group_by_keys(members)


class _HashingFile(io.RawIOBase):
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, path: Path):
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._file.write(data)

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class ShardWriter:
    """Writes samples into `<prefix>-<part>.tar` files of about `max_bytes` each.

    A shard is written under `<name>.tmp` and renamed once complete, so an interrupted run never
    leaves a half-written shard under its final name. `close()` returns the shard infos that go
    into `index.json`.

    Args:
        out_dir: directory receiving the shards.
        prefix: shard name prefix.
        max_bytes: a new shard starts once the current one would exceed this.
    """

    def __init__(self, out_dir: str | Path, prefix: str, max_bytes: int = DEFAULT_SHARD_BYTES):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.infos: list[dict[str, Any]] = []
        self._file: _HashingFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._info: dict[str, Any] = {}

    def write(self, sample: VideoSample) -> None:
        members = encode_sample(sample)
        size = sum(len(v) + 1024 for v in members.values())  # payload plus tar headers/padding
        if self._tar is not None and self._file.size + size > self.max_bytes:
            self._finish()
        if self._tar is None:
            self._start()
        for suffix, data in members.items():
            info = tarfile.TarInfo(f"{sample.key}.{suffix}")
            info.size = len(data)
            info.mode = 0o444
            self._tar.addfile(info, io.BytesIO(data))
        self._info["samples"] += 1
        self._info["objects"] += len(sample.header["object_ids"])
        self._info["frames"] += len(sample.frames)
        self._info["keys"].append(sample.key)

    def close(self) -> list[dict[str, Any]]:
        if self._tar is not None:
            self._finish()
        return self.infos

    def _start(self) -> None:
        name = f"{self.prefix}-{len(self.infos):03d}.tar"
        self._file = _HashingFile(self.out_dir / f"{name}.tmp")
        self._tar = tarfile.open(fileobj=self._file, mode="w|")  # noqa: SIM115 - closed in _finish()
        self._info = {"name": name, "samples": 0, "objects": 0, "frames": 0, "keys": []}

    def _finish(self) -> None:
        self._tar.close()
        self._file.close()
        name = self._info["name"]
        os.replace(self.out_dir / f"{name}.tmp", self.out_dir / name)
        self.infos.append({**self._info, "bytes": self._file.size, "sha256": self._file.sha256.hexdigest()})
        self._tar = self._file = None


def write_index(out_dir: str | Path, shards: list[dict[str, Any]]) -> dict[str, Any]:
    """Writes `index.json` (atomically) listing `shards` sorted by name, with totals."""
    shards = sorted(shards, key=lambda s: s["name"])
    index = {
        "format": FORMAT,
        "samples": sum(s["samples"] for s in shards),
        "objects": sum(s["objects"] for s in shards),
        "frames": sum(s["frames"] for s in shards),
        "shards": shards,
    }
    path = Path(out_dir) / INDEX_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, path)
    return index


def read_index(shard_dir: str | Path) -> dict[str, Any]:
    """Reads a directory's `index.json`, with a clear error if it is missing or not ours."""
    path = Path(shard_dir) / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {shard_dir} a directory written by sec-data?")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"{path}: format {index.get('format')!r}, expected {FORMAT!r}")
    return index
