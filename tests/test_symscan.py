"""The compiled scans of .sym text (``diskcache/_symscan.c``) against the Python they stand in for.

Each compiled function must decide exactly what its Python twin decides, on any bytes: the
line scan as rawlookup's regex pass (every index column, name run and header, or "not the
strict form"), ``block_columns`` as :func:`func_block_columns` (or None, leaving the block to
it), ``id_lines`` as rawlookup's ``_id_lines`` regex.  Inputs: hypothesis soups of real
record lines and their near misses, numbers at the 16-digit, 19-digit and 2**64 edges, CR
line ends, and plain garbage.  The answerer's own tests (test_answer_first, test_cold_lookups)
also run once with the compiled scans and once without (the ``scans`` fixture).
"""

from __future__ import annotations

import shutil
import sysconfig
from array import array
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diskcache import compiled, rawlookup, symfile
from diskcache.rawlookup import RawIndex, _id_lines, _Scan
from test_properties import record_lines

symscan = compiled.symscan
needs_compiled = pytest.mark.skipif(symscan is None, reason="the compiled scans are not built here")

# -- where the parts come from ---------------------------------------------------------------


def test_the_compiled_scans_are_built_where_a_compiler_is():
    """setup.py builds them as optional: an install on a machine without a C compiler goes on
    with the Python scans.  Where there is one (the README's set-up installs gcc and the
    Python headers), a build that failed is a defect, not a fallback."""
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if shutil.which("cc") is None and shutil.which("gcc") is None or not include.exists():
        pytest.skip("no C compiler or no Python headers here: the Python scans are used")
    assert symscan is not None, "diskcache/_symscan.c was not built: pip install -e . again and read its output"


# -- the line scan -----------------------------------------------------------------------------

_HEX_EDGES = ["0", "f", "F00d", "ffffffffffffffff", "0000000000000000f", "1" * 17, "", "x1", "-1"]
near_misses = st.one_of(
    st.builds(lambda m, a, s, p, n: f"FUNC {m}{a} {s} {p}{n}", st.sampled_from(["", "m ", "m", " "]),
              st.sampled_from(_HEX_EDGES), st.sampled_from(_HEX_EDGES), st.sampled_from(_HEX_EDGES),
              st.sampled_from([" name", " ", "", " \r", "\r", "  x"])),
    st.builds(lambda m, a, p, n: f"PUBLIC {m}{a} {p}{n}", st.sampled_from(["", "m ", "m"]),
              st.sampled_from(_HEX_EDGES), st.sampled_from(_HEX_EDGES), st.sampled_from([" name", " ", "", " \r"])),
    st.sampled_from(["FUNC", "FUNCTION 10 10 0 f", "FUNC ", "PUBLIC", "PUBLICS 10 0 p", "FILE", "FILE 1",
                     "FILEX 1 a", "INLINE_ORIGIN", "INLINE_ORIGINS 1 a", "MODULE", "MODULE\r", "MODULEX",
                     "INFO", "INFO\r", "INFOX", "INFO CODE_ID 12 x.dll", "MODULE Linux x86 ABC y",
                     "\rFUNC 10 10 0 f", " FUNC 10 10 0 f"]),
)
scan_lines = st.one_of(record_lines, near_misses)


def _index(text: bytes, tmp_path: Path) -> tuple[str, object]:
    """What rawlookup.scan makes of ``text``: the index's columns, or the exception's type."""
    path = tmp_path / "soup.sym"
    path.write_bytes(text)
    try:
        index = rawlookup.scan(path)
    except Exception as error:  # noqa: BLE001 - which one is what is compared
        return "raised", type(error).__name__
    return "index", (index.func_keys.tolist(), index.func_sizes.tolist(), index.func_lines.tolist(),
                     index.public_keys.tolist(), index.public_lines.tolist(), index.name_ranges, index.module)


@needs_compiled
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(scan_lines, max_size=30), st.sampled_from(["\n", "\r\n"]), st.sampled_from([7, 64, 1 << 16]),
       st.booleans())
