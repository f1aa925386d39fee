"""`sec-data stats DIR`: videos, objects, frames, resolutions and visibility of a shard directory."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sec_train.data.format import iter_records, read_index


def collect(shard_dir: str | Path) -> dict[str, Any]:
    """Counts and histograms over every sample header of a shard directory."""
    index = read_index(shard_dir)
    resolutions, frames, objects, visibility = Counter(), Counter(), Counter(), Counter()
    for info in tqdm(index["shards"], desc="stats", unit="shard"):
        for record in iter_records(Path(shard_dir) / info["name"]):
            header = json.loads(record["json"])
            n = len(header["frame_indices"])
            resolutions[f"{header['width']}x{header['height']}"] += 1
            frames[n] += 1
            objects[len(header["object_ids"])] += 1
            for obj in header["object_ids"]:
                share = len(header["visible"].get(str(obj), [])) / max(n, 1)
                visibility[min(int(share * 10), 9)] += 1  # deciles of frames where visible
    return {
        "videos": index["samples"],
        "objects": index["objects"],
        "frames": index["frames"],
        "shards": len(index["shards"]),
        "bytes": sum(s["bytes"] for s in index["shards"]),
        "resolution": dict(resolutions.most_common()),
        "frames_per_video": dict(sorted(frames.items())),
        "objects_per_video": dict(sorted(objects.items())),
        "visible_fraction": {f"{d * 10}-{d * 10 + 10}%": visibility[d] for d in range(10)},
    }


def _histogram(title: str, counts: dict, width: int = 40) -> list[str]:
    top = max(counts.values(), default=0) or 1
    lines = [title]
    for label, count in counts.items():
        lines.append(f"  {label!s:>12} {count:>8} {'#' * round(width * count / top)}")
    return lines


def main(argv: list[str]) -> int:
    """`sec-data stats DIR [--json]`."""
    parser = argparse.ArgumentParser(prog="sec-data stats", description=__doc__)
    parser.add_argument("dir", help="a shard directory (with index.json)")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    args = parser.parse_args(argv)
    stats = collect(args.dir)
    if args.json:
        print(json.dumps(stats, indent=1))
        return 0
    print(
        f"videos {stats['videos']}  objects {stats['objects']}  frames {stats['frames']}  "
        f"shards {stats['shards']}  {stats['bytes'] / 1e6:.1f} MB"
    )
    for key in ("resolution", "frames_per_video", "objects_per_video", "visible_fraction"):
        print("\n".join(_histogram(key.replace("_", " "), stats[key])))
    return 0
