"""Reads a processed symbol table in place and answers lookups by the Breakpad rule.

The table is memory-mapped; opening it inflates the index (keys and value positions, a few
bytes per record), and a lookup bisects the keys and inflates only the compressed page
holding the wanted value (small LRU caches keep hot pages and parsed FUNC blocks).  Nothing
is scanned or loaded whole per request.
"""

from __future__ import annotations

import itertools
import json
import mmap
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from diskcache import tableformat as fmt
from diskcache.cachefiles import open_existing
from diskcache.symfile import BlockColumns, func_block_columns
from symcommon.frames import FrameInfo, InlineFrame

#: Inflated 64 KiB pages one sorted table may keep (64 MB; the shared ByteLRU bounds them
#: all, 128 MB in the DiskCache).  It was 16: the FILE and INLINE_ORIGIN tables are read at
#: random (a cold batch of 3,000 lookups in the 74 MB module inflated 2,900 of their pages),
#: and a second batch of other addresses in the same module (a second profile of the same
#: build) inflated again nearly every FUNC page the first had.
PAGE_CACHE_SIZE = 1024
_tokens = itertools.count(1)
BLOCK_CACHE_SIZE = 512
NAME_CACHE_SIZE = 4096
#: Bytes the caches of one table hold when no shared :class:`ByteLRU` is given.
TABLE_CACHE_BYTES = 32 * 1024 * 1024