def test_the_line_scan_indexes_as_the_regex_pass(tmp_path, monkeypatch, lines, ending, chunk, final_newline):
    monkeypatch.setattr(rawlookup, "CHUNK_BYTES", chunk)  # lines and runs cut across buffers
    monkeypatch.setattr(rawlookup, "FIRST_CHUNK_BYTES", min(chunk, rawlookup.FIRST_CHUNK_BYTES))
    monkeypatch.setattr(rawlookup, "MATCH_WINDOW", max(1, chunk // 2))
    text = ending.join(["MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 soup.so", *lines])
    text = (text + ending if final_newline else text).encode()
    expected = _index(text, tmp_path)
    with monkeypatch.context() as python:
        python.setattr(compiled, "symscan", None)
        assert _index(text, tmp_path) == expected


@needs_compiled
def test_the_line_scan_on_each_buffer_shape():
    """The scan of one buffer, called as rawlookup calls it, against the regex pass of the
    same buffer; and its bounds: only ``buffer[start:end]`` is read."""
    cases = [b"\n", b"\nFUNC 10 20 0 f\n", b"\nFUNC 10 20 0 f", b"\nPUBLIC ff 0 p\r\n",
             b"\nFILE 1 a\nINLINE_ORIGIN 2 b\nFILE 3 c", b"\nFILE 1 a\nFUNC 1 1 0 f\nFILE 2 b\n",
             b"\nMODULE\n", b"\nMODULE\r\n", b"\nMODULE\r", b"\nINFO x\n",
             b"\nFUNC m ffffffffffffffff ffffffffffffffff 0 f\n", b"\nFUNC 100000000 1 0 f\n"]
    for buffer in cases:
        for base in (-1, 0, 1 << 40):
            state, twin = _Scan(Path("x"), None, None), _Scan(Path("x"), None, None)
            assert state._compiled_buffer(bytearray(buffer), base, len(buffer))
            twin._window(bytearray(buffer), base, 0, len(buffer))
            assert _columns(state.index) == _columns(twin.index), (buffer, base)
    for other in (b"\nFUNC 10 20 0 \n", b"\nFUNC 10 20 0\n", b"\nFUNC 10 20 0 \r\n", b"\nFUNC 10000000000000000 1 0 f\n"):
        assert symscan.scan(other, 0, len(other), 0)[:2] == (1, 0), other
        assert not _Scan(Path("x"), None, None)._compiled_buffer(bytearray(other), 0, len(other))
    assert symscan.scan(b"\nPUBLIC 10 0\r\n", 0, 14, 0)[:2] == (0, 1)
    # keyword lines at every position modulo 16 (lines are skipped 16 bytes at a time), and
    # a region ending anywhere: compared with the regex pass of the same bytes
    lines = []
    for number in range(300):
        lines.append(b"1" * (number % 37) + b" 2 3 4")
        lines.append([b"FUNC %x 10 0 f%d" % (number, number), b"PUBLIC %x 0 p" % number, b"FILE %d n" % number,
                      b"INLINE 0 1 2 3 10 4", b"MODULE x", b"INFO CODE_ID 12"][number % 6])
    buffer = b"\n" + b"\n".join(lines) + b"\n"
    for cut in (len(buffer), len(buffer) - 1, len(buffer) - 7, len(buffer) // 2 + 3):
        end = buffer.rindex(b"\n", 0, cut) + 1  # (regions end after a newline, as rawlookup's do)
        state, twin = _Scan(Path("x"), None, None), _Scan(Path("x"), None, None)
        assert state._compiled_buffer(bytearray(buffer), 0, end)
        twin._window(bytearray(buffer), 0, 0, end)
        assert _columns(state.index) == _columns(twin.index) and len(state.index.func_keys) > 20, cut
    found = symscan.scan(b"\nFUNC 10 20 0 f\nFUNC 30 40 0 g\n", 0, 16, 0)
    assert found[2] == 1  # the second FUNC line lies beyond end
    assert symscan.scan(b"\nFUNC 10 20 0 f\n", 0, 12, 0)[:2] == (1, 0)  # cut at end: not the strict form
    for start, end, base in ((-1, 1, 0), (0, 99, 0), (2, 1, 0), (0, 1, -2)):
        with pytest.raises(ValueError):
            symscan.scan(b"\nFUNC", start, end, base)
    with pytest.raises(TypeError):
        symscan.scan("text", 0, 1, 0)


def _columns(index: RawIndex) -> tuple:
    return (index.func_keys.tolist(), index.func_sizes.tolist(), index.func_lines.tolist(),
            index.public_keys.tolist(), index.public_lines.tolist(), index.name_ranges)


# -- FUNC blocks -------------------------------------------------------------------------------

_DECIMALS = ["0", "7", "263", "9" * 19, "1" + "0" * 19, "0" * 25 + "5", "-1", "-2", "", "1a"]
block_lines = st.one_of(
    st.builds(lambda a, s, line, f: f"{a} {s} {line} {f}", st.sampled_from(_HEX_EDGES[:6] + ["1000", "1010"]),
              st.sampled_from(["1", "8", "10", "0", "ffffffffffffffff", "0" * 20 + "4"]),
              st.sampled_from(_DECIMALS[:6]), st.sampled_from(_DECIMALS[:6])),
    st.builds(lambda d, cl, cf, o, r: "INLINE " + " ".join([d, cl, cf, o, *r]),
              st.sampled_from(_DECIMALS[:6]), st.sampled_from(_DECIMALS[:6]), st.sampled_from(_DECIMALS[:7]),
              st.sampled_from(_DECIMALS[:6]),
              st.lists(st.sampled_from(["1000", "10", "ffffffffffffffff", "1" * 17, "0" * 18 + "1", "x"]),
                       min_size=0, max_size=6)),
    st.sampled_from(["", " ", "junk", "1000 8 1", "1000 8 1 2 3", "1000  8 1 2", "1000 8 1 2 ", "INLINE",
                     "INLINE ", "INLINE 0 1 2 3 1000 8 ", "INLINE 0 1 2 1000 8", "FILE 1 x"]),
)


@st.composite
def plain_ish_blocks(draw: st.DrawFn) -> bytes:
    """Blocks in the plain form (INLINE lines, then records in order), some with one flaw:
    numbers at their edges, a size 0, an overlap, CR line ends, a junk line, no final
    newline, an end past 2**64."""
    decimal = st.sampled_from([0, 7, 263, 10 ** 19 - 1]).map(str) | st.integers(0, 99).map(lambda n: f"{n:03d}")
    hex_text = st.sampled_from(["{:x}", "{:X}", "{:016x}", "{:020x}"])
    lines = []
    for _ in range(draw(st.integers(0, 3))):
        ranges = draw(st.lists(st.tuples(st.integers(0, 2 ** 64 - 1), st.integers(0, 2 ** 20)), min_size=1, max_size=3))
        lines.append("INLINE " + " ".join([draw(decimal), draw(decimal), draw(st.just("-1") | decimal), draw(decimal),
                                           *(f"{start:x} {length:x}" for start, length in ranges)]))
    address = draw(st.sampled_from([0, 0x1000, 2 ** 32 - 8, 2 ** 64 - 0x100]))
    for _ in range(draw(st.integers(0, 8))):
        size = draw(st.sampled_from([1, 8, 0x40, 0x100]))
        lines.append(f"{draw(hex_text).format(address)} {draw(hex_text).format(size)} {draw(decimal)} {draw(decimal)}")
        address += size + draw(st.sampled_from([0, 0, 4]))
    flaw = draw(st.sampled_from([None, None, None, "crlf", "no_final_newline", "swap", "junk", "size0", "overlap"]))
    if flaw == "swap" and len(lines) > 1:
        lines[-1], lines[-2] = lines[-2], lines[-1]
    elif flaw == "junk":
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["junk", "", "1 1 1", "FILE 1 a"])))
    elif flaw in ("size0", "overlap") and lines and not lines[-1].startswith("INLINE"):
        start, size, *rest = lines[-1].split(" ")
        lines[-1] = " ".join([start, "0" if flaw == "size0" else f"{int(size, 16) + 0x1000:x}", *rest,
                              "\n" + f"{int(start, 16) + 1:x} 1 1 1" if flaw == "overlap" else ""]).strip()
    text = "\n".join(lines) + ("" if flaw == "no_final_newline" or not lines else "\n")
    return (text.replace("\n", "\r\n") if flaw == "crlf" else text).encode()


