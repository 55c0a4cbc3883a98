"""Opening and deleting files in the cache directory without following a symbolic link.

Kept apart from :mod:`diskcache.lru` so that a worker process, which only opens and deletes
files, does not import the LRU and the logging set-up it brings (a worker is started in a
burst of cold requests: each import is paid then).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO


def discard(path: Path) -> bool:
    """Delete a file (a link itself, never its target) if it is there; a disk that refuses
    (read-only, gone) is logged, not raised.  True if nothing is left at ``path``."""
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        import logging  # (imported by every server process already; a worker seldom gets here)

        from symcommon.logs import printable

        logging.getLogger("diskcache.lru").warning("cannot delete %s: %s", printable(path),
                                                   error.strerror or error)
        return False
    return True


def open_new(path: Path, mode: str = "wb") -> BinaryIO:
    """Create (or truncate) a file in the cache for writing; a symbolic link at ``path`` is
    refused (ELOOP) instead of being written through."""
    flags = os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    flags |= os.O_RDWR if "+" in mode else os.O_WRONLY
    descriptor = os.open(path, flags, 0o644)
    try:
        return os.fdopen(descriptor, mode)
    except BaseException:
        os.close(descriptor)
        raise


def open_existing(path: Path) -> BinaryIO:
    """Open a file in the cache for reading; a symbolic link is refused (ELOOP), not followed."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
