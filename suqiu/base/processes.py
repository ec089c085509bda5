"""Worker processes of a Suqiu process: spawned, logging as it does, and dying with it."""

from __future__ import annotations

import ctypes
import gc
import logging
import multiprocessing
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from suqiu.base import logs

PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent() -> None:
    # Children must not outlive `suqiu up`, even when it is killed with SIGKILL. They also run in
    # their own session (start_new_session), so a terminal's Ctrl-C reaches only `suqiu up`, which
    # stops them in order instead of watching them all die at once.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)



def worker_pool(workers: int, initializer: Callable[..., None], *initargs: Any, fork: bool = False,
                ) -> ProcessPoolExecutor:
    """A process pool whose processes run `initializer(*initargs)` once they are set up.

    Spawned by default: a long-running parent has threads and open connections a forked child
    would share. `fork=True` is for a parent that has opened nothing yet: its children then
    start at once instead of importing Suqiu again (see BENCHMARKS.md).
    The processes start now, all of them, so a forking parent forks before it opens anything;
    with other threads running (another thread may hold a lock the child would need) it spawns.
    """
    fork = fork and threading.active_count() == 1
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork" if fork else "spawn"),
                               initializer=_start, initargs=(log_level(), initializer, initargs))
    for _ in range(workers):
        pool.submit(bool)
    return pool


# Python collects its youngest generation every 700 net allocations, and now and then the
# oldest, which means walking every tracked object (see settle_gc).
GC_YOUNG = 50_000


def settle_gc() -> None:
    """Tune the cyclic GC for a long-running process that allocates fast and keeps a large cache.

    What start-up imported and built lives as long as the process: frozen, collections no longer
    walk it. Collecting the young generation every 50,000 allocations instead of 700 makes the
    older ones, and their walks over the projector's cached cases, as much rarer.
    Cyclic garbage is still collected, only in bigger rounds.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, middle, old)


def log_level() -> str:
    """This process's log level, for a child to pass to `set_up_child`."""
    return logging.getLevelName(logging.getLogger().getEffectiveLevel())


def set_up_child(level: str) -> None:
    """What a worker process does first: die with its parent, and log as it does."""
    die_with_parent()
    logs.configure(level)


def _start(level: str, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    # A forked child inherits its parent's handlers: the parent's shutdown logic is not its own.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    set_up_child(level)
    initializer(*initargs)
