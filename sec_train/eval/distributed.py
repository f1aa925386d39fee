"""A model's evaluation split over processes and chunks, resumable, gathered through files.

Video `i` goes to worker `i % (num_chunks * world_size)`, worker `chunk_id * world_size + rank`
(`accelerate launch` or `torchrun` set `RANK`/`WORLD_SIZE`/`LOCAL_RANK`, over any number of
nodes; `--num-chunks/--chunk-id` split further for schedulers without a launcher). A worker
writes each of its videos' predictions under `OUT/predictions/` and then its scores to
`OUT/progress/<video>.json`, the last file of a video: a video with one is finished, and a
rerun skips it. Rank 0 of a chunk waits for its chunk's files (the output folder must be
shared by the nodes) and, once every video is finished, gathers and scores them all.
`OUT/run.json` records the model and options, so a rerun with other ones is refused.
No collective op is used, so uneven video lengths never time out a barrier.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sec_train.eval.score import VideoScores

PROGRESS_DIR = "progress"
PREDICTIONS_DIR = "predictions"
RUN_FILE = "run.json"


@dataclass(frozen=True)
class Partition:
    """Which videos this process evaluates and which it waits for.

    Args:
        rank (`int`): this process among the launcher's `world_size`.
        world_size (`int`): processes the launcher started (1 without one).
        chunk_id (`int`): this chunk among `num_chunks`.
        num_chunks (`int`): independent jobs the videos are split into.
    """

    rank: int = 0
    world_size: int = 1
    chunk_id: int = 0
    num_chunks: int = 1

    def __post_init__(self):
        if not 0 <= self.chunk_id < self.num_chunks:
            raise ValueError(f"--chunk-id {self.chunk_id} is not in 0..{self.num_chunks - 1}")

    @classmethod
    def from_env(cls, num_chunks: int = 1, chunk_id: int = 0) -> Partition:
        """The launcher's `RANK` and `WORLD_SIZE` (0 and 1 without one), and the chunk."""
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        return cls(rank, world, chunk_id, num_chunks)

    @property
    def workers(self) -> int:
        return self.num_chunks * self.world_size

    def owns(self, index: int) -> bool:
        """Whether this process evaluates video `index`."""
        return index % self.workers == self.chunk_id * self.world_size + self.rank

    def in_chunk(self, index: int) -> bool:
        """Whether video `index` belongs to this process's chunk."""
        return (index % self.workers) // self.world_size == self.chunk_id


def check_run_options(out: Path, options: dict) -> None:
    """Records what a run evaluates in `OUT/run.json`, or checks a resumed run matches it:
    progress made with another model or other options must not be mixed in."""
    path = out / RUN_FILE
    if path.is_file():
        recorded = json.loads(path.read_text())
        changed = sorted(k for k in options.keys() | recorded.keys() if options.get(k) != recorded.get(k))
        if changed:
            raise ValueError(
                f"{out} holds the progress of another evaluation (differs in {changed}); "
                "use a new --save folder, or delete its progress/ to start over"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RUN_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(options, indent=2, sort_keys=True))
    tmp.replace(path)


def progress_path(out: Path, video: str) -> Path:
    return out / PROGRESS_DIR / f"{video}.json"


def is_finished(out: Path, video: str) -> bool:
    return progress_path(out, video).is_file()


def save_progress(out: Path, scores: VideoScores) -> None:
    """Writes a video's scores atomically: the file appears whole or not at all."""
    path = progress_path(out, scores.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(scores.to_json()))
    tmp.replace(path)


def load_progress(out: Path, videos: list[str]) -> list[VideoScores]:
    return [VideoScores.from_json(json.loads(progress_path(out, v).read_text())) for v in videos]


def wait_for(out: Path, videos: list[str], poll_seconds: float = 5.0) -> None:
    """Blocks until every video of `videos` has its progress file, saying what it waits for."""
    announced = None
    while missing := [v for v in videos if not is_finished(out, v)]:
        if len(missing) != announced:
            print(f"waiting for {len(missing)} videos from the other processes", flush=True)
            announced = len(missing)
        time.sleep(poll_seconds)
