"""Answering lookups straight from a .sym file, before its table is built.

A cold request needs a few thousand addresses, not a table: building the table of a big
module is CPU-bound Python (about 85 MB/s), while finding every FUNC and PUBLIC line with a
C-level regex search and keeping only (address, size, where the line is) runs at several
hundred MB/s.  The answers must be the table's, byte for byte, so everything that decides
them is the parser's own code, run on the few lines that matter:

* FUNC and PUBLIC lines in the usual strict form are indexed by one pass per buffer: the
  compiled ``_symscan.scan`` where it is built, else one regex search; when a buffer holds
  other ``FUNC ``/``PUBLIC `` lines, each of its lines goes through the parser's
  :meth:`_Parser.record` instead (by the regex pass, which arranges that).
* The index is ordered and filtered as the table writer does it (FUNCs by address, ties in
  file order, size 0 and FUNCs starting inside the last kept one dropped; PUBLICs, first in
  file order wins), and :meth:`SymbolTable.lookup` runs on it unchanged (:class:`RawSymbols`
  stands in for the table's sorted arrays).
* A hit FUNC's line and block are read again and parsed by the parser (its name by
  ``record``, its block by :func:`parse_func_block`); FILE and INLINE_ORIGIN names are
  read for just the ids those blocks use, by running the parser over the stretches of the
  file where such records are (remembered during the scan).

Memory is the index (16 bytes a FUNC, 12 a PUBLIC: about 26 MB for a 1 GB module) plus a
buffer of :data:`CHUNK_BYTES`.  A file with a line of more than half of ``LONG_LINE``
raises :class:`NeedsTable`: the parser reads such lines by their head, which this scan
does not imitate, so that rare file is answered from its table instead.
"""

from __future__ import annotations

import os
import re
import time
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import islice, repeat
from operator import and_, le, lshift, or_, rshift
from pathlib import Path
from typing import Any, BinaryIO, Iterable

from diskcache import compiled
from diskcache.symfile import KEYWORDS, LONG_LINE, ModuleMismatch, NotASymbolFile, _check_module, _Parser
from diskcache.tablereader import SymbolTable
from symcommon.frames import FrameInfo


CHUNK_BYTES = 4 * 1024 * 1024
FIRST_CHUNK_BYTES = 64 * 1024
#: A buffer's lines are matched a window of about this many bytes at a time.
MATCH_WINDOW = 256 * 1024
#: FILE and INLINE_ORIGIN runs are read again in parts of this size (the parser's lists of a
#: part's records are several times its size).
NAMES_CHUNK_BYTES = 1024 * 1024
#: A stretch this long without a newline may be part of a long line: the file needs its table.
LONG_WINDOW = LONG_LINE // 2
#: Up to this many FILE and INLINE_ORIGIN ids, their lines are found by one regex of the ids;
#: more are read by the parser running over every FILE and INLINE_ORIGIN line.
TARGETED_IDS = 64
#: Hit FUNCs whose blocks are held at once (a job of a million addresses is answered in parts).
BLOCKS_PER_PASS = 20_000
#: A FUNC's line and block are read from here on, this much at first (doubled until whole): a
#: block of a big module is about a kilobyte, and 64 KB reads cost 10% of a 3,000-address answer.
_READ_AHEAD = 4 * 1024

_HEX = rb"[0-9a-fA-F]{1,16}"
#: The lines the scan looks at, in one regex search per buffer (each alternative is told by
#: the last group it sets, ``Match.lastindex``): a FUNC line (groups 2, 3: address and size,
#: set if it is in the form the parser's own fast path reads; the rest of the line is read
#: again when needed), a PUBLIC line (group 5: address, likewise), a run of FILE and
#: INLINE_ORIGIN lines (6), a MODULE or INFO line (7).  The run is matched possessively: a
#: plain ``*`` kept a backtracking point per line (24 MB and 5x the time for a 5 MB run).
_LINES = re.compile(
    rb"\n(?=[FPIM])(?:FUNC ()(?:(?:m )?(" + _HEX + rb") (" + _HEX + rb") " + _HEX + rb" [^\r\n])?"
    rb"|PUBLIC ()(?:(?:m )?(" + _HEX + rb") " + _HEX + rb" [^\r\n])?"
    rb"|((?:FILE|INLINE_ORIGIN) [^\n]*+(?:\n(?:FILE|INLINE_ORIGIN) [^\n]*+)*+)"
    rb"|(MODULE|INFO)(?= |\r?\n))")
