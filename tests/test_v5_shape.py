"""The v5 answer has the shape of Mozilla's production service: a line of 0 (Breakpad's "no
line") is left out, for frames and inlines alike, and FILE paths come back exactly as the
symbol file wrote them (no collapsing of ``..``, ``./`` or backslashes)."""

from __future__ import annotations

import pytest

SHAPE_ID = "0D0E0D0E0D0E0D0E0D0E0D0E0D0E0D0E1"
WEIRD_PATH = "../src/./dir\\sub\\file.c"
DOTTED_PATH = "./relative/../inline.h"
WINDOWS_PATH = "C:\\build\\..\\src\\win.cpp"
SHAPE_SYM = f"""MODULE Linux x86_64 {SHAPE_ID} libshape.so
INFO CODE_ID 0D0E0D0E libshape.so.1
FILE 0 {WEIRD_PATH}
FILE 1 {DOTTED_PATH}
FILE 2 {WINDOWS_PATH}
FILE 3 /a/b/../../c//d.c
INLINE_ORIGIN 0 inlined_fn
INLINE_ORIGIN 1 deeper_fn
FUNC 1000 100 0 zero_line_func
1000 80 0 0
1080 80 14 3
FUNC 2000 100 0 inline_zero_call_line
INLINE 0 0 1 0 2000 80
2000 100 7 2
FUNC 3000 100 0 inline_with_line_zero
INLINE 0 5 1 0 3000 80
3000 80 0 0
3080 80 9 0
FUNC 4000 100 0 nested_zero_in_the_middle
INLINE 0 3 1 0 4000 80
INLINE 1 0 0 1 4000 40
4000 100 8 1
"""
SHAPE = ["libshape.so", SHAPE_ID]
COMMON = {"module": "libshape.so.1", "function_size": "0x100"}


@pytest.fixture(scope="module")
def shape_trio(tmp_path_factory, symbol_store):
    from harness import local_module_trio

    trio = local_module_trio(tmp_path_factory.mktemp("shape"), [symbol_store.url("plain")], *SHAPE, SHAPE_SYM)
    yield trio
    trio.stop()


EXPECTED = {
    0x1010: {"function": "zero_line_func", "function_offset": "0x10", "file": WEIRD_PATH},
    0x1090: {"function": "zero_line_func", "function_offset": "0x90", "file": "/a/b/../../c//d.c", "line": 14},
    0x2010: {"function": "inline_zero_call_line", "function_offset": "0x10", "file": DOTTED_PATH,
             "inlines": [{"function": "inlined_fn", "file": WINDOWS_PATH, "line": 7}]},
    0x3010: {"function": "inline_with_line_zero", "function_offset": "0x10", "file": DOTTED_PATH, "line": 5,
             "inlines": [{"function": "inlined_fn", "file": WEIRD_PATH}]},
    0x3090: {"function": "inline_with_line_zero", "function_offset": "0x90", "file": WEIRD_PATH, "line": 9},
    0x4010: {"function": "nested_zero_in_the_middle", "function_offset": "0x10", "file": DOTTED_PATH, "line": 3,
             "inlines": [{"function": "deeper_fn", "file": DOTTED_PATH, "line": 8},
                         {"function": "inlined_fn", "file": WEIRD_PATH}]},
}


@pytest.mark.parametrize("attempt", ["cold", "warm (from the caches)"])
def test_line_zero_is_left_out_and_paths_are_kept_as_written(shape_trio, attempt):
    offsets = list(EXPECTED)
    body = {"jobs": [{"memoryMap": [SHAPE], "stacks": [[[0, offset] for offset in offsets]]}]}
    response = shape_trio.post(body, path="/symbolicate/v5")
    assert response.status_code == 200, response.text
    frames = response.json()["results"][0]["stacks"][0]
    for number, (offset, frame) in enumerate(zip(offsets, frames)):
        want = dict(COMMON, frame=number, module_offset=hex(offset), **EXPECTED[offset])
        assert frame == want, hex(offset)
    assert '"line":0' not in response.text.replace(" ", "")


def test_the_diskcache_answers_the_same_shape(shape_trio):
    body = {"memoryMap": [SHAPE], "stacks": [[[0, 0x1010], [0, 0x3010]]]}
    response = shape_trio.post(body, path="/symbolicate/v5", server="DiskCache")
    assert response.status_code == 200, response.text
    first, second = response.json()["results"][0]["stacks"][0]
    assert "line" not in first and first["file"] == WEIRD_PATH
    assert second["inlines"] == [{"function": "inlined_fn", "file": WEIRD_PATH}]


def test_v4_names_the_functions(shape_trio):
    body = {"stacks": [[[0, 0x1010], [0, 0x4010]]], "memoryMap": [SHAPE], "version": 4}
    assert shape_trio.post(body).json() == {
        "symbolicatedStacks": [["zero_line_func (in libshape.so)", "nested_zero_in_the_middle (in libshape.so)"]],
        "knownModules": [True]}
