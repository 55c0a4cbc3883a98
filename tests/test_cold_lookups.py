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


# --------------------------------------------------------------------------- FUNC blocks

def plain_parse(block: bytes) -> tuple[list[int], list[tuple[int, int, int]], list[InlineRecord]]:
    """The block rule written the plain way, line by line (what parse_func_block did before
    its C-level paths): the oracle for both fast paths."""
    records = []
    inlines = []
    for line in block.split(b"\n"):
        line = line[:-1] if line.endswith(b"\r") else line
        if re.fullmatch(rb"[0-9a-fA-F]+ [0-9a-fA-F]+ [0-9]+ [0-9]+", line):
            address, size, number, file_number = line.split(b" ")
            values = int(address, 16), int(size, 16), int(number), int(file_number)
            if values[1] and max(values) < 1 << 64:
                records.append((values[0], values[0] + values[1], values[2], values[3]))
        elif re.fullmatch(rb"INLINE [-0-9a-fA-F ]+?", line):
            record = parse_inline(line[len(b"INLINE "):].split(b" "))
            if record is not None:
                inlines.append(record)
    records.sort(key=lambda record: record[0])
    starts, kept, end = [], [], -1
    for address, record_end, number, file_number in records:
        if address >= end:
            starts.append(address)
            kept.append((record_end, number, file_number))
            end = record_end
    return starts, kept, inlines


def both_ways(block: bytes) -> tuple[list[int], list[tuple[int, int, int]], list[InlineRecord]]:
    """parse_func_block and func_block_columns must agree with each other and the oracle."""
    parsed = parse_func_block(block)
    columns = symfile.func_block_columns(block)
    from_columns = (columns.starts, list(zip(columns.ends, map(int, columns.lines), map(int, columns.files))),
                    columns.inlines)
    assert (parsed.line_starts, parsed.line_records, parsed.inlines) == from_columns
    expected = plain_parse(block)
    assert from_columns == expected, block
    return expected


CLEAN = b"INLINE 0 12 3 7 1000 20\nINLINE 1 4 -1 8 1004 8 1010 4\n1000 8 10 3\n1008 18 11 3\n1020 4 12 4\n"


@pytest.mark.usefixtures("scans")
@pytest.mark.parametrize("block, why", [
    (CLEAN, "the fast path: INLINE lines first, records in order"),
    (b"1000 8 10 3\n1008 18 11 3\n", "no INLINE lines"),
    (b"", "an empty block"),
    (b"INLINE 0 12 3 7 1000 20\n", "INLINE lines only"),
    (b"1008 18 11 3\n1000 8 10 3\n", "records not in address order"),
    (b"1000 10 10 3\n1008 8 11 3\n1010 4 12 4\n", "overlapping records: the later one is cut"),
    (b"1000 0 10 3\n1000 8 11 3\n", "a size-0 record"),
    (b"1000 8 10 3\r\n1008 18 11 3\r\n", "CR line ends"),
    (b"1000 8 10 3\n1008 18 11 3", "no newline after the last record"),
    (b"1000 8 10 3\n\n1008 18 11 3\n", "an empty line"),
    (b"1000 8 10 3\n1008  18 11 3\n", "a double space: junk"),
    (b" 1000 8 10 3\n1008 18 11 3\n", "a leading space: junk"),
    (b"1000 8 10 3 \n1008 18 11 3\n", "a trailing space: junk"),
    (b"1000 8 10\n1008 18 11 3 4\n", "three and five fields (eight tokens in all)"),
    (b"1000 8 10 3 4\n1008 18 11\n", "five and three fields"),
    (b"1000 8  10\n1008 18 11 3\n", "three fields and a double space (four tokens)"),
    (b" 1000 8 10\n1008 18 11 3\n", "three fields after a leading space"),
    (b"1000 8 10 \n1008 18 11 3\n", "three fields before a trailing space"),
    (b"1000 8 1a 3\n1008 18 11 3\n", "a hexadecimal line number: junk"),
    (b"1000 8 10 3\n1008 18 11 18446744073709551616\n", "a file number of 2**64: junk"),
    (b"1000 8 10 3\n1008 18 11 18446744073709551615\n", "a file number of 2**64-1, twenty digits"),
    (b"1000 8 10 3\n1008 ffffffffffffffff 11 3\n", "a size of 2**64-1: kept"),
    (b"1000 8 10 3\n10000000000000000 18 11 3\n", "an address of 2**64: junk"),
    (b"0001000 8 10 3\n00000000000000001008 18 11 3\n", "leading zeros"),
    (b"1000 8 10 3\nINLINE 0 12 3 7 1000 20\n1008 18 11 3\n", "an INLINE line among the records"),
    (b"INLINE 0 12 7 1000 20\n1000 8 10 3\n", "an older-format INLINE (odd field count)"),
    (b"INLINE 0 12 3 7 1000\n1000 8 10 3\n", "a junk INLINE line"),
    (b"INLINE 0 12 3 7 1000 20\r\n1000 8 10 3\r\n", "CR line ends after INLINE lines"),
    (b"INLINE 0 12 3 7 1000 20 \n1000 8 10 3\n", "an INLINE line with a trailing space"),
    (b"INLINE 0 12 3 7 1000 20\nSTACK junk\n1000 8 10 3\n", "a junk line"),
    (b"1000 8 10 3\nABCD 4 1 1\nabce 4 2 2\n", "upper- and lower-case digits"),
])
def test_block_paths_agree_with_the_plain_rule(block, why):
    both_ways(block)


