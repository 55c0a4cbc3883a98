"""Identical log messages in a burst are written once, then once per interval with a count:
a failure that repeats on every turn of the event loop cannot flood the log file."""

from __future__ import annotations

import logging
import time

from symcommon.logs import RepeatFilter, setup_logging


def test_a_burst_of_identical_messages_is_written_once_then_counted(tmp_path):
    path = tmp_path / "server.log"
    setup_logging({"path": str(path), "level": 20, "maxFiles": 2, "maxFileSizeMB": 1}, to_stderr=True)
    root = logging.getLogger()
    try:
        [repeats] = {f for h in root.handlers for f in h.filters if isinstance(f, RepeatFilter)}
        repeats.interval = 0.5
        log = logging.getLogger("test.accept")
        for _ in range(5000):
            try:
                raise OSError(24, "Too many open files")
            except OSError:
                log.exception("accept failed")
        log.warning("something else")
        time.sleep(0.6)
        log.error("accept failed")  # same text, no exception: another message
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            log.exception("accept failed")
        for handler in root.handlers:
            handler.flush()
        lines = path.read_text().splitlines()
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
    headers = [line for line in lines if " test.accept: accept failed" in line]
    assert len(headers) == 3, lines
    assert headers[0].endswith("accept failed")
    assert headers[1].endswith("accept failed")
    assert "[the same message 4999 more times in the" in headers[2]
    assert sum("Traceback" in line for line in lines) == 2  # not 5000 tracebacks
    assert any(line.endswith("something else") for line in lines)
