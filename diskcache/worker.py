"""A parsing worker process: ``python -m diskcache.worker PARENT_PID [RETIRE_MB]``.

Reads one JSON request per line on stdin (``{"source": ..., "destination": ..., "debug_id":
...}``; the file must be for that debug id), turns the .sym file into a table, and answers one
JSON line on stdout: ``{"stats": {...}}`` or
``{"error": kind, "message": ...}``.  It imports only the parser and the table writer, so it
costs little memory; it ends when stdin closes or when the DiskCache dies.

With ``"follow": END_MARKER`` the source is a download still being written: the worker parses
what has arrived and waits for more, until the DiskCache writes the end marker, ``ok SIZE``
(the download is complete) or ``fail`` (abandon it).  So processing overlaps the download.

``{"answer": [offsets], "source": ..., "debug_id": ...}`` answers the offsets straight from a
complete .sym file (:mod:`diskcache.rawlookup`), without a table: ``{"module": {...},
"frames": [[offset, compact frame or null], ...], "strings": [...], "answer_stats": {...}}``
(see :func:`compact_frames`); error
``needs_table`` when the file must be answered from its table instead.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO, Callable

from diskcache.cachefiles import discard, open_existing, open_new
from diskcache.symfile import ModuleMismatch, NotASymbolFile, ProcessStats, process_symbol_file
from symcommon import jsonio


def _write_table(text: BinaryIO, destination: Path, debug_id: str | None = None,
                 identity: dict[str, Any] | None = None) -> ProcessStats:
    """Parse ``text`` into a complete, synced table file at ``destination`` (or no file);
    ``debug_id``: the module asked for, which the file's MODULE line must name;
    ``identity``: the source file's, recorded in the table."""
    try:
        with open_new(destination, "w+b") as table:
            stats = process_symbol_file(text, table, debug_id, spill_dir=destination.parent,
                                        identity=identity)
            table.flush()
            os.fsync(table.fileno())
        return stats
    except BaseException:
        discard(destination)
        raise


def process_file(source: Path, destination: Path, debug_id: str | None = None,
                 record_source: bool = False) -> ProcessStats:
    """Process a complete .sym file; ``record_source``: record in the table the path, size
    and mtime of the file as opened (a local file, whose table is kept while it is unchanged)."""
    with open(source, "rb") as text:
        identity = None
        if record_source:
            found = os.fstat(text.fileno())
            identity = {"path": os.fspath(source), "size": found.st_size, "mtime_ns": found.st_mtime_ns}
        return _write_table(text, destination, debug_id, identity)


#: A worker that has caught up with a download looks again after FIRST_POLL_SECONDS, then
#: twice as long each time up to FOLLOW_POLL_SECONDS: a download on a fast network is only
#: briefly behind (and its end is seen at once), one that drips costs few wake-ups.
FIRST_POLL_SECONDS = 0.0005
FOLLOW_POLL_SECONDS = 0.005
PRIME_BYTES = 64 * 1024
#: Without a limit on the command line: a worker whose memory stays above this many MB after
#: a file (a fragmented heap that malloc_trim cannot give back) asks to be replaced.
RETIRE_MB = 48


class DownloadAbandoned(Exception):
    """The download being followed failed or restarted: its table would be wrong."""


