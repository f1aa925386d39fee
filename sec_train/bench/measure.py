"""Measurements for `bench model`: peak RSS while a function runs, the bytes autograd saves for
backward (activations), the FLOPs of a step, and the machine's own bf16 matmul FLOP/s."""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import torch
from torch.utils.flop_counter import FlopCounterMode


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            *("arena", "ordblks", "smblks", "hblks", "hblkhd"),
            *("usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"),
        )
    ]


def _mallinfo2() -> Callable[[], int] | None:
    """glibc's `mallinfo2` as a function returning the bytes malloc has handed out and not had
    back (arena chunks in use + mmapped chunks), or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2

    def in_use() -> int:
        info = fn()
        return info.uordblks + info.hblkhd

    return in_use


MALLOC_IN_USE = _mallinfo2()


def malloc_in_use() -> int | None:
    """Bytes glibc malloc holds for live allocations (torch's CPU tensors among them), or None."""
    return MALLOC_IN_USE() if MALLOC_IN_USE else None


class PeakRSS:
    """Polls this process's resident set size every `interval` seconds in a thread; `peak` is the
    largest value seen since `start` (RSS counts what the CPU allocator took from the OS), and
    `phases` the largest value within each phase `phase(name)` closed. Under glibc it polls the
    bytes malloc has handed out and not had back too (`heap_peak`, `heap_phases`): what the
    process's live allocations needed at most, without the pages malloc freed but kept (its
    arenas' free chunks), which RSS counts and a GPU's caching allocator would not hold."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = self.heap_peak = 0
        self.phases: dict[str, int] = {}
        self.heap_phases: dict[str, int] = {}
        self._phase_peak = self._heap_phase_peak = 0
        self._stop = threading.Event()
        self._process = psutil.Process()

    def _sample(self) -> None:
        rss = self._process.memory_info().rss
        self.peak = max(self.peak, rss)
        self._phase_peak = max(self._phase_peak, rss)
        heap = malloc_in_use() or 0
        self.heap_peak = max(self.heap_peak, heap)
        self._heap_phase_peak = max(self._heap_phase_peak, heap)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def phase(self, name: str) -> None:
        """Ends phase `name` (begun at the start or at the last `phase`): records its peak."""
        self._sample()
        self.phases[name] = self._phase_peak
        self.heap_phases[name] = self._heap_phase_peak
        self._phase_peak = self._process.memory_info().rss
        self._heap_phase_peak = malloc_in_use() or 0

    def __enter__(self) -> PeakRSS:
        self.peak = self._phase_peak = self._process.memory_info().rss
        self.heap_peak = self._heap_phase_peak = malloc_in_use() or 0
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def rss_bytes() -> int:
    return psutil.Process().memory_info().rss


@contextmanager
def saved_activations(
    model: torch.nn.Module, groups: dict[str, list[torch.nn.Module]]
) -> Iterator[dict[str, int]]:
    """Bytes autograd saves for backward during the forwards of the block (each storage once,
    parameters and backward's recomputation excluded): the activation memory a forward leaves
    for its backward. Each storage is charged to the innermost running module of `groups`
    (group name -> modules), else to "other". The result (group -> bytes) fills on exit."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    stack: list[str] = []
    seen: dict[int, tuple[str, int]] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if torch._C._current_graph_task_id() != -1:  # inside backward (checkpoint recomputation)
            return tensor
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen.setdefault(storage.data_ptr(), (stack[-1] if stack else "other", storage.nbytes()))
        return tensor

    def leave(*_: Any) -> None:  # a forward hook's return value would replace the output
        stack.pop()

    handles = []
    for name, modules in groups.items():
        for module in modules:
            handles.append(module.register_forward_pre_hook(lambda *_, n=name: stack.append(n)))
            handles.append(module.register_forward_hook(leave))
    result: dict[str, int] = {}
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield result
    finally:
        for handle in handles:
            handle.remove()
    for group, nbytes in seen.values():
        result[group] = result.get(group, 0) + nbytes


class _GlobalOnly:
    """A stand-in for FlopCounterMode's `ModuleTracker` that attributes every FLOP to "Global"
    and registers no hooks. The tracker's forward hooks also fire when activation checkpointing
    recomputes a module in backward, and each registers a grad hook on the recomputed tensors that
    never fires, so the tracker keeps every recomputed layer's graph (its saved tensors) alive to
    the end of the step (pytorch/pytorch#139214): at SeC's real width a step's peak grew about
    0.45 GiB per checkpointed LLM layer under FlopCounterMode (README)."""

    parents = frozenset({"Global"})

    def __enter__(self) -> _GlobalOnly:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of the matmuls, convolutions and attention `fn` runs (forward and backward), as
    torch's FlopCounterMode counts them, in total (no per-module table, see `_GlobalOnly`)."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnly()
    with counter:
        fn()
    return counter.get_total_flops()


def matmul_flops_per_s(
    dtype: torch.dtype, device: str = "cpu", size: int = 2048, seconds: float = 2.0
) -> dict[str, float]:
    """The FLOP/s of a `size`-cubed matmul in `dtype` over about `seconds`: the machine's own
    attainable peak, measured in the same process and thread setting as the step.

    Returns:
        "wall": the best of the calls by wall time; "cpu": FLOPs per CPU-second of this process
        over all calls (on a CPU shared with other jobs, the figure load does not distort).
    """
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.matmul(a, b)  # first call: kernel selection
    best, calls, end = float("inf"), 0, time.perf_counter() + seconds
    cpu_start = time.process_time()
    while time.perf_counter() < end:
        start = time.perf_counter()
        torch.matmul(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        best, calls = min(best, time.perf_counter() - start), calls + 1
    flops = 2 * size**3
    return {"wall": flops / best, "cpu": flops * calls / (time.process_time() - cpu_start)}