_STRICT_FUNC, _OTHER_FUNC, _STRICT_PUBLIC, _OTHER_PUBLIC, _NAME_RUN, _HEADER = 3, 1, 5, 4, 6, 7
_ANY_LINE = {b"FUNC": re.compile(rb"\nFUNC [^\n]*"), b"PUBLIC": re.compile(rb"\nPUBLIC [^\n]*")}
#: The line that ends a FUNC's block, as the parser decides it.
_NEXT_KEYWORD = re.compile(rb"\n(?:" + KEYWORDS + rb")(?= |\r?\n)")


class NeedsTable(Exception):
    """The file has something this scan does not read as the parser would (a long line)."""


class _Records:
    """Stands in for one of a TableWriter's tables under the parser: keeps the first
    record of each wanted key (all keys if ``wanted`` is None), in file order."""

    def __init__(self, wanted: set[int] | None = None) -> None:
        self.wanted = wanted
        self.found: dict[int, bytes] = {}
        self.count = 0

    def add(self, key: int, value: bytes, aux: int = 0) -> None:
        self.count += 1
        if (self.wanted is None or key in self.wanted) and key not in self.found:
            self.found[key] = value

    def add_many(self, keys: list[int], values: list[bytes], aux: Any = None) -> None:
        self.count += len(keys)
        wanted, found = self.wanted, self.found
        for key, value in zip(keys, values):
            if (wanted is None or key in wanted) and key not in found:
                found[key] = value

    def done(self) -> bool:
        return self.wanted is not None and len(self.found) >= len(self.wanted)


class _Writer:
    """What :class:`_Parser` writes to, for reading single lines or runs of names: the
    records of the wanted keys of each table (None: all)."""

    def __init__(self, files: set[int] | None = None, origins: set[int] | None = None,
                 publics: set[int] | None = None) -> None:
        self.funcs = _Records(set())
        self.publics = _Records(publics)
        self.files = _Records(files)
        self.origins = _Records(origins)


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


@dataclass
class RawIndex:
    """Where a .sym file's FUNC and PUBLIC lines are, ordered as the table orders them."""

    path: Path
    size: int | None
    module: dict[str, Any]
    func_keys: array = field(default_factory=lambda: array("I"))
    func_sizes: array = field(default_factory=lambda: array("I"))
    func_lines: array = field(default_factory=lambda: array("I"))
    public_keys: array = field(default_factory=lambda: array("I"))
    public_lines: array = field(default_factory=lambda: array("I"))
    #: (start, end) file offsets of the stretches holding FILE and INLINE_ORIGIN lines
    name_ranges: list[tuple[int, int]] = field(default_factory=list)

    @property
    def code_file(self) -> str | None:
        return self.module.get("code_file")