class FollowingReader:
    """A file still being written, read as a stream that ends where its end marker says."""

    def __init__(self, path: Path, end_marker: Path, timeout_seconds: float) -> None:
        self.path = path
        self.end_marker = end_marker
        self.timeout = timeout_seconds
        self.position = 0
        self._file: Any = None
        self._pending = b""  # read by prime(), handed out first

    def prime(self) -> None:
        """Wait for the download's first bytes (raises if it fails first).  The table is
        created only then: a download that never starts (a 404, a store down) leaves no
        table file behind, and a table being written means the download has begun."""
        self._pending = self.read(PRIME_BYTES)

    def _end(self) -> int | None:
        """The final size once the download is complete; raises if it was abandoned."""
        try:
            with open_existing(self.end_marker) as marker:
                text = marker.read().decode("ascii", "replace")
        except FileNotFoundError:
            return None
        if not text:  # (the marker is written whole, by a rename; this is only prudence)
            return None
        if not text.startswith("ok "):
            raise DownloadAbandoned("the download failed or was restarted")
        return int(text.split()[1])

    def read(self, size: int = -1) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        return self._follow(lambda file: file.read(size))

    def readinto(self, view: Any) -> int:
        """As a file's: what has arrived, at most ``len(view)`` bytes; 0 only at the end.
        Read straight into ``view`` (the scan's buffer): no bytes object per read."""
        if self._pending:
            data, self._pending = self._pending[:len(view)], self._pending[len(view):]
            view[:len(data)] = data
            return len(data)
        return self._follow(lambda file: file.readinto(view))

    def _follow(self, read_some: Callable[[BinaryIO], Any]) -> Any:
        """``read_some(file)`` (bytes, or a count of bytes read) once it gives something, or
        at the end of the complete download (then b"" or 0, as it gave)."""
        deadline = time.monotonic() + self.timeout
        pause = FIRST_POLL_SECONDS
        complete = False  # the end marker was seen before this read: no more data will come
        end: int | None = None
        while True:
            if self._file is None:
                try:
                    self._file = open_existing(self.path)
                except FileNotFoundError:
                    if complete:
                        raise DownloadAbandoned("the download is complete but its file is gone") from None
            got = read_some(self._file) if self._file is not None else None
            if got:
                self.position += got if isinstance(got, int) else len(got)
                return got
            if complete:
                if self.position == end:
                    return got
                raise DownloadAbandoned(f"the download has {self.position} bytes, not {end}")
            end = self._end()
            if end is not None:
                complete = True  # read once more: the last bytes were written before the marker
                continue
            if time.monotonic() > deadline:
                raise DownloadAbandoned(f"no data for {self.timeout:.0f}s")
            time.sleep(pause)
            pause = min(pause * 2, FOLLOW_POLL_SECONDS)

    def __enter__(self) -> FollowingReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def process_download(source: Path, end_marker: Path, destination: Path, timeout_seconds: float,
                     debug_id: str | None = None) -> ProcessStats:
    """:func:`process_file` for a download still being written (see the module docstring)."""
    reader = FollowingReader(source, end_marker, timeout_seconds)
    try:
        reader.prime()
        return _write_table(reader, destination, debug_id)  # type: ignore[arg-type]
    finally:
        reader.close()


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


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """Answer a request's offsets from its .sym file (imported on first use: a worker that
    only builds tables does not load the table reader)."""
    from diskcache.rawlookup import answer_from_sym

    offsets = [int(offset) for offset in request["answer"]]
    source = None
    if "follow" in request:  # a download still arriving: scanned as it comes
        source = FollowingReader(Path(request["source"]), Path(request["follow"]), float(request["timeout"]))
        source.prime()
    module, frames, stats = answer_from_sym(Path(request["source"]), offsets, request.get("debug_id"), source)
    return {"module": module, "answer_stats": asdict(stats), **compact_frames(frames)}


def compact_frames(frames: dict[int, Any]) -> dict[str, list]:
    """Frames as JSON, each name and file sent once (``strings``) and named by its index: 5,000
    offsets in one function of a 60 KB name would otherwise be a 300 MB reply.  Read back by
    :func:`diskcache.processing.frames_from_compact`."""
    strings: dict[str, int] = {}

    def ref(text: str | None) -> int | None:
        return None if text is None else strings.setdefault(text, len(strings))

    listed = [[offset, None if frame is None else [
        ref(frame.function), frame.function_offset, frame.function_size, ref(frame.file), frame.line,
        [[ref(inline.function), ref(inline.file), inline.line] for inline in frame.inlines]]]
        for offset, frame in frames.items()]
    return {"strings": list(strings), "frames": listed}


def handle(line: bytes) -> dict:
    try:
        request = jsonio.loads(line)
        debug_id = request.get("debug_id")
        if "answer" in request:
            return answer(request)
        if "follow" in request:
            stats = process_download(Path(request["source"]), Path(request["follow"]),
                                     Path(request["destination"]), float(request["timeout"]), debug_id)
        else:
            stats = process_file(Path(request["source"]), Path(request["destination"]), debug_id,
                                 bool(request.get("record_source")))
    except NotASymbolFile as error:
        return {"error": "not_a_symbol_file", "message": str(error)}
    except ModuleMismatch as error:
        return {"error": "wrong_module", "expected": error.expected, "found": error.found}
    except DownloadAbandoned as error:
        return {"error": "abandoned", "message": str(error)}
    except FileNotFoundError as error:  # a RAW entry evicted or replaced by its table meanwhile
        return {"error": "missing", "message": str(error)}
    except Exception as error:  # noqa: BLE001 - reported to the DiskCache, which logs it
        if type(error).__name__ == "NeedsTable":
            return {"error": "needs_table", "message": str(error)}
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


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def main(argv: list[str]) -> int:
    _die_with_parent(int(argv[1]) if len(argv) > 1 else os.getppid())
    retire_bytes = (int(argv[2]) if len(argv) > 2 else RETIRE_MB) * 1024 * 1024
    release_memory = _release_memory()
    for line in sys.stdin.buffer:
        reply = handle(line)
        release_memory()
        if _rss_bytes() > retire_bytes:
            reply["retire"] = True
        sys.stdout.buffer.write(jsonio.dumps(reply) + b"\n")  # orjson: an answer can be 3,000 frames
        sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
