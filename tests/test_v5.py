"""/symbolicate/v5, the Firefox Profiler's request pattern, CORS, health and Debug figures."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import requests

INLINE_ID = "0123456789ABCDEF0123456789ABCDEF0"
INLINE_SYM = f"""MODULE Linux x86_64 {INLINE_ID} libinline.so
INFO CODE_ID 0123456789ABCDEF libinline.so.1
FILE 0 main.rs
FILE 2 helper.rs
INLINE_ORIGIN 0 middle
INLINE_ORIGIN 1 inner
FUNC 7a40 85 0 main
INLINE 0 4 0 0 7a40 7d
INLINE 1 2 2 1 7a40 49 7aa0 8
7a7a f 7 2
7a40 3a 3 0
7aa0 8 9 2
7ac0 40 11 0
FUNC 8000 20 0 no_lines
PUBLIC 7000 0 public_before
PUBLIC 8100 0 public_after
"""
PUBLIC_ONLY_ID = "FEDCBA9876543210FEDCBA98765432101"
PUBLIC_ONLY_SYM = f"""MODULE windows x86 {PUBLIC_ONLY_ID} pubonly.pdb
PUBLIC 100 0 first
PUBLIC 200 0 second
"""


@pytest.fixture(scope="module")
def local_trio(tmp_path_factory, symbol_store):
    from harness import Trio

    symbols = tmp_path_factory.mktemp("v5symbols")
    for debug_file, debug_id, sym_name, text in (
            ("libinline.so", INLINE_ID, "libinline.so.sym", INLINE_SYM),
            ("pubonly.pdb", PUBLIC_ONLY_ID, "pubonly.sym", PUBLIC_ONLY_SYM)):
        path = symbols / debug_file / debug_id / sym_name
        path.parent.mkdir(parents=True)
        path.write_text(text)
    trio = Trio(tmp_path_factory.mktemp("v5trio"), [symbol_store.url("plain")],
                {"DiskCache": {"localSymbolDirs": [str(symbols)]}})
    trio.start()
    yield trio
    trio.stop()


INLINE = ["libinline.so", INLINE_ID]
PUBLIC_ONLY = ["pubonly.pdb", PUBLIC_ONLY_ID]
MISSING = ["missing.pdb", "00000000000000000000000000000000A"]


def v5(trio, body, **kwargs) -> requests.Response:
    return trio.post(body, path="/symbolicate/v5", **kwargs)


def frames_for(trio, module, offsets) -> list[dict]:
    body = {"jobs": [{"memoryMap": [module], "stacks": [[[0, offset] for offset in offsets]]}]}
    response = v5(trio, body)
    assert response.status_code == 200, response.text
    return response.json()["results"][0]["stacks"][0]


def test_worked_example_with_nested_inlines(local_trio):
    [frame] = frames_for(local_trio, INLINE, [0x7A7B])
    assert frame == {
        "frame": 0, "module": "libinline.so.1", "module_offset": "0x7a7b",
        "function": "main", "function_offset": "0x3b", "function_size": "0x85",
        "file": "main.rs", "line": 4,
        "inlines": [{"function": "inner", "file": "helper.rs", "line": 7},
                    {"function": "middle", "file": "helper.rs", "line": 2}]}


def test_every_branch_of_the_rule(local_trio):
    offsets = [0x7A40, 0x7AA3, 0x7A8A, 0x7AC4, 0x7AC5, 0x8005, 0x8030, 0x6FFF, 0x7005, 0x8120]
    frames = frames_for(local_trio, INLINE, offsets)
    strip = [{k: v for k, v in f.items() if k not in ("frame", "module", "module_offset")} for f in frames]
    # first byte: both inlines cover it; the deepest takes the line record (7a40 3a 3 0)
    assert strip[0] == {"function": "main", "function_offset": "0x0", "function_size": "0x85",
                        "file": "main.rs", "line": 4,
                        "inlines": [{"function": "inner", "file": "main.rs", "line": 3},
                                    {"function": "middle", "file": "helper.rs", "line": 2}]}
    # an inline range other than the first one (7aa0..7aa8)
    assert strip[1]["inlines"] == [{"function": "inner", "file": "helper.rs", "line": 9},
                                   {"function": "middle", "file": "helper.rs", "line": 2}]
    # past inner's ranges, in a gap between line records: only middle, without a position
    assert strip[2] == {"function": "main", "function_offset": "0x4a", "function_size": "0x85",
                        "file": "main.rs", "line": 4, "inlines": [{"function": "middle"}]}
    # last byte of the FUNC: outside every inline range; its line record runs past the FUNC end
    assert strip[3] == {"function": "main", "function_offset": "0x84", "function_size": "0x85",
                        "file": "main.rs", "line": 11}
    # one past the FUNC end: PUBLIC 7000 is below the FUNC, so nothing is known
    assert strip[4] == {}
    # a FUNC without line records
    assert strip[5] == {"function": "no_lines", "function_offset": "0x5", "function_size": "0x20"}
    # the gap after no_lines: public_before is below the FUNC at 8000 -> nothing
    assert strip[6] == {}
    # before every symbol
    assert strip[7] == {}
    # a PUBLIC before the first FUNC: no size, no file
    assert strip[8] == {"function": "public_before", "function_offset": "0x5"}
    # a PUBLIC above the last FUNC
    assert strip[9] == {"function": "public_after", "function_offset": "0x20"}


def test_public_only_module_and_module_name_without_code_file(local_trio):
    frames = frames_for(local_trio, PUBLIC_ONLY, [0x50, 0x100, 0x1FF, 0x5000])
    assert [f.get("function") for f in frames] == [None, "first", "first", "second"]
    assert all(f["module"] == "pubonly.pdb" for f in frames)
    assert all("function_size" not in f and "file" not in f for f in frames)
    assert frames[2]["function_offset"] == "0xff"


def test_found_modules_true_false_null_and_unknown_module_frames(local_trio):
    body = {"memoryMap": [INLINE, MISSING, PUBLIC_ONLY], "stacks": [[[0, 0x7A40], [1, 0x10], [-1, 0x99]]]}
    result = v5(local_trio, body).json()["results"][0]  # a single job without the "jobs" wrapper
    assert result["found_modules"] == {f"{INLINE[0]}/{INLINE[1]}": True, f"{MISSING[0]}/{MISSING[1]}": False,
                                       f"{PUBLIC_ONLY[0]}/{PUBLIC_ONLY[1]}": None}
    frames = result["stacks"][0]
    assert frames[1] == {"frame": 1, "module": "missing.pdb", "module_offset": "0x10"}
    assert frames[2] == {"frame": 2, "module": "<unknown>", "module_offset": "0x99"}


def test_warm_v5_answers_equal_cold_ones_and_match_v4(local_trio):
    offsets = [0x7A7B, 0x7AA3, 0x8005, 0x7005, 0x6000]
    cold = frames_for(local_trio, INLINE, offsets)
    warm = frames_for(local_trio, INLINE, offsets)
    assert warm == cold
    v4 = local_trio.post({"version": 4, "memoryMap": [INLINE], "stacks": [[[0, o] for o in offsets]]}).json()
    assert v4["symbolicatedStacks"][0] == [
        "main (in libinline.so)", "main (in libinline.so)", "no_lines (in libinline.so)",
        "public_before (in libinline.so)", "0x6000 (in libinline.so)"]


def test_warm_v5_request_never_touches_the_diskcache(local_trio):
    offsets = [0x7A7B, 0x7AA3, 0x7005]
    first = frames_for(local_trio, INLINE, offsets)
    local_trio.kill("DiskCache", signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert frames_for(local_trio, INLINE, offsets) == first
        assert time.monotonic() - started < 2
    finally:
        local_trio.kill("DiskCache", signal.SIGCONT)


def test_firefox_profiler_pattern(local_trio):
    """Up to 10 jobs, one module each, one stack with every address: one answer per address."""
    jobs = []
    for index in range(10):
        module = [INLINE, PUBLIC_ONLY, MISSING][index % 3]
        offsets = [(index * 131 + k * 17) % 0x9000 for k in range(1000)]
        jobs.append({"memoryMap": [module], "stacks": [[[0, offset] for offset in offsets]]})
    response = v5(local_trio, {"jobs": jobs})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 10
    for job, result in zip(jobs, results):
        frames = result["stacks"][0]
        assert len(frames) == 1000
        for number, ((_, offset), frame) in enumerate(zip(job["stacks"][0], frames)):
            assert frame["frame"] == number and frame["module_offset"] == hex(offset)
            assert ("function" in frame) == ("function_offset" in frame)
            assert "line" not in frame or "file" in frame


@pytest.mark.parametrize("server", ["SymServer", "DiskCache"])
def test_too_many_jobs_is_400_naming_the_limit(local_trio, server):
    """The DiskCache has no job limit of its own in the config: it applies the default."""
    body = {"jobs": [{"memoryMap": [INLINE], "stacks": [[[0, 1]]]}] * 11}
    response = v5(local_trio, body, server=server)
    assert response.status_code == 400
    assert "limit of 10" in response.json()["error"]
    body["jobs"] = body["jobs"][:10]
    response = v5(local_trio, body, server=server)
    assert response.status_code == 200 and len(response.json()["results"]) == 10


@pytest.mark.parametrize("body,location", [
    ({"jobs": "x"}, "jobs"),
    ({"jobs": [{"memoryMap": [INLINE], "stacks": [[[0, 1]]]}, {"memoryMap": [INLINE], "stacks": [[[3, 1]]]}]},
     "jobs[1].stacks[0][0]"),
    ({"jobs": [{"memoryMap": [["a/b", INLINE_ID]], "stacks": []}]}, "jobs[0].memoryMap[0]"),
    ({"memoryMap": [INLINE], "stacks": [[[0, -5]]]}, "stacks[0][0]"),
    ([], "expected a JSON object"),
])
def test_invalid_v5_requests_name_the_job_stack_and_frame(local_trio, body, location):
    response = v5(local_trio, body)
    assert response.status_code == 400
    assert location in response.json()["error"]


def test_cors_headers_and_preflight(local_trio):
    response = v5(local_trio, {"memoryMap": [INLINE], "stacks": [[[0, 1]]]},
                  headers={"Origin": "https://profiler.firefox.com"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    preflight = local_trio.session.options(
        local_trio.url("SymServer", "/symbolicate/v5"), timeout=10,
        headers={"Origin": "https://profiler.firefox.com", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "content-type" in preflight.headers["Access-Control-Allow-Headers"].lower()
    error = v5(local_trio, {"jobs": 5})
    assert error.headers["Access-Control-Allow-Origin"] == "*"


def test_debug_header_reports_timings_and_cache_figures(local_trio):
    body = {"memoryMap": [PUBLIC_ONLY], "stacks": [[[0, 0x123], [0, 0x456]]]}
    local_trio.post({"debug": True, "action": "cacheEvict", "libName": "pubonly.pdb",
                     "breakpadId": PUBLIC_ONLY_ID, "offset": 0x123})
    local_trio.post({"debug": True, "action": "cacheEvict", "libName": "pubonly.pdb",
                     "breakpadId": PUBLIC_ONLY_ID, "offset": 0x456})
    cold = v5(local_trio, body, headers={"Debug": "true"}).json()
    assert cold["debug"]["memcached"] == {"hits": 0, "misses": 2, "seconds": cold["debug"]["memcached"]["seconds"]}
    assert cold["debug"]["diskcache"]["round_trips"] == 1
    assert cold["debug"]["seconds"] >= cold["debug"]["diskcache"]["seconds"] >= 0
    warm = v5(local_trio, body, headers={"Debug": "true"}).json()
    assert warm["debug"]["memcached"]["hits"] == 2 and warm["debug"]["memcached"]["misses"] == 0
    assert warm["debug"]["diskcache"]["round_trips"] == 0
    assert "debug" not in v5(local_trio, body).json()


def test_debug_header_reports_downloads_and_processing(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")])
    body = {"memoryMap": [["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"]], "stacks": [[[0, 11723767]]]}
    debug = v5(trio, body, headers={"Debug": "true"}).json()["debug"]["diskcache"]
    [fetched] = debug["modules_fetched"]
    assert fetched["module"] == "xul.pdb/44E4EC8C2F41492B9369D6B9A059577C2" and fetched["bytes"] > 0
    [processed] = debug["modules_processed"]  # answered from the .sym, its table built afterwards
    assert processed["answered_from"] == "sym" and processed["offsets"] == 1 and processed["input_bytes"] > 0
    trio = make_trio([symbol_store.url("plain")], {"DiskCache": {"answerBeforeTable": False}})
    debug = v5(trio, body, headers={"Debug": "true"}).json()["debug"]["diskcache"]
    [processed] = debug["modules_processed"]  # the table first
    assert processed["answered_from"] == "table" and processed["seconds"] > 0 and processed["output_bytes"] > 0


def test_health_and_version_endpoints(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")], {"DiskCache": {"maxSizeMB": 123}})
    for server in ("SymServer", "DiskCache"):
        assert trio.session.get(trio.url(server, "/__lbheartbeat__"), timeout=5).status_code == 200
        version = trio.session.get(trio.url(server, "/__version__"), timeout=5).json()
        assert version["name"] == "symbolication-server" and "commit" in version
    healthy = trio.session.get(trio.url("SymServer", "/__heartbeat__"), timeout=10)
    assert healthy.status_code == 200 and healthy.json()["checks"] == {"memcached": "ok", "diskcache": "ok"}
    cache = trio.session.get(trio.url("DiskCache", "/__heartbeat__"), timeout=10)
    assert cache.status_code == 200
    assert cache.json()["cache"]["max_bytes"] == 123 * 1024 * 1024
    trio.kill("memcached")
    time.sleep(0.3)
    sick = trio.session.get(trio.url("SymServer", "/__heartbeat__"), timeout=10)
    assert sick.status_code == 503
    assert sick.json()["checks"]["memcached"] == "down" and "memcached" in sick.json()["error"]
    assert trio.session.get(trio.url("SymServer", "/__lbheartbeat__"), timeout=5).status_code == 200


def test_diskcache_heartbeat_fails_when_the_cache_cannot_be_written(make_trio, symbol_store, small_filesystem):
    trio = make_trio([symbol_store.url("plain")], {"DiskCache": {"cachePath": str(small_filesystem / "cache")}})
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    try:
        response = trio.session.get(trio.url("DiskCache", "/__heartbeat__"), timeout=10)
        assert response.status_code == 503
        assert "not writable" in response.json()["error"]
        sick = trio.session.get(trio.url("SymServer", "/__heartbeat__"), timeout=10)
        assert sick.status_code == 200  # SymServer only needs the DiskCache to answer
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_filesystem)], check=True)
    assert trio.session.get(trio.url("DiskCache", "/__heartbeat__"), timeout=10).status_code == 200


def test_a_file_where_the_cache_tmp_directory_should_be_is_replaced(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")])
    tmp = trio.cache_dir / ".tmp"
    tmp.rmdir()
    tmp.write_text("a file where the directory should be")
    assert trio.session.get(trio.url("DiskCache", "/__heartbeat__"), timeout=10).status_code == 200
    assert tmp.is_dir() and not tmp.is_symlink()


def test_v5_agrees_with_the_reference_on_a_large_generated_module(make_trio, symbol_store, store_root):
    import random
    import sys

    from harness import REPO
    from reference_rule import ReferenceModule

    sys.path.insert(0, str(REPO / "bench"))
    from gen_symfile import generate

    debug_id = "6E0E6E0E6E0E6E0E6E0E6E0E6E0E6E0E1"
    path = store_root / "generated.pdb" / debug_id / "generated.sym"
    path.parent.mkdir(parents=True, exist_ok=True)
    stats = generate(path, size_mb=6, seed=21, junk=True, debug_file="generated.pdb", debug_id=debug_id,
                     code_file="generated.dll")
    reference = ReferenceModule.from_bytes(path.read_bytes())
    rng = random.Random(5)
    offsets = [rng.randrange(0x800, 0x1000 + stats["funcs"] * 0x1C0) for _ in range(1500)]
    trio = make_trio([symbol_store.url("gzip")])
    jobs = [{"memoryMap": [["generated.pdb", debug_id]], "stacks": [[[0, o] for o in offsets[i::3]]]}
            for i in range(3)]
    for attempt in ("cold", "warm"):
        results = v5(trio, {"jobs": jobs}).json()["results"]
        checked = with_inlines = 0
        for job, result in zip(jobs, results):
            for (_, offset), frame in zip(job["stacks"][0], result["stacks"][0]):
                expected = reference.lookup(offset)
                want = {"frame": frame["frame"], "module": "generated.dll", "module_offset": hex(offset)}
                if expected is not None:
                    want.update(function=expected["function"], function_offset=hex(expected["function_offset"]))
                    if expected["function_size"] is not None:
                        want["function_size"] = hex(expected["function_size"])
                    if expected["file"] is not None:
                        want["file"] = expected["file"]
                        if expected["line"]:  # a line of 0 is left out
                            want["line"] = expected["line"]
                    if expected["inlines"]:
                        want["inlines"] = [{k: v for k, v in i.items() if v is not None and not (k == "line" and v == 0)}
                                           for i in expected["inlines"]]
                        with_inlines += 1
                assert frame == want, (attempt, hex(offset))
                checked += 1
        assert checked == 1500 and with_inlines > 100