class _Scan:
    """One pass over the file, a buffer at a time (see the module docstring)."""

    def __init__(self, path: Path, size: int | None, expected_debug_id: str | None) -> None:
        self.index = RawIndex(path, size, {})
        self.expected = expected_debug_id
        self.header = _Parser(_Writer())  # MODULE and INFO lines go through it, in file order
        self.lines = _Parser(_Writer())  # FUNC and PUBLIC lines not in the strict form

    def _extend(self, name: str, values: list[int]) -> None:
        """Append to one of the index's columns, widened to 64 bits by the first value that
        needs it (addresses and sizes of real modules fit 32)."""
        column = getattr(self.index, name)
        if column.typecode == "I" and values and max(values) >= 1 << 32:
            column = array("Q", column)
            setattr(self.index, name, column)
        column.extend(values)

    def _extend_packed(self, name: str, packed: bytes, count: int) -> None:
        """Append a column of ``_symscan.scan``: ``count`` native unsigned ints of 4 bytes, or
        of 8 if one of them needs it."""
        if not count:
            return
        typecode = "I" if len(packed) == 4 * count else "Q"
        if typecode == getattr(self.index, name).typecode:
            getattr(self.index, name).frombytes(packed)
        else:  # (widened as a list of values would be)
            self._extend(name, array(typecode, packed).tolist())

    def buffer(self, buffer: bytearray, base: int, length: int) -> None:
        """Index ``buffer[:length]`` (a newline, whole lines, a newline at the end), whose
        byte ``i`` is the file's byte ``base + i``."""
        for start in range(0, length - LONG_WINDOW + 1, LONG_WINDOW):
            if buffer.find(b"\n", start, start + LONG_WINDOW) < 0:
                raise NeedsTable("a line of more than %d bytes" % LONG_WINDOW)
        if compiled.symscan is not None and self._compiled_buffer(buffer, base, length):
            return
        # In windows of about MATCH_WINDOW bytes: a window's matches are held as a list of
        # tuples, and a 4 MB buffer of PUBLIC lines made a list of 20 MB.  A window ends after
        # a newline, and the next one starts at that newline (where its first line's match
        # starts); a FILE/INLINE_ORIGIN run cut there is joined again by _name_run.
        start = 0
        while start < length - 1:
            end = buffer.find(b"\n", min(start + MATCH_WINDOW, length - 1), length) + 1
            self._window(buffer, base, start, end)
            start = end - 1

    def _compiled_buffer(self, buffer: bytearray, base: int, length: int) -> bool:
        """Index ``buffer[:length]`` as :meth:`_window` does, by ``_symscan.scan``; False
        (nothing done) if a FUNC or PUBLIC line is not in the strict form: then every such
        line of the buffer is the parser's to read, which only the regex pass arranges."""
        (other_funcs, other_publics, func_count, public_count, func_keys, func_sizes, func_lines,
         public_keys, public_lines, name_runs, headers) = compiled.symscan.scan(buffer, 0, length, base)
        if other_funcs or other_publics:
            return False
        self._extend_packed("func_keys", func_keys, func_count)
        self._extend_packed("func_sizes", func_sizes, func_count)
        self._extend_packed("func_lines", func_lines, func_count)
        self._extend_packed("public_keys", public_keys, public_count)
        self._extend_packed("public_lines", public_lines, public_count)
        for start, end in name_runs:
            self._name_run(base + start, base + end)
        for at in headers:
            self._header(buffer, at)
        if (name_runs or headers) and self.header.module is not None:
            _check_module(self.header, self.expected)
        return True

    def _header(self, buffer: bytearray, at: int) -> None:
        """The MODULE or INFO line after the newline at ``buffer[at]``, read by the parser."""
        line = bytes(buffer[at + 1:buffer.index(b"\n", at + 1)])
        self.header.record(line.partition(b" ")[0].rstrip(b"\r"), _strip_cr(line))

    def _window(self, buffer: bytearray, base: int, start: int, length: int) -> None:
        """Index the lines of ``buffer[start:length]``."""
        found = [(match.start(), match.lastindex, match[2], match[3], match[5], match.end())
                 for match in _LINES.finditer(buffer, start, length)]
        base += 1  # a match starts at the newline before its line
        kinds = {kind for _, kind, _, _, _, _ in found}
        if _OTHER_FUNC in kinds:
            funcs = self._each_line(buffer, start, length, b"FUNC")
            self._extend("func_keys", [address for _, address, _ in funcs])
            self._extend("func_sizes", [size for _, _, size in funcs])
        else:
            funcs = [(at, address, size) for at, kind, address, size, _, _ in found if kind == _STRICT_FUNC]
            self._extend("func_keys", [int(address, 16) for _, address, _ in funcs])
            self._extend("func_sizes", [int(size, 16) for _, _, size in funcs])
        self._extend("func_lines", [base + at for at, _, _ in funcs])
        if _OTHER_PUBLIC in kinds:
            publics = self._each_line(buffer, start, length, b"PUBLIC")
            self._extend("public_keys", [address for _, address, _ in publics])
        else:
            publics = [(at, address, None) for at, kind, _, _, address, _ in found if kind == _STRICT_PUBLIC]
            self._extend("public_keys", [int(address, 16) for _, address, _ in publics])
        self._extend("public_lines", [base + at for at, _, _ in publics])
        if _NAME_RUN in kinds or _HEADER in kinds:
            for at, kind, _, _, _, end in found:
                if kind == _NAME_RUN:
                    self._name_run(base + at - 1, base + end - 1)
                elif kind == _HEADER:
                    self._header(buffer, at)
            if self.header.module is not None:
                _check_module(self.header, self.expected)

    def _name_run(self, start: int, end: int) -> None:
        """Remember a run of FILE and INLINE_ORIGIN lines: from the newline before it to
        the newline after it (file offsets)."""
        ranges = self.index.name_ranges
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], end)
        else:
            ranges.append((start, end))

    def _each_line(self, buffer: bytearray, start: int, length: int, keyword: bytes) -> list[tuple[int, Any, Any]]:
        """Every ``keyword`` line of ``buffer``, read by the parser's ``record``."""
        found: list[tuple[int, Any, Any]] = []
        parser = self.lines
        publics = parser.writer.publics
        for match in _ANY_LINE[keyword].finditer(buffer, start, length):
            line = _strip_cr(bytes(match[0][1:]))
            if keyword == b"FUNC":
                parser.open_func = None
                parser.record(keyword, line)
                if parser.open_func is not None:
                    found.append((match.start(), parser.open_func[0], parser.open_func[1]))
                parser.open_func = None
            else:
                publics.found.clear()
                parser.record(keyword, line)
                if publics.found:
                    found.append((match.start(), next(iter(publics.found)), None))
        return found


