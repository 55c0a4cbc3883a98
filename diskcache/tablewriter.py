"""Writes a processed symbol table (layout in :mod:`diskcache.tableformat`) as records stream in.

Values are compressed into pages as soon as a page is full, so the writer holds a few pages
and compact integer columns in memory however large the symbol file is.  Pages are
compressed on a background thread: zstd releases the GIL, so on two cores the parser keeps
going while the previous pages are compressed.
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_left
from itertools import accumulate, repeat
from operator import add, le, lt
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

from diskcache import tableformat as fmt

#: Pages compressed ahead of the writes; bounds the memory held by the pipeline.
PAGES_IN_FLIGHT = 32


def _nothing_to_drop(keys: array, sizes: array | None) -> bool:
    """For keys in order, whether the duplicate rule keeps every record (the usual case),
    checked at C speed: keys strictly increasing, or, for FUNCs, each one non-empty and ending
    at or before the next one starts."""
    if sizes is None:
        return all(map(lt, keys, keys[1:]))
    return all(sizes) and all(map(le, map(add, keys, sizes), keys[1:]))


class _TableBuilder:
    """One sorted key -> bytes table being built; keys may arrive in any order."""

    def __init__(self, writer: TableWriter, with_aux: bool) -> None:
        self._writer = writer
        self.keys = array("Q")
        self.aux = array("Q") if with_aux else None
        self.pages = array("I")
        self.starts = array("I")
        self.lengths = array("I")
        self.page_spans = array("Q")  # start, end file offset of each page, as written
        self.page_count = 0
        self._in_order = True  # keys arrived sorted (the usual case): no sort needed
        self._page: list[bytes] = []
        self._page_bytes = 0

    def add(self, key: int, value: bytes, aux: int = 0) -> None:
        keys = self.keys
        if keys and key < keys[-1]:
            self._in_order = False
        keys.append(key)
        if self.aux is not None:
            self.aux.append(aux)
        self.pages.append(self.page_count)
        self.starts.append(self._page_bytes)
        self.lengths.append(len(value))
        self._page.append(value)
        self._page_bytes += len(value)
        if self._page_bytes >= fmt.PAGE_TARGET_BYTES:
            self.flush_page()

    def add_many(self, keys: list[int], values: list[bytes], aux: list[int] | None = None) -> None:
        """:meth:`add` for a batch of records (a run of FILE lines, say): the same pages and
        columns as adding them one by one, without a call per record."""
        own_keys, pages, starts, lengths = self.keys, self.pages, self.starts, self.lengths
        if aux is not None and self.aux is not None:
            self.aux.extend(aux)
        if keys:
            previous = own_keys[-1] if own_keys else -1
            if keys[0] < previous or any(map(int.__lt__, keys[1:], keys)):
                self._in_order = False
            own_keys.extend(keys)
        if not values:
            return
        # Where each value starts is a running total; a page ends at the first value that takes
        # it to PAGE_TARGET_BYTES, found by bisection: C-level work, a little Python per page.
        sizes = list(map(len, values))
        totals = list(accumulate(sizes, initial=0))  # totals[j]: bytes of values[:j]
        lengths.extend(sizes)
        count, first = len(values), 0
        while first < count:
            base = self._page_bytes - totals[first]  # so a value's start is base + totals[j]
            end = bisect_left(totals, fmt.PAGE_TARGET_BYTES - base, first + 1)
            stop = min(end, count)
            starts.extend(map(add, totals[first:stop], repeat(base)))
            pages.extend(repeat(self.page_count, stop - first))
            self._page.extend(values[first:stop])
            self._page_bytes = base + totals[stop]
            if end <= count:  # values[end - 1] filled the page
                self.flush_page()
            first = stop

    def flush_page(self) -> None:
        if not self._page:
            return
        self._writer.append_page(self.page_spans, b"".join(self._page))
        self.page_count += 1
        self._page = []
        self._page_bytes = 0

    def _kept(self, drop_overlaps: bool) -> array | None:
        """Indexes to keep in key order by the duplicate rule, or None for "all, as they are"."""
        keys, aux = self.keys, self.aux
        if self._in_order and _nothing_to_drop(keys, aux if drop_overlaps else None):
            return None
        order: range | list[int]
        if self._in_order:
            order = range(len(keys))
        else:
            order = sorted(range(len(keys)), key=keys.__getitem__)  # stable: file order on ties
        kept = array("L")  # compact: a list of ints would cost 36 bytes per record
        if drop_overlaps:
            # FUNCs: size 0 covers nothing; a FUNC starting inside the last kept one is dropped.
            assert aux is not None
            end = 0
            for i in order:
                if aux[i] and keys[i] >= end:
                    kept.append(i)
                    end = keys[i] + aux[i]
        else:
            previous = None
            for i in order:
                if keys[i] != previous:  # first in file order wins
                    kept.append(i)
                    previous = keys[i]
        if self._in_order and len(kept) == len(keys):
            return None
        return kept

    def finish(self, drop_overlaps: bool) -> dict[str, Any]:
        """Apply the duplicate rule, write the index; return the table's directory entry.

        The last page must have been flushed and written (see :meth:`TableWriter.finish`).
        """
        kept = self._kept(drop_overlaps)
        columns: dict[str, array | None] = {"keys": self.keys, "aux": self.aux, "pages": self.pages,
                                            "starts": self.starts, "lengths": self.lengths}
        entry: dict[str, Any] = {"count": len(self.keys) if kept is None else len(kept),
                                 "page_count": self.page_count}
        for name, column in columns.items():
            if column is None:
                continue
            if kept is not None:
                column = array(column.typecode, map(column.__getitem__, kept))
            entry[name] = self._writer.append_array(column, delta=name == "keys")
        entry["page_spans"] = self._writer.append_array(self.page_spans)
        return entry


class TableWriter:
    """Streams a table into ``sink`` (a seekable binary file positioned at 0).

    Use it as a context manager, so that its compression thread ends however parsing ends.
    """

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self._sink.write(b"\0" * fmt.HEADER_SIZE)
        self._offset = fmt.HEADER_SIZE
        self._compressor = ThreadPoolExecutor(1, thread_name_prefix="table-compress")
        self._in_flight: deque[tuple[array, Future[bytes]]] = deque()
        self.funcs = _TableBuilder(self, with_aux=True)
        self.publics = _TableBuilder(self, with_aux=False)
        self.files = _TableBuilder(self, with_aux=False)
        self.origins = _TableBuilder(self, with_aux=False)

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        for _, future in self._in_flight:
            future.cancel()
        self._in_flight.clear()
        self._compressor.shutdown(wait=True)

    def _append(self, data: bytes) -> tuple[int, int]:
        start = self._offset
        self._sink.write(data)
        self._offset += len(data)
        return start, self._offset

    def append_page(self, spans: array, page: bytes) -> None:
        """Compress ``page`` in the background; pages are written in order, and each one's
        file span is appended to ``spans`` when it is written."""
        self._in_flight.append((spans, self._compressor.submit(fmt.compress, page)))
        while len(self._in_flight) > PAGES_IN_FLIGHT or (self._in_flight and self._in_flight[0][1].done()):
            self._write_next_page()

    def _write_next_page(self) -> None:
        spans, future = self._in_flight.popleft()
        spans.extend(self._append(future.result()))

    def append_array(self, values: array, delta: bool = False) -> list[Any]:
        """Write a compressed integer array; returns its directory entry:
        [offset, length, stored typecode, in-memory typecode]."""
        encoded, stored, memory = fmt.encode_array(values, delta)
        start, end = self._append(encoded)
        return [start, end - start, stored, memory]

    def finish(self, module: dict[str, Any], stats: dict[str, Any]) -> int:
        """Write the last pages, index, directory, trailer and header; return the file length."""
        builders = {"funcs": self.funcs, "publics": self.publics, "files": self.files, "origins": self.origins}
        for builder in builders.values():
            builder.flush_page()
        while self._in_flight:
            self._write_next_page()
        directory = {
            "module": module,
            "stats": stats,
            "tables": {name: builder.finish(drop_overlaps=name == "funcs") for name, builder in builders.items()},
        }
        encoded = json.dumps(directory, separators=(",", ":")).encode()
        dir_offset = self._append(encoded)[0]
        self._append(fmt.TRAILER)
        length = self._offset
        self._sink.seek(0)
        self._sink.write(
            fmt.HEADER.pack(fmt.MAGIC, fmt.FORMAT_VERSION, fmt.HEADER_SIZE, length, dir_offset, len(encoded))
        )
        self._sink.seek(length)
        return length
