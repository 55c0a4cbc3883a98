"""Several server processes on one port: a small supervisor that forks them and keeps them up.

A Python server is bound to one core by the GIL.  With ``processes`` above 1 the parent forks
that many children, restarts a child that dies, and on SIGTERM or SIGINT passes the signal on
and waits for the children to drain and exit.  The parent stays small: it serves nothing.

Each child listens on its own socket bound with SO_REUSEPORT, so the kernel spreads new
connections evenly over them.  (With one socket shared by all, Tornado's accept loop lets
whichever child wakes first take every waiting connection: measured, eight keep-alive
connections often all landed in one child, halving throughput.)  The price: connections
still waiting in the backlog of a child that dies are reset.

Children append to the log file themselves (a line is one ``write`` to a file opened with
O_APPEND, so lines never interleave) and reopen it when it is replaced; the parent alone
decides when to rotate it, so the processes never rotate the same file twice.
"""

from __future__ import annotations

import logging
import logging.handlers
import mmap
import os
import signal
import socket
import struct
import time
from pathlib import Path
from typing import Callable

import tornado.netutil

log = logging.getLogger("prefork")

#: A child that dies sooner than this after starting is restarted only after a pause, so a
#: child that cannot start does not make the parent spin.
RESTART_PAUSE_SECONDS = 1.0

ChildMain = Callable[[list[socket.socket]], int]


class SharedState:
    """A few integers that every server process sees, e.g. a flag the debug protocol sets.

    Anonymous shared memory made before the processes fork, so a debug request answered by
    one process changes what all of them do.  Writes are not atomic across processes; they
    come from rare debug requests, and a reader sees either the old or the new value.
    """

    SLOTS = 8
    # Every slot in use is named here, so that two users can never share one by accident.
    OUTPUT_CACHE_HITS = 0  # SymServer's debug flag outputCacheHits
    FRAME_CACHE_CLEARS = 1  # how many times a process asked the others to clear their frame caches
    _INT = struct.Struct("<q")

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, self._INT.size * self.SLOTS)

    def get(self, slot: int) -> int:
        return self._INT.unpack_from(self._memory, self._INT.size * slot)[0]

    def set(self, slot: int, value: int) -> None:
        self._INT.pack_into(self._memory, self._INT.size * slot, value)

    def increment(self, slot: int) -> int:
        value = self.get(slot) + 1
        self.set(slot, value)
        return value


def _die_with_parent() -> None:
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def run_processes(count: int, port: int, child_main: ChildMain, pidfile: Path | None,
                  write_pidfile: Callable[[Path], None], address: str = "") -> int:
    """Run ``child_main(sockets)`` in ``count`` forked children, each with its own listening
    sockets on ``address``:``port`` ("" for every address), until signalled."""
    for probe in tornado.netutil.bind_sockets(port, address, reuse_port=True):
        probe.close()  # the port is free (else raise now); not kept: it would get connections
    root = logging.getLogger()
    rotating = [h for h in root.handlers if isinstance(h, logging.handlers.RotatingFileHandler)]
    children: dict[int, float] = {}
    stopping = False

    def start_child() -> None:
        pid = os.fork()
        if pid == 0:  # the child: serve, and never return into the parent's code
            code = 1
            try:
                _die_with_parent()
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, signal.SIG_DFL)
                for handler in rotating:
                    root.removeHandler(handler)
                    appender = logging.handlers.WatchedFileHandler(handler.baseFilename, encoding="utf-8")
                    appender.setFormatter(handler.formatter)
                    for log_filter in handler.filters:  # repeated messages are dropped here too
                        appender.addFilter(log_filter)
                    root.addHandler(appender)
                code = child_main(tornado.netutil.bind_sockets(port, address, reuse_port=True))
            except BaseException:  # noqa: BLE001 - logged here: os._exit below would hide it
                log.exception("server process %d failed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = time.monotonic()

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    for _ in range(count):
        start_child()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if pidfile is not None:
        write_pidfile(pidfile)
    log.info("supervising %d server processes on %s port %d (pid %d)", count,
             address or "every address", port, os.getpid())
    try:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                _rotate_if_due(rotating)
                time.sleep(0.5)
                continue
            started = children.pop(pid, None)
            if started is None or stopping:
                continue
            log.error("server process %d ended (status %d); starting another", pid, status)
            if time.monotonic() - started < RESTART_PAUSE_SECONDS:
                time.sleep(RESTART_PAUSE_SECONDS)
            if not stopping:
                start_child()
    finally:
        if pidfile is not None:
            try:
                if int(pidfile.read_text().split()[0]) == os.getpid():
                    pidfile.unlink()
            except (OSError, ValueError, IndexError):
                pass
    log.info("all server processes stopped")
    return 0


def _rotate_if_due(handlers: list[logging.handlers.RotatingFileHandler]) -> None:
    probe = logging.makeLogRecord({"msg": ""})
    for handler in handlers:
        try:
            if handler.shouldRollover(probe):
                handler.doRollover()
        except OSError as error:
            log.warning("cannot rotate %s: %s", handler.baseFilename, error)
