"""Request sizes and limits on the real trio: whole libraries in one job, and requests that
would cost far more than they say (many stacks, many modules to fetch, huge bodies)."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from harness import Trio

SMALL_ID = "5A11C0DE5A11C0DE5A11C0DE5A11C0DE1"
FUNC_SIZE = 0x10000
FUNCS = 17  # 0x1000 .. 0x111000: a million and more distinct offsets
DEMO_XUL = ["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"]


def small_sym() -> str:
    lines = [f"MODULE windows x86_64 {SMALL_ID} small.pdb", "INFO CODE_ID 1234 small.dll", "FILE 0 small.cpp"]
    for number in range(FUNCS):
        address = 0x1000 + number * FUNC_SIZE
        lines.append(f"FUNC {address:x} {FUNC_SIZE:x} 0 func{number}")
        lines.append(f"{address:x} {FUNC_SIZE:x} {number + 1} 0")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def default_trio(tmp_path_factory, symbol_store):
    """A trio with the default request limits, the small module in a local symbol dir."""
    symbols = tmp_path_factory.mktemp("limit_symbols")
    path = symbols / "small.pdb" / SMALL_ID / "small.sym"
    path.parent.mkdir(parents=True)
    path.write_text(small_sym())
    trio = Trio(tmp_path_factory.mktemp("limits_trio"), [symbol_store.url("plain")],
                {"DiskCache": {"localSymbolDirs": [str(symbols)]}})
    trio.start()
    yield trio
    trio.stop()


def v5(trio: Trio, body: dict, server: str = "SymServer", timeout: float = 300) -> requests.Response:
    return trio.session.post(trio.url(server, "/symbolicate/v5"), data=json.dumps(body).encode(),
                             timeout=timeout)


def one_library_job(count: int) -> dict:
    """What the Firefox Profiler sends: one job, one library, every address in one stack."""
    return {"memoryMap": [["small.pdb", SMALL_ID]], "stacks": [[[0, 0x1000 + i] for i in range(count)]]}


def check_answers(frames: list[dict], count: int) -> None:
    assert len(frames) == count
    for number in list(range(0, count, max(count // 997, 1))) + [count - 1]:
        offset = 0x1000 + number
        assert frames[number]["frame"] == number
        assert frames[number]["module_offset"] == hex(offset)
        assert frames[number]["function"] == f"func{number // FUNC_SIZE}"
        assert frames[number]["function_offset"] == hex(number % FUNC_SIZE)
        assert frames[number]["line"] == number // FUNC_SIZE + 1


def test_a_million_addresses_of_one_library_are_one_job_by_default(default_trio):
    body = one_library_job(1_000_000)
    raw = json.dumps(body).encode()
    assert len(raw) > 16 * 1024 * 1024 - 4 * 1024 * 1024  # (the frames of a real library are bigger still)
    response = default_trio.session.post(default_trio.url("SymServer", "/symbolicate/v5"), data=raw,
                                         timeout=600)
    assert response.status_code == 200, response.text[:300]
    result = response.json()["results"][0]
    assert result["found_modules"] == {f"small.pdb/{SMALL_ID}": True}
    check_answers(result["stacks"][0], 1_000_000)


@pytest.mark.parametrize("count", [100_000, 200_000])
def test_big_jobs_are_answered_whole_and_right(default_trio, count):
    for attempt in ("cold or warm", "warm"):
        response = v5(default_trio, one_library_job(count))
        assert response.status_code == 200, (attempt, response.text[:300])
        check_answers(response.json()["results"][0]["stacks"][0], count)


@pytest.mark.parametrize("server", ["SymServer", "DiskCache"])
def test_more_stacks_than_max_stacks_per_request_is_400(default_trio, server):
    body = {"memoryMap": [["small.pdb", SMALL_ID]], "stacks": [[] for _ in range(100_001)]}
    response = v5(default_trio, body, server)
    assert response.status_code == 400
    assert "100001 stacks, more than the limit of 100000" in response.json()["error"]
    body = {"jobs": [{"memoryMap": [], "stacks": [[] for _ in range(50_000)]},
                     {"memoryMap": [], "stacks": [[] for _ in range(50_001)]}]}
    response = v5(default_trio, body, server)
    assert response.status_code == 400  # the limit is per request, not per job
    assert "jobs[1].stacks: 100001 stacks" in response.json()["error"]
    response = v5(default_trio, {"memoryMap": [], "stacks": [[] for _ in range(100_000)]}, server)
    assert response.status_code == 200


class Pinger:
    """GETs /__lbheartbeat__ every 20 ms on its own connection; remembers the slowest answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.worst = 0.0
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                started = time.monotonic()
                session.get(self.url, timeout=30).raise_for_status()
                self.worst = max(self.worst, time.monotonic() - started)
                self.count += 1
                time.sleep(0.02)

    def __enter__(self) -> Pinger:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@pytest.mark.parametrize("server", ["SymServer", "DiskCache"])
