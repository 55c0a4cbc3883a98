"""Logging as the config's ``log`` section says: a rotating file plus stderr."""

from __future__ import annotations

import logging
import logging.handlers
import os
import stat
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
MB = 1024 * 1024
#: The same message (text, level, logger and exception) is written at most once per this many
#: seconds; the next one written says how many were left out.
REPEAT_SECONDS = 10.0


class RepeatFilter(logging.Filter):
    """Lets one of a run of identical records through per ``interval`` seconds.

    A failure that repeats on every turn of the event loop (accept failing with EMFILE, say)
    would otherwise write its traceback thousands of times a second, and log rotation would
    throw away the whole history within a minute.  The record let through after a quiet
    spell carries the count of those dropped.  The same instance serves every handler of a
    process, so a record is judged once however many handlers it goes to.
    """

    def __init__(self, interval: float = REPEAT_SECONDS, remembered: int = 1024) -> None:
        super().__init__()
        self.interval = interval
        self.remembered = remembered
        self._seen: OrderedDict[tuple, list] = OrderedDict()  # key -> [last written, dropped]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = getattr(record, "_repeat_verdict", None)
        if verdict is None:  # not yet seen by another handler
            with self._lock:
                verdict = self._judge(record)
            record._repeat_verdict = verdict  # type: ignore[attr-defined]
        return verdict

    def _judge(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        key = (record.name, record.levelno, record.getMessage(), type(error).__name__, str(error))
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.interval:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            record.msg = f"{record.getMessage()} [the same message {seen[1]} more times in the " \
                         f"{now - seen[0]:.1f} s before, not written]"
            record.args = None
        self._seen[key] = [now, 0]
        self._seen.move_to_end(key)
        while len(self._seen) > self.remembered:
            self._seen.popitem(last=False)
        return True


class LogFile(logging.handlers.RotatingFileHandler):
    """The log file, rotated by size, at a few microseconds a line.

    ``RotatingFileHandler`` formats each record twice, asks the file system twice whether the
    file is a regular one and flushes after every line: about 60 µs of a request's CPU when
    the server logs one line per request.  This one counts the bytes it writes (checking the
    file's real size, which other processes of the same server also write, now and then and
    before rotating), formats once, and writes the request lines (logger ``http``, below
    WARNING) once per turn of the event loop, after the answers of that turn were sent:
    every other line is flushed at once.
    """

    #: Bytes written between two looks at the file's real size.
    RECHECK_BYTES = 256 * 1024

    def __init__(self, filename: Path, max_bytes: int, backup_count: int) -> None:
        super().__init__(filename, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8")
        self._flush_pending = False
        self._size = self._unchecked = 0
        self._regular = True
        self._look_at_file()

    def _look_at_file(self) -> None:
        try:
            found = os.fstat(self.stream.fileno())
        except (OSError, ValueError, AttributeError):
            return
        self._size, self._unchecked = found.st_size, 0
        self._regular = stat.S_ISREG(found.st_mode)  # never rotate /dev/null and the like

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_line(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING or record.name != "http":
                self.flush()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - as logging's own handlers do
            self.handleError(record)

    def write_line(self, text: str) -> None:
        """Write an already formatted request line (see :func:`request_line`)."""
        with self.lock:  # type: ignore[union-attr]
            if self.stream is None:
                self.stream = self._open()
                self._look_at_file()
            length = len(text)
            if self.maxBytes > 0 and self._regular and (
                    self._size + length >= self.maxBytes or self._unchecked > self.RECHECK_BYTES):
                self.stream.flush()
                self._look_at_file()
                if self._size + length >= self.maxBytes and self._size > 0:
                    self.doRollover()
                    self._look_at_file()
            self.stream.write(text)
            self._size += length
            self._unchecked += length
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flush_pending:
            return
        # imported here: the parsing workers import this module (for printable) but never log
        # to a file, and asyncio, with the ssl it loads, would cost each of them about 10 MB
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop's thread
            self.flush()
            return
        self._flush_pending = True
        loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_pending = False
        self.flush()


class _Clock:
    """``asctime`` as logging.Formatter writes it, the seconds formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._text = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._text},{int((now - second) * 1000):03d}"


_CLOCK = _Clock()


def request_line(logger: logging.Logger, message: str) -> None:
    """Log one INFO request line: straight into the log file when that is the only place
    lines go (as quickstart runs the servers), the same text ``FORMAT`` gives, without a
    LogRecord, filters or a formatter; through ``logger`` otherwise (stderr too, or tests)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handlers = logging.getLogger().handlers
    if len(handlers) == 1 and type(handlers[0]) is LogFile and not logger.handlers and logger.propagate:
        handlers[0].write_line(f"{_CLOCK.now()} {os.getpid()} INFO {logger.name}: {message}\n")
    else:
        logger.info("%s", message)


def setup_logging(log_config: dict[str, Any], to_stderr: bool = True) -> None:
    """Route every logger of this process to the configured file (rotated) and stderr."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(FORMAT)
    path = Path(log_config["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    # Our format names no source file, thread or process name: do not look them up per record
    # (the logging HOWTO's "Optimization" section).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logMultiprocessing = False
    file_handler = LogFile(path, log_config["maxFileSizeMB"] * MB, max(log_config["maxFiles"] - 1, 0))
    file_handler.setFormatter(formatter)
    repeats = RepeatFilter()
    file_handler.addFilter(repeats)
    root.addHandler(file_handler)
    if to_stderr:
        stream_handler = logging.StreamHandler(sys.stderr)
        stream_handler.setFormatter(formatter)
        stream_handler.addFilter(repeats)
        root.addHandler(stream_handler)
    root.setLevel(log_config["level"])
    logging.getLogger("tornado.access").setLevel(logging.WARNING)  # we log requests ourselves


def printable(text: Any, limit: int = 200) -> str:
    """Client- or symbol-file-supplied text made safe for a log line (escaped, bounded)."""
    escaped = str(text).encode("unicode_escape", "backslashreplace").decode("ascii")
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."
