"""Parallel, resumable conversion of a list of videos into shards.

The videos are split into fixed chunks; a worker process turns one chunk into one or more
shards and then writes the chunk's manifest (`.parts/<prefix>-<chunk>.json`). A chunk whose
manifest and shards exist is skipped by a later run, and since shards are renamed into place
only when complete, an interrupted run leaves at worst `.tmp` files, which the rerun of that
chunk replaces. At the end the manifests are merged into `index.json`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from multiprocessing import Pool
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sec_train.data.format import DEFAULT_SHARD_BYTES, ShardWriter, write_index
from sec_train.types import VideoSample

logger = logging.getLogger(__name__)

Loader = Callable[[Any], VideoSample]


def _manifest_path(out: Path, prefix: str, chunk: int) -> Path:
    return out / ".parts" / f"{prefix}-{chunk:05d}.json"


def _chunk_done(out: Path, prefix: str, chunk: int) -> bool:
    path = _manifest_path(out, prefix, chunk)
    if not path.is_file():
        return False
    shards = json.loads(path.read_text())["shards"]
    return all((out / s["name"]).is_file() and (out / s["name"]).stat().st_size == s["bytes"] for s in shards)


def _convert_chunk(task: tuple[int, list[Any], Loader, Path, str, int]) -> dict[str, Any]:
    chunk, jobs, load, out, prefix, shard_bytes = task
    writer = ShardWriter(out, f"{prefix}-{chunk:05d}", shard_bytes)
    failed = []
    for job in jobs:
        try:
            sample = load(job)
        except Exception as err:  # one unreadable video must not stop a day-long conversion
            failed.append({"video": str(job), "error": repr(err)})
            continue
        writer.write(sample)
    manifest = {"chunk": chunk, "shards": writer.close(), "failed": failed}
    path = _manifest_path(out, prefix, chunk)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest))
    os.replace(tmp, path)
    return manifest


def _check_plan(out: Path, prefix: str, jobs: Sequence[Any], chunk_videos: int) -> None:
    """Refuses to resume into a directory planned with other videos or chunk size."""
    plan = {"prefix": prefix, "chunk_videos": chunk_videos, "jobs": [str(j) for j in jobs]}
    path = out / ".parts" / f"{prefix}-plan.json"
    if path.is_file() and json.loads(path.read_text()) != plan:
        raise ValueError(f"{out} holds a conversion of other videos or chunk size: use a new --out")
    path.write_text(json.dumps(plan))


def convert_videos(
    jobs: Sequence[Any],
    load: Loader,
    out: str | Path,
    *,
    prefix: str = "part",
    workers: int = 4,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    chunk_videos: int = 64,
) -> dict[str, Any]:
    """Converts `load(job)` for every job into shards under `out` and writes `index.json`.

    Args:
        jobs: picklable video descriptions, in a stable order (it defines the chunks).
        load: picklable function reading one job into a `VideoSample`.
        out: the shard directory.
        prefix: shard name prefix.
        workers: worker processes (1 converts in this process).
        shard_bytes: approximate shard size.
        chunk_videos: videos per chunk, the unit of parallelism and of resumption.

    Returns:
        The index; its "failed" list names the videos that could not be read.
    """
    out = Path(out)
    (out / ".parts").mkdir(parents=True, exist_ok=True)
    _check_plan(out, prefix, jobs, chunk_videos)
    chunks = [list(jobs[i : i + chunk_videos]) for i in range(0, len(jobs), chunk_videos)]
    todo = [c for c in range(len(chunks)) if not _chunk_done(out, prefix, c)]
    tasks = [(c, chunks[c], load, out, prefix, shard_bytes) for c in todo]
    progress = tqdm(total=len(jobs), initial=len(jobs) - sum(len(chunks[c]) for c in todo), unit="video")
    if workers > 1 and len(tasks) > 1:
        with Pool(min(workers, len(tasks))) as pool:
            for manifest in pool.imap_unordered(_convert_chunk, tasks):
                progress.update(len(chunks[manifest["chunk"]]))
    else:
        for task in tasks:
            _convert_chunk(task)
            progress.update(len(task[1]))
    progress.close()
    manifests = [json.loads(_manifest_path(out, prefix, c).read_text()) for c in range(len(chunks))]
    index = write_index(out, [s for m in manifests for s in m["shards"]])
    failed = [f for m in manifests for f in m["failed"]]
    for f in failed:
        logger.warning("could not convert %s: %s", f["video"], f["error"])
    return {**index, "failed": failed}
