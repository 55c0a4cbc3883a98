"""SymServer with several processes on one port (``processes``), and the in-process frame cache."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import psutil
import pytest
import requests

from harness import parsing_workers, run_quickstart, sample_request
from symcommon.frames import FrameInfo
from symcommon.prefork import SharedState
from symcommon.recentframes import RecentFrames

XUL = ["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"]


def fresh_post(trio, body) -> requests.Response:
    """A new connection per request, so that either process may take it."""
    return requests.post(trio.url(), json=body, headers={"Connection": "close"}, timeout=30)


def debug(trio, action: str, **fields) -> dict:
    return fresh_post(trio, dict({"debug": True, "action": action}, **fields)).json()


def serving_pids(trio, since: int = 0) -> set[str]:
    log = (trio.workdir / "SymServer.log").read_text()[since:]
    return set(re.findall(r"^\S+ \S+ (\d+) INFO http: request id=", log, re.M))


@pytest.fixture(scope="module")
def two_process_trio(tmp_path_factory, symbol_store):
    from harness import Trio

    trio = Trio(tmp_path_factory.mktemp("prefork"), [symbol_store.url("plain")],
                {"SymServer": {"processes": 2}})
    trio.start()
    yield trio
    trio.stop()


def test_processes_share_the_port_and_the_debug_state(two_process_trio):
    trio = two_process_trio
    expected = trio.post(sample_request()).json()["symbolicatedStacks"]
    assert debug(trio, "outputCacheHits", enabled=True) == {"success": True}
    log_size = (trio.workdir / "SymServer.log").stat().st_size
    for _ in range(30):
        answer = fresh_post(trio, sample_request()).json()
        assert answer["symbolicatedStacks"] == expected
        assert answer["cacheHits"] == [[True, True]]  # whichever process answered
    assert trio.wait_for_log("SymServer.log", "POST / 200")
    time.sleep(0.2)
    assert len(serving_pids(trio, log_size)) == 2, "both processes should have answered"
    assert debug(trio, "outputCacheHits", enabled=False) == {"success": True}
    for _ in range(10):
        assert "cacheHits" not in fresh_post(trio, sample_request()).json()


def answering_pid(trio, request_id: str) -> str:
    assert trio.wait_for_log("SymServer.log", f"request id={request_id} ")
    log = (trio.workdir / "SymServer.log").read_text()
    return re.search(rf"^\S+ \S+ (\d+) INFO http: request id={request_id} ", log, re.M)[1]


def test_cache_evict_reaches_every_process(make_trio, symbol_store):
    """With memcached configured but not running, each process's own cache is the only one:
    after an eviction, the first answer of every process must miss the evicted frame."""
    trio = make_trio([symbol_store.url("plain")], {"SymServer": {"processes": 2},
                                                    "quickstart": {"memcached": {"start": False}}})
    debug(trio, "outputCacheHits", enabled=True)
    pids: set[str] = set()
    for number in range(60):  # until both processes have answered (and cached) the frames
        response = fresh_post(trio, sample_request())
        pids.add(answering_pid(trio, response.headers["X-Request-Id"]))
        if len(pids) == 2 and number >= 10:
            break
    assert len(pids) == 2
    fresh_post(trio, dict({"debug": True, "action": "cacheEvict"}, libName=XUL[0], breakpadId=XUL[1],
                          offset=11723767))
    first_answer: dict[str, list] = {}
    for _ in range(60):
        response = fresh_post(trio, sample_request())
        first_answer.setdefault(answering_pid(trio, response.headers["X-Request-Id"]),
                                response.json()["cacheHits"][0])
        if len(first_answer) == 2:
            break
    assert len(first_answer) == 2
    for pid, hits in first_answer.items():
        assert hits[0] is False, f"process {pid} answered the evicted frame from its cache"


def test_a_dead_server_process_is_replaced_and_stop_ends_them_all(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")], {"SymServer": {"processes": 2}})
    parent = psutil.Process(trio.pid("SymServer"))
    children = parent.children()
    assert len(children) == 2
    children[0].send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = [child for child in parent.children() if child.status() != psutil.STATUS_ZOMBIE]
        if len(now) == 2 and children[0].pid not in {child.pid for child in now}:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"no replacement process: {parent.children()}")
    for _ in range(10):
        assert fresh_post(trio, sample_request()).status_code == 200
    assert trio.wait_for_log("SymServer.log", f"server process {children[0].pid} ended")
    everyone = [parent, *parent.children()]
    trio.quickstart("--stop")
    gone, alive = psutil.wait_procs(everyone, timeout=10)
    assert not alive
    assert trio.pid("SymServer") is None


def test_recent_frames_expire_rotate_and_clear_across_processes(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    shared = SharedState()
    first, second = RecentFrames(4, 60, shared), RecentFrames(4, 60, shared)
    info = FrameInfo("f", 1)
    first.put_many({("a", 1): ("a.dll", info), ("a", 2): ("a.dll", None)})
    assert first.get_many([("a", 1), ("a", 2), ("a", 3)]) == {("a", 1): ("a.dll", info), ("a", 2): ("a.dll", None)}
    clock[0] += 61
    assert first.get_many([("a", 1)]) == {}  # expired
    # Four entries make two generations of two: the oldest untouched ones go first.
    first.put_many({("b", i): ("b", None) for i in range(2)})
    first.put_many({("c", i): ("c", None) for i in range(2)})
    assert len(first.get_many([("b", 0), ("b", 1), ("c", 0), ("c", 1)])) == 4
    first.put_many({("d", i): ("d", None) for i in range(2)})
    first.put_many({("e", i): ("e", None) for i in range(2)})
    assert first.get_many([("e", 0), ("e", 1)]) and len(first) <= 4
    # A discard in one process clears the others' caches too.
    second.put_many({("x", 1): ("x", None), ("y", 1): ("y", None)})
    first.discard(("x", 1))
    assert second.get_many([("x", 1), ("y", 1)]) == {}
    assert RecentFrames(0, 60).get_many([("a", 1)]) == {}
    disabled = RecentFrames(100, 0)
    disabled.put_many({("a", 1): ("a", None)})
    assert disabled.get_many([("a", 1)]) == {} and len(disabled) == 0


def test_process_counts_default_to_one_per_core(make_trio, symbol_store, tmp_path):
    """``processes`` and ``processWorkers`` left out (or 0) are one per core; explicit
    numbers are kept, and a negative count is a config error."""
    cores = len(os.sched_getaffinity(0))
    trio = make_trio([symbol_store.url("plain")], {"SymServer": {"processes": 0}})
    # the workers are started with the DiskCache (answers may add extra ones later)
    assert len(parsing_workers(trio.pid("DiskCache"))) == cores
    assert trio.post(sample_request()).json()["symbolicatedStacks"][0][0].endswith("(in xul.pdb)")
    servers = psutil.Process(trio.pid("SymServer")).children()
    assert len(servers) == (cores if cores > 1 else 0)  # one process serves alone, unforked
    for section, key in (("SymServer", "processes"), ("DiskCache", "processWorkers")):
        result = run_quickstart(tmp_path / "pids", "--configJSON", json.dumps({section: {key: -1}}),
                                cwd=tmp_path)
        assert result.returncode == 2
        assert f"{section}.{key}" in result.stdout + result.stderr
