"""The parser and the processed table: format checks, streaming, and the lookup rule.

The rule itself is checked three ways: hand-worked answers for hand-written fixtures
(tests/fixtures/edge_cases/expected.json), the plain reference implementation
(tests/reference_rule.py) on generated modules, and the spec's worked example.
"""

from __future__ import annotations

import io
import json
import random
import re
import sys
from pathlib import Path

import pytest

from diskcache import symfile, tableformat
from diskcache.symfile import NotASymbolFile, process_symbol_file
from diskcache.tableformat import TableFormatError
from diskcache.tablereader import SymbolTable

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "edge_cases"
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

WORKED_EXAMPLE = b"""MODULE Linux x86_64 ABCDEF0123456789ABCDEF0123456789A main
INFO CODE_ID 0123456789ABCDEF main.so
FILE 0 main.rs
FILE 2 helper.rs
INLINE_ORIGIN 0 middle
INLINE_ORIGIN 1 inner
FUNC 7a40 85 0 main
INLINE 0 4 0 0 7a40 7d
INLINE 1 2 2 1 7a40 49
7a7a f 7 2
"""


def build(text: bytes, chunk: int | None = None) -> SymbolTable:
    sink = io.BytesIO()
    if chunk is None:
        process_symbol_file(io.BytesIO(text), sink)
    else:
        original = symfile.CHUNK_BYTES
        symfile.CHUNK_BYTES = chunk
        try:
            process_symbol_file(io.BytesIO(text), sink)
        finally:
            symfile.CHUNK_BYTES = original
    return SymbolTable(sink.getvalue())


def answer(table: SymbolTable, offset: int) -> dict | None:
    found = table.lookup(offset)
    return None if found is None else found.as_dict()


def test_worked_example_from_the_spec():
    table = build(WORKED_EXAMPLE)
    assert answer(table, 0x7A7B) == {
        "function": "main", "function_offset": 0x3B, "function_size": 0x85,
        "file": "main.rs", "line": 4,
        "inlines": [{"function": "inner", "file": "helper.rs", "line": 7},
                    {"function": "middle", "file": "helper.rs", "line": 2}]}
    assert table.module == {"os": "Linux", "arch": "x86_64", "debug_id": "ABCDEF0123456789ABCDEF0123456789A",
                            "debug_file": "main", "code_id": "0123456789ABCDEF", "code_file": "main.so"}


@pytest.mark.parametrize("text", [b"", b"MODULE", b"FUNC 1000 10 0 f\n", b"\xef\xbb\xbfMODULE a b c d\n",
                                  b"<html>404</html>"])
def test_not_a_symbol_file(text):
    with pytest.raises(NotASymbolFile):
        process_symbol_file(io.BytesIO(text), io.BytesIO())


def test_malformed_module_line_is_rejected():
    with pytest.raises(NotASymbolFile):
        process_symbol_file(io.BytesIO(b"MODULE only-two fields\n"), io.BytesIO())


def test_file_without_final_newline_and_with_crlf():
    text = b"MODULE w x 1 a.pdb\r\nFILE 1 a.cpp\r\nFUNC 10 10 0 f\r\n10 8 3 1\r\n18 8 4 1"
    table = build(text)
    assert answer(table, 0x1A) == {"function": "f", "function_offset": 0xA, "function_size": 0x10,
                                   "file": "a.cpp", "line": 4, "inlines": []}


