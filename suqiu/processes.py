"""Worker processes of a Suqiu process: spawned, logging as it does, and dying with it."""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from suqiu import logs
from suqiu.embedded import die_with_parent


def worker_pool(workers: int, initializer: Callable[..., None], *initargs: Any) -> ProcessPoolExecutor:
    """A process pool whose processes run `initializer(*initargs)` once they are set up.

    Spawned, not forked: the parent has a running event loop, threads and open connections.
    """
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
                               initargs=(log_level(), initializer, initargs))


def log_level() -> str:
    """This process's log level, for a child to pass to `set_up_child`."""
    return logging.getLevelName(logging.getLogger().getEffectiveLevel())


def set_up_child(level: str) -> None:
    """What a worker process does first: die with its parent, and log as it does."""
    die_with_parent()
    logs.configure(level)


def _start(level: str, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    set_up_child(level)
    initializer(*initargs)
