"""The warm path: orjson with the standard library as referee, frames encoded once when cached,
and SymServer's warm lane (symcommon/fastlane.py), which answers requests whose every frame is
in the recent-frames LRU without Tornado's RequestHandler.

A warm answer must be the cold answer, byte for byte, with the same headers; everything the
lane declines (debug, outputCacheHits, frames not warm, errors, chunked or big bodies) must
reach the handlers intact, on the same keep-alive connection.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket

import pytest
import requests

from symcommon import jsonio
from symcommon.frames import FrameInfo, InlineFrame
from symcommon.requests import Limits, RequestError, parse_job
from symcommon.responses import (JobAnswers, ModuleAnswer, rendered_frame, v4_body, v4_body_rendered, v5_body,
                                 v5_body_rendered)

# -- JSON: orjson where it can, the standard library decides the rest ------------------------

AWKWARD = ["plain", "é中文😀", 'quote" back\\slash', "".join(map(chr, range(0x30))),
           "\x7f\x80\x9f\u2028\u2029\ufeff", "</script>&<>", ""]


@pytest.mark.parametrize("value", [*AWKWARD, {"a": [1, -2, None, True, False, 2**63, 2**64 - 1]},
                                   [["x (in y)", "0x1f"]], 0.5, 123456789.125])
def test_dumps_writes_the_standard_librarys_bytes(value):
    assert jsonio.dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def test_what_orjson_refuses_the_standard_library_decides():
    assert jsonio.loads(b'[18446744073709551616, "\\ud800"]') == [2**64, "\ud800"]
    assert jsonio.dumps({1: 2}) == b'{"1":2}'
    assert jsonio.dumps(2**70) == b"1180591620717411303424"
    assert jsonio.dumps("\ud800x") == b'"?x"'  # a lone surrogate, as before: replaced
    with pytest.raises(jsonio.JsonError, match="NaN is not valid JSON"):
        jsonio.loads(b"[NaN]")
    with pytest.raises(jsonio.JsonError, match="Expecting ',' delimiter"):
        jsonio.loads(b"[1 2]")  # the standard library's words, not orjson's
    with pytest.raises(jsonio.JsonError, match="not UTF-8"):
        jsonio.loads(b'["\xff"]')
    with pytest.raises(jsonio.JsonError, match="nested too deeply"):
        jsonio.loads(b"[" * 100_000 + b"]" * 100_000)


# -- validation in columns: sound (never accepts what the frame loop refuses) ----------------

BAD_STACKS = [[[0]], [[0, 1, 2]], [[]], ["ab"], [{"a": 1, "b": 2}], [[True, 1]], [[0, False]],
              [[0, 1.5]], [[-2, 1]], [[1, 1]], [[0, -1]], [[0, 2**64]], [[0, "1"]], [None], [5],
              [[0, 1], [0, 1, 2]], [[0, 1], "xy"], [[[0], 1]], [[0, None]]]


@pytest.mark.parametrize("stack", BAD_STACKS, ids=[json.dumps(s)[:30] for s in BAD_STACKS])
def test_a_bad_frame_is_refused_with_its_place(stack):
    with pytest.raises(RequestError, match=r"stacks\[0\]\[\d+\]"):
        parse_job({"memoryMap": [["a.pdb", "AB"]], "stacks": [stack]}, limits=Limits())


def test_columns_hold_the_same_frames():
    job = parse_job({"memoryMap": [["a.pdb", "AB"], ["b.pdb", "CD"]],
                     "stacks": [[[0, 5], [-1, 7], [1, 2**64 - 1]], [], [[1, 0]]]})
    assert job.pairs is None  # frames are made from the columns when asked for
    assert job.stacks == (((0, 5), (-1, 7), (1, 2**64 - 1)), (), ((1, 0),))
    assert job.columns == (((0, -1, 1), (5, 7, 2**64 - 1)), ((), ()), ((1,), (0,)))


# -- frames encoded once: the same bytes as the handlers' rendering ---------------------------

INFOS = [None, FrameInfo("pub", 0x10), FrameInfo('f "quoted" \\ é', 0, 0x40, "a\\b.c", 0),
         FrameInfo("g", 4, 8, "g.c", 12, (InlineFrame("in1", "x.h", 3), InlineFrame("in2", None, None),
                                           InlineFrame("in3", "y.h", 0)))]


@pytest.mark.parametrize("code_file", [None, "libcode.so.1"])
def test_rendered_frames_are_the_handlers_bytes(code_file):
    job = parse_job({"memoryMap": [["lib.so", "AB"], ["other.so", "CD"]],
                     "stacks": [[[0, 0x1000 + i] for i in range(len(INFOS))] * 2, [[0, 0x1001]]]})
    answers = JobAnswers(modules={0: ModuleAnswer(True, code_file)},
                         symbols={(0, 0x1000 + i): info for i, info in enumerate(INFOS)})
    rendered = {0x1000 + i: rendered_frame("lib.so", code_file, 0x1000 + i, info) for i, info in enumerate(INFOS)}
    stacks = [[rendered[offset] for _, offset in stack] for stack in job.stacks]
    for version in (3, 4):
        assert v4_body_rendered(job, stacks, version) == v4_body(job, answers, version)
        assert v4_body(job, answers, version) == jsonio._stdlib_dumps(
            json.loads(v4_body(job, answers, version)), compact=False)
    assert v5_body_rendered([job, job], [stacks, stacks]) == v5_body([job, job], [answers, answers])
    # a cold answer whose jobs' frames were just cached writes those jobs from their renderings
    other = parse_job({"memoryMap": [["lib.so", "AB"], ["gone.so", "EF"]], "stacks": [[[0, 0x1001], [1, 5]]]})
    other_answers = JobAnswers(modules={0: ModuleAnswer(True, code_file), 1: ModuleAnswer(False)},
                               symbols={(0, 0x1001): INFOS[1]})
    plain = v5_body([job, other, job], [answers, other_answers, answers], {"debug": {"x": 1}})
    assert v5_body([job, other, job], [answers, other_answers, answers], {"debug": {"x": 1}},
                   [stacks, None, stacks]) == plain
    shortened = JobAnswers(modules=answers.modules, symbols=answers.symbols, shortened={(0, 0x1003)})
    assert v5_body([job], [shortened], None, [[[(b"x", b"not these bytes")] * len(stack) for stack in stacks]]) \
        == v5_body([job], [shortened])  # (names shortened to bound the answer: never the renderings)


# -- through a real trio ------------------------------------------------------------------------

WARM_ID = "F00DF00DF00DF00DF00DF00DF00DF00D1"
WARM_SYM = f"""MODULE Linux x86_64 {WARM_ID} libwarm.so
INFO CODE_ID F00DF00D libwarm.so.1
FILE 0 /src/a "quoted" \\ path.c
FILE 1 /src/é.h
INLINE_ORIGIN 0 inlined<T>::call()
FUNC 1000 100 0 plain_function
1000 80 11 0
1080 80 0 1
FUNC 2000 100 0 with_inline
INLINE 0 7 0 0 2000 40
2000 100 21 1
FUNC 3000 10 0 no_lines_</script>
PUBLIC 4000 0 public_symbol
"""
MODULE = ["libwarm.so", WARM_ID]
OFFSETS = [0x1010, 0x1090, 0x2010, 0x2060, 0x3004, 0x4010, 0x5000, 0x10, 0x1010]


@pytest.fixture(scope="module")
def warm_trio(tmp_path_factory, symbol_store):
    from harness import local_module_trio

    trio = local_module_trio(tmp_path_factory.mktemp("warm"), [symbol_store.url("plain")], *MODULE, WARM_SYM)
    yield trio
    trio.stop()


def lane_count(trio) -> float:
    text = requests.get(trio.url("SymServer", "/metrics"), timeout=30).text
    for line in text.splitlines():
        if line.startswith("symserver_warm_lane_requests_total "):
            return float(line.split()[1])
    raise AssertionError("no symserver_warm_lane_requests_total metric")


def post(trio, path, body, **headers):
    return requests.post(trio.url("SymServer", path), data=json.dumps(body).encode(), timeout=60,
                         headers={"Content-Type": "text/plain;charset=UTF-8", **headers})


def offsets_body(offsets, version=4, extra_module=False):
    memory_map = [MODULE, ["nothere.so", "0123456789ABCDEF0123456789ABCDEF0"]] if extra_module else [MODULE]
    return {"memoryMap": memory_map, "stacks": [[[0, offset] for offset in offsets]], "version": version}


def comparable_headers(response):
    return {name: value for name, value in response.headers.items() if name not in ("Date", "X-Request-Id")}


@pytest.mark.parametrize("number,path,version", [(1, "/", 4), (2, "/", 3), (3, "/symbolicate/v4", 4)])
def test_a_warm_v4_answer_is_the_cold_answer(warm_trio, number, path, version):
    body = offsets_body([0x1020 + number, 0x2020 + number] + OFFSETS, version)  # 2 frames never asked before
    before = lane_count(warm_trio)
    cold = post(warm_trio, path, body)
    assert lane_count(warm_trio) == before, "a request with frames not cached went through the warm lane"
    warm = post(warm_trio, path, body, **{"X-Request-Id": "warm-test-1"})
    assert cold.status_code == warm.status_code == 200, cold.text
    assert warm.content == cold.content
    assert lane_count(warm_trio) == before + 1, "the second request was not answered by the warm lane"
    assert comparable_headers(warm) == comparable_headers(cold)
    assert warm.headers["X-Request-Id"] == "warm-test-1"
    assert warm.headers["Access-Control-Allow-Origin"] == "*"
    answer = warm.json()
    stack = answer if version == 3 else answer["symbolicatedStacks"]
    assert stack[0][-9:] == ["plain_function (in libwarm.so)", "plain_function (in libwarm.so)",
                             "with_inline (in libwarm.so)", "with_inline (in libwarm.so)",
                             "no_lines_</script> (in libwarm.so)", "public_symbol (in libwarm.so)",
                             "public_symbol (in libwarm.so)", "0x10 (in libwarm.so)",
                             "plain_function (in libwarm.so)"]


def test_a_warm_v5_answer_is_the_cold_answer_gzip_too(warm_trio):
    jobs = {"jobs": [offsets_body(OFFSETS + [0x2001]), offsets_body([0x1001, 0x4001], extra_module=False),
                     {"memoryMap": [MODULE, MODULE, ["unused.so", "AB"]], "stacks": [[[1, 0x1011], [0, 0x1011]]]}]}
    for job in jobs["jobs"]:
        job.pop("version", None)
    cold = post(warm_trio, "/symbolicate/v5", jobs, **{"Accept-Encoding": "identity"})
    before = lane_count(warm_trio)
    warm = post(warm_trio, "/symbolicate/v5", jobs, **{"Accept-Encoding": "identity"})
    assert lane_count(warm_trio) == before + 1
    assert warm.content == cold.content
    assert comparable_headers(warm) == comparable_headers(cold)
    zipped = requests.post(warm_trio.url("SymServer", "/symbolicate/v5"), data=json.dumps(jobs), timeout=60,
                           headers={"Accept-Encoding": "gzip", "User-Agent": "FirefoxProfiler/1.0"}, stream=True)
    assert zipped.headers["Content-Encoding"] == "gzip" and zipped.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(zipped.raw.read()) == cold.content
    assert lane_count(warm_trio) == before + 2
    result = warm.json()["results"][2]
    assert result["found_modules"] == {"libwarm.so/" + WARM_ID: True, "unused.so/AB": None}
    frame = warm.json()["results"][0]["stacks"][0][2]
    assert frame == {"frame": 2, "module_offset": "0x2010", "module": "libwarm.so.1", "function": "with_inline",
                     "function_offset": "0x10", "function_size": "0x100", "file": '/src/a "quoted" \\ path.c', "line": 7,
                     "inlines": [{"function": "inlined<T>::call()", "file": "/src/é.h", "line": 21}]}


def test_what_the_lane_declines_the_handlers_answer(warm_trio):
    body = offsets_body(OFFSETS)
    post(warm_trio, "/", body)
    post(warm_trio, "/", body)
    before = lane_count(warm_trio)
    # a frame of no module, and a frame not cached yet: answered by the handlers
    mixed = {"memoryMap": [MODULE], "stacks": [[[0, 0x1010], [-1, 0x99], [0, 0x1077]]], "version": 4}
    assert post(warm_trio, "/", mixed).json()["symbolicatedStacks"] == [
        ["plain_function (in libwarm.so)", "0x99", "plain_function (in libwarm.so)"]]
    # the Debug header on v5, and outputCacheHits on v4
    v5 = {"memoryMap": [MODULE], "stacks": [[[0, 0x1010]]]}
    assert "debug" in post(warm_trio, "/symbolicate/v5", v5, Debug="true").json()
    toggle = {"debug": True, "action": "outputCacheHits", "enabled": True}
    assert warm_trio.post(toggle).json() == {"success": True}
    try:
        assert post(warm_trio, "/", body).json()["cacheHits"] == [[True] * len(OFFSETS)]
    finally:
        warm_trio.post(dict(toggle, enabled=False))
    # errors keep their words
    bad = post(warm_trio, "/", {"memoryMap": [MODULE], "stacks": [[[0, -5]]], "version": 4})
    assert bad.status_code == 400
    assert bad.json() == {"error": "stacks[0][0]: offset -5 is not an integer from 0 to 2^64-1"}
    assert lane_count(warm_trio) == before
    assert post(warm_trio, "/", body).status_code == 200
    assert lane_count(warm_trio) == before + 1


def test_lane_and_handlers_share_a_keep_alive_connection(warm_trio):
    body = json.dumps(offsets_body(OFFSETS)).encode()
    post(warm_trio, "/", offsets_body(OFFSETS))
    connection = http.client.HTTPConnection("127.0.0.1", warm_trio.symserver_port, timeout=60)
    answers = []
    for payload, headers in [(body, {}), (b"{not json", {}), (body, {}),
                             (json.dumps(offsets_body([0x1033, 0x1034])).encode(), {}),
                             (body, {"Connection": "close"})]:
        connection.request("POST", "/", body=payload, headers=headers)
        response = connection.getresponse()
        answers.append((response.status, response.read()))
    connection.close()
    assert [status for status, _ in answers] == [200, 400, 200, 200, 200]
    assert answers[0][1] == answers[2][1] == answers[4][1]
    assert json.loads(answers[1][1])["error"].startswith("body is not valid JSON")
    # chunked (left to the handlers) and HTTP/1.0 (closed after the answer)
    chunked = requests.post(warm_trio.url("SymServer", "/"), data=iter([body[:10], body[10:]]), timeout=60)
    assert chunked.content == answers[0][1]
    with socket.create_connection(("127.0.0.1", warm_trio.symserver_port), timeout=60) as raw:
        raw.sendall(b"POST / HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
    head, _, content = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and content == answers[0][1]


def test_frames_with_long_names_are_not_rendered_ahead():
    from symcommon.recentframes import MAX_RENDERED_SIZE, RecentFrames

    recent = RecentFrames(1000, 60, render=lambda key, value: (b"v4", b"v5"))
    short, long = FrameInfo("f", 0), FrameInfo("g" * MAX_RENDERED_SIZE, 0)
    recent.put_many({("m", 1): short, ("m", 2): long})
    columns = (((0, 0), (1, 1)),)
    assert recent.rendered_stacks(columns, ["m"], 10**9) == [[(b"v4", b"v5"), (b"v4", b"v5")]]
    assert recent.rendered_stacks((((0, 0), (1, 2)),), ["m"], 10**9) is None  # a copy of 4 KB of names: not made
    assert recent.rendered_stacks((((0, 0), (1, 3)),), ["m"], 10**9) is None  # not cached
    assert recent.rendered_stacks(columns, ["m"], 100) is None  # over the answer's bound
    assert recent.get_many([("m", 2)]) == {("m", 2): long}  # the handlers still find it