def random_module(seed: int, funcs: int = 300, chaos: bool = False) -> bytes:
    """A module with every record kind, junk lines and long STACK runs.

    ``chaos`` adds what real files should not have but may: blocks out of address order,
    overlapping and size-0 FUNCs, duplicate PUBLICs, inline depth gaps, unknown origins.
    """
    rng = random.Random(seed)
    header = ["MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 lib.so", "INFO CODE_ID 01 lib.so"]
    header += [f"FILE {i} src/file{i}.cpp" for i in range(20)]
    header += [f"INLINE_ORIGIN {i} inl{i}()" for i in range(20)]
    blocks = []
    address = 0x1000
    for i in range(funcs):
        lines = []
        size = rng.randrange(0x10, 0x200)
        start = address
        if chaos and rng.random() < 0.1:
            start = max(0x1000, address - rng.randrange(0x1, 0x80))  # overlaps the previous one
        if chaos and rng.random() < 0.03:
            size = 0
        lines.append(f"FUNC {'m ' if i % 7 == 0 else ''}{start:x} {size:x} 0 func{i}(int, char const*)")
        for depth in range(rng.randrange(4 if chaos else 3)):
            depth_value = depth + (1 if chaos and rng.random() < 0.1 else 0)
            origin = rng.randrange(24 if chaos else 20)
            lines.append(f"INLINE {depth_value} {rng.randrange(1, 99)} {rng.randrange(20)} {origin} "
                         f"{start:x} {max(size // (depth + 1), 1):x}")
        cursor = start
        while cursor < start + size:
            step = rng.randrange(1, 0x40)
            lines.append(f"{cursor:x} {step:x} {rng.randrange(1, 999)} {rng.randrange(22)}")
            cursor += step
            if rng.random() < 0.02:
                lines.append("garbage in the middle of a block")
        if rng.random() < 0.05:
            lines.append("FUNC 0 junkline")
        if rng.random() < 0.2:
            lines.append(f"PUBLIC {start + size + 4:x} 0 pub{i}")
            if chaos and rng.random() < 0.3:
                lines.append(f"PUBLIC {start + size + 4:x} 0 pub{i}_duplicate")
        if rng.random() < 0.3:
            lines += [f"STACK CFI {start + k:x} .cfa: $rsp {8 * k} +" for k in range(rng.randrange(1, 30))]
        blocks.append(lines)
        address += max(size, 0x10) + rng.randrange(0, 0x40)
    if chaos:
        rng.shuffle(blocks)
    ending = "\r\n" if seed % 2 else "\n"
    return ending.join(header + [line for block in blocks for line in block]).encode() + ending.encode()


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000, 65536])
def test_chunk_boundaries_do_not_change_any_answer(chunk):
    text = random_module(seed=chunk)
    whole, chunked = build(text), build(text, chunk=chunk)
    assert chunked.stats == whole.stats
    end = 0x1000 + 300 * 0x240
    for offset in range(0xF00, end, 7):
        assert answer(chunked, offset) == answer(whole, offset)


def test_table_is_compact_and_carries_every_record():
    text = random_module(seed=3, funcs=2000)
    table = build(text)
    assert table.stats["funcs"] == text.count(b"\nFUNC ") - text.count(b"FUNC 0 junkline")
    assert table.stats["publics"] == text.count(b"\nPUBLIC ")
    assert table.stats["files"] == 20 and table.stats["origins"] == 20
    assert table.size < len(text) * 0.5


def table_bytes(text: bytes = WORKED_EXAMPLE) -> bytes:
    sink = io.BytesIO()
    process_symbol_file(io.BytesIO(text), sink)
    return sink.getvalue()


@pytest.mark.parametrize("damage", ["truncated", "one byte short", "padded", "magic", "version",
                                    "trailer", "directory", "empty"])