def scan(path: Path, expected_debug_id: str | None = None, source: Any = None) -> RawIndex:
    """Index the FUNC and PUBLIC lines of the .sym file at ``path``; ``source``: what to
    read it from instead (a download still arriving: anything with ``readinto``, which
    returns 0 only at the end of the complete file).

    Raises :class:`NotASymbolFile`, :class:`ModuleMismatch` (as soon as the MODULE line
    names another debug id) and :class:`NeedsTable`."""
    with (open(path, "rb") if source is None else source) as text:
        state = _Scan(path, _file_size(text) if source is None else None, expected_debug_id)
        # One buffer, reused: the unfinished last line moves to its front, the next read
        # follows it (fresh 4 MB objects per read left a heap of twice the index).  Reads
        # start at FIRST_CHUNK_BYTES and double, each time one fills its chunk, up to
        # CHUNK_BYTES, the buffer growing with them: most modules are small, and a 4.5 MB
        # buffer zeroed per file cost a small module's scan about as much as reading it
        # (doubling at every read, a download arriving in small reads grew it to 4 MB
        # whatever its size).  A complete file smaller than CHUNK_BYTES is read whole at
        # once (each growth zeroed and copied the buffer: a fifth of a small answer).
        size = state.index.size
        chunk = FIRST_CHUNK_BYTES if size is None else max(min(size + 1, CHUNK_BYTES), FIRST_CHUNK_BYTES)
        buffer = bytearray(1 + chunk + 1)
        view = memoryview(buffer)
        buffer[0] = ord("\n")  # the first line is preceded by a virtual newline
        filled = 1
        base = -1  # the file offset of buffer[0]
        while True:
            if len(buffer) < filled + chunk + 1:
                view.release()
                buffer.extend(bytes(filled + chunk + 1 - len(buffer)))
                view = memoryview(buffer)
            read = text.readinto(view[filled:filled + chunk])
            if read == chunk:  # (a download arriving gives less: no reason to grow)
                chunk = min(2 * chunk, CHUNK_BYTES)
            if base == -1 and not buffer.startswith(b"MODULE ", 1, filled + read):
                raise NotASymbolFile("the file does not start with a MODULE record")
            if not read:
                if filled > 1:  # the last line has no newline of its own
                    buffer[filled] = ord("\n")
                    state.buffer(buffer, base, filled + 1)
                break
            end = filled + read
            last = buffer.rfind(b"\n", filled, end)
            if last < 0:
                filled = end
                if filled > LONG_WINDOW:
                    raise NeedsTable("a line of more than %d bytes" % LONG_WINDOW)
                continue
            state.buffer(buffer, base, last + 1)
            buffer[:end - last] = buffer[last:end]
            base += last
            filled = end - last
        view.release()
    if source is not None:
        state.index.size = os.stat(path).st_size  # complete now
    header = state.header
    if header.module is None:
        raise NotASymbolFile("the MODULE record is malformed")
    _check_module(header, expected_debug_id)
    index = state.index
    index.module = dict(header.module, code_id=header.code_id, code_file=header.code_file)
    _order(index)
    return index


