"""Writes a processed symbol table (layout in :mod:`diskcache.tableformat`) as records stream in.

Values are compressed into pages as soon as a page is full, and the index columns (key,
aux, page, start, length per record) are spilled in runs of :data:`RUN_RECORDS` to an
unnamed temporary file; :meth:`TableWriter.finish` reads them back in key order (merging
the runs if the keys did not arrive sorted), applies the duplicate rule and writes the
index a chunk at a time.  So the writer holds a few pages and a run or two of columns in
memory however large the symbol file is.  Pages are compressed on a background thread:
zstd releases the GIL, so on two cores the parser keeps going while the previous pages are
compressed.
"""

from __future__ import annotations

import heapq
import json
from array import array
from bisect import bisect_left
from itertools import accumulate, repeat
from operator import add, itemgetter, le, lt
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator

from diskcache import tableformat as fmt

if TYPE_CHECKING:
    from concurrent.futures import Future

#: Pages compressed ahead of the writes; bounds the memory held by the pipeline.
PAGES_IN_FLIGHT = 32
#: Records a table keeps in memory before spilling them (about 2 MB of columns).
RUN_RECORDS = 1 << 16
#: Records read from each run at a time when unsorted runs are merged.
MERGE_BLOCK = 4096
#: The index columns of a table, with the typecode they are spilled in.
COLUMNS = (("keys", "Q"), ("aux", "Q"), ("pages", "I"), ("starts", "I"), ("lengths", "I"))

Block = list[array]  # columns of consecutive records, in COLUMNS order (aux left out if none)


def _nothing_to_drop(keys: array, sizes: array | None) -> bool:
    """For keys in order, whether the duplicate rule keeps every record (the usual case),
    checked at C speed: keys strictly increasing, or, for FUNCs, each one non-empty and ending
    at or before the next one starts."""
    if sizes is None:
        return all(map(lt, keys, keys[1:]))
    return all(sizes) and all(map(le, map(add, keys, sizes), keys[1:]))


def _take(block: Block, indexes: Any) -> Block:
    return [array(column.typecode, map(column.__getitem__, indexes)) for column in block]


class _ArrayWriter:
    """One index array, written in compressed chunks of ``fmt.ARRAY_CHUNK`` values."""

    def __init__(self, writer: TableWriter, typecode: str, delta: bool = False, coded: bool = False) -> None:
        """``coded``: the values given are a coding of ``actual`` ones (the starts, see
        :func:`fmt.code_starts`); a chunk is stored coded only if that makes it all zeros,
        else as the actual values, so that a reader decodes only what costs nothing to store."""
        self._writer = writer
        self._pending = array(typecode)
        self._actual = array(typecode) if coded else None
        self._previous: int | None = 0 if delta else None
        self._maximum = 0
        self._chunks: list[list[Any]] = []

    @property
    def room(self) -> int:
        """Values that fit before the pending chunk is written."""
        return fmt.ARRAY_CHUNK - len(self._pending)

    def extend(self, values: array, actual: array | None = None) -> None:
        """Append ``values``; ``actual``: the values they stand for (the typecode to hold
        the array in must fit those), if what is stored is a coding of them."""
        if values:
            self._maximum = max(self._maximum, max(values if actual is None else actual))
        done = 0
        while done < len(values):
            step = self.room
            self._pending.extend(values[done:done + step])
            if self._actual is not None:
                self._actual.extend(actual[done:done + step])  # type: ignore[index]
            done += step
            if len(self._pending) >= fmt.ARRAY_CHUNK:
                self._write_chunk()

    def _write_chunk(self) -> None:
        values = self._pending
        if not values:
            return
        flags = []
        if self._actual is not None:
            coded = not any(values)
            flags.append(int(coded))
            if not coded:
                values = self._actual
            self._actual = array(values.typecode)
        encoded, stored = fmt.encode_chunk(values, self._previous)
        if self._previous is not None:
            self._previous = values[-1]
        start, end = self._writer._append(encoded)
        self._chunks.append([start, end - start, stored, len(values), *flags])
        self._pending = array(values.typecode)

    def finish(self) -> list[Any]:
        """The directory entry: [in-memory typecode, [[offset, length, stored typecode,
        count], ...]]; the typecode to hold the values in is the narrowest that fits them all."""
        self._write_chunk()
        return [fmt.narrowest(self._maximum), self._chunks]


