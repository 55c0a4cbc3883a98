"""Property-based tests: whatever arrives, a valid answer or a clean refusal, never a crash."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from diskcache.symfile import NotASymbolFile, process_symbol_file
from diskcache.tablereader import SymbolTable
from reference_rule import ReferenceModule
from symcommon import jsonio
from symcommon.requests import Job, Limits, RequestError, parse_debug, parse_v4, parse_v5

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30)

almost_valid_frames = st.lists(st.lists(st.one_of(
    st.tuples(st.integers(-3, 4), st.integers(-5, 2 ** 64 + 5)).map(list),
    json_values), max_size=6), max_size=4)
almost_valid_maps = st.lists(st.one_of(
    st.tuples(st.sampled_from(["xul.pdb", "../x", "a/b", "", "..", "x\x00", "ok.so", 5]),
              st.sampled_from(["44E4EC8C2F41492B9369D6B9A059577C2", "xyz", "", "ab", None])).map(list),
    json_values), max_size=5)
almost_valid_requests = st.fixed_dictionaries(
    {"stacks": almost_valid_frames, "memoryMap": almost_valid_maps},
    optional={"version": st.sampled_from([3, 4, 5, "4", 4.0, True, None]), "debug": json_values})


def check_job(job: Job) -> None:
    for stack in job.stacks:
        for index, offset in stack:
            assert -1 <= index < len(job.memory_map) and 0 <= offset < 2 ** 64


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, almost_valid_requests))
def test_v4_validation_answers_or_refuses_cleanly(body):
    try:
        version, job = parse_v4(body)
    except RequestError as error:
        assert str(error)
        return
    assert version in (3, 4)
    check_job(job)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, almost_valid_requests,
                 st.fixed_dictionaries({"jobs": st.lists(st.one_of(almost_valid_requests, json_values), max_size=4)})))
def test_v5_validation_answers_or_refuses_cleanly(body):
    try:
        jobs = parse_v5(body, Limits(max_jobs=3, max_frames=20, max_modules=4))
    except RequestError as error:
        assert str(error)
        return
    assert len(jobs) <= 3  # {"jobs": []} is fine: it gets {"results": []}
    assert sum(len(stack) for job in jobs for stack in job.stacks) <= 20
    for job in jobs:
        check_job(job)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_debug_detection_never_crashes(body):
    try:
        parse_debug(body)
    except RequestError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_json_decoding_of_any_bytes_is_a_value_or_a_json_error(data):
    try:
        jsonio.loads(data)
    except jsonio.JsonError:
        pass


# -- the parser --------------------------------------------------------------------------------

hexes = st.integers(0, 0x3000).map(lambda n: f"{n:x}")
small = st.integers(0, 6).map(str)
names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=12)
ranges = st.lists(st.tuples(hexes, st.integers(0, 0x80).map(lambda n: f"{n:x}")), min_size=0, max_size=3)

record_lines = st.one_of(
    st.builds(lambda m, a, s, p, n: f"FUNC {m}{a} {s} {p} {n}", st.sampled_from(["", "m "]), hexes,
              st.integers(0, 0x200).map(lambda n: f"{n:x}"), hexes, names),
    st.builds(lambda m, a, p, n: f"PUBLIC {m}{a} {p} {n}", st.sampled_from(["", "m "]), hexes, hexes, names),
    st.builds(lambda a, s, line, f: f"{a} {s} {line} {f}", hexes, st.integers(0, 0x40).map(lambda n: f"{n:x}"),
              st.integers(0, 99).map(str), small),
    st.builds(lambda d, cl, cf, o, r: "INLINE " + " ".join([d, cl, cf, o] + [x for pair in r for x in pair]),
              st.integers(0, 3).map(str), small, small, small, ranges),
    st.builds(lambda n, p: f"FILE {n} {p}", small, names),
    st.builds(lambda n, p: f"INLINE_ORIGIN {n} {p}", small, names),
    # the older inline formats (no call-site file; an origin's file number, or -1, before its name)
    st.builds(lambda d, cl, o, r: "INLINE " + " ".join([d, cl, o] + [x for pair in r for x in pair]),
              st.integers(0, 3).map(str), small, small, ranges),
    st.builds(lambda n, f, p: f"INLINE_ORIGIN {n} {f} {p}", small, st.sampled_from(["-1", "0", "3", "-", "-2"]),
              names),
    st.sampled_from(["STACK CFI INIT 10 10 .cfa: $rsp 8 +", "STACK WIN 4 10 10 0 0 0 0 0 0 1", "FUNC 0 junkline",
                     "garbage", "", "INFO CODE_ID ABC code.dll", "INFO CODE_ID", "MODULE again x y z",
                     "0x10 10 1 1", "1_0 10 1 1", "FUNC", "PUBLIC", "INLINE 0 1 1 1 10", "\u00e9\u00e8 \t x"]),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record_lines, max_size=40), st.sampled_from(["\n", "\r\n"]),
       st.lists(st.integers(0, 0x3400), min_size=1, max_size=25))
def test_any_record_soup_is_processed_and_agrees_with_the_reference(lines, ending, offsets):
    text = ending.join(["MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 soup.so", *lines]).encode()
    sink = io.BytesIO()
    process_symbol_file(io.BytesIO(text), sink)
    table = SymbolTable(sink.getvalue())
    reference = ReferenceModule.from_bytes(text)
    for offset in offsets:
        found = table.lookup(offset)
        assert (found.as_dict() if found else None) == reference.lookup(offset)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_binary_garbage_is_processed_or_rejected_never_crashes(data):
    for text in (data, b"MODULE a b c d\n" + data):
        sink = io.BytesIO()
        try:
            process_symbol_file(io.BytesIO(text), sink)
        except NotASymbolFile:
            assert not text.startswith(b"MODULE a b c d\n")
            continue
        table = SymbolTable(sink.getvalue())
        for offset in (0, 1, 0x10, 0x1000, 2 ** 64 - 1):
            table.lookup(offset)


def test_gigantic_names_and_absurd_sizes():
    name = "n" * 5_000_000
    text = (f"MODULE a b c d\nFUNC 10 ffffffffffffffff 0 {name}\n10 ffffffffffffffff 1 0\nFILE 0 {name}\n"
            f"PUBLIC ffffffffffffffff 0 last\nFUNC 10000000000000000 1 0 too_big\n").encode()
    sink = io.BytesIO()
    process_symbol_file(io.BytesIO(text), sink)
    table = SymbolTable(sink.getvalue())
    found = table.lookup(0x20)
    cut = name[:64 * 1024] + "\u2026[truncated]"  # names are capped at 64 KiB (README, Hardening)
    assert found.function == cut and found.file == cut and found.line == 1
    assert table.lookup(0xFFFFFFFFFFFFFFFF).function == cut  # the huge FUNC covers it
    assert ReferenceModule.from_bytes(text).lookup(0x20) == found.as_dict()


def test_empty_and_header_only_files():
    with pytest.raises(NotASymbolFile):
        process_symbol_file(io.BytesIO(b""), io.BytesIO())
    sink = io.BytesIO()
    process_symbol_file(io.BytesIO(b"MODULE a b c d"), sink)
    assert SymbolTable(sink.getvalue()).lookup(0) is None


# -- the real server, never a 500 ------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(trio):
    return trio


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(almost_valid_requests, json_values))
def test_the_servers_answer_any_json_with_200_or_a_json_4xx(served, body):
    assume(not (isinstance(body, dict) and body.get("debug") is True))
    for server in ("SymServer", "DiskCache"):
        response = served.post(None, raw=json.dumps(body).encode(), server=server)
        assert response.status_code in (200, 400), response.text
        assert isinstance(response.json(), (dict, list))


def test_no_tracebacks_in_the_logs_after_all_that(served):
    for name in ("SymServer.log", "DiskCache.log"):
        assert "Traceback" not in (served.workdir / name).read_text()