class ByteLRU:
    """One least-recently-used cache bounded in bytes, shared by the caches of many tables.

    Entry counts alone do not bound memory once names can be 64 KiB: 4096 file names of a
    table could hold 256 MB, and the DiskCache keeps hundreds of tables open.  All their
    pages, FUNC blocks and names are charged here instead; lookups run in threads, hence
    the lock.  A key is ``(owner, argument)``; each owner's keys are also kept in the order
    they came, so an owner at its own entry cap gives up its oldest entry (see :meth:`put`).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        # per owner, its keys oldest first (an OrderedDict: taking the first key of a dict
        # whose first keys were deleted steps over their empty slots, 1-2 us at a cap of 512)
        self._owned: dict[Any, OrderedDict[Any, None]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, owner: Any, key: Any, value: Any, size: int, max_entries: int | None = None) -> None:
        """Keep ``value``; ``max_entries``: the most ``owner`` may hold, its oldest entry is
        dropped to make room (a cache that refused new entries at its cap kept its first 16
        pages for good and inflated every later page at every lookup).  Oldest, not least
        recently used: keeping each owner's use order too made every hit slower, and what
        reaches a cap is a batch moving through a table in address order."""
        with self._lock:
            if key in self._entries or size > self.max_bytes:
                return
            owned = self._owned.get(owner)
            if owned is None:
                owned = self._owned[owner] = OrderedDict()
            elif max_entries is not None and len(owned) >= max_entries:
                oldest = owned.popitem(last=False)[0]
                self.bytes -= self._entries.pop(oldest)[1]
            self._entries[key] = (value, size)
            owned[key] = None
            self.bytes += size
            while self.bytes > self.max_bytes:
                old_key, (_, old_size) = self._entries.popitem(last=False)
                self.bytes -= old_size
                owned = self._owned.get(old_key[0])
                if owned is not None:
                    owned.pop(old_key, None)
                    if not owned:
                        del self._owned[old_key[0]]

    def drop(self, owner: Any) -> None:
        with self._lock:
            for key in self._owned.pop(owner, ()):
                self.bytes -= self._entries.pop(key)[1]

    def count(self, owner: Any) -> int:
        with self._lock:
            return len(self._owned.get(owner, ()))


class _Cached:
    """``function(argument)`` remembered in a :class:`ByteLRU`, at most ``max_entries`` per
    owner; shaped like ``functools.lru_cache`` where the tests look (cache_info, cache_clear)."""

    def __init__(self, function: Callable[[Any], Any], lru: ByteLRU, size: Callable[[Any], int],
                 max_entries: int) -> None:
        self._function = function
        self._lru = lru
        self._size = size
        self._max_entries = max_entries
        self._owner = object()

    def __call__(self, argument: Any) -> Any:
        key = (self._owner, argument)
        lru = self._lru
        with lru._lock:  # ByteLRU.get, without a call: this is every lookup's path
            entry = lru._entries.get(key)
            if entry is not None:
                lru._entries.move_to_end(key)
                return entry[0]
        value = self._function(argument)
        if value is not None:
            lru.put(self._owner, key, value, self._size(value), self._max_entries)
        return value

    def cache_clear(self) -> None:
        self._lru.drop(self._owner)

    def cache_info(self) -> SimpleNamespace:
        return SimpleNamespace(currsize=self._lru.count(self._owner))


def _page_size(value: tuple[bytes, array | None]) -> int:
    data, starts = value
    return 64 + len(data) + (0 if starts is None else 4 * len(starts))


def _name_size(name: str | None) -> int:
    return 64 + len(name or "")


def _block_size(value: tuple[str, BlockColumns]) -> int:
    name, block = value
    return 200 + len(name) + 150 * len(block.starts) + 200 * len(block.inlines)


class _SortedTable:
    """One sorted u64 -> bytes table of the file: its index inflated, its pages in the map."""

    def __init__(self, view: memoryview, entry: dict[str, Any], limit: int, lru: ByteLRU) -> None:
        try:
            count = int(entry["count"])
            page_count = int(entry["page_count"])
            self.keys = _load(view, entry["keys"], count, limit, delta=True)
            self.aux = _load(view, entry["aux"], count, limit) if "aux" in entry else None
            pages = _load(view, entry["pages"], count, limit)
            self._lengths = _load(view, entry["lengths"], count, limit)
            self._pages: array | None = pages
            self._starts: array | None = None
            self._page_first: array | None = None
            if entry.get("contiguous") is True:
                # each page holds a stretch of records, each value right after the one
                # before: the first record of each page is all that needs keeping
                self._page_first = array("Q", (bisect_left(pages, page) for page in range(page_count)))
                self._pages = None
            else:
                self._starts = _load(view, entry["starts"], count, limit, starts_of=(pages, self._lengths))
            self._spans = _load(view, entry["page_spans"], 2 * page_count, limit)
        except (KeyError, TypeError, ValueError) as error:
            raise fmt.TableFormatError(f"bad table directory: {error}") from error
        for i in range(0, 2 * page_count, 2):
            if not fmt.HEADER_SIZE <= self._spans[i] <= self._spans[i + 1] <= limit:
                raise fmt.TableFormatError("page out of bounds")
        if count and max(pages) >= page_count:
            raise fmt.TableFormatError("value in a page that does not exist")
        self._view = view
        self._page = _Cached(self._inflate, lru, _page_size, PAGE_CACHE_SIZE)

    def __len__(self) -> int:
        return len(self.keys)

    def _inflate(self, page: int) -> tuple[bytes, array | None]:
        """The page's bytes and, in a contiguous table, where each of its values starts
        (summed once per page: summing the lengths before a value at each lookup cost a FILE
        name lookup 1-2 µs, a name page holding hundreds of values)."""
        start, end = self._spans[2 * page], self._spans[2 * page + 1]
        data = fmt.decompress(self._view[start:end])
        if self._page_first is None:
            return data, None
        first = self._page_first[page]
        last = self._page_first[page + 1] if page + 1 < len(self._page_first) else len(self._lengths)
        return data, array("I", itertools.accumulate(self._lengths[first:last], initial=0))

    def value(self, index: int) -> bytes:
        if self._page_first is not None:
            page = bisect_right(self._page_first, index) - 1
            data, starts = self._page(page)
            start = starts[index - self._page_first[page]]
        else:
            page, start = self._pages[index], self._starts[index]  # type: ignore[index]
            data = self._page(page)[0]
        return data[start:start + self._lengths[index]]

    def floor(self, key: int) -> int:
        """Index of the greatest key <= ``key``, or -1."""
        return bisect_right(self.keys, key) - 1

    def get(self, key: int) -> bytes | None:
        index = self.floor(key)
        if index >= 0 and self.keys[index] == key:
            return self.value(index)
        return None


def _load(view: memoryview, where: Any, count: int, limit: int, delta: bool = False,
          starts_of: tuple[array, array] | None = None) -> array:
    """An index array from its chunks (see :mod:`diskcache.tableformat`), in its typecode;
    ``starts_of``: the pages and lengths of the records whose coded starts these are."""
    memory, chunks = where
    memory = str(memory)
    if memory not in fmt.TYPECODES or count < 0:
        raise fmt.TableFormatError(f"bad index array entry: typecode {memory!r}, count {count}")
    values = array(memory)
    previous = 0
    carry = (-1, 0)
    for offset, length, stored, chunk_count, *flags in chunks:
        offset, length, chunk_count = int(offset), int(length), int(chunk_count)
        if offset < fmt.HEADER_SIZE or length < 0 or offset + length > limit or chunk_count < 0 \
                or len(values) + chunk_count > count:
            raise fmt.TableFormatError("index array out of bounds")
        chunk = fmt.decode_chunk(view[offset:offset + length], str(stored), chunk_count)
        try:
            if starts_of is not None and flags and flags[0]:  # coded (all zeros, in practice)
                first = len(values)
                pages, lengths = (column[first:first + chunk_count] for column in starts_of)
                chunk, carry = fmt.decode_starts(chunk, pages, lengths, carry, memory)
                values.extend(chunk)
            elif starts_of is not None:
                values.extend(chunk if chunk.typecode == memory else iter(chunk))
                if values:
                    last = len(values) - 1
                    carry = (starts_of[0][last], values[last] + starts_of[1][last])
            elif delta:
                sums = itertools.accumulate(chunk, initial=previous)
                next(sums)
                values.extend(sums)
                previous = values[-1] if values else 0
            else:
                values.extend(chunk if chunk.typecode == memory else iter(chunk))
        except OverflowError as error:
            raise fmt.TableFormatError("index values do not fit their typecode") from error
    if len(values) != count:
        raise fmt.TableFormatError(f"index array holds {len(values)} values, expected {count}")
    return values


def check_table_file(path: Path) -> None:
    """Raise :class:`TableFormatError` unless ``path`` is a whole table of this format
    (header, length, trailer, directory), without inflating its index.

    What the DiskCache checks of every cached table at start: opening them all held each
    one's index until the garbage collector ran (a 1 GB module's table: 30 MB, then again
    when first used).  A damaged index is found when the table is opened, and then deleted.
    """
    with open_existing(path) as file:  # a symbolic link is refused, not followed
        try:
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError as error:  # empty file
            raise fmt.TableFormatError("empty file") from error
    try:
        dir_offset, dir_length = fmt.check_header(mapped, len(mapped))
        try:
            directory = json.loads(mapped[dir_offset:dir_offset + dir_length])
            if not isinstance(directory["module"], dict) or not all(
                    isinstance(directory["tables"][name], dict) for name in fmt.TABLE_NAMES):
                raise fmt.TableFormatError("bad directory")
        except (ValueError, KeyError, TypeError) as error:
            raise fmt.TableFormatError(f"bad directory: {error}") from error
    finally:
        mapped.close()


class SymbolTable:
    """A processed symbol file: module info plus lookups of module offsets."""

    def __init__(self, buffer: Any, path: Path | None = None, cache: ByteLRU | None = None) -> None:
        """``cache``: where pages, FUNC blocks and names are kept (shared by the DiskCache's
        tables); else the table's own, of TABLE_CACHE_BYTES."""
        view = memoryview(buffer)
        lru = cache if cache is not None else ByteLRU(TABLE_CACHE_BYTES)
        dir_offset, dir_length = fmt.check_header(view, len(view))
        try:
            directory = json.loads(bytes(view[dir_offset:dir_offset + dir_length]))
            self.module: dict[str, Any] = directory["module"]
            self.stats: dict[str, Any] = directory.get("stats", {})
            #: the identity (path, size, mtime_ns) of the local file the table was made from
            self.source: dict[str, Any] | None = directory.get("source")
            entries = directory["tables"]
            tables = {name: _SortedTable(view, entries[name], dir_offset, lru)
                      for name in ("funcs", "files", "origins")}
            if not isinstance(entries["publics"], dict):
                raise TypeError("the publics entry is not an object")
            # PUBLICs are read only for an offset no FUNC covers: their index is inflated
            # then (see __getattr__), not at every open (a quarter of opening a small table)
            self._lazy_publics = (view, entries["publics"], dir_offset, lru)
            self._publics_lock = threading.Lock()
        except (ValueError, KeyError, TypeError) as error:
            raise fmt.TableFormatError(f"bad directory: {error}") from error
        self.path = path
        self.token = next(_tokens)  # names this open table in caches of lookup results
        self.size = len(view)
        self._buffer = buffer
        self._funcs = tables["funcs"]
        self._files = tables["files"]
        self._origins = tables["origins"]
        self._block = _Cached(self._parse_block, lru, _block_size, BLOCK_CACHE_SIZE)
        self._file_name = _Cached(self._lookup_name_in(self._files), lru, _name_size, NAME_CACHE_SIZE)
        self._origin_name = _Cached(self._lookup_name_in(self._origins), lru, _name_size, NAME_CACHE_SIZE)

    def release_caches(self) -> None:
        """Drop the inflated pages and parsed blocks now, when the table is let go.

        The caches are bound methods of the table, so a table is a reference cycle that only
        the cyclic GC frees; without this, a DiskCache fetching many modules held their
        pages until it ran.  Lookups still in flight keep working (they inflate again).
        """
        tables = (self._funcs, self.__dict__.get("_publics"), self._files, self._origins)
        for cache in (self._block, self._file_name, self._origin_name,
                      *(table._page for table in tables if table is not None)):
            cache.cache_clear()

    def __getattr__(self, name: str) -> Any:
        """``_publics``, inflated when first needed (may raise :class:`TableFormatError`)."""
        lazy = self.__dict__.get("_lazy_publics") if name == "_publics" else None
        if lazy is None:
            raise AttributeError(name)
        with self._publics_lock:  # one index (and one set of cached pages) per table
            publics = self.__dict__.get("_publics")
            if publics is None:
                publics = self._publics = _SortedTable(*lazy)
        return publics

    @classmethod
    def open(cls, path: Path, cache: ByteLRU | None = None) -> SymbolTable:
        """Map the file read-only; raises :class:`TableFormatError` if it is not a whole table."""
        with open_existing(path) as file:  # a symbolic link is refused, not followed
            try:
                mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError as error:  # empty file
                raise fmt.TableFormatError("empty file") from error
        return cls(mapped, path, cache)

    @property
    def code_file(self) -> str | None:
        return self.module.get("code_file")

    @staticmethod
    def _lookup_name_in(table: _SortedTable):
        def lookup(number: int) -> str | None:
            value = table.get(number)
            return None if value is None else value.decode("utf-8", "replace")
        return lookup

    def _parse_block(self, index: int) -> tuple[str, BlockColumns]:
        name, _, block = self._funcs.value(index).partition(b"\n")
        return name.decode("utf-8", "replace"), func_block_columns(block)

    def lookup(self, offset: int) -> FrameInfo | None:
        """The symbol for a module offset, by the Breakpad rule (see the README)."""
        funcs = self._funcs
        index = funcs.floor(offset)
        nearest_func = -1
        if index >= 0:
            address = funcs.keys[index]
            size = funcs.aux[index]  # type: ignore[index]
            if offset < address + size:
                return self._in_function(index, address, size, offset)
            nearest_func = address
        public = self._publics.floor(offset)
        if public >= 0 and self._publics.keys[public] > nearest_func:
            address = self._publics.keys[public]
            name = self._publics.value(public).decode("utf-8", "replace")
            return FrameInfo(name, offset - address)
        return None

    def _in_function(self, index: int, address: int, size: int, offset: int) -> FrameInfo:
        name, block = self._block(index)
        file = line = None
        at = bisect_right(block.starts, offset) - 1
        if at >= 0 and offset < block.ends[at]:
            file = self._file_name(int(block.files[at]))
            line = int(block.lines[at]) if file is not None else None
        chain = self._inline_chain(block, offset)
        if not chain:
            return FrameInfo(name, offset - address, size, file, line)
        inlines = []
        line_record_file = file
        # The deepest frame has the line record's position; each shallower frame (and
        # finally the FUNC) is at the call site recorded by the inline one level deeper.
        # An older-format INLINE names no call-site file: its call site keeps the line
        # record's file, as in Breakpad's processor.
        for record, origin_name in reversed(chain):
            inlines.append(InlineFrame(origin_name, file, line))
            if record.call_file is None:
                file = line_record_file
            else:
                file = self._file_name(record.call_file) if record.call_file >= 0 else None
            line = record.call_line if file is not None else None
        return FrameInfo(name, offset - address, size, file, line, tuple(inlines))

    def _inline_chain(self, block: BlockColumns, offset: int) -> list[tuple[Any, str]]:
        if not block.inlines:
            return []
        by_depth: dict[int, Any] = {}
        for record in block.inlines:
            if record.depth not in by_depth and record.contains(offset):
                by_depth[record.depth] = record
        chain = []
        depth = 0
        while depth in by_depth:
            record = by_depth[depth]
            origin_name = self._origin_name(record.origin)
            if origin_name is None:
                break
            chain.append((record, origin_name))
            depth += 1
        return chain