class _TableBuilder:
    """One sorted key -> bytes table being built; keys may arrive in any order."""

    def __init__(self, writer: TableWriter, with_aux: bool) -> None:
        self._writer = writer
        self._columns = [(name, typecode) for name, typecode in COLUMNS if with_aux or name != "aux"]
        self._new_run()
        self.page_spans = array("Q")  # start, end file offset of each page, as written
        self.page_count = 0
        self.count = 0  # records added
        self._last_key = -1
        self._in_order = True  # keys arrived sorted (the usual case): no merge needed
        self._runs: list[tuple[int, int]] = []  # spilled: (offset in the spill file, records)
        self._page: list[bytes] = []
        self._page_bytes = 0

    def _new_run(self) -> None:
        self.keys = array("Q")
        self.aux = array("Q") if len(self._columns) == 5 else None
        self.pages = array("I")
        self.starts = array("I")
        self.lengths = array("I")

    def _run(self) -> Block:
        return [getattr(self, name) for name, _ in self._columns]

    def add(self, key: int, value: bytes, aux: int = 0) -> None:
        if key < self._last_key:
            self._in_order = False
        self._last_key = key
        self.keys.append(key)
        if self.aux is not None:
            self.aux.append(aux)
        self.pages.append(self.page_count)
        self.starts.append(self._page_bytes)
        self.lengths.append(len(value))
        self.count += 1
        self._page.append(value)
        self._page_bytes += len(value)
        if self._page_bytes >= fmt.PAGE_TARGET_BYTES:
            self.flush_page()
        if len(self.keys) >= RUN_RECORDS:
            self._spill()

    def add_many(self, keys: list[int], values: list[bytes], aux: list[int] | None = None) -> None:
        """:meth:`add` for a batch of records (a run of FILE lines, say): the same pages and
        columns as adding them one by one, without a call per record."""
        own_keys, pages, starts, lengths = self.keys, self.pages, self.starts, self.lengths
        if aux is not None and self.aux is not None:
            self.aux.extend(aux)
        if keys:
            if keys[0] < self._last_key or any(map(int.__lt__, keys[1:], keys)):
                self._in_order = False
            self._last_key = keys[-1]
            own_keys.extend(keys)
            self.count += len(keys)
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
        if len(self.keys) >= RUN_RECORDS:
            self._spill()

    def flush_page(self) -> None:
        if not self._page:
            return
        self._writer.append_page(self.page_spans, b"".join(self._page))
        self.page_count += 1
        self._page = []
        self._page_bytes = 0

    def _sorted_run(self) -> Block:
        """The records in memory, sorted by key (stable: file order on ties)."""
        run, keys = self._run(), self.keys
        if self._in_order or all(map(le, keys, keys[1:])):
            return run
        return _take(run, sorted(range(len(keys)), key=keys.__getitem__))

    def _spill(self) -> None:
        """Move the records in memory to the spill file, sorted, as one run."""
        run = self._sorted_run()
        self._runs.append((self._writer.spill(run), len(run[0])))
        self._new_run()

    def _read_run(self, offset: int, records: int, first: int = 0, count: int | None = None) -> Block:
        """Records ``first`` to ``first + count`` of a spilled run."""
        count = records - first if count is None else min(count, records - first)
        block = []
        for _, typecode in self._columns:
            column = array(typecode)
            column.frombytes(self._writer.read_spill(offset + first * column.itemsize,
                                                     count * column.itemsize))
            block.append(column)
            offset += records * column.itemsize
        return block

    def _run_records(self, offset: int, records: int) -> Iterator[tuple[int, ...]]:
        for first in range(0, records, MERGE_BLOCK):
            yield from zip(*self._read_run(offset, records, first, MERGE_BLOCK))

    def _blocks(self) -> Iterator[Block]:
        """Every record in key order (file order on ties), a block at a time."""
        if self._in_order:
            for offset, records in self._runs:
                yield self._read_run(offset, records)
            yield self._run()
            return
        tail = self._sorted_run()
        runs = [self._run_records(offset, records) for offset, records in self._runs]
        runs.append(zip(*tail))
        merged = heapq.merge(*runs, key=itemgetter(0))  # ties: the earlier run first
        while batch := list(zip(*(record for _, record in zip(range(MERGE_BLOCK), merged)))):
            yield [array(typecode, column) for (_, typecode), column in zip(self._columns, batch)]

    def _kept(self, block: Block, drop_overlaps: bool) -> Block:
        """The records of ``block`` (next in key order) that the duplicate rule keeps."""
        keys = block[0]
        if drop_overlaps:
            # FUNCs: size 0 covers nothing; a FUNC starting inside the last kept one is dropped.
            sizes = block[1]
            if keys[0] >= self._end and _nothing_to_drop(keys, sizes):
                self._end = keys[-1] + sizes[-1]
                return block
            kept = array("L")
            end = self._end
            for i, key in enumerate(keys):
                if sizes[i] and key >= end:
                    kept.append(i)
                    end = key + sizes[i]
            self._end = end
        else:
            if keys[0] != self._previous and _nothing_to_drop(keys, None):
                self._previous = keys[-1]
                return block
            kept = array("L")
            previous = self._previous
            for i, key in enumerate(keys):
                if key != previous:  # first in file order wins
                    kept.append(i)
                    previous = key
            self._previous = previous
        return block if len(kept) == len(keys) else _take(block, kept)

    def finish(self, drop_overlaps: bool) -> dict[str, Any]:
        """Apply the duplicate rule, write the index; return the table's directory entry.

        The last page must have been flushed and written (see :meth:`TableWriter.finish`).
        """
        arrays = [_ArrayWriter(self._writer, typecode, delta=name == "keys", coded=name == "starts")
                  for name, typecode in self._columns]
        self._end, self._previous = 0, -1
        starts_at = [name for name, _ in self._columns].index("starts")
        carry = (-1, 0)  # the page and the end of the record before
        # in key order as added, each value right after the one before in its page: the
        # reader then needs neither pages nor starts per record (see "contiguous")
        contiguous = self._in_order
        count = 0
        for block in self._blocks():
            if not block[0]:
                continue
            block = self._kept(block, drop_overlaps)
            # pages, starts and lengths lie side by side in COLUMNS
            actual = block[starts_at]
            starts, carry = fmt.code_starts(block[starts_at - 1], actual, block[starts_at + 1], carry)
            contiguous = contiguous and not any(starts)
            block = block[:starts_at] + [starts] + block[starts_at + 1:]
            # fed in pieces that end where a chunk does, so the file does not depend on how
            # the records were spilled
            done, size = 0, len(block[0])
            while done < size:
                step = min(arrays[0].room, size - done)
                for writer, column in zip(arrays, block):
                    writer.extend(column[done:done + step],
                                  actual[done:done + step] if column is starts else None)
                done += step
            count += size
        self._new_run()
        entry: dict[str, Any] = {"count": count, "page_count": self.page_count, "contiguous": contiguous}
        for (name, _), writer in zip(self._columns, arrays):
            entry[name] = writer.finish()
        spans = _ArrayWriter(self._writer, "Q")
        spans.extend(self.page_spans)
        entry["page_spans"] = spans.finish()
        return entry


