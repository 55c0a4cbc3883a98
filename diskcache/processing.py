"""Turning .sym text into tables in worker processes.

Parsing a big symbol file is CPU work; doing it in other processes keeps the DiskCache's
event loop answering lookups for modules it already has, and uses the second core.  The
workers are plain child processes (:mod:`diskcache.worker`) speaking JSON lines on their
stdin and stdout: unlike a multiprocessing pool, they need no resource-tracker process and
import nothing but the parser (a worker is about 15 MB before it reads a file).
"""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diskcache.cachefiles import discard
from diskcache.symfile import ModuleMismatch, NotASymbolFile, ProcessStats
from symcommon import jsonio
from symcommon.frames import FrameInfo, InlineFrame

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
#: A worker still this big after a file (a fragmented heap) is replaced by a fresh one, so
#: workers do not grow with every module they have processed.
RETIRE_MB = 48
#: An extra worker (see :meth:`Processor._take_worker`) is kept this long after its last file
#: for the next one: starting a worker costs about 50 ms of CPU, paid once per burst, not per file.
SPARE_SECONDS = 30.0
#: A worker answering for longer than this is tied up: an answer that finds no idle worker
#: then gets an extra one (see :meth:`Processor._take_worker`) rather than waiting behind it.
#: Shorter answers (a burst of cold modules: a few ms each) are waited for instead: starting
#: a worker costs more CPU than several of them.
LONG_ANSWER_SECONDS = 0.25
#: How often an answer waiting for a worker looks again whether one is tied up.
RECHECK_SECONDS = 0.05


class ProcessingError(RuntimeError):
    """The worker failed (or died) while processing a file; no table was written."""


class DownloadAbandoned(ProcessingError):
    """A followed download failed or restarted (see :meth:`Processor.follow`)."""


class NeedsTable(ProcessingError):
    """The .sym file cannot be answered from directly (see :mod:`diskcache.rawlookup`)."""


class SourceMissing(ProcessingError):
    """The file to answer from is gone (evicted, or replaced by its table meanwhile)."""


@dataclass(frozen=True)
class RawAnswer:
    """Offsets answered from a .sym file by a worker (:meth:`Processor.answer`)."""

    module: dict[str, Any]
    frames: dict[int, FrameInfo | None]
    stats: dict[str, Any]


def frames_from_compact(strings: list[str], frames: list[list[Any]]) -> dict[int, FrameInfo | None]:
    """Read back :func:`diskcache.worker.compact_frames`: frames of one function share one
    name object.  Built directly, not through :meth:`FrameInfo.from_compact`'s checks: the
    worker is our own process, made these from FrameInfos, and a reply it garbles fails
    here with an error like any other (an index out of range, a type error)."""
    def frame_info(frame: list[Any]) -> FrameInfo:
        name, offset, size, file, line, inlines = frame
        return FrameInfo(strings[name], offset, size, None if file is None else strings[file], line,
                         tuple(InlineFrame(strings[inline_name], None if inline_file is None else strings[inline_file],
                                           inline_line) for inline_name, inline_file, inline_line in inlines))

    return {offset: None if frame is None else frame_info(frame) for offset, frame in frames}


class _Worker:
    """One worker process; used by one thread at a time."""

    def __init__(self, retire_mb: int) -> None:
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT),
                                                                 environment.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "diskcache.worker", str(os.getpid()), str(retire_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment, cwd=PACKAGE_ROOT)

    niced = False  # lowered by Processor.lower_priority or for an idle-priority build

    def alive(self) -> bool:
        return self.process.poll() is None

    def call(self, request: dict[str, Any]) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(jsonio.dumps(request) + b"\n")
            self.process.stdin.flush()
            reply = self.process.stdout.readline()
        except (BrokenPipeError, OSError) as error:
            raise ProcessingError(f"the worker process is gone: {error}") from error
        if not reply:
            raise ProcessingError(f"the worker process died (exit status {self.process.wait()})")
        return jsonio.loads(reply)  # orjson: answers of thousands of frames come this way

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