def test_16_mb_of_empty_stacks_does_not_block_the_event_loop(default_trio, server):
    count = (16 * 1024 * 1024 - 100) // 3
    raw = (b'{"memoryMap":[],"stacks":[' + b",".join([b"[]"] * count) + b"]}")
    assert len(raw) < 16 * 1024 * 1024  # within the body limit, old and new
    with Pinger(default_trio.url(server, "/__lbheartbeat__")) as pinger:
        time.sleep(0.3)
        started = time.monotonic()
        response = default_trio.session.post(default_trio.url(server, "/symbolicate/v5"), data=raw, timeout=120)
        seconds = time.monotonic() - started
        time.sleep(0.3)
    print(f"{server}: {len(raw)} bytes of [] refused in {seconds:.2f} s; slowest heartbeat "
          f"{pinger.worst:.3f} s of {pinger.count}")
    assert pinger.count > 10
    # Before: the body was decoded and 5.6 million stacks walked on the event loop (4-5 s).
    assert pinger.worst < 1.0, (pinger.worst, seconds)
    assert response.status_code == 400
    assert "JSON arrays, more than a request within the limits can hold" in response.json()["error"]


def random_module(number: int) -> list[str]:
    return [f"nowhere{number}.pdb", f"{number:032X}1"]


def test_one_request_causes_at_most_max_fetches_per_request_downloads(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")])
    symbol_store.reset()
    # 150 modules nobody has, with two frames each, and the demo xul with one frame: the
    # modules with the most frames get the 100 fetches, so xul is among those left out.
    memory_map = [random_module(n) for n in range(150)] + [DEMO_XUL]
    stacks = [[[n, 0x10], [n, 0x20]] for n in range(150)] + [[[150, 11723767]]]
    body = {"memoryMap": memory_map, "stacks": stacks}
    result = v5(trio, body).json()["results"][0]
    fetched = [m for m in memory_map if symbol_store.count(f"/{m[0]}/{m[1]}/{m[0][:-4]}.sym")]
    assert len(fetched) == 100, len(fetched)
    found = result["found_modules"]
    assert sum(1 for value in found.values() if value is False) == 100
    assert sum(1 for value in found.values() if value is None) == 51  # not looked up this time
    assert found["/".join(DEMO_XUL)] is None
    assert "function" not in result["stacks"][150][0]
    # Not remembered as missing, and SymServer did not keep their frames as unknown: asked
    # again, xul is fetched and answered (the 100 missing ones are remembered, no fetch).
    result = v5(trio, body).json()["results"][0]
    assert result["found_modules"]["/".join(DEMO_XUL)] is True
    assert result["stacks"][150][0]["function"] == "XREMain::XRE_mainRun()"
    assert sum(1 for value in result["found_modules"].values() if value is None) == 0
    assert len(symbol_store.requests) == 151


def test_a_request_of_5000_unknown_modules_asks_the_store_for_100(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")])
    symbol_store.reset()
    body = {"memoryMap": [random_module(n) for n in range(1000, 6000)],
            "stacks": [[[n, 0x10] for n in range(5000)]]}
    started = time.monotonic()
    response = v5(trio, body)
    assert response.status_code == 200
    assert len(symbol_store.requests) == 100
    found = response.json()["results"][0]["found_modules"]
    assert list(found.values()).count(None) == 4900
    assert time.monotonic() - started < 60