def test_damaged_tables_are_refused(damage):
    data = bytearray(table_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "one byte short":
        data = data[:-1]
    elif damage == "padded":
        data += b"\0"
    elif damage == "magic":
        data[0:8] = b"NOTATABL"
    elif damage == "version":
        data[8:12] = (tableformat.FORMAT_VERSION + 1).to_bytes(4, "little")
    elif damage == "trailer":
        data[-1] ^= 0xFF
    elif damage == "directory":
        _, _, _, _, offset, _ = tableformat.HEADER.unpack_from(data, 0)
        data[offset] = ord("[")
    else:
        data = bytearray()
    with pytest.raises(TableFormatError):
        SymbolTable(bytes(data))


def test_open_maps_a_file_in_place(tmp_path):
    path = tmp_path / "t.symtab"
    path.write_bytes(table_bytes())
    table = SymbolTable.open(path)
    assert table.lookup(0x7A40).function == "main"
    empty = tmp_path / "empty.symtab"
    empty.write_bytes(b"")
    with pytest.raises(TableFormatError):
        SymbolTable.open(empty)


def expected_cases() -> list[dict]:
    path = FIXTURES / "expected.json"
    return json.loads(path.read_text()) if path.exists() else []


@pytest.fixture(scope="module")
def fixture_tables() -> dict:
    tables = {}
    for sym in FIXTURES.rglob("*.sym"):
        debug_file, debug_id = sym.parent.parent.name, sym.parent.name
        tables[(debug_file, debug_id)] = build(sym.read_bytes())
    return tables


@pytest.mark.parametrize("case", expected_cases(), ids=lambda case: f"{case['module'][0]}@{case['offset']:#x}")
def test_hand_worked_answers(fixture_tables, case):
    table = fixture_tables[tuple(case["module"])]
    assert answer(table, case["offset"]) == case["answer"], case["why"]


# -- every branch of the rule, worked out by hand ------------------------------------------------

BRANCHES = b"""MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 branches.so
INFO CODE_ID 0123 branches.so.1
FILE 0 a.cpp
FILE 1 b.h
FILE 1 duplicate-number-ignored.h
INLINE_ORIGIN 0 inl_zero
INLINE_ORIGIN 1 inl_one
INLINE_ORIGIN 2 inl_two
PUBLIC 500 0 pub_before_everything
FUNC 1000 100 0 first(int)
1000 10 10 0
1010 f0 11 0
FUNC m 1200 10 8 shared_code
1200 10 20 99
PUBLIC 1180 0 pub_in_gap
PUBLIC 1200 0 pub_at_func
PUBLIC m 1220 0 pub_after_func
PUBLIC 1220 0 pub_duplicate_ignored
FUNC 1300 0 0 size_zero_ignored
FUNC 1400 100 0 outer
FUNC 1450 100 0 overlapping_ignored
FUNC 1400 10 0 same_address_ignored
FUNC 1600 40 0 with_junk
1600 10 30 0
this line is garbage and is skipped
1610 10 31 0
1620 zz 32 0
0x1630 10 33 0
FUNC 0 junkline
1630 10 34 0
FUNC 1700 20 0 past_end
1700 8 40 0
1708 100 41 1
FUNC 1800 40 0 chains
INLINE 0 50 0 0 1800 40
INLINE 1 51 1 1 1800 10 1820 10
INLINE 2 52 0 2 1800 4
INLINE 0 60 1 2 1800 40
INLINE 2 70 0 1 1830 10
INLINE 1 53 0 7 1830 10
1800 40 99 1
FUNC 1900 10 0 last_func
PUBLIC 2000 0 pub_last
"""

NOTHING = None


def full(function, offset, size=None, file=None, line=None, inlines=()):
    return {"function": function, "function_offset": offset, "function_size": size, "file": file,
            "line": line, "inlines": [dict(zip(("function", "file", "line"), i)) for i in inlines]}


BRANCH_CASES = [
    (0x4FF, NOTHING, "before every symbol"),
    (0x500, full("pub_before_everything", 0), "PUBLIC with no FUNC below"),
    (0xFFF, full("pub_before_everything", 0xAFF), "PUBLIC reaches up to the next symbol"),
    (0x1000, full("first(int)", 0, 0x100, "a.cpp", 10), "first byte of a FUNC"),
    (0x10FF, full("first(int)", 0xFF, 0x100, "a.cpp", 11), "last byte of a FUNC"),
    (0x1100, NOTHING, "one past the FUNC: the PUBLIC below is below the FUNC"),
    (0x117F, NOTHING, "gap, still nothing"),
    (0x1180, full("pub_in_gap", 0), "PUBLIC in the gap, above the FUNC below"),
    (0x1205, full("shared_code", 5, 0x10), "FUNC m; line record with an unknown file: no file, no line"),
    (0x1210, NOTHING, "after FUNC m: the PUBLIC at the FUNC's address is not above it"),
    (0x121F, NOTHING, "still the PUBLIC at the FUNC"),
    (0x1225, full("pub_after_func", 5), "PUBLIC m above the FUNC; the duplicate address is ignored"),
    (0x1300, full("pub_after_func", 0xE0), "a size-0 FUNC is no FUNC at all"),
    (0x1460, full("outer", 0x60, 0x100), "overlapping FUNC dropped; FUNC without line records"),
    (0x1520, NOTHING, "the dropped FUNC's range is nobody's; the PUBLIC below is below outer"),
    (0x1405, full("outer", 5, 0x100), "a FUNC at the same address as a kept one is dropped"),
    (0x1612, full("with_junk", 0x12, 0x40, "a.cpp", 31), "a garbage line does not end the block"),
    (0x1625, full("with_junk", 0x25, 0x40), "junk line records (bad hex) are skipped"),
    (0x1632, full("with_junk", 0x32, 0x40), "a junk FUNC line ends the block: later records are orphans"),
    (0x1705, full("past_end", 5, 0x20, "a.cpp", 40), "line record inside the FUNC"),
    (0x171F, full("past_end", 0x1F, 0x20, "b.h", 41), "line record running past the FUNC end"),
    (0x1720, NOTHING, "the line record past the end does not extend the FUNC"),
    (0x1802, full("chains", 2, 0x40, "a.cpp", 50,
                  [("inl_two", "b.h", 99), ("inl_one", "a.cpp", 52), ("inl_zero", "b.h", 51)]),
     "three-level chain; the first record per depth wins"),
    (0x1805, full("chains", 5, 0x40, "a.cpp", 50, [("inl_one", "b.h", 99), ("inl_zero", "b.h", 51)]),
     "depth 2 no longer covers the offset"),
    (0x1825, full("chains", 0x25, 0x40, "a.cpp", 50, [("inl_one", "b.h", 99), ("inl_zero", "b.h", 51)]),
     "the second range of a depth-1 inline"),
    (0x1815, full("chains", 0x15, 0x40, "a.cpp", 50, [("inl_zero", "b.h", 99)]),
     "between the depth-1 ranges: chain of one"),
    (0x1835, full("chains", 0x35, 0x40, "a.cpp", 50, [("inl_zero", "b.h", 99)]),
     "depth 1 has an unknown origin: the chain stops, depth 2 is not reached"),
    (0x1905, full("last_func", 5, 0x10), "last FUNC"),
    (0x1910, NOTHING, "after the last FUNC, the PUBLIC below it is below it"),
    (0x2000, full("pub_last", 0), "last PUBLIC"),
    (0xFFFFFFFFFFFFFFFF, full("pub_last", 0xFFFFFFFFFFFFDFFF), "largest offset"),
]


@pytest.mark.parametrize("offset,expected,why", BRANCH_CASES, ids=[c[2] for c in BRANCH_CASES])
def test_every_branch_of_the_rule(offset, expected, why):
    table = build(BRANCHES)
    assert answer(table, offset) == expected, why


@pytest.mark.parametrize("offset,expected,why", BRANCH_CASES, ids=[c[2] for c in BRANCH_CASES])
def test_every_branch_with_crlf_and_tiny_chunks(offset, expected, why):
    table = build(BRANCHES.replace(b"\n", b"\r\n"), chunk=5)
    assert answer(table, offset) == expected, why


def test_branches_module_info_and_counts():
    table = build(BRANCHES)
    assert table.code_file == "branches.so.1"
    assert table.stats["junk_lines"] == 1  # "FUNC 0 junkline"


# -- agreement with the plain reference implementation -------------------------------------------

from reference_rule import ReferenceModule  # noqa: E402


def agree_everywhere(text: bytes, offsets) -> int:
    table, reference = build(text), ReferenceModule.from_bytes(text)
    assert table.module == reference.info
    checked = 0
    for offset in offsets:
        assert answer(table, offset) == reference.lookup(offset), hex(offset)
        checked += 1
    return checked


def test_reference_agrees_on_the_worked_example_and_branches():
    assert agree_everywhere(WORKED_EXAMPLE, range(0x7A00, 0x7B00)) == 256
    assert agree_everywhere(BRANCHES, [offset for offset, _, _ in BRANCH_CASES] + list(range(0x400, 0x2100, 3)))


@pytest.mark.parametrize("chaos", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_table_agrees_with_the_reference_on_random_modules(seed, chaos):
    text = random_module(seed=100 + seed, funcs=120, chaos=chaos)
    rng = random.Random(seed)
    offsets = [rng.randrange(0xF00, 0x1000 + 120 * 0x240) for _ in range(1500)]
    assert agree_everywhere(text, offsets) == 1500


@pytest.mark.parametrize("crlf", [False, True])
def test_table_agrees_with_the_reference_on_a_generated_module(tmp_path, crlf):
    from gen_symfile import generate

    path = tmp_path / "generated.sym"
    stats = generate(path, size_mb=1.5, seed=7, crlf=crlf, junk=True)
    text = path.read_bytes()
    table = build(text)
    assert table.stats["funcs"] == stats["funcs"] and table.stats["publics"] == stats["publics"]
    rng = random.Random(11)
    end = 0x1000 + stats["funcs"] * 0x200
    offsets = [rng.randrange(0x800, end) for _ in range(600)]
    assert agree_everywhere(text, offsets) == 600
    assert sum(answer(table, offset) is not None for offset in offsets) > 300  # mostly symbolicated


@pytest.mark.parametrize("case", expected_cases(), ids=lambda case: f"{case['module'][0]}@{case['offset']:#x}")
def test_reference_agrees_with_the_hand_worked_answers(case):
    debug_file, debug_id = case["module"]
    [sym] = (FIXTURES / debug_file / debug_id).glob("*.sym")
    assert ReferenceModule.from_bytes(sym.read_bytes()).lookup(case["offset"]) == case["answer"], case["why"]


RUN_EDGES = b"""MODULE Linux x86_64 ABCDEF0123456789ABCDEF0123456789A runs
FILE 0 a.cpp
FILE 1 
FILE 2 with\rcarriage return
FILE 00000000000000000000003 leading zeros beyond nineteen digits
FILE 18446744073709551615 largest
FILE 18446744073709551616 too large
FILE 4 b.cpp\r
FILE
FILE x junk
FILE 1 duplicate keeps the first
INLINE_ORIGIN 0 origin zero
INLINE_ORIGIN 7 
INLINE_ORIGIN 3 three
PUBLIC m 1000 0 with m flag
PUBLIC 1010 0 plain\r
PUBLIC m m 1020 0 two m flags is junk
PUBLIC 1030 0 
PUBLIC 00000000000000001040 0 seventeen digits
PUBLIC 1050 zz bad parameter
PUBLIC 0fff 0 out of order
PUBLIC 1060 0 name with\rcarriage return
FUNC 2000 10 0 f
2000 10 1 0
FUNC m 2010 10 0 g with m
FUNC 2020 10 0 
FUNC 00000000000000002030 10 0 seventeen-digit address
FUNC 2040 10 0 h\r
2040 8 3 4\r
FUNC 2050 10 zz bad parameter
FILE 9 after the funcs
PUBLIC 3000 0 after the funcs
FILE 20 
FILE 21 clean run\r
FILE 0 duplicate of the first FILE 0
INLINE_ORIGIN 20 
INLINE_ORIGIN 21 clean\r
PUBLIC m 4000 0 m\r
PUBLIC 4010 ffffffffffffffff large parameter
"""


#: Names over the cap (64 KiB) in runs, in well-formed FUNC lines and in a long line.
LONG_NAMES = (b"MODULE Linux x86_64 ABCDEF0123456789ABCDEF0123456789A limits\n"
              + b"".join(b"FILE %d %s\n" % (i, b"f\xc3\xa9" * (i * 20000)) for i in range(4))
              + b"".join(b"INLINE_ORIGIN %d %s%s\n" % (i, b"-1 " * (i % 2), b"o" * (i * 30000)) for i in range(4))
              + b"".join(b"PUBLIC %x 0 %s\n" % (0x100 + i, b"p" * (i * 30000)) for i in range(4))
              + b"FUNC 1000 10 0 " + b"n" * 70000 + b"\n1000 10 1 1\nINLINE 0 2 1 1000 10\n"
              + b"FUNC 2000 10 0 " + b"m" * 70000 + b"\r\n1000 10 1 1\r\n"
              + b"FUNC 3000 10 0 " + b"l" * (2 * 1024 * 1024) + b"\n3000 10 1 1\n")


@pytest.mark.parametrize("chunk", [None, 7, 64, 1000])
@pytest.mark.parametrize("source", ["runs", "generated", "long names",
                                    *sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*.sym"))])
def test_fast_paths_build_the_same_table_as_the_general_path(source, chunk, monkeypatch, tmp_path):
    """The bulk FILE/INLINE_ORIGIN/PUBLIC runs and the FUNC fast path are pure speed:
    byte for byte the table must be what record-by-record parsing builds."""
    if source == "runs":
        text = RUN_EDGES
    elif source == "long names":
        text = LONG_NAMES
    elif source == "generated":
        from gen_symfile import generate

        generate(tmp_path / "g.sym", 0.3, seed=5)
        text = (tmp_path / "g.sym").read_bytes()
    else:
        text = (FIXTURES / source).read_bytes()

    def table_bytes() -> bytes:
        sink = io.BytesIO()
        original = symfile.CHUNK_BYTES
        symfile.CHUNK_BYTES = chunk or original
        try:
            process_symbol_file(io.BytesIO(text), sink)
        finally:
            symfile.CHUNK_BYTES = original
        return sink.getvalue()

    fast = table_bytes()
    monkeypatch.setattr(symfile, "_RUNS", {})
    # the FUNC alternative of the record search never matches: every FUNC goes through record()
    monkeypatch.setattr(symfile, "_NEXT_RECORD",
                        re.compile(rb"\n(?:(?!)()()()|(" + symfile.KEYWORDS + rb")(?= |\r?\n))"))
    assert table_bytes() == fast


def test_run_edges_follow_the_record_rules(monkeypatch):
    bulk_runs = []
    general = symfile._Parser.bulk_run

    def counting(self, *args):
        end = general(self, *args)
        bulk_runs.append(end is not None)
        return end

    monkeypatch.setattr(symfile._Parser, "bulk_run", counting)
    table = build(RUN_EDGES)
    assert bulk_runs.count(True) >= 4 and bulk_runs.count(False) >= 3  # both paths were taken
    assert table._files.get(0) == b"a.cpp" and table._files.get(20) == b""
    assert table._files.get(21) == b"clean run"
    assert table._origins.get(20) == b"" and table._origins.get(21) == b"clean"
    assert answer(table, 0x4000)["function"] == "m" and answer(table, 0x4010)["function"] == "large parameter"
    files = table._files
    assert files.get(1) == b""  # the first FILE 1 wins over the duplicate
    assert files.get(2) == b"with\rcarriage return"
    assert files.get(3) == b"leading zeros beyond nineteen digits"
    assert files.get(18446744073709551615) == b"largest"
    assert files.get(4) == b"b.cpp"
    assert files.get(9) == b"after the funcs"
    assert table._origins.get(7) == b"" and table._origins.get(3) == b"three"
    assert answer(table, 0x1000)["function"] == "with m flag"
    assert answer(table, 0x1010)["function"] == "plain"
    assert answer(table, 0x1020)["function"] == "plain"  # the double-m PUBLIC is junk
    assert answer(table, 0x1040)["function"] == "seventeen digits"
    assert answer(table, 0x1050)["function"] == "seventeen digits"  # bad parameter: junk
    assert answer(table, 0x1060)["function"] == "name with\rcarriage return"
    assert answer(table, 0xfff)["function"] == "out of order"
    assert answer(table, 0x2010)["function"] == "g with m"
    assert answer(table, 0x2030)["function"] == "seventeen-digit address"
    assert answer(table, 0x2044) == {"function": "h", "function_offset": 4, "function_size": 16,
                                     "file": "b.cpp", "line": 3, "inlines": []}
    assert answer(table, 0x2050) is None  # the FUNC with a bad parameter is junk; no PUBLIC is nearer
    assert answer(table, 0x3000)["function"] == "after the funcs"


@pytest.mark.parametrize("seed", range(20))
def test_add_many_builds_the_same_pages_and_columns_as_add(seed):
    """The batched add (bisection over running totals) against one add per record, with
    empty values, values larger than a page and batches that start mid-page."""
    from diskcache.tablewriter import TableWriter

    rng = random.Random(seed)
    target = tableformat.PAGE_TARGET_BYTES
    batches = []
    for _ in range(rng.randrange(1, 6)):
        sizes = [rng.choice([0, 1, 7, 300, target // 3, target - 1, target, target + 5, 3 * target])
                 for _ in range(rng.randrange(0, 40))]
        batches.append([bytes([65 + i % 26]) * size for i, size in enumerate(sizes)])

    def build(batched: bool) -> bytes:
        sink = io.BytesIO()
        with TableWriter(sink) as writer:
            key = 0
            for values in batches:
                keys = list(range(key, key + len(values)))
                key += len(values)
                if batched:
                    writer.publics.add_many(keys, values)
                else:
                    for k, value in zip(keys, values):
                        writer.publics.add(k, value)
            writer.finish({"debug_file": "x"}, {})
        return sink.getvalue()

    assert build(batched=True) == build(batched=False)


def test_released_caches_are_empty_and_lookups_still_work():
    table = build(WORKED_EXAMPLE)
    before = answer(table, 0x7A7B)
    assert table._funcs._page.cache_info().currsize > 0 and table._block.cache_info().currsize > 0
    table.release_caches()
    assert table._funcs._page.cache_info().currsize == 0 and table._block.cache_info().currsize == 0
    assert answer(table, 0x7A7B) == before


def test_reference_agrees_on_names_over_the_cap():
    assert agree_everywhere(LONG_NAMES, [0x100, 0x103, 0x1000, 0x1005, 0x2005, 0x3005, 0x3010]) == 7
    table = build(LONG_NAMES)
    assert table.lookup(0x1005).function == "n" * symfile.NAME_CAP + "\u2026[truncated]"
    assert table.lookup(0x3005).function == "l" * symfile.NAME_CAP + "\u2026[truncated]"


@pytest.mark.parametrize("seed,chaos", [(1, False), (2, True), (3, True), (4, False)])
def test_spilled_and_merged_index_runs_build_the_same_table(seed, chaos, monkeypatch):
    """The writer spills index columns in runs and merges them (keys out of order, overlaps,
    duplicates: ``chaos``); byte for byte the table must not depend on the run size, and
    the answers must be the reference's.  Small chunks make the reader join many."""
    from diskcache import tablewriter

    monkeypatch.setattr(tableformat, "ARRAY_CHUNK", 17)
    text = random_module(seed, funcs=400, chaos=chaos)

    def table_bytes(run_records: int, merge_block: int) -> bytes:
        monkeypatch.setattr(tablewriter, "RUN_RECORDS", run_records)
        monkeypatch.setattr(tablewriter, "MERGE_BLOCK", merge_block)
        sink = io.BytesIO()
        process_symbol_file(io.BytesIO(text), sink)
        return sink.getvalue()

    whole = table_bytes(1 << 20, 4096)
    for run_records, merge_block in [(1, 1), (3, 2), (64, 5), (100, 1000)]:
        assert table_bytes(run_records, merge_block) == whole, (run_records, merge_block)
    assert agree_everywhere(text, range(0xF00, 0x1000 + 400 * 0x240, 5)) > 1000


def _writer_peak_bytes(tmp_path: Path, funcs: int) -> int:
    """Peak Python-heap bytes while a module of ``funcs`` FUNCs (and as many FILEs and
    PUBLICs) is written to a real file; the text itself is read from a file."""
    import tracemalloc

    source = tmp_path / f"{funcs}.sym"
    with source.open("wb") as out:
        out.write(b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 big.so\n")
        out.write(b"".join(b"FILE %d src/f%d.cpp\n" % (i, i) for i in range(funcs)))
        out.write(b"".join(b"FUNC %x 10 0 f%d()\n%x 10 %d %d\n" % (0x1000 + 16 * i, i, 0x1000 + 16 * i, i, i)
                           for i in range(funcs)))
        out.write(b"".join(b"PUBLIC %x 0 p%d\n" % (0x1000 + 16 * funcs + 4 * i, i) for i in range(funcs)))
    tracemalloc.start()
    try:
        with source.open("rb") as text, (tmp_path / "out.symtab").open("w+b") as sink:
            process_symbol_file(text, sink)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_writer_memory_does_not_grow_with_the_record_count(tmp_path, monkeypatch):
    """The index is spilled and written in chunks: four times the records must not cost
    more memory (the whole index in memory cost about 100 bytes per record)."""
    from diskcache import tablewriter

    monkeypatch.setattr(tablewriter, "RUN_RECORDS", 4096, raising=False)
    monkeypatch.setattr(symfile, "CHUNK_BYTES", 64 * 1024)  # what one read costs stays small
    small = _writer_peak_bytes(tmp_path, 25_000)
    large = _writer_peak_bytes(tmp_path, 100_000)
    assert large < small + 1_000_000, (small, large)
    table = SymbolTable((tmp_path / "out.symtab").read_bytes())
    assert table.stats["funcs"] == 100_000 and table.lookup(0x1000 + 16 * 99_999 + 3).line == 99_999


def test_starts_in_pages_cost_almost_nothing(tmp_path):
    """A value's start in its page is stored XOR the end of the record before it (0 when it
    follows it in the same page, as nearly all do): that column costs next to nothing."""
    from gen_symfile import generate

    generate(tmp_path / "g.sym", 2, seed=3)
    sink = io.BytesIO()
    with (tmp_path / "g.sym").open("rb") as text:
        process_symbol_file(text, sink)
    data = sink.getvalue()
    offset, length = tableformat.check_header(data, len(data))
    tables = json.loads(data[offset:offset + length])["tables"]
    funcs = tables["funcs"]
    assert funcs["count"] > 2000
    assert sum(chunk[1] for chunk in funcs["starts"][1]) < 64 * len(funcs["starts"][1])
    assert sum(chunk[1] for chunk in funcs["lengths"][1]) > 1000  # (the column next to it does cost)


def test_checking_a_cached_table_at_start_does_not_inflate_its_index(tmp_path):
    """At start the DiskCache checks every cached table; that must not cost each one's
    index in memory (it was held until the garbage collector ran)."""
    import tracemalloc

    from diskcache.provider import _is_valid_table
    from diskcache.tablewriter import TableWriter

    path = tmp_path / "big.symtab"
    with path.open("w+b") as sink, TableWriter(sink) as writer:
        writer.publics.add_many(list(range(0, 16 * 200_000, 16)), [b"name%d" % i for i in range(200_000)])
        writer.finish({"debug_file": "big"}, {})
    assert SymbolTable.open(path).lookup(16 * 7 + 3).function == "name7"
    tracemalloc.start()
    try:
        assert _is_valid_table(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200_000, peak
    damaged = tmp_path / "damaged.symtab"
    damaged.write_bytes(path.read_bytes()[:-1])
    assert not _is_valid_table(damaged)