@pytest.mark.usefixtures("scans")
def test_the_fast_path_is_taken_for_clean_blocks(monkeypatch):
    """What compilers write must not go through the general parse (that is the point)."""
    def refuse(block: bytes) -> FuncBlock:
        raise AssertionError(f"general path taken for {block!r}")
    monkeypatch.setattr(symfile, "parse_func_block", refuse)
    columns = symfile.func_block_columns(CLEAN)
    assert columns.starts == [0x1000, 0x1008, 0x1020] and columns.ends == [0x1008, 0x1020, 0x1024]
    assert [record.ranges for record in columns.inlines] == [((0x1000, 0x1020),), ((0x1004, 0x100C), (0x1010, 0x1014))]
    assert columns.inlines[1].call_file == -1


def random_block(rng: random.Random) -> bytes:
    """Mostly clean blocks, with every kind of damage now and then."""
    lines = []
    for _ in range(rng.randrange(3)):
        fields = [rng.randrange(4), rng.randrange(1, 500), rng.choice([-1, rng.randrange(40)]), rng.randrange(40)]
        if rng.random() < 0.2:
            del fields[2]  # the older format
        ranges = [f"{rng.randrange(0x1000, 0x1100):x} {rng.randrange(1, 0x40):x}" for _ in range(rng.randrange(1, 3))]
        lines.append("INLINE " + " ".join(map(str, fields)) + " " + " ".join(ranges))
    address = 0x1000
    for _ in range(rng.randrange(12)):
        size = rng.randrange(1, 0x30)
        start = address
        if rng.random() < 0.08:
            start = max(0, address - rng.randrange(1, 0x20))  # overlap or out of order
        if rng.random() < 0.03:
            size = 0
        lines.append(f"{start:x} {size:x} {rng.randrange(1, 3000)} {rng.randrange(40)}")
        address = start + size + (rng.randrange(0x10) if rng.random() < 0.3 else 0)
    if rng.random() < 0.15 and lines:
        lines.insert(rng.randrange(len(lines)), rng.choice(["junk", "", "1000 8", "INLINE 0 1 2", "1000 8 1 2 3",
                                                            "10 8 1 99999999999999999999"]))
    if rng.random() < 0.1:
        lines = lines[1:] + lines[:1]
    text = "\n".join(lines) + ("" if rng.random() < 0.1 else "\n")
    if rng.random() < 0.1:
        text = text.replace("\n", "\r\n")
    if rng.random() < 0.05:
        text = text.upper()
    return text.encode()


@pytest.mark.usefixtures("scans")
def test_random_blocks_agree_with_the_plain_rule():
    rng = random.Random(12)
    for _ in range(3000):
        both_ways(random_block(rng))