def _file_size(text: BinaryIO) -> int:
    return os.fstat(text.fileno()).st_size


def _in_order(keys: array) -> bool:
    if compiled.symscan is not None:
        return compiled.symscan.nondecreasing(keys)
    return all(map(le, keys, islice(keys, 1, None)))


def _disjoint(keys: array, sizes: array) -> bool:
    """Every size above 0, and each FUNC ends before the next one starts."""
    if compiled.symscan is not None:
        return compiled.symscan.disjoint(keys, sizes)
    return all(sizes) and all(map(le, map(int.__add__, keys, sizes), islice(keys, 1, None)))


def _sort(keys: array, lines: array, *columns: array) -> None:
    """Sort the columns by ``keys`` in place, ties in file order (``lines``, the positions,
    grow with it).  Keys and positions below 2**32 are sorted packed in one int each (one
    list of ints at a time: 21 MB for a million records); else by a list of indexes."""
    if not columns and len(keys) and max(keys) < 1 << 32 and max(lines) < 1 << 32:
        packed = sorted(map(or_, map(lshift, keys, repeat(32)), lines))
        keys[:] = array(keys.typecode, map(rshift, packed, repeat(32)))
        lines[:] = array(lines.typecode, map(and_, packed, repeat(0xFFFFFFFF)))
        return
    order = sorted(range(len(keys)), key=keys.__getitem__)
    for column in (keys, lines, *columns):
        column[:] = array(column.typecode, map(column.__getitem__, order))


def _order(index: RawIndex) -> None:
    """Order the FUNCs and PUBLICs as the table writer does, and keep the FUNCs it keeps."""
    keys, sizes, lines = index.func_keys, index.func_sizes, index.func_lines
    if not _in_order(keys):
        _sort(keys, lines, sizes)
    if not _disjoint(keys, sizes):
        kept, end = 0, 0
        for i in range(len(keys)):  # size 0 covers nothing; one starting inside the last kept is dropped
            key, size = keys[i], sizes[i]
            if size and key >= end:
                keys[kept], sizes[kept], lines[kept] = key, size, lines[i]
                kept += 1
                end = key + size
        del keys[kept:], sizes[kept:], lines[kept:]
    # PUBLICs are ordered only if many lookups need them (see _RawPublics.floor)


class _LineReader:
    """Reads the lines of a .sym file again, at positions the scan recorded."""

    def __init__(self, text: BinaryIO, size: int) -> None:
        self.text = text
        self.size = size

    def read(self, start: int, length: int) -> bytes:
        self.text.seek(start)
        return self.text.read(length)

    def line(self, start: int) -> tuple[bytes, bytes, int]:
        """The line at ``start`` (without its newline and CR), what was read after it (from
        its newline on), and the file offset where that ends."""
        length = _READ_AHEAD
        while True:
            data = self.read(start, length)
            end = data.find(b"\n")
            if end >= 0 or start + len(data) >= self.size or not data:
                end = len(data) if end < 0 else end
                return _strip_cr(data[:end]), data[end:], start + len(data)
            length *= 2

    def block(self, start: int) -> tuple[bytes, bytes]:
        """The FUNC line at ``start`` and its block: the lines up to the next keyword line
        (the parser's, which adds a newline to a last line that has none)."""
        line, after, read_end = self.line(start)
        while True:
            at_end = read_end >= self.size
            if at_end and not after.endswith(b"\n"):
                after += b"\n"
            match = _NEXT_KEYWORD.search(after)
            if match is not None:
                return line, after[1:match.start() + 1]
            if at_end:
                return line, after[1:]
            more = self.read(read_end, max(len(after), _READ_AHEAD))
            after += more
            read_end = read_end + len(more) if more else self.size