@needs_compiled
@settings(max_examples=1500, deadline=None)
@given(plain_ish_blocks())
def test_block_columns_read_plain_blocks_and_their_flaws_as_the_python_path(block):
    _block_agrees(block)


def _normalized(columns: symfile.BlockColumns) -> tuple:
    return (list(columns.starts), list(columns.ends), [int(line) for line in columns.lines],
            [int(file) for file in columns.files], columns.inlines)


@needs_compiled
@settings(max_examples=1500, deadline=None)
@given(st.lists(block_lines, max_size=12), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_block_columns_read_a_block_as_the_python_path(lines, ending, final_newline):
    block = ending.join(lines).encode() + (ending.encode() if final_newline and lines else b"")
    _block_agrees(block)


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_block_columns_on_garbage(block):
    _block_agrees(block)
    _block_agrees(b"1000 8 10 3\n" + block)
    _block_agrees(b"INLINE 0 1 2 3 1000 8\n" + block)


def _block_agrees(block: bytes) -> None:
    found = symscan.block_columns(block)
    python = _python_block_columns(block)
    if found is not None:
        starts, ends, lines, files, inlines = found
        compiled_columns = symfile.BlockColumns(starts, ends, lines, files,
                                                [symfile.InlineRecord(*fields) for fields in inlines])
        assert _normalized(compiled_columns) == _normalized(python), block
    assert _normalized(python) == _normalized(_parsed(block)), block


def _python_block_columns(block: bytes) -> symfile.BlockColumns:
    saved, compiled.symscan = compiled.symscan, None
    try:
        return symfile.func_block_columns(block)
    finally:
        compiled.symscan = saved


def _parsed(block: bytes) -> symfile.BlockColumns:
    parsed = symfile.parse_func_block(block)
    return symfile.BlockColumns(parsed.line_starts, [record[0] for record in parsed.line_records],
                                [record[1] for record in parsed.line_records],
                                [record[2] for record in parsed.line_records], parsed.inlines)


@needs_compiled
def test_block_columns_take_the_plain_form_and_leave_the_rest():
    plain = b"INLINE 0 12 3 7 1000 20\nINLINE 1 4 -1 8 1004 8 1010 4\r\n1000 8 10 3\n1008 18 11 3\n"
    starts, ends, lines, files, inlines = symscan.block_columns(plain)
    assert (starts, ends, lines, files) == ([0x1000, 0x1008], [0x1008, 0x1020], [10, 11], [3, 3])
    assert inlines == [(0, 12, 3, 7, ((0x1000, 0x1020),)), (1, 4, -1, 8, ((0x1004, 0x100C), (0x1010, 0x1014)))]
    assert symscan.block_columns(b"") == ([], [], [], [], [])
    assert symscan.block_columns(memoryview(b"10 1 2 3\n")) == ([0x10], [0x11], [2], [3], [])
    for other in (b"10 1 2 3", b"10 1 2 3\r\n", b"10 0 2 3\n", b"20 1 2 3\n10 1 2 3\n", b"10 8 2 3\n14 1 2 3\n",
                  b"10 ffffffffffffffff 2 3\n",  # an end past 2**64: the Python path keeps it, as a big int
                  b"10000000000000000 1 2 3\n", b"10 1 12345678901234567890 3\n", b"INLINE 0 1 2 3 10 1",
                  b"INLINE 0 1 2 3 10 ffffffffffffffff\n", b"INLINE 0 1 2 3 10\n", b"INLINE 0 1 2 10 1\n"):
        assert symscan.block_columns(other) is None, other
    with pytest.raises(TypeError):
        symscan.block_columns("10 1 2 3\n")


# -- FILE and INLINE_ORIGIN lines of wanted ids ------------------------------------------------

name_lines = st.one_of(
    st.builds(lambda kind, zeros, number, rest: f"{kind} {zeros}{number}{rest}",
              st.sampled_from(["FILE", "INLINE_ORIGIN", "FILEX", "INLINE_ORIGINS", "FUNC"]),
              st.sampled_from(["", "0", "000"]), st.integers(0, 40) | st.sampled_from([2 ** 64 - 1, 2 ** 64, 10 ** 19]),
              st.sampled_from([" a.cpp", " ", "", "x y", "\r", " -1 old"])),
    st.sampled_from(["", "FILE", "FILE  1 a", "FILE -1 a", "INLINE_ORIGIN +1 a", "garbage"]),
)


@needs_compiled
@settings(max_examples=600, deadline=None)
@given(st.lists(name_lines, max_size=20), st.sets(st.integers(0, 40) | st.just(2 ** 64 - 1), max_size=6),
       st.sets(st.integers(0, 40) | st.just(2 ** 64 - 1), max_size=6))
def test_id_lines_find_what_the_id_regex_finds(lines, files, origins):
    buffer = ("\n" + "\n".join(lines) + "\n").encode()
    packed = [array("Q", sorted(ids)).tobytes() for ids in (files, origins)]
    found = symscan.id_lines(buffer, *packed)
    if files or origins:
        expected = [(match.start(), match[0].startswith(b"\nFILE")) for match in
                    _id_lines(files, origins).finditer(buffer)]
    else:
        expected = []
    assert found == expected


# -- the index's order checks ------------------------------------------------------------------

edge_numbers = st.integers(0, 40) | st.sampled_from([2 ** 32 - 1, 2 ** 32, 2 ** 64 - 2, 2 ** 64 - 1])


@needs_compiled
@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(edge_numbers, edge_numbers), max_size=8), st.booleans())
def test_the_order_checks_decide_as_the_python_expressions(pairs, sort):
    if sort:
        pairs.sort()
    keys = [key for key, _ in pairs]
    sizes = [size for _, size in pairs]
    for key_code in ("I", "Q"):
        for size_code in ("I", "Q"):
            if max(keys + sizes, default=0) >= 2 ** 32 and "I" in (key_code, size_code):
                continue
            key_column, size_column = array(key_code, keys), array(size_code, sizes)
            assert symscan.nondecreasing(key_column) == all(a <= b for a, b in zip(keys, keys[1:]))
            assert symscan.disjoint(key_column, size_column) == (
                all(sizes) and all(key + size <= after for key, size, after in zip(keys, sizes, keys[1:])))


@needs_compiled
def test_the_order_checks_refuse_what_is_not_a_column():
    for wrong in (array("i", [1]), array("d", [1.0]), b"abcd", [1, 2]):
        with pytest.raises(TypeError):
            symscan.nondecreasing(wrong)
    with pytest.raises(ValueError):
        symscan.disjoint(array("I", [1, 2]), array("I", [1]))
