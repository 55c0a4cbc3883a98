"""Writes a processed symbol table (layout in :mod:`diskcache.tableformat`) as records stream in.

Values are compressed into pages as soon as a page is full, so the writer holds one page and
a few compact integer columns in memory however large the symbol file is.
"""

from __future__ import annotations

import json
import zlib
from array import array
from typing import Any, BinaryIO

from diskcache import tableformat as fmt


class _TableBuilder:
    """One sorted key -> bytes table being built; keys may arrive in any order."""

    def __init__(self, writer: TableWriter, with_aux: bool) -> None:
        self._writer = writer
        self.keys = array("Q")
        self.aux = array("Q") if with_aux else None
        self.pages = array("I")
        self.starts = array("I")
        self.lengths = array("I")
        self.page_spans = array("Q")  # start, end file offset of each page
        self._page: list[bytes] = []
        self._page_bytes = 0

    def add(self, key: int, value: bytes, aux: int = 0) -> None:
        self.keys.append(key)
        if self.aux is not None:
            self.aux.append(aux)
        self.pages.append(len(self.page_spans) // 2)
        self.starts.append(self._page_bytes)
        self.lengths.append(len(value))
        self._page.append(value)
        self._page_bytes += len(value)
        if self._page_bytes >= fmt.PAGE_TARGET_BYTES:
            self._flush_page()

    def _flush_page(self) -> None:
        if not self._page:
            return
        start, end = self._writer.append(zlib.compress(b"".join(self._page), fmt.ZLIB_LEVEL))
        self.page_spans.extend((start, end))
        self._page = []
        self._page_bytes = 0

    def finish(self, drop_overlaps: bool) -> dict[str, Any]:
        """Sort by key, apply the duplicate rule, write the index; return its directory entry."""
        self._flush_page()
        keys, aux = self.keys, self.aux
        order = sorted(range(len(keys)), key=keys.__getitem__)  # stable: file order on ties
        kept: list[int] = []
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
        refs = array("I")
        for i in kept:
            refs.extend((self.pages[i], self.starts[i], self.lengths[i]))
        entry: dict[str, Any] = {"count": len(kept)}
        entry["keys"] = self._writer.append_array(array("Q", (keys[i] for i in kept)))
        if aux is not None:
            entry["aux"] = self._writer.append_array(array("Q", (aux[i] for i in kept)))
        entry["refs"] = self._writer.append_array(refs)
        entry["page_spans"] = self._writer.append_array(self.page_spans)
        entry["page_count"] = len(self.page_spans) // 2
        return entry


class TableWriter:
    """Streams a table into ``sink`` (a seekable binary file positioned at 0)."""

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self._sink.write(b"\0" * fmt.HEADER_SIZE)
        self._offset = fmt.HEADER_SIZE
        self.funcs = _TableBuilder(self, with_aux=True)
        self.publics = _TableBuilder(self, with_aux=False)
        self.files = _TableBuilder(self, with_aux=False)
        self.origins = _TableBuilder(self, with_aux=False)

    def append(self, data: bytes) -> tuple[int, int]:
        start = self._offset
        self._sink.write(data)
        self._offset += len(data)
        return start, self._offset

    def append_array(self, values: array) -> int:
        """Write an integer array 8-byte aligned, so the reader can cast it in place."""
        padding = -self._offset % 8
        if padding:
            self.append(b"\0" * padding)
        return self.append(values.tobytes())[0]

    def finish(self, module: dict[str, Any], stats: dict[str, Any]) -> int:
        """Write index, directory, trailer and header; return the file length."""
        directory = {
            "module": module,
            "stats": stats,
            "tables": {
                "funcs": self.funcs.finish(drop_overlaps=True),
                "publics": self.publics.finish(drop_overlaps=False),
                "files": self.files.finish(drop_overlaps=False),
                "origins": self.origins.finish(drop_overlaps=False),
            },
        }
        encoded = json.dumps(directory, separators=(",", ":")).encode()
        dir_offset = self.append(encoded)[0]
        self.append(fmt.TRAILER)
        length = self._offset
        self._sink.seek(0)
        self._sink.write(
            fmt.HEADER.pack(fmt.MAGIC, fmt.FORMAT_VERSION, fmt.HEADER_SIZE, length, dir_offset, len(encoded))
        )
        self._sink.seek(length)
        return length
