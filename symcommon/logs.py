"""Logging as the config's ``log`` section says: a rotating file plus stderr."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any

FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
MB = 1024 * 1024


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
    root.addHandler(file_handler)
    if to_stderr:
        stream_handler = logging.StreamHandler(sys.stderr)
        stream_handler.setFormatter(formatter)
        root.addHandler(stream_handler)
    root.setLevel(log_config["level"])
    logging.getLogger("tornado.access").setLevel(logging.WARNING)  # we log requests ourselves


def printable(text: Any, limit: int = 200) -> str:
    """Client- or symbol-file-supplied text made safe for a log line (escaped, bounded)."""
    escaped = str(text).encode("unicode_escape", "backslashreplace").decode("ascii")
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."
