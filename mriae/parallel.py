"""Tiles on every core: a thread pool over units of work whose results do not depend on it.

Each unit (a tile's analysis or synthesis) runs torch on one intra-op thread
(:func:`single_threaded`), so its floats are the same however many units run at once; the
pool only decides how many run together. The worker count is set per call by the faces
(``threads=`` in the API, ``--threads`` in the CLI) through :func:`using`; by default, every
core this process may use. :func:`using` also sets the device the network runs on
(``device=``, ``--device``): the CPU by default, so that the same input gives the same bytes
on any machine; ``cuda`` or ``auto`` (a CUDA GPU when torch sees one) for speed, where the
network's floats (and so a file's bytes, and decoded voxels to float rounding) may differ
from a CPU's; a file made on either decodes on both (its latents are integers).
"""

from __future__ import annotations

import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar, copy_context
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

_threads: ContextVar[int | None] = ContextVar("mriae_threads", default=None)
_device: ContextVar[str] = ContextVar("mriae_device", default="cpu")
_lock = threading.Lock()
_single = 0
_before = 1


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count() -> int:
    """Units of work run at once: the count :func:`using` set, else every available core."""
    return _threads.get() or available_cores()


def checked_device(device: object) -> str:
    """``device`` if the network may be asked to run there ("cpu", "cuda", "cuda:N" or
    "auto"); ValueError (one line) otherwise. Whether torch sees that GPU is checked where
    the network runs (mriae.tiled.resolve_device)."""
    if not isinstance(device, str) or not re.fullmatch(r"cpu|auto|cuda(:[0-9]+)?", device):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N (got {device!r})")
    return device


def network_device() -> str:
    """The device :func:`using` set for the network: "cpu", "cuda", "cuda:N" or "auto"."""
    return _device.get()


@contextmanager
def using(threads: int | None, device: str = "cpu") -> Iterator[None]:
    """Run the units of work inside on ``threads`` workers (None: every available core), the
    network on ``device`` ("cpu", "cuda", "cuda:N", or "auto": a CUDA GPU when torch sees one,
    else the CPU); ValueError unless a positive count and one of those devices."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive whole number, got {threads!r}")
    device = checked_device(device)
    tokens = _threads.set(threads), _device.set(device)
    try:
        yield
    finally:
        _threads.reset(tokens[0])
        _device.reset(tokens[1])


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one intra-op thread while any unit of work is inside: conv results (in the
    last bits) depend on the intra-op thread count, so fixing it makes encoding and decoding
    independent of the machine and of the worker count. Re-entrant across threads: the first
    to enter sets one thread, the last to leave restores the count it found."""
    import torch  # here, so that importing this module (the API does) does not load torch

    global _single, _before
    with _lock:
        if _single == 0:
            _before = torch.get_num_threads()
            torch.set_num_threads(1)
        _single += 1
    try:
        yield
    finally:
        with _lock:
            _single -= 1
            if _single == 0:
                torch.set_num_threads(_before)


def ordered_map(function: Callable[[Item], Result], items: Iterable[Item]) -> Iterator[Result]:
    """``function`` of each item, in order, computed :func:`worker_count` at a time; at most
    twice that many results wait to be taken, so memory stays bounded by a few units."""
    workers = worker_count()
    if workers == 1:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="mriae") as pool:
        pending: deque[Future[Result]] = deque()
        for item in items:  # each in a copy of the caller's context: what using() set holds there
            pending.append(pool.submit(copy_context().run, function, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
