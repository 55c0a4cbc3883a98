"""Turning .sym text into tables in worker processes.

Parsing a big symbol file is CPU work; doing it in other processes keeps the DiskCache's
event loop answering lookups for modules it already has, and uses the second core.  The
workers are plain child processes (:mod:`diskcache.worker`) speaking JSON lines on their
stdin and stdout: unlike a multiprocessing pool, they need no resource-tracker process and
import nothing but the parser (a worker is about 15 MB before it reads a file).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from diskcache.lru import discard
from diskcache.symfile import NotASymbolFile, ProcessStats

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class ProcessingError(RuntimeError):
    """The worker failed (or died) while processing a file; no table was written."""


class _Worker:
    """One worker process; used by one thread at a time."""

    def __init__(self) -> None:
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT),
                                                                 environment.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "diskcache.worker", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment, cwd=PACKAGE_ROOT)

    def alive(self) -> bool:
        return self.process.poll() is None

    def call(self, source: Path, destination: Path) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps({"source": str(source), "destination": str(destination)})
                                     .encode() + b"\n")
            self.process.stdin.flush()
            reply = self.process.stdout.readline()
        except (BrokenPipeError, OSError) as error:
            raise ProcessingError(f"the worker process is gone: {error}") from error
        if not reply:
            raise ProcessingError(f"the worker process died (exit status {self.process.wait()})")
        return json.loads(reply)

    def stop(self) -> None:
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()  # the worker ends when its stdin closes
            except OSError:
                pass
        try:
            self.process.wait(0.5)  # a worker busy with a big file is not waited for
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Processor:
    """``processWorkers`` worker processes, started with the DiskCache and replaced if one dies."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._threads = ThreadPoolExecutor(workers, thread_name_prefix="processing")
        self._idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        for _ in range(workers):
            self._idle.put(None)  # started on first use, or by warm_up
        self._started: list[_Worker] = []

    def warm_up(self) -> None:
        """Start the workers now rather than on the first cold module: starting one and
        importing the parser costs about 0.1 s that a user would otherwise wait for."""
        for _ in range(self._workers):
            worker = self._idle.get()
            self._idle.put(worker if worker is not None and worker.alive() else self._start())

    def _start(self) -> _Worker:
        worker = _Worker()
        self._started.append(worker)
        return worker

    def _process(self, source: Path, destination: Path) -> ProcessStats:
        worker = self._idle.get()
        try:
            if worker is None or not worker.alive():
                worker = self._start()
            reply = worker.call(source, destination)
        except ProcessingError:
            discard(destination)
            raise
        finally:
            self._idle.put(worker)
        if "stats" in reply:
            return ProcessStats(**reply["stats"])
        if reply.get("error") == "not_a_symbol_file":
            raise NotASymbolFile(reply.get("message", ""))
        raise ProcessingError(f"{reply.get('error')}: {reply.get('message')}")

    async def process(self, source: Path, destination: Path) -> ProcessStats:
        """Process in a worker; raises :class:`NotASymbolFile` or :class:`ProcessingError`."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._process, source, destination)

    def shutdown(self) -> None:
        for worker in self._started:
            worker.stop()
        self._started.clear()
        self._threads.shutdown(wait=False, cancel_futures=True)
