"""Lookups on a table not read before (issue 12, goal 2): what a cold batch costs.

A sorted batch must inflate each page it needs once, whatever the number of pages, and the
faster paths of parsing a FUNC's block must give exactly the answers of the plain parse
(unsorted, overlapping or size-0 line records, CR line ends, junk, blocks across pages).
"""

from __future__ import annotations

import io
import random
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from diskcache import symfile, tableformat
from diskcache.symfile import FuncBlock, InlineRecord, parse_func_block, parse_inline, process_symbol_file
from diskcache.tablereader import ByteLRU, SymbolTable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_rule import ReferenceModule  # noqa: E402

MB = 1024 * 1024


def big_module(funcs: int = 4000, files: int = 3000) -> bytes:
    """Enough FUNCs and FILE names that each table spans many more pages than its caches
    hold entries (16 pages), every FUNC with a few line records in files spread at random."""
    rng = random.Random(5)
    lines = ["MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 big.so"]
    lines += [f"FILE {n} /builds/worker/checkouts/gecko/{'dir/' * (n % 7)}file{n}-{rng.random()}.cpp"
              for n in range(files)]
    for n in range(funcs):
        address = 0x1000 + n * 0x100
        lines.append(f"FUNC {address:x} 100 0 mozilla::SomeNamespace::Function{n}({'int, ' * (n % 9)}char const*)")
        for step in range(8):
            lines.append(f"{address + step * 0x20:x} 20 {n + step} {rng.randrange(files)}")
    return ("\n".join(lines) + "\n").encode()


def table_of(text: bytes, cache: ByteLRU | None = None) -> SymbolTable:
    sink = io.BytesIO()
    process_symbol_file(io.BytesIO(text), sink)
    return SymbolTable(sink.getvalue(), cache=cache)


def page_count(table: SymbolTable, name: str) -> int:
    return len(getattr(table, f"_{name}")._spans) // 2


def test_a_sorted_batch_inflates_each_page_it_needs_once(monkeypatch):
    """The caches of a table hold at most so many entries; at that cap they must drop their
    own oldest entry, not refuse the new one (they refused: after 16 pages every lookup
    inflated its page again, and every FILE name lookup a page of names)."""
    monkeypatch.setattr(tableformat, "PAGE_TARGET_BYTES", 8 * 1024)  # many pages, quickly
    text = big_module()
    table = table_of(text, ByteLRU(128 * MB))
    assert page_count(table, "funcs") > 40 and page_count(table, "files") > 20
    inflated: Counter[str] = Counter()
    for name in tableformat.TABLE_NAMES:
        sorted_table = getattr(table, f"_{name}")
        inflate = sorted_table._inflate

        def counting(page: int, inflate=inflate, name=name) -> bytes:
            inflated[name] += 1
            return inflate(page)
        sorted_table._page._function = counting
    offsets = sorted(0x1000 + n * 0x100 + 0x25 for n in range(4000))
    answers = [table.lookup(offset) for offset in offsets]
    assert all(info is not None and info.file is not None for info in answers)
    assert inflated["funcs"] <= page_count(table, "funcs"), inflated
    assert inflated["files"] <= page_count(table, "files"), inflated
    reference = ReferenceModule.from_bytes(text)
    for offset, info in zip(offsets[::97], answers[::97]):
        assert info.as_dict() == reference.lookup(offset)