class _RawFuncs:
    """The kept FUNCs, shaped as :meth:`SymbolTable.lookup` uses a table's FUNCs."""

    def __init__(self, index: RawIndex, reader: _LineReader) -> None:
        self.keys = index.func_keys
        self.aux = index.func_sizes
        self._lines = index.func_lines
        self._reader = reader
        self._parser = _Parser(_Writer())

    def floor(self, key: int) -> int:
        return bisect_right(self.keys, key) - 1

    def value(self, index: int) -> bytes:
        """The FUNC's name and block, as the table stores them."""
        line, block = self._reader.block(self._lines[index])
        parser = self._parser
        parser.open_func = None
        parser.record(b"FUNC", line)
        name = parser.open_func[2] if parser.open_func is not None else b""
        parser.open_func = None
        return name + b"\n" + block


class _PackedKeys:
    """``keys[public]`` for a PUBLIC named by its packed ``address << 32 | line position``."""

    def __getitem__(self, packed: int) -> int:
        return packed >> 32


class _RawPublics:
    """The PUBLICs, first in file order of each address winning.  Most lookups land in a
    FUNC and never ask for a PUBLIC, and files list PUBLICs in file order, often not in
    address order.  PUBLICs not in order are not sorted whole: the first UNSORTED_LOOKUPS
    lookups are C-level passes over the addresses; then runs of RUN_RECORDS (address,
    position) pairs, packed in one int each, are sorted each on its own (a few MB, where
    sorting all at once held a list of 21 MB for a 1 GB module) and a lookup bisects every
    run.  A PUBLIC is then named by its packed pair (see :class:`_PackedKeys`)."""

    UNSORTED_LOOKUPS = 16
    RUN_RECORDS = 1 << 16

    def __init__(self, index: RawIndex, reader: _LineReader) -> None:
        self.keys: Any = index.public_keys
        self._addresses = index.public_keys
        self._lines = index.public_lines
        self._reader = reader
        self._parser = _Parser(_Writer())
        self._packed = not _in_order(self._addresses)
        self._runs: list[array] | None = None
        self._lookups = 0
        if self._packed:
            if (len(self._addresses) and max(self._addresses) >= 1 << 32) or max(self._lines, default=0) >= 1 << 32:
                _sort(self._addresses, self._lines)  # (beyond 32 bits: sorted whole, ties in file order)
                self._packed = False
            else:
                self.keys = _PackedKeys()

    def floor(self, key: int) -> int:
        if not self._packed:
            found = bisect_right(self.keys, key) - 1
            return bisect_left(self.keys, self.keys[found]) if found >= 0 else found
        if key >= 1 << 32:
            key = (1 << 32) - 1  # every address is below 2**32 here
        self._lookups += 1
        if self._runs is None and self._lookups <= self.UNSORTED_LOOKUPS:
            best = max(filter(key.__ge__, self._addresses), default=None)
            if best is None:
                return -1
            return best << 32 | self._lines[self._addresses.index(best)]  # the first in file order
        if self._runs is None:
            self._runs = [array("Q", sorted(map(or_, map(lshift, self._addresses[start:start + self.RUN_RECORDS],
                                                         repeat(32)), self._lines[start:start + self.RUN_RECORDS])))
                          for start in range(0, len(self._addresses), self.RUN_RECORDS)]
        below = [run[at] for run in self._runs if (at := bisect_right(run, key << 32 | 0xFFFFFFFF) - 1) >= 0]
        if not below:
            return -1
        best = max(below) >> 32
        return min(run[at] for run in self._runs if (at := bisect_left(run, best << 32)) < len(run)
                   and run[at] >> 32 == best)

    def value(self, index: int) -> bytes:
        line, _, _ = self._reader.line(index & 0xFFFFFFFF if self._packed else self._lines[index])
        publics = self._parser.writer.publics
        publics.found.clear()
        self._parser.record(b"PUBLIC", line)
        return next(iter(publics.found.values()), b"")


