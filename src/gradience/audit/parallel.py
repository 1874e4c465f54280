"""Layers are independent: map a function over them on a few threads, results in order.

numpy releases the GIL in positioned reads, dtype casts and BLAS calls, which are nearly all
of a layer's work, so threads scale on the cores a user has without a process pool's start-up
and copies. Each thread owns a `Workspace` (its buffers are reused layer after layer) and BLAS
runs single-threaded inside (`one_blas_thread`, entered once by the caller's pass).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from gradience.audit.spectra import Workspace

T = TypeVar("T")
R = TypeVar("R")

MAX_WORKERS = 8


def default_workers() -> int:
    """The cores this process may run on (its affinity, not the machine's count), at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, n))


def ordered_map(
    fn: Callable[[T, Workspace], R], items: Iterable[T], workers: int | None = None
) -> Iterator[R]:
    """fn(item, workspace) for every item, yielded in the items' order; at most 2·workers items
    are in flight, so memory stays at a few layers whatever the adapter's size. An exception
    in fn is raised at its item's turn; closing the iterator early cancels what has not started."""
    workers = default_workers() if workers is None else workers
    if workers <= 1:
        ws = Workspace()
        for item in items:
            yield fn(item, ws)
        return
    local = threading.local()

    def run(item: T) -> R:
        ws = getattr(local, "ws", None)
        if ws is None:
            ws = local.ws = Workspace()
        return fn(item, ws)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gradience-layer")
    window: deque[Future[R]] = deque()
    try:
        for item in items:
            window.append(pool.submit(run, item))
            if len(window) >= 2 * workers:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
