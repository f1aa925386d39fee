"""Where a run's checkpoints live, which one is current, and whether it is intact.

Shared by training (`sec_train.train.checkpoint` writes checkpoints, `resume=auto` picks one)
and inference (`--checkpoint RUN_DIR` loads the current one), so neither imports the other::

    OUT/checkpoints/
        step-00000200/     one checkpoint; complete once `meta.json` is in it
        latest             the name of the newest complete checkpoint

`meta.json` records the size and CRC-32 of every other file of its checkpoint ("files") and a
CRC-32 of its own other contents ("meta_crc32"), so truncation, a flipped bit or a deleted file
anywhere in a checkpoint is found before it is loaded. Checkpoints written before these records
existed (a meta.json of only "step" and "num_processes") are accepted unchecked.
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"
LATEST = "latest"
META = "meta.json"
_STEP_DIR = re.compile(r"step-(\d+)$")
_CHUNK = 1 << 20

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint problem the user has to act on; the message says what to do."""


class DamagedCheckpointError(CheckpointError):
    """A file of a checkpoint is missing or differs from what `meta.json` recorded."""

    def __init__(self, file: Path, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file = file


def checkpoint_root(out_dir: str | Path) -> Path:
    """The directory holding the checkpoints of the run in `out_dir`."""
    return Path(out_dir) / CHECKPOINTS


def _step(path: Path) -> int:
    return int(_STEP_DIR.match(path.name).group(1))


def checkpoint_dirs(root: Path) -> list[Path]:
    """Checkpoint directories under `root`, complete or not, oldest first."""
    return sorted((p for p in root.glob("step-*") if _STEP_DIR.match(p.name) and p.is_dir()), key=_step)


def complete_checkpoints(root: Path) -> list[Path]:
    """Checkpoint directories under `root` holding `meta.json`, oldest first."""
    return [p for p in checkpoint_dirs(root) if (p / META).is_file()]


def crc32_of(path: Path) -> str:
    """The CRC-32 of a file as 8 hex digits, read in 1 MiB chunks."""
    crc = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def file_records(directory: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {"size", "crc32"}} of every file under `directory` but `meta.json`."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p != directory / META)
    return {
        f.relative_to(directory).as_posix(): {"size": f.stat().st_size, "crc32": crc32_of(f)} for f in files
    }


def _meta_crc(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "meta_crc32"}
    return f"{zlib.crc32(json.dumps(body, sort_keys=True).encode()):08x}"


def sealed_meta(meta: dict[str, Any]) -> str:
    """The text of `meta.json` for `meta`, with the CRC-32 of its contents added."""
    return json.dumps({**meta, "meta_crc32": _meta_crc(meta)}, indent=2) + "\n"


def read_meta(checkpoint: Path) -> dict[str, Any]:
    """A checkpoint's `meta.json`, checked against its own CRC-32 when it has one.

    Raises:
        DamagedCheckpointError: it is missing, not JSON, or its contents changed.
    """
    path = checkpoint / META
    if not path.is_file():
        raise DamagedCheckpointError(path, "missing (an interrupted write or a deleted file)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedCheckpointError(path, f"not JSON ({err})") from err
    legacy = isinstance(meta, dict) and set(meta) <= {"step", "num_processes"}
    if not legacy and (not isinstance(meta, dict) or meta.get("meta_crc32") != _meta_crc(meta)):
        raise DamagedCheckpointError(path, "its contents differ from their recorded CRC-32")
    return meta


def verify_checkpoint(checkpoint: Path, checksums: bool = True) -> dict[str, Any]:
    """Checks every file `meta.json` records: present, of its size and (with `checksums`) of its
    CRC-32. Files the checkpoint gained later (e.g. a converted copy) are not checked.

    Returns:
        The checkpoint's meta.

    Raises:
        DamagedCheckpointError: naming the first file that is missing or differs.
    """
    meta = read_meta(checkpoint)
    for name, record in meta.get("files", {}).items():
        path = checkpoint / name
        if not path.is_file():
            raise DamagedCheckpointError(path, "missing")
        size = path.stat().st_size
        if size != record["size"]:
            raise DamagedCheckpointError(path, f"{size} bytes, {META} records {record['size']}")
        if checksums and crc32_of(path) != record["crc32"]:
            raise DamagedCheckpointError(path, f"CRC-32 differs from the one {META} records")
    return meta


def _candidates(root: Path) -> list[Path]:
    """What `latest` names, then every checkpoint directory newest first."""
    found = checkpoint_dirs(root)[::-1]
    pointer = root / LATEST
    try:
        named = root / pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else None
    except (OSError, UnicodeDecodeError):
        named = None
    if named in found:
        return [named, *(p for p in found if p != named)]
    if pointer.exists():
        logger.warning("%s does not name a checkpoint directory of %s; ignoring it", pointer, root)
    return found


def find_checkpoint(out_dir: str | Path, checksums: bool = True) -> Path | None:
    """The checkpoint `resume=auto` continues from: the one `latest` names if it is intact, else
    the newest intact one, with a warning naming each damaged file passed over.

    Args:
        out_dir (`str` or `Path`): the run directory.
        checksums (`bool`): compare CRC-32s too, not only sizes.

    Returns:
        The checkpoint directory; None when the run has no checkpoint at all.

    Raises:
        DamagedCheckpointError: the run has checkpoints but none is intact.
    """
    root = checkpoint_root(out_dir)
    damaged: list[DamagedCheckpointError] = []
    for path in _candidates(root) if root.is_dir() else []:
        try:
            verify_checkpoint(path, checksums)
        except DamagedCheckpointError as err:
            logger.warning("checkpoint %s is damaged, passing over it: %s", path.name, err)
            damaged.append(err)
            continue
        if damaged:
            logger.warning("resuming from %s, the newest intact checkpoint", path)
        return path
    if damaged:
        raise DamagedCheckpointError(
            damaged[0].file,
            f"{damaged[0]}; no checkpoint under {root} is intact (use model.init= to "
            "start from a trainable checkpoint's weights, or overwrite=true to start afresh)",
        )
    return None


def refuse_overwrite(out_dir: str | Path, resume: str | None, overwrite: bool) -> None:
    """Raises `CheckpointError` when a fresh run (no `resume`, no `overwrite`) would write over
    the checkpoints already in `out_dir`."""
    root = checkpoint_root(out_dir)
    existing = checkpoint_dirs(root) if root.is_dir() else []
    if existing and resume is None and not overwrite:
        raise CheckpointError(
            f"{root} already holds checkpoints ({', '.join(p.name for p in existing)}); pass resume=auto "
            "to continue that run, resume=PATH to start from one checkpoint, overwrite=true to move them "
            "aside and start afresh, or another out_dir"
        )
