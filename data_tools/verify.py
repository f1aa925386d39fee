"""`sec-data verify DIR`: decodes every sample of a shard directory and reports each bad one."""

from __future__ import annotations

import argparse
import hashlib
import io
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from sec_train.data.format import decode_record, iter_records, read_index, rle_to_mask
from sec_train.types import VideoSample


def check_sample(sample: VideoSample) -> None:
    """Decodes every frame and mask; raises ValueError on the first problem."""
    h, w = sample.header["height"], sample.header["width"]
    for i, jpeg in enumerate(sample.frames):
        try:
            image = Image.open(io.BytesIO(jpeg))
            image.load()
        except Exception as err:
            raise ValueError(f"frame {i}: not a decodable image ({err})") from err
        if image.size != (w, h):
            raise ValueError(f"frame {i} is {image.size[0]}x{image.size[1]}, header says {w}x{h}")
    for obj, row in zip(sample.header["object_ids"], zip(*sample.masks)):
        visible = [i for i, rle in enumerate(row) if rle is not None and rle_to_mask(rle, h, w).any()]
        if visible != sample.header["visible"].get(str(obj)):
            raise ValueError(
                f"object {obj}: visible on {visible}, header says {sample.header['visible'].get(str(obj))}"
            )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_shard(path: Path, info: dict[str, Any]) -> list[str]:
    """Problems of one shard, each naming the shard and, where it applies, the key."""
    if not path.is_file():
        return [f"{path.name}: missing"]
    problems = []
    if path.stat().st_size != info["bytes"] or _sha256(path) != info["sha256"]:
        problems.append(f"{path.name}: size or checksum differs from index.json")
    keys = []
    try:
        for record in iter_records(path):
            keys.append(record.get("__key__"))
            try:
                check_sample(decode_record(record, path.name))
            except ValueError as err:
                problems.append(f"{path.name} key {keys[-1]}: {err}")
    except Exception as err:
        problems.append(f"{path.name}: unreadable after {len(keys)} samples ({err!r})")
    if keys != info["keys"] and not any("unreadable" in p for p in problems):
        problems.append(f"{path.name}: holds keys {keys[:3]}..., index.json lists {info['keys'][:3]}...")
    return problems


def verify(shard_dir: str | Path) -> list[str]:
    """Every problem found in a shard directory (empty when all is well)."""
    index = read_index(shard_dir)
    problems = []
    for info in tqdm(index["shards"], desc="verify", unit="shard"):
        problems += verify_shard(Path(shard_dir) / info["name"], info)
    return problems


def main(argv: list[str]) -> int:
    """`sec-data verify DIR`."""
    parser = argparse.ArgumentParser(prog="sec-data verify", description=__doc__)
    parser.add_argument("dir", help="a shard directory (with index.json)")
    args = parser.parse_args(argv)
    problems = verify(args.dir)
    for problem in problems:
        print(problem)
    index = read_index(args.dir)
    print(f"{len(index['shards'])} shards, {index['samples']} samples: {len(problems)} problems")
    return 1 if problems else 0
