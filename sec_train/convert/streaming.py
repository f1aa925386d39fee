"""Streaming checkpoint conversion: read tensors lazily, write safetensors shards as they fill.

A conversion is a list of `Step`s (one output tensor each, made from one or more source
tensors). `check_plan` proves the plan uses every source key and produces every expected key
before anything is written; `run_plan` then reads the sources file by file, one tensor at a time
(safetensors by plain reads; a `.pt` memory-mapped), and `ShardWriter` flushes a shard whenever
it holds `max_shard_bytes`, so peak memory is about one output shard, not one model.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm import tqdm

INDEX_SUFFIX = ".safetensors.index.json"
DEFAULT_SHARD_BYTES = 2 * 1024**3
_LISTED = 20  # keys named in an error before "... and N more"
_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def fresh_output(path: str | Path) -> Path:
    """`path` as a new, empty output directory; an existing non-empty one is an error, not overwritten."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} exists and is not an empty directory; choose a new output path")
    path.mkdir(parents=True, exist_ok=True)
    return path


class TensorSource:
    """Read-only, lazily loaded tensors of a checkpoint, in the order they lie in its files.

    Build with `TensorSource.from_safetensors` (a file or a directory of shards) or
    `TensorSource.from_torch` (a `.pt` checkpoint, memory-mapped).
    """

    def __init__(self, name: str, handles: list):
        self.name = name
        self._handles = handles
        self._where = {key: i for i, handle in enumerate(handles) for key in handle.names()}

    @classmethod
    def from_safetensors(cls, path: str | Path) -> TensorSource:
        """Opens a `.safetensors` file, or every shard of a directory (via its index when present)."""
        path = Path(path)
        if path.is_dir():
            indexes = sorted(path.glob(f"*{INDEX_SUFFIX}"))
            if indexes:
                weight_map = json.loads(indexes[0].read_text())["weight_map"]
                files = [path / name for name in dict.fromkeys(weight_map.values())]
            else:
                files = sorted(path.glob("*.safetensors"))
            if not files:
                raise FileNotFoundError(f"{path}: no *.safetensors files")
        elif path.is_file():
            files = [path]
        else:
            raise FileNotFoundError(f"{path}: no such safetensors file or directory")
        return cls(str(path), [_SafetensorsFile(f) for f in files])

    @classmethod
    def from_torch(cls, path: str | Path, entry: str | None = "model") -> TensorSource:
        """Opens a `torch.save` checkpoint memory-mapped; `entry` selects a nested state dict."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such checkpoint file")
        loaded = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
        if entry is not None:
            if entry not in loaded:
                raise KeyError(f"{path}: the checkpoint has no {entry!r} entry (has {sorted(loaded)[:10]})")
            loaded = loaded[entry]
        return cls.from_tensors(str(path), loaded)

    @classmethod
    def from_tensors(cls, name: str, tensors: dict[str, torch.Tensor]) -> TensorSource:
        """Wraps an in-memory state dict (meta tensors too: shape-only planning)."""
        return cls(name, [_DictHandle(tensors)])

    def keys(self) -> list[str]:
        return list(self._where)

    def __iter__(self):
        return iter(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def position(self, key: str) -> int:
        """Index of the file holding `key`, to read sources file by file."""
        return self._where[key]

    def get(self, key: str) -> torch.Tensor:
        if key not in self._where:
            raise KeyError(f"{self.name}: no tensor {key!r}")
        return self._handles[self._where[key]].get_tensor(key)


class _SafetensorsFile:
    """One safetensors file, read tensor by tensor into fresh memory.

    Plain reads instead of a memory map: a mapping keeps every page it touched resident, so a
    whole multi-GB source shard would count against the conversion's memory.
    """

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            self._header = json.loads(f.read(size))
        self._header.pop("__metadata__", None)
        self._data_start = 8 + size

    def names(self) -> list[str]:
        return list(self._header)

    def get_tensor(self, key: str) -> torch.Tensor:
        info = self._header[key]
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{self.path}: {key} has unsupported dtype {info['dtype']}")
        tensor = torch.empty(info["shape"], dtype=_SAFETENSORS_DTYPES[info["dtype"]])
        begin, end = info["data_offsets"]
        with open(self.path, "rb") as f:
            f.seek(self._data_start + begin)
            if f.readinto(tensor.reshape(-1).view(torch.uint8).numpy()) != end - begin:
                raise ValueError(f"{self.path}: {key} is truncated")
        return tensor


class _DictHandle:
    def __init__(self, tensors: dict[str, torch.Tensor]):
        self._tensors = tensors

    def names(self) -> list[str]:
        return list(self._tensors)

    def get_tensor(self, key: str) -> torch.Tensor:
        return self._tensors[key].clone()  # a fresh tensor per read, as from a file


class ShardWriter:
    """Writes tensors into `<prefix>-0000i-of-0000N.safetensors` shards plus the index json.

    Args:
        directory (`str` or `Path`): created if missing.
        prefix (`str`): file name stem; "model" is what transformers' `from_pretrained` reads.
        max_shard_bytes (`int`): a shard is flushed once it holds this many bytes.
        dtype (`torch.dtype`, *optional*): floating-point tensors are cast to it.
    """

    def __init__(
        self,
        directory: str | Path,
        prefix: str = "model",
        max_shard_bytes: int = DEFAULT_SHARD_BYTES,
        dtype: torch.dtype | None = None,
    ):
        self.directory = Path(directory)
        self.dtype = dtype
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.max_shard_bytes = max_shard_bytes
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_bytes = 0
        self._shards: list[list[str]] = []
        self._names: set[str] = set()
        self._total_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if name in self._names:
            raise ValueError(f"{self.directory}: tensor {name!r} written twice")
        self._names.add(name)
        if self.dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(self.dtype)
        tensor = tensor.detach().to("cpu")
        if not _owns_storage(tensor):  # slices of one source (qkv splits) must not share storage
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        self._pending[name] = tensor
        self._pending_bytes += tensor.numel() * tensor.element_size()
        if self._pending_bytes >= self.max_shard_bytes:
            self._flush()

    def _temp_name(self, i: int) -> str:
        return f"{self.prefix}-{i + 1:05d}.partial.safetensors"

    def _flush(self) -> None:
        if not self._pending:
            return
        save_file(self._pending, str(self.directory / self._temp_name(len(self._shards))), {"format": "pt"})
        self._shards.append(list(self._pending))
        self._total_bytes += self._pending_bytes
        self._pending, self._pending_bytes = {}, 0

    def close(self) -> None:
        """Flushes the last shard, gives the shards their final names and writes the index."""
        self._flush()
        count = len(self._shards)
        weight_map = {}
        for i, names in enumerate(self._shards):
            final = f"{self.prefix}-{i + 1:05d}-of-{count:05d}.safetensors"
            (self.directory / self._temp_name(i)).rename(self.directory / final)
            weight_map.update(dict.fromkeys(names, final))
        index = {"metadata": {"total_size": self._total_bytes}, "weight_map": weight_map}
        (self.directory / f"{self.prefix}{INDEX_SUFFIX}").write_text(json.dumps(index, indent=2) + "\n")

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


def _owns_storage(tensor: torch.Tensor) -> bool:
    """True for a contiguous tensor that is the whole of its storage (safe to write as is)."""
    return (
        tensor.is_contiguous()
        and tensor.storage_offset() == 0
        and tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
    )


@dataclass(frozen=True)
class Step:
    """One output tensor: `combine` of the source tensors (the single source itself when None)."""

    target: str
    sources: tuple[str, ...]
    combine: Callable[[list[torch.Tensor]], torch.Tensor] | None = None

    def apply(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """The output tensor from the source tensors (in `sources` order)."""
        return self.combine(tensors) if self.combine is not None else tensors[0]


def _listing(label: str, keys: Iterable[str]) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
    return f"\n  {label} ({len(keys)}): {', '.join(keys[:_LISTED])}{more}"


def plan_problems(
    steps: list[Step], source_keys: Iterable[str] | None = None, expected: Iterable[str] | None = None
) -> str:
    """Lists what a plan cannot account for; empty when it is complete.

    Args:
        steps (`list[Step]`): the conversion (or one output's part of it).
        source_keys (`Iterable[str]`, *optional*): every one of them must feed some step, and
            every step's sources must be among them.
        expected (`Iterable[str]`, *optional*): the keys the output must hold, exactly.
    """
    targets = [step.target for step in steps]
    problems = ""
    if duplicates := {t for t, n in Counter(targets).items() if n > 1}:
        problems += _listing("keys produced twice", duplicates)
    if source_keys is not None:
        used, source_keys = {key for step in steps for key in step.sources}, set(source_keys)
        if missing := used - source_keys:
            problems += _listing("missing source keys", missing)
        if unused := source_keys - used:
            problems += _listing("unexpected source keys (no mapping uses them)", unused)
    if expected is not None:
        expected = set(expected)
        if absent := expected - set(targets):
            problems += _listing("model keys the checkpoint does not provide", absent)
        sources = {step.target: step.sources for step in steps}
        if extra := set(targets) - expected:
            named = {f"{key} (from {', '.join(sources[key])})" for key in extra}
            problems += _listing("produced keys the model does not have", named)
    return problems


def check_plan(steps: list[Step], source: TensorSource, expected: Iterable[str] | None = None) -> None:
    """Raises `ValueError` naming the source and every key `plan_problems` finds."""
    if problems := plan_problems(steps, source.keys(), expected):
        raise ValueError(f"{source.name}: cannot convert:{problems}")


def run_plan(
    steps: list[Step],
    source: TensorSource,
    writer: ShardWriter,
    shapes: dict[str, torch.Size] | None = None,
    desc: str = "converting",
) -> None:
    """Executes a checked plan, reading the sources file by file.

    Args:
        shapes (`dict[str, torch.Size]`, *optional*): expected output shapes; a mismatch raises
            `ValueError` naming the key.
    """
    ordered = sorted(steps, key=lambda step: min(source.position(key) for key in step.sources))
    for step in tqdm(ordered, desc=desc, unit="tensor"):
        tensor = step.apply([source.get(key) for key in step.sources])
        if shapes is not None and tensor.shape != shapes[step.target]:
            raise ValueError(
                f"{source.name}: {step.target} (from {', '.join(step.sources)}) has shape "
                f"{list(tensor.shape)}, the model expects {list(shapes[step.target])}"
            )
        writer.add(step.target, tensor)
