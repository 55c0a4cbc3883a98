"""Logging as the config's ``log`` section says: a rotating file plus stderr."""

from __future__ import annotations

import logging
import logging.handlers
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


def setup_logging(log_config: dict[str, Any], to_stderr: bool = True) -> None:
    """Route every logger of this process to the configured file (rotated) and stderr."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(FORMAT)
    path = Path(log_config["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=log_config["maxFileSizeMB"] * MB,
        backupCount=max(log_config["maxFiles"] - 1, 0), encoding="utf-8")
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
