"""Answers and in-memory caches are bounded in bytes, not only in entries: many frames in a
function with a 64 KiB name make neither a huge answer nor a huge server."""

from __future__ import annotations

import json

import psutil
import pytest

from symcommon.frames import FrameInfo, InlineFrame
from symcommon.recentframes import RecentFrames
from symcommon.requests import parse_v5
from symcommon.responses import SHORTENED_MARKER, JobAnswers, bound_answers, v5_result

LONG_ID = "10A6A3E510A6A3E510A6A3E510A6A3E51"
NAME_CHARACTERS = 60_000  # under the 64 KiB names are cut to when processed
FRAMES = 5000
MAX_ANSWER_MB = 4
MB = 1024 * 1024


def long_name(tag: str) -> str:
    return (tag + "::" + "Template<" * 8)[:40] + "x" * (NAME_CHARACTERS - 40)


@pytest.fixture
def long_trio(make_trio, symbol_store, tmp_path):
    symbols = tmp_path / "long_symbols"
    path = symbols / "long.pdb" / LONG_ID / "long.sym"
    path.parent.mkdir(parents=True)
    path.write_text(f"MODULE windows x86_64 {LONG_ID} long.pdb\nINFO CODE_ID 99 long.dll\n"
                    f"FILE 0 {'d/' * 100}long.cpp\n"
                    f"FUNC 1000 100000 0 {long_name('first')}\n1000 100000 7 0\n"
                    f"PUBLIC 200000 0 {long_name('public')}\n")
    limits = {"maxAnswerMB": MAX_ANSWER_MB}
    return make_trio([symbol_store.url("plain")],
                     {"DiskCache": dict(limits, localSymbolDirs=[str(symbols)]), "SymServer": limits})


def post(trio, body, server="SymServer"):
    response = trio.session.post(trio.url(server, "/symbolicate/v5"), data=json.dumps(body).encode(),
                                 timeout=300)
    assert response.status_code == 200, response.text[:300]
    return response


def rss_mb(pid: int) -> float:
    process = psutil.Process(pid)
    return (process.memory_info().rss + sum(child.memory_info().rss for child in process.children(True))) / MB