class RawSymbols(SymbolTable):
    """Lookups over a :class:`RawIndex`: :meth:`SymbolTable.lookup` and the FUNC, line and
    inline rule behind it, on the raw file instead of the table's pages."""

    def __init__(self, index: RawIndex, text: BinaryIO) -> None:  # noqa: super().__init__ reads a table
        self.module = index.module
        self.stats: dict[str, Any] = {}
        self.source = None
        self.path = index.path
        self.index = index
        self._reader = _LineReader(text, index.size)
        self._funcs = _RawFuncs(index, self._reader)  # type: ignore[assignment]
        self._publics = _RawPublics(index, self._reader)  # type: ignore[assignment]
        self._blocks: dict[int, tuple[str, Any]] = {}
        self._files: dict[int, str] = {}  # type: ignore[assignment]
        self._origins: dict[int, str] = {}  # type: ignore[assignment]
        self._block = self._blocks.__getitem__  # type: ignore[assignment]
        self._file_name = self._files.get  # type: ignore[assignment]
        self._origin_name = self._origins.get  # type: ignore[assignment]

    def release_caches(self) -> None:
        self._blocks.clear()

    def lookup_many(self, offsets: Iterable[int]) -> dict[int, FrameInfo | None]:
        """Answer ``offsets``: the hit FUNCs' blocks are read, then the names they use,
        then each offset is looked up; in parts of BLOCKS_PER_PASS blocks."""
        answers: dict[int, FrameInfo | None] = {}
        funcs = self._funcs
        pending: list[int] = []
        in_funcs: list[int] = []
        hits: set[int] = set()
        for offset in sorted(set(offsets)):
            found = funcs.floor(offset)
            if found >= 0 and offset < funcs.keys[found] + funcs.aux[found]:
                if found not in hits and len(hits) >= BLOCKS_PER_PASS:
                    self._answer(pending, in_funcs, hits, answers)
                    pending, in_funcs, hits = [], [], set()
                hits.add(found)
                in_funcs.append(offset)
            pending.append(offset)
        self._answer(pending, in_funcs, hits, answers)
        return answers

    def _answer(self, offsets: list[int], in_funcs: list[int], hits: set[int],
                answers: dict[int, FrameInfo | None]) -> None:
        """Parse the hit blocks (in file order), learn which FILE and INLINE_ORIGIN ids the
        lookups in them may ask for, read those names, and look every offset up."""
        self._blocks.clear()
        for found in sorted(hits, key=self.index.func_lines.__getitem__):
            self._blocks[found] = self._parse_block(found)
        files: set[int] = set()
        origins: set[int] = set()
        floor, blocks = self._funcs.floor, self._blocks
        for offset in in_funcs:
            # every id the lookup of ``offset`` could ask for (a few more are harmless: a name
            # read and not used): the covering line record's file, and each INLINE covering
            # it, its origin and call-site file
            _, block = blocks[floor(offset)]
            at = bisect_right(block.starts, offset) - 1
            if at >= 0 and offset < block.ends[at]:
                files.add(int(block.files[at]))
            for record in block.inlines:
                if record.contains(offset):
                    origins.add(record.origin)
                    if record.call_file is not None and record.call_file >= 0:
                        files.add(record.call_file)
        self._read_names(files, origins)
        for offset in offsets:
            answers[offset] = self.lookup(offset)
        self._blocks.clear()

    def _read_names(self, files: set[int], origins: set[int]) -> None:
        """The FILE and INLINE_ORIGIN names of ``files`` and ``origins`` (first record of
        each id wins), by the parser run over the stretches of the file that hold them."""
        self._files.clear()
        self._origins.clear()
        if not (files or origins):
            return
        writer = _Writer(files, origins, publics=set())
        text = self._reader.text
        symscan = compiled.symscan
        if symscan is not None and max(files | origins) < 1 << 64:
            # the compiled twin of the regex below, for any number of ids
            file_ids, origin_ids = (array("Q", sorted(ids)).tobytes() for ids in (files, origins))
            parser = _Parser(writer)

            def handle(buffer: bytes) -> None:
                for at, is_file in symscan.id_lines(buffer, file_ids, origin_ids):
                    line = _strip_cr(buffer[at + 1:buffer.index(b"\n", at + 1)])
                    parser.record(b"FILE" if is_file else b"INLINE_ORIGIN", line)
        elif len(files) + len(origins) <= TARGETED_IDS:
            # a few ids (a job of a few addresses): a regex finds just their lines, which the
            # parser's record() reads (the first valid one of each id wins, as in the table)
            found_ids = _id_lines(files, origins)
            parser = _Parser(writer)

            def handle(buffer: bytes) -> None:
                for match in found_ids.finditer(buffer):
                    line = _strip_cr(buffer[match.start() + 1:buffer.index(b"\n", match.end())])
                    parser.record(b"FILE" if line.startswith(b"FILE") else b"INLINE_ORIGIN", line)
        else:
            def handle(buffer: bytes) -> None:
                _Parser(writer).scan(buffer, 0)

        for start, end in self.index.name_ranges:  # each starts at a newline, ends with one
            text.seek(start)
            left = end - start + 1
            carry = b""
            while left > 0 and not (writer.files.done() and writer.origins.done()):
                chunk = text.read(min(NAMES_CHUNK_BYTES, left))
                if not chunk:
                    break
                left -= len(chunk)
                last = chunk.rfind(b"\n")
                if last < 0:
                    carry += chunk
                    continue
                handle(b"".join((carry, memoryview(chunk)[:last + 1])))
                carry = chunk[last:]
            if len(carry) > 1 and not (writer.files.done() and writer.origins.done()):
                handle(carry + b"\n")  # the file's last line, which has no newline
        self._files.update((number, name.decode("utf-8", "replace")) for number, name in writer.files.found.items())
        self._origins.update((number, name.decode("utf-8", "replace"))
                             for number, name in writer.origins.found.items())