def _lowest_priority(worker: _Worker) -> None:
    """Let ``worker`` run only when no other process wants the CPU: Linux's SCHED_IDLE
    policy, under which a busy machine gives it almost nothing (a nice of 10 still took about
    a tenth of a core from the answers of a burst of cold requests); a nice of 19 where that
    policy is missing.  Undone by :meth:`Processor._restore_priority` after the file."""
    try:
        os.sched_setscheduler(worker.process.pid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.setpriority(os.PRIO_PROCESS, worker.process.pid, 19)
        except OSError:
            return
    worker.niced = True


class Processor:
    """``processWorkers`` worker processes, started with the DiskCache and replaced if one dies."""

    def __init__(self, workers: int, retire_mb: int = RETIRE_MB) -> None:
        self._workers = workers
        self._retire_mb = retire_mb
        # a thread per worker, and one per extra worker (see _process)
        self._threads = ThreadPoolExecutor(2 * workers, thread_name_prefix="processing")
        # answers have threads of their own: they never wait behind files queued for workers
        self._answer_threads = ThreadPoolExecutor(2 * workers, thread_name_prefix="answering")
        self._idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        for _ in range(workers):
            self._idle.put(None)  # started on first use, or by warm_up
        self._started: list[_Worker] = []
        self._busy: dict[str, _Worker | None] = {}  # destination (end marker) -> the worker writing (answering) it
        self._abandoned: set[str] = set()  # answers abandoned before a worker took them
        self._lock = threading.Lock()
        self._following = 0  # workers following a download
        self._tabling = 0  # workers writing a table (following a download or not)
        self._answering: dict[object, float] = {}  # a worker's answer in progress -> since when
        self._extras = 0  # extra workers processing complete files meanwhile
        self._spares: list[tuple[_Worker, float]] = []  # extra workers between files, since when

    def warm_up(self) -> None:
        """Start the workers now rather than on the first cold module: starting one and
        importing the parser costs about 50 ms that a user would otherwise wait for."""
        for _ in range(self._workers):
            worker = self._idle.get()
            self._idle.put(worker if worker is not None and worker.alive() else self._start())

    def _start(self) -> _Worker:
        worker = _Worker(self._retire_mb)
        self._started = [w for w in self._started if w.alive()] + [worker]
        return worker

    def _take_worker(self, answering: bool = False) -> tuple[_Worker | None, bool]:
        """A worker for a complete file, and whether it is an extra one.

        A worker following a slow download must not hold up files that are already here:
        while one is following, a file that finds no idle worker gets an extra worker
        (at most one per following worker), which stops when done.  ``answering``: a request
        waits for the answer, so it never queues behind a table being written, nor behind
        an answer running longer than LONG_ANSWER_SECONDS: it gets an extra worker (at most
        one per worker so tied up).  Behind short answers it waits: a burst of cold
        modules is answered faster by the workers there are than by starting more.
        """
        while True:
            try:
                return self._idle.get_nowait(), False
            except queue.Empty:
                pass
            with self._lock:
                if answering:
                    since = time.monotonic() - LONG_ANSWER_SECONDS
                    tied = self._tabling + sum(started < since for started in self._answering.values())
                else:
                    tied = self._following
                if self._extras < tied:
                    self._extras += 1
                    while self._spares:
                        spare = self._spares.pop()[0]
                        if spare.alive():
                            return spare, True
                    return self._start(), True
            if not answering:
                return self._idle.get(), False
            try:
                return self._idle.get(timeout=RECHECK_SECONDS), False
            except queue.Empty:
                continue

    def _keep_spare(self, worker: _Worker, retired: bool) -> None:
        """An extra worker is done with its file: keep it for the next one (at most as many as
        there are workers); spares unused for SPARE_SECONDS are stopped."""
        now = time.monotonic()
        with self._lock:
            self._extras -= 1
            stale = [spare for spare, since in self._spares if now - since > SPARE_SECONDS]
            self._spares = [(spare, since) for spare, since in self._spares if now - since <= SPARE_SECONDS]
            if not retired and worker.alive() and len(self._spares) < self._workers:
                self._spares.append((worker, now))
            else:
                stale.append(worker)
        for spare in stale:
            spare.stop()

    def _process(self, worker: _Worker | None, request: dict[str, Any]) -> ProcessStats:
        """Run ``request`` on ``worker`` (taken from the idle queue; None: find one)."""
        extra = retired = False
        if worker is None:
            worker, extra = self._take_worker()
        if not extra:
            with self._lock:
                self._tabling += 1
        try:
            if worker is None or not worker.alive():
                worker = self._start()
            if request.pop("idle", False):
                _lowest_priority(worker)
            self._busy[request["destination"]] = worker
            reply = worker.call(request)
            retired = bool(reply.get("retire"))
            if retired and not extra:  # its heap stayed big: a fresh one takes its place
                worker.stop()
                worker = self._start()
        except ProcessingError:
            discard(Path(request["destination"]))
            raise
        finally:
            self._busy.pop(request["destination"], None)
            if worker is not None and worker.niced:
                worker = self._restore_priority(worker, extra)
            if extra:
                self._keep_spare(worker, retired)
            else:
                with self._lock:
                    self._tabling -= 1
                    if "follow" in request:
                        self._following -= 1
                self._idle.put(worker)
        if "stats" in reply:
            return ProcessStats(**reply["stats"])
        if reply.get("error") == "not_a_symbol_file":
            raise NotASymbolFile(reply.get("message", ""))
        if reply.get("error") == "wrong_module":
            raise ModuleMismatch(str(reply.get("expected")), str(reply.get("found")))
        if reply.get("error") == "abandoned":
            raise DownloadAbandoned(reply.get("message", ""))
        raise ProcessingError(f"{reply.get('error')}: {reply.get('message')}")

    async def process(self, source: Path, destination: Path, debug_id: str | None = None,
                      record_source: bool = False, idle: bool = False) -> ProcessStats:
        """Process in a worker; raises :class:`NotASymbolFile`, :class:`ModuleMismatch` (the
        file's MODULE line names another ``debug_id``) or :class:`ProcessingError`.
        ``record_source``: the table records the source file's path, size and mtime.
        ``idle``: the worker runs at idle priority meanwhile (see :func:`_lowest_priority`)."""
        loop = asyncio.get_running_loop()
        request: dict[str, Any] = {"source": str(source), "destination": str(destination), "debug_id": debug_id}
        if record_source:
            request["record_source"] = True
        if idle:
            request["idle"] = True
        return await loop.run_in_executor(self._threads, self._process, None, request)

    def _answer(self, request: dict[str, Any]) -> RawAnswer:
        """Run an ``answer`` request on an idle worker, else an extra one."""
        worker, extra = self._take_worker(answering=True)
        retired = False
        key = request.get("follow")  # a download being followed: abandon() may stop it
        token = object()
        if not extra:
            with self._lock:
                self._answering[token] = time.monotonic()
        try:
            if worker is None or not worker.alive():
                worker = self._start()
            if key is not None:
                with self._lock:
                    if key in self._abandoned:
                        raise DownloadAbandoned("the download was abandoned")
                    self._busy[key] = worker
            reply = worker.call(request)
            retired = bool(reply.get("retire"))
            if retired and not extra:
                worker.stop()
                worker = self._start()
        finally:
            with self._lock:
                self._answering.pop(token, None)
                if key is not None:
                    self._busy.pop(key, None)
                    self._abandoned.discard(key)
            if extra:
                self._keep_spare(worker, retired)  # type: ignore[arg-type]
            else:
                self._idle.put(worker)
        error = reply.get("error")
        if error is None:
            frames = frames_from_compact(reply["strings"], reply["frames"])
            return RawAnswer(reply["module"], frames, reply.get("answer_stats", {}))
        if error == "not_a_symbol_file":
            raise NotASymbolFile(reply.get("message", ""))
        if error == "wrong_module":
            raise ModuleMismatch(str(reply.get("expected")), str(reply.get("found")))
        if error == "needs_table":
            raise NeedsTable(reply.get("message", ""))
        if error == "missing":
            raise SourceMissing(reply.get("message", ""))
        if error == "abandoned":
            raise DownloadAbandoned(reply.get("message", ""))
        raise ProcessingError(f"{error}: {reply.get('message')}")

    async def answer(self, source: Path, offsets: list[int], debug_id: str | None = None,
                     follow: Path | None = None, timeout_seconds: float = 0.0) -> RawAnswer:
        """Answer ``offsets`` straight from the complete .sym file ``source`` in a worker, as
        its table would.  Raises :class:`NotASymbolFile`, :class:`ModuleMismatch`,
        :class:`NeedsTable`, :class:`SourceMissing` or :class:`ProcessingError` (the worker
        died: it is replaced on next use).  ``follow``: ``source`` is a download still being
        written, scanned as it arrives, with this end marker (see :meth:`follow`)."""
        loop = asyncio.get_running_loop()
        request: dict[str, Any] = {"answer": offsets, "source": str(source), "debug_id": debug_id}
        if follow is not None:
            request.update(follow=str(follow), timeout=timeout_seconds)
            self._busy[str(follow)] = None  # known before a worker takes it: see abandon()
        return await loop.run_in_executor(self._answer_threads, self._answer, request)

    def follow(self, download: Path, end_marker: Path, destination: Path, timeout_seconds: float,
               debug_id: str | None = None) -> asyncio.Future[ProcessStats] | None:
        """Start processing a download while it is being written, if a worker is idle now
        (a worker must not wait on a slow download while other files queue behind it).

        The caller writes ``end_marker`` when the download ends: ``ok SIZE``, or ``fail``
        (the future then raises :class:`DownloadAbandoned`).  None if no worker is idle.
        """
        try:
            worker = self._idle.get_nowait()
        except queue.Empty:
            return None
        if worker is None:
            worker = self._start()  # not started yet (warm_up not called): start it now
        with self._lock:
            self._following += 1
        request = {"source": str(download), "destination": str(destination),
                   "follow": str(end_marker), "timeout": timeout_seconds, "debug_id": debug_id}
        self._busy[request["destination"]] = worker  # abandon() may come before the thread runs
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._threads, self._process, worker, request)

    def lower_priority(self, destination: Path, nice: int) -> None:
        """The worker writing ``destination`` goes on at a lower priority (its table is no
        longer waited for: the module is answered from its .sym meanwhile); it is back at
        normal priority, or replaced, once the table is done."""
        worker = self._busy.get(str(destination))
        if worker is not None and worker.alive():
            try:
                os.setpriority(os.PRIO_PROCESS, worker.process.pid, nice)
                worker.niced = True
            except OSError:
                pass

    def _restore_priority(self, worker: _Worker, extra: bool) -> _Worker:
        """A worker lowered by :meth:`lower_priority` or :func:`_lowest_priority` back at
        normal priority; without the right to raise a priority again (not root), a fresh
        worker takes its place."""
        try:
            if hasattr(os, "sched_getscheduler") and os.sched_getscheduler(worker.process.pid) == os.SCHED_IDLE:
                os.sched_setscheduler(worker.process.pid, os.SCHED_OTHER, os.sched_param(0))
            os.setpriority(os.PRIO_PROCESS, worker.process.pid, 0)
            worker.niced = False
            return worker
        except OSError:
            worker.stop()
            return worker if extra else self._start()  # (an extra one is dropped as spare: it is dead)

    def abandon(self, destination: Path) -> None:
        """Kill the worker writing ``destination``, or answering from the download whose end
        marker is ``destination`` (when it cannot be told to stop, e.g. the end marker cannot
        be written); it is replaced on next use.  One not started yet never starts."""
        with self._lock:
            worker = self._busy.get(str(destination))
            if worker is None and str(destination) in self._busy:
                self._abandoned.add(str(destination))
        if worker is not None:
            worker.process.kill()

    def shutdown(self) -> None:
        self._spares.clear()
        for worker in self._started:
            worker.stop()
        self._started.clear()
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._answer_threads.shutdown(wait=False, cancel_futures=True)