def test_many_frames_in_a_64_kib_name_make_a_bounded_answer(long_trio):
    offsets = [0x1000 + 16 * i for i in range(FRAMES // 2)] + [0x200000 + 16 * i for i in range(FRAMES // 2)]
    body = {"memoryMap": [["long.pdb", LONG_ID]], "stacks": [[[0, offset] for offset in offsets]]}
    # Unbounded, this answer would hold 5000 x 60 KB = 300 MB of names.
    bound = MAX_ANSWER_MB * MB + FRAMES * 1024
    for server in ("DiskCache", "SymServer", "SymServer"):  # the last one from SymServer's caches
        response = post(long_trio, body, server)
        assert len(response.content) < bound, (server, len(response.content))
        frames = response.json()["results"][0]["stacks"][0]
        assert len(frames) == FRAMES
        for frame in frames[:3] + frames[-3:]:
            assert frame["function"].endswith(SHORTENED_MARKER)
            assert frame["function"].startswith(("first::", "public::"))
            assert frame["names_shortened"] is True
        assert frames[0]["line"] == 7 and frames[0]["function_offset"] == "0x0"
        for name in ("SymServer", "DiskCache"):
            assert rss_mb(long_trio.pid(name)) < 300, (name, rss_mb(long_trio.pid(name)))
    # What was shortened for one answer is never cached: a small request gets whole names.
    small = post(long_trio, {"memoryMap": [["long.pdb", LONG_ID]], "stacks": [[[0, 0x1010], [0, 0x200010]]]})
    frames = small.json()["results"][0]["stacks"][0]
    assert frames[0]["function"] == long_name("first") and frames[1]["function"] == long_name("public")
    assert "names_shortened" not in frames[0]


def test_bound_answers_keeps_every_frame_and_shortens_only_the_longest_names():
    body = {"memoryMap": [["a.pdb", "AB"]], "stacks": [[[0, n] for n in range(1000)]]}
    job = parse_v5(body)[0]
    answers = JobAnswers()
    big = FrameInfo("b" * 10_000, 0, 4, "f" * 5000, 3, (InlineFrame("i" * 3000, "g" * 10, 2),))
    for n in range(1000):
        answers.symbols[(0, n)] = big if n % 10 == 0 else FrameInfo(f"small{n}", n)
    cap = bound_answers([job], [answers], 1 * MB)
    assert cap is not None and cap >= 256
    result = v5_result(job, answers)
    names = sum(len(frame["function"]) + len(frame.get("file", "")) +
                sum(len(i["function"]) + len(i.get("file", "")) for i in frame.get("inlines", []))
                for frame in result["stacks"][0])
    assert names <= 1 * MB
    frames = result["stacks"][0]
    assert frames[0]["function"] == "b" * (cap - len(SHORTENED_MARKER)) + SHORTENED_MARKER
    assert frames[0]["names_shortened"] is True and frames[0]["line"] == 3
    assert frames[1]["function"] == "small1" and "names_shortened" not in frames[1]
    assert bound_answers([job], [answers], 100 * MB) is None  # within the bound: untouched


def test_answers_shorten_names_with_the_marker_processing_cuts_them_with():
    from diskcache.symfile import TRUNCATION_MARKER

    assert SHORTENED_MARKER.encode() == TRUNCATION_MARKER


def test_recent_frames_are_bounded_in_bytes_as_well_as_entries():
    recent = RecentFrames(50_000, 60, max_bytes=8 * MB)
    for n in range(1000):
        recent.put_many({("long", n): ("long.dll", FrameInfo(long_name(str(n)), 0))})
    assert recent.bytes <= 8 * MB + 64 * 1024
    assert len(recent) < 1000
    assert recent.get_many([("long", 999)])  # the latest are kept
    million = {("m", n): ("m.dll", None) for n in range(1_000_000)}
    recent.put_many(million)  # one request bigger than the cache: it rotates, never grows past it
    assert len(recent) <= 50_002
    assert recent.get_many([("m", 999_999)])


def test_table_caches_are_bounded_in_bytes_across_tables():
    import io

    from diskcache.symfile import process_symbol_file
    from diskcache.tablereader import ByteLRU, SymbolTable

    files = 400
    lines = [f"MODULE windows x86_64 {LONG_ID} long.pdb"]
    lines += [f"FILE {n} {long_name(f'dir{n}')}" for n in range(files)]
    for n in range(files):
        lines += [f"FUNC {0x1000 + n * 0x100:x} 100 0 {long_name(f'func{n}')}",
                  f"{0x1000 + n * 0x100:x} 100 {n + 1} {n}"]
    sink = io.BytesIO()
    process_symbol_file(io.BytesIO(("\n".join(lines) + "\n").encode()), sink)
    shared = ByteLRU(4 * MB)
    tables = [SymbolTable(sink.getvalue(), cache=shared) for _ in range(3)]
    for table in tables:
        for n in range(files):  # 400 x (60 KB name + 60 KB file) per table, 144 MB in all
            info = table.lookup(0x1000 + n * 0x100 + 4)
            assert info.function == long_name(f"func{n}") and info.file == long_name(f"dir{n}")
            assert shared.bytes <= 4 * MB
    tables[0].release_caches()
    assert tables[0]._block.cache_info().currsize == 0
    assert shared.bytes <= 4 * MB and shared.get((object(), 0)) is None


def test_v5_body_in_chunks_is_the_same_bytes_as_one_encoding(monkeypatch):
    import random

    from symcommon import jsonio, responses
    from symcommon.responses import ModuleAnswer, v5_body

    monkeypatch.setattr(responses, "RENDER_CHUNK", 7)
    rng = random.Random(1)
    body = {"jobs": [{"memoryMap": [["a.pdb", "AB"], ["b.pdb", "CD"]],
                      "stacks": [[[rng.randrange(-1, 2), rng.randrange(100)] for _ in range(rng.randrange(30))]
                                 for _ in range(4)] + [[]]} for _ in range(3)]}
    jobs = parse_v5(body)
    answers = []
    for job in jobs:
        answer = JobAnswers()
        answer.modules[0], answer.modules[1] = ModuleAnswer(True, "a.dll"), ModuleAnswer(False)
        for stack in job.stacks:
            for index, offset in stack:
                if index == 0 and offset % 3:
                    answer.symbols[(index, offset)] = FrameInfo(f"f\u00e9{offset}\"", offset, 3, "x.c", 4,
                                                                (InlineFrame("g", "y", 2),))
        answer.shortened.add((0, 1))
        answers.append(answer)
    expected = jsonio.dumps({"results": [v5_result(j, a) for j, a in zip(jobs, answers)], "debug": {"x": [1]}})
    assert v5_body(jobs, answers, {"debug": {"x": [1]}}) == expected
    assert v5_body([], []) == jsonio.dumps({"results": []})