def _id_lines(files: set[int], origins: set[int]) -> re.Pattern[bytes]:
    """The FILE lines of ``files`` and INLINE_ORIGIN lines of ``origins`` (numbers as the
    parser reads them: decimal, leading zeros allowed), from the newline before each."""
    def numbers(ids: set[int]) -> bytes:
        return b"|".join(b"%d" % number for number in sorted(ids))

    parts = ([rb"FILE 0*(?:" + numbers(files) + rb")"] if files else []) + \
        ([rb"INLINE_ORIGIN 0*(?:" + numbers(origins) + rb")"] if origins else [])
    return re.compile(rb"\n(?:" + b"|".join(parts) + rb") ")


@dataclass(frozen=True)
class AnswerStats:
    """What answering from a .sym cost, for logs and ``Debug: true``."""

    input_bytes: int
    funcs: int
    publics: int
    offsets: int
    scan_seconds: float
    answer_seconds: float


def answer_from_sym(path: Path, offsets: Iterable[int], expected_debug_id: str | None = None,
                    source: Any = None) -> tuple[dict[str, Any], dict[int, FrameInfo | None], AnswerStats]:
    """The module info and the answer for each offset, as the module's table would give
    them; raises :class:`NotASymbolFile`, :class:`ModuleMismatch` or :class:`NeedsTable`.
    ``source``: see :func:`scan` (the file at ``path`` is read again once it is complete)."""
    started = time.monotonic()
    index = scan(path, expected_debug_id, source)
    scanned = time.monotonic()
    offsets = list(offsets)
    with open(path, "rb") as text:
        answers = RawSymbols(index, text).lookup_many(offsets)
    stats = AnswerStats(index.size, len(index.func_keys), len(index.public_keys), len(offsets),
                        round(scanned - started, 4), round(time.monotonic() - scanned, 4))
    return index.module, answers, stats


__all__ = ["AnswerStats", "ModuleMismatch", "NeedsTable", "NotASymbolFile", "RawIndex", "RawSymbols",
           "answer_from_sym", "scan"]
