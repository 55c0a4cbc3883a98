"""A parsing worker process: ``python -m diskcache.worker PARENT_PID``.

Reads one JSON request per line on stdin (``{"source": ..., "destination": ...}``), turns the
.sym file into a table, and answers one JSON line on stdout: ``{"stats": {...}}`` or
``{"error": kind, "message": ...}``.  It imports only the parser and the table writer, so it
costs little memory; it ends when stdin closes or when the DiskCache dies.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from diskcache.lru import discard
from diskcache.symfile import NotASymbolFile, ProcessStats, process_symbol_file


def process_file(source: Path, destination: Path) -> ProcessStats:
    """Parse ``source`` into a complete, synced table file at ``destination`` (or no file)."""
    try:
        with open(source, "rb") as text, open(destination, "w+b") as table:
            stats = process_symbol_file(text, table)
            table.flush()
            os.fsync(table.fileno())
        return stats
    except BaseException:
        discard(destination)
        raise


def _die_with_parent(parent: int) -> None:
    """If the DiskCache is killed, its workers go too (Linux) instead of finishing files
    nobody will rename."""
    try:
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the line above
        sys.exit(1)


def handle(line: bytes) -> dict:
    try:
        request = json.loads(line)
        stats = process_file(Path(request["source"]), Path(request["destination"]))
    except NotASymbolFile as error:
        return {"error": "not_a_symbol_file", "message": str(error)}
    except Exception as error:  # noqa: BLE001 - reported to the DiskCache, which logs it
        return {"error": type(error).__name__, "message": str(error)}
    return {"stats": asdict(stats)}


def _release_memory() -> Callable[[], object]:
    """glibc keeps freed heap memory for reuse; between files a worker gives it back, so an
    idle worker is small again whatever it processed last (Linux with glibc; else a no-op)."""
    try:
        import ctypes

        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


def main(argv: list[str]) -> int:
    _die_with_parent(int(argv[1]) if len(argv) > 1 else os.getppid())
    release_memory = _release_memory()
    for line in sys.stdin.buffer:
        reply = handle(line)
        release_memory()
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