@pytest.mark.usefixtures("scans")
def test_lookups_in_odd_blocks_agree_with_the_reference(monkeypatch):
    """Whole modules of such blocks, read in chunks so small that blocks are cut across
    reads, in pages so small that a lookup batch crosses many: every answer is the
    reference rule's."""
    monkeypatch.setattr(tableformat, "PAGE_TARGET_BYTES", 256)
    monkeypatch.setattr(symfile, "CHUNK_BYTES", 97)
    rng = random.Random(3)
    lines = ["MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 odd.so"]
    lines += [f"FILE {n} src/file{n}.cpp" for n in range(38)]
    lines += [f"INLINE_ORIGIN {n} inlined{n}()" for n in range(38)]
    for n in range(150):
        base = 0x1000 + n * 0x1000
        block = random_block(rng).decode().replace("\r", "")
        block = re.sub(r"\b1[0-9a-f]{3}\b", lambda m: f"{int(m[0], 16) - 0x1000 + base:x}", block)
        lines.append(f"FUNC {base:x} 200 0 function{n}()")
        lines.append(block.rstrip("\n"))
    text = ("\n".join(lines) + "\n").encode()
    table = table_of(text)
    reference = ReferenceModule.from_bytes(text)
    offsets = sorted(rng.randrange(0x1000, 0x1000 + 150 * 0x1000) for _ in range(1500))
    offsets += [0x1000 + n * 0x1000 + k for n in range(0, 150, 7) for k in range(0, 0x60, 3)]
    for offset in sorted(offsets):
        found = table.lookup(offset)
        assert (None if found is None else found.as_dict()) == reference.lookup(offset), hex(offset)


def test_the_public_index_is_inflated_only_when_a_lookup_needs_it():
    """Opening a table inflated all four indexes; most lookups land in a FUNC, and the
    PUBLIC index was a quarter of opening a small table.  A damaged PUBLIC index is then
    found by the lookup that needs it (the DiskCache evicts the table on that error)."""
    import json

    text = (b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 p.so\nFILE 0 a.c\n"
            b"FUNC 1000 10 0 f\n1000 10 1 0\nPUBLIC 2000 0 p\n")
    sink = io.BytesIO()
    process_symbol_file(io.BytesIO(text), sink)
    data = bytearray(sink.getvalue())
    table = SymbolTable(bytes(data))
    assert table.lookup(0x1004).function == "f"
    assert "_publics" not in table.__dict__
    assert table.lookup(0x2004).function == "p" and "_publics" in table.__dict__
    offset, length = tableformat.check_header(data, len(data))
    chunk = json.loads(data[offset:offset + length])["tables"]["publics"]["keys"][1][0]
    data[chunk[0]:chunk[0] + chunk[1]] = b"\xff" * chunk[1]
    damaged = SymbolTable(bytes(data))
    assert damaged.lookup(0x1004).function == "f"
    with pytest.raises(tableformat.TableFormatError):
        damaged.lookup(0x2004)
    damaged.release_caches()


def test_a_second_batch_on_an_open_table_reuses_the_pages_of_the_first(monkeypatch):
    """A second profile of the same build asks other addresses of the same modules: the
    pages the first batch inflated are still there (the shared cache bounds the bytes; a
    table kept only its last 16 pages, so the second batch inflated nearly all again)."""
    monkeypatch.setattr(tableformat, "PAGE_TARGET_BYTES", 8 * 1024)
    table = table_of(big_module(), ByteLRU(128 * MB))
    inflated: Counter[str] = Counter()
    funcs = table._funcs
    inflate = funcs._inflate

    def counting(page: int) -> bytes:
        inflated["funcs"] += 1
        return inflate(page)
    funcs._page._function = counting
    first = [0x1000 + n * 0x100 + 0x10 for n in range(0, 4000, 2)]
    second = [0x1000 + n * 0x100 + 0x30 for n in range(1, 4000, 2)]
    assert all(table.lookup(offset) is not None for offset in first)
    assert inflated["funcs"] == len(funcs._spans) // 2 > 40
    assert all(table.lookup(offset) is not None for offset in second)
    assert inflated["funcs"] == len(funcs._spans) // 2
