"""Turning .sym text into tables in worker processes.

Parsing a big symbol file is CPU work; doing it in another process keeps the DiskCache's
event loop answering lookups for modules it already has, and uses the second core.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from diskcache.lru import discard
from diskcache.symfile import ProcessStats, process_symbol_file


def _die_with_parent() -> None:
    """Worker initializer: if the DiskCache is killed, its workers go too (Linux only)
    instead of finishing files nobody will rename."""
    try:
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def process_file(source: Path, destination: Path) -> ProcessStats:
    """Parse ``source`` into a complete, synced table file at ``destination``."""
    try:
        with open(source, "rb") as text, open(destination, "w+b") as table:
            stats = process_symbol_file(text, table)
            table.flush()
            os.fsync(table.fileno())
        return stats
    except BaseException:
        discard(destination)
        raise


def _ready() -> None:
    """Run once in each new worker so that it is started and has imported the parser."""


class Processor:
    """A pool of worker processes (``processWorkers``), recreated if a worker dies."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # no copy of the event loop's state
            self._pool = ProcessPoolExecutor(self._workers, mp_context=context,
                                             initializer=_die_with_parent)
        return self._pool

    def warm_up(self) -> None:
        """Start the workers now rather than on the first cold module: spawning one and
        importing the parser costs about 0.15 s that a user would otherwise wait for."""
        pool = self._get_pool()
        for _ in range(self._workers):
            pool.submit(_ready)

    async def process(self, source: Path, destination: Path) -> ProcessStats:
        loop = asyncio.get_running_loop()
        pool = self._get_pool()
        try:
            return await loop.run_in_executor(pool, process_file, source, destination)
        except BrokenProcessPool:
            self._pool = None
            discard(destination)
            raise

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
