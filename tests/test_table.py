"""The parser and the processed table: format checks, streaming, and the lookup rule.

The rule itself is checked three ways: hand-worked answers for hand-written fixtures
(tests/fixtures/edge_cases/expected.json), the plain reference implementation
(tests/reference_rule.py) on generated modules, and the spec's worked example.
"""

from __future__ import annotations

import io
import json
import random
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


def random_module(seed: int, funcs: int = 300) -> bytes:
    """A module with every record kind, junk lines and long STACK runs, for invariance tests."""
    rng = random.Random(seed)
    lines = ["MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 lib.so", "INFO CODE_ID 01 lib.so"]
    lines += [f"FILE {i} src/file{i}.cpp" for i in range(20)]
    lines += [f"INLINE_ORIGIN {i} inl{i}()" for i in range(20)]
    address = 0x1000
    for i in range(funcs):
        size = rng.randrange(0x10, 0x200)
        lines.append(f"FUNC {'m ' if i % 7 == 0 else ''}{address:x} {size:x} 0 func{i}(int, char const*)")
        for depth in range(rng.randrange(3)):
            lines.append(f"INLINE {depth} {rng.randrange(1, 99)} {rng.randrange(20)} {rng.randrange(20)} "
                         f"{address:x} {size // (depth + 1):x}")
        cursor = address
        while cursor < address + size:
            step = rng.randrange(1, 0x40)
            lines.append(f"{cursor:x} {step:x} {rng.randrange(1, 999)} {rng.randrange(22)}")
            cursor += step
            if rng.random() < 0.02:
                lines.append("garbage in the middle of a block")
        if rng.random() < 0.05:
            lines.append("FUNC 0 junkline")
        if rng.random() < 0.2:
            lines.append(f"PUBLIC {address + size + 4:x} 0 pub{i}")
        if rng.random() < 0.3:
            lines += [f"STACK CFI {address + k:x} .cfa: $rsp {8 * k} +" for k in range(rng.randrange(1, 30))]
        address += size + rng.randrange(0, 0x40)
    ending = "\r\n" if seed % 2 else "\n"
    return ending.join(lines).encode() + ending.encode()


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
