"""Symbol files built to hurt: huge names and very long lines (README, "Hardening").

Names longer than NAME_CAP bytes are cut (on a UTF-8 boundary) and end with the marker; a
line is never held whole, and the parser's work grows linearly with a line's length.
"""

from __future__ import annotations

import io
import time
import tracemalloc

import psutil
import pytest

from diskcache.symfile import LONG_LINE, NAME_CAP, TRUNCATION_MARKER, process_symbol_file
from diskcache.tablereader import SymbolTable
from reference_rule import ReferenceModule

MARKER = TRUNCATION_MARKER.decode()
MB = 1024 * 1024
HEADER = b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 limits.so\nFILE 0 a.cpp\n"


class Stream:
    """A file-like source: ``head``, then ``count`` bytes of ``filler`` repeated, then ``tail``,
    made up as it is read, so a line of hundreds of MB is never in the test's memory."""

    def __init__(self, head: bytes, filler: bytes, count: int, tail: bytes) -> None:
        self._block = filler * (MB // len(filler) + 1)
        self._head, self._tail, self._left = head, tail, count

    def read(self, size: int = -1) -> bytes:
        if self._head:
            out, self._head = self._head[:size], self._head[size:]
            return out
        if self._left:
            step = min(size, self._left, MB)
            self._left -= step
            return self._block[:step]
        out, self._tail = self._tail[:size], self._tail[size:]
        return out


def build(source) -> SymbolTable:
    sink = io.BytesIO()
    process_symbol_file(source if hasattr(source, "read") else io.BytesIO(source), sink)
    return SymbolTable(sink.getvalue())


def cut(name: str) -> str:
    """What a name becomes, worked out on its own: the longest prefix of whole characters
    that fits in NAME_CAP bytes, then the marker."""
    kept, size = [], 0
    for character in name:
        size += len(character.encode())
        if size > NAME_CAP:
            break
        kept.append(character)
    return "".join(kept) + MARKER


# -- the cap ------------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [NAME_CAP + 1, 200_000, 3 * MB], ids=["cap+1", "200KB", "3MB-long-line"])
def test_every_kind_of_name_longer_than_the_cap_is_cut_with_the_marker(length):
    # "x" then two-byte characters: the cap falls inside a character, which must not be split
    name = ("x" + "\u00e9" * length)[:length]
    text = HEADER.decode() + "".join([
        f"INFO CODE_ID 0123 {name}\n",
        f"FILE 1 {name}\n",
        f"INLINE_ORIGIN 0 {name}\n",
        f"INLINE_ORIGIN 1 -1 old{name}\n",
        f"FUNC 1000 100 0 {name}\n",
        "INLINE 0 7 0 0 1000 10\n",
        "INLINE 0 8 1 1010 10\n",
        "1000 100 42 1\n",
        f"PUBLIC 2000 0 {name}\n",
        "FUNC 3000 10 0 after_the_long_names\n",
    ])
    table = build(text.encode())
    expected = cut(name)
    assert "\ufffd" not in expected and len(expected.encode()) <= NAME_CAP + len(TRUNCATION_MARKER)
    first = table.lookup(0x1005).as_dict()
    assert first["function"] == expected and (first["file"], first["line"]) == ("a.cpp", 7)
    assert first["inlines"] == [{"function": expected, "file": expected, "line": 42}]
    assert table.lookup(0x1015).inlines[0].function == cut("old" + name)
    assert table.lookup(0x2000).function == expected
    assert table.code_file == expected
    assert table.lookup(0x3000).function == "after_the_long_names"
    reference = ReferenceModule.from_bytes(text.encode())
    for offset in (0x1005, 0x1015, 0x2000, 0x3000):
        assert table.lookup(offset).as_dict() == reference.lookup(offset)


def test_a_name_of_exactly_the_cap_is_kept_whole():
    name = "n" * NAME_CAP
    table = build(HEADER + f"FUNC 1000 10 0 {name}\nPUBLIC 2000 0 {name}q\n".encode())
    assert table.lookup(0x1000).function == name
    assert table.lookup(0x2000).function == name + MARKER


def test_a_ten_megabyte_func_name_still_parses_cut_to_the_cap():
    tail = b"\n1000 10 5 0\nFUNC 2000 10 0 next\n"
    table = build(Stream(HEADER + b"FUNC 1000 10 0 ", "\u00e9".encode(), 10 * MB, tail))
    found = table.lookup(0x1004)
    assert found.function == "\u00e9" * (NAME_CAP // 2) + MARKER
    assert (found.file, found.line) == ("a.cpp", 5)  # the block after the long line is its block
    assert table.lookup(0x2000).function == "next"


# -- long lines: linear time, bounded memory ----------------------------------------------------

KINDS = {
    # a long junk line inside a FUNC's block: skipped, the block goes on
    "junk in a block": (HEADER + b"FUNC 1000 100 0 f\n1000 10 1 0\n", b"0", b"\n1010 10 2 0\n"),
    # a FUNC line with a huge name: cut to the cap, its block follows
    "FUNC name": (HEADER + b"FUNC 1000 100 0 ", b"n", b"\n1010 10 2 0\n"),
    # a junk line outside any block
    "junk at top level": (HEADER + b"PUBLIC 900 0 p\n", b"?", b"\nFUNC 1000 100 0 f\n1010 10 2 0\n"),
}


def parse_seconds(kind: str, megabytes: int) -> float:
    head, filler, tail = KINDS[kind]
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        table = build(Stream(head, filler, megabytes * MB, tail + b"PUBLIC 5000 0 last\n"))
        best = min(best, time.process_time() - started)
        assert (table.lookup(0x1012).file, table.lookup(0x1012).line) == ("a.cpp", 2)
        assert table.lookup(0x5000).function == "last"
    return best


@pytest.mark.parametrize("kind", list(KINDS))
def test_parse_time_grows_linearly_with_a_lines_length(kind):
    """8x longer must cost about 8x (quadratic work would be 64x); CPU time, best of three,
    so other processes on the machine barely matter."""
    small, large = parse_seconds(kind, 8), parse_seconds(kind, 64)
    assert large < 25 * max(small, 0.002), (small, large)


@pytest.mark.parametrize("kind", list(KINDS))
def test_memory_stays_bounded_while_a_long_line_is_read(kind):
    head, filler, tail = KINDS[kind]
    tracemalloc.start()
    try:
        table = build(Stream(head, filler, 64 * MB, tail))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * MB, f"peak {peak / MB:.1f} MB while reading a 64 MB line"
    assert table.lookup(0x1012).line == 2


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_a_line_longer_than_the_limit_is_junk_and_one_at_the_limit_is_not(ending):
    """A line record padded with leading zeros is valid at any length up to LONG_LINE bytes
    (a CR before the newline counted); one byte more and it is a long line: junk."""
    record = b"1010 10 2 0"
    for length, line in ((LONG_LINE, 2), (LONG_LINE + 1, None)):
        padded = b"0" * (length - len(record) - len(ending) + 1) + record
        text = HEADER + b"FUNC 1000 100 0 f\n" + padded + ending + b"PUBLIC 5000 0 p\n"
        assert build(text).lookup(0x1012).line == line, length
        assert ReferenceModule.from_bytes(text).lookup(0x1012)["line"] == line, length


# -- through the real trio ---------------------------------------------------------------------

def test_a_ten_megabyte_name_gives_a_small_answer_and_a_small_diskcache(make_trio, tmp_path):
    """150 frames in a FUNC with a 10 MB name, straight to the DiskCache: before the cap this
    made a 1.57 GB answer and a 3.1 GB process."""
    debug_id = "0123456789ABCDEF0123456789ABCDEF0"
    sym = tmp_path / "symbols" / "huge.so" / debug_id / "huge.so.sym"
    sym.parent.mkdir(parents=True)
    sym.write_bytes(b"MODULE Linux x86_64 " + debug_id.encode() + b" huge.so\nFUNC 1000 1000 0 "
                    + b"N" * (10 * MB) + b"\n1000 1000 7 0\nFILE 0 " + b"F" * (10 * MB) + b"\n")
    trio = make_trio([], {"DiskCache": {"localSymbolDirs": [str(tmp_path / "symbols")]}})
    body = {"stacks": [[[0, 0x1000 + i] for i in range(150)]], "memoryMap": [["huge.so", debug_id]],
            "version": 4}
    response = trio.post(body, server="DiskCache")
    assert response.status_code == 200, trio.logs()
    frames = response.json()["symbolicatedStacks"][0]
    assert len(frames) == 150 and frames[0] == f"{'N' * NAME_CAP}{MARKER} (in huge.so)"
    assert len(response.content) < 150 * (NAME_CAP + 100)
    v5 = trio.post({"memoryMap": [["huge.so", debug_id]], "stacks": [[[0, 0x1000]]]},
                   path="/symbolicate/v5").json()["results"][0]["stacks"][0][0]
    assert v5["function"] == "N" * NAME_CAP + MARKER and v5["file"] == "F" * NAME_CAP + MARKER
    rss = psutil.Process(trio.pid("DiskCache")).memory_info().rss
    assert rss < 300 * MB, f"DiskCache RSS {rss / MB:.0f} MB"