class TableWriter:
    """Streams a table into ``sink`` (a seekable binary file positioned at 0).

    Use it as a context manager, so that its compression thread ends however parsing ends.
    """

    def __init__(self, sink: BinaryIO, spill_dir: Path | None = None) -> None:
        """``spill_dir``: where the unnamed temporary file of index runs goes (the cache's
        ``.tmp``; None: the system's temporary directory)."""
        self._sink = sink
        self._spill_dir = spill_dir
        self._spill_file: Any = None
        self._spill_bytes = 0
        self._sink.write(b"\0" * fmt.HEADER_SIZE)
        self._offset = fmt.HEADER_SIZE
        # (imported here, as tempfile below: a worker that only answers from .sym files
        # never writes a table, and starts faster without them)
        from concurrent.futures import ThreadPoolExecutor

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
        if self._spill_file is not None:
            self._spill_file.close()  # unnamed (or unlinked): its space is freed now
            self._spill_file = None

    def spill(self, columns: list[array]) -> int:
        """Append index columns to the spill file; returns where they start."""
        if self._spill_file is None:
            import tempfile

            self._spill_file = tempfile.TemporaryFile(prefix="spill.", dir=self._spill_dir)
        start = self._spill_bytes
        self._spill_file.seek(start)
        for column in columns:
            column.tofile(self._spill_file)
            self._spill_bytes += len(column) * column.itemsize
        return start

    def read_spill(self, offset: int, length: int) -> bytes:
        self._spill_file.seek(offset)
        data = self._spill_file.read(length)
        if len(data) != length:
            raise OSError(f"the spill file is short: {len(data)} bytes at {offset}, expected {length}")
        return data

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

    def finish(self, module: dict[str, Any], stats: dict[str, Any], source: dict[str, Any] | None = None) -> int:
        """Write the last pages, index, directory, trailer and header; return the file length.

        ``source``: the identity of the file the table was made from, kept in the directory."""
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
        if source is not None:
            directory["source"] = source
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
