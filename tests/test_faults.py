"""Faults with the real trio: kills mid-write, restarts under load, graceful drain, full disks."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import psutil
import pytest
import requests

from harness import REPO, SAMPLE_RESPONSE, free_port, sample_request, wait_for

XUL = ["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"]
BIG_ID = "B16B16B16B16B16B16B16B16B16B16B11"


@pytest.fixture(scope="module")
def big_module(store_root):
    """A generated module large enough that processing takes a moment."""
    sys.path.insert(0, str(REPO / "bench"))
    from gen_symfile import generate

    path = store_root / "big.pdb" / BIG_ID / "big.sym"
    path.parent.mkdir(parents=True, exist_ok=True)
    stats = generate(path, size_mb=40, seed=3, debug_file="big.pdb", debug_id=BIG_ID, code_file="big.dll")
    return stats


def big_request(offset: int = 0x1010) -> dict:
    return {"version": 4, "memoryMap": [["big.pdb", BIG_ID]], "stacks": [[[0, offset]]]}


def test_diskcache_killed_while_writing_a_table_leaves_no_partial_file(make_trio, symbol_store, big_module):
    symbol_store.reset()
    # the table written before the answer (answered first, the module would be answered
    # from its .sym before the table is written)
    trio = make_trio([symbol_store.url("plain")], {"DiskCache": {"answerBeforeTable": False}})
    tmp = trio.cache_dir / ".tmp"

    def ask() -> None:
        with pytest.raises(requests.ConnectionError):  # its DiskCache dies under it
            requests.post(trio.url("DiskCache"), json=big_request(), timeout=60)

    asker = threading.Thread(target=ask)
    asker.start()
    assert wait_for(lambda: any(p.name.endswith(".table") for p in tmp.iterdir()), 30, 0.01), "processing never started"
    diskcache = psutil.Process(trio.pid("DiskCache"))
    workers = diskcache.children(recursive=True)
    diskcache.kill()
    asker.join()
    assert trio.cache_files() == []  # no partial table where a reader could see it
    assert wait_for(lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers), 5, 0.01)
    trio.start()
    assert list(tmp.iterdir()) == []  # the leftovers were cleared at start
    answer = trio.post(big_request(), server="DiskCache").json()
    assert answer["knownModules"] == [True]
    assert symbol_store.count(f"big.pdb/{BIG_ID}/big.sym") == 2  # fetched again on demand
    assert len(trio.cache_files()) == 1


@contextmanager
def sample_load(trio, clients: int) -> Iterator[list[tuple[float, str]]]:
    """Clients sending the sample request in a loop until the block ends; yields their
    outcomes as (moment, "ok" | "503" | anything else seen)."""
    stop = threading.Event()
    outcomes: list[tuple[float, str]] = []

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                response = session.post(trio.url(), json=sample_request(), timeout=30)
                if response.text == SAMPLE_RESPONSE:
                    kind = "ok"
                elif response.status_code == 503 and "DiskCache" in response.json()["error"]:
                    kind = "503"
                else:
                    kind = f"{response.status_code} {response.text}"
                outcomes.append((time.monotonic(), kind))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield outcomes
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def test_memcached_restarted_under_load_fails_no_request(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")])
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE
    with sample_load(trio, clients=4) as outcomes:
        time.sleep(0.5)
        trio.kill("memcached")
        time.sleep(0.5)
        trio.restart_dead()
        time.sleep(1.5)
    assert len(outcomes) > 50
    assert [kind for _, kind in outcomes if kind != "ok"] == []


def test_diskcache_restarted_under_load_gives_503_then_recovers(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")], memcached=False)
    symserver = trio.pid("SymServer")
    with sample_load(trio, clients=3) as outcomes:
        time.sleep(0.5)
        trio.kill("DiskCache")
        time.sleep(0.7)
        trio.restart_dead()
        restarted = time.monotonic()
        time.sleep(1.5)
    kinds = {kind for _, kind in outcomes}
    assert kinds <= {"ok", "503"}, kinds - {"ok", "503"}
    assert "503" in kinds  # the gap was seen
    assert all(kind == "ok" for moment, kind in outcomes if moment > restarted + 0.2)
    assert trio.pid("SymServer") == symserver  # recovered without restarting SymServer


@pytest.mark.parametrize("program", ["symserver", "diskcache"])
def test_sigterm_lets_requests_in_flight_finish_then_exits_0(tmp_path, symbol_store, program):
    """The request in flight is a cold fetch from a slow store, so it spans the SIGTERM."""
    symbol_store.reset()
    diskcache_port, symserver_port = free_port(), free_port()
    diskcache = subprocess.Popen(
        [sys.executable, "-m", "diskcache", "--port", str(diskcache_port), "--cachePath", str(tmp_path / "cache"),
         "--symbolURLs", symbol_store.url("slow/1500"), "--localSymbolDirs", "--quiet",
         "--logPath", str(tmp_path / "diskcache.log")], cwd=REPO)
    processes = [diskcache]
    target = diskcache
    port = diskcache_port
    if program == "symserver":
        symserver = subprocess.Popen(
            [sys.executable, "-m", "symserver", "--port", str(symserver_port), "--memcachedServers",
             "--DiskCacheServer", f"127.0.0.1:{diskcache_port}", "--quiet",
             "--logPath", str(tmp_path / "symserver.log")], cwd=REPO)
        processes.append(symserver)
        target, port = symserver, symserver_port
    try:
        for each in (diskcache_port, port):
            assert wait_for(lambda: _answers(each), 20, 0.1)
        result: dict = {}
        asker = threading.Thread(target=lambda: result.update(
            response=requests.post(f"http://127.0.0.1:{port}/", json=sample_request(), timeout=30)))
        asker.start()
        time.sleep(0.5)
        target.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        with pytest.raises(requests.ConnectionError):  # no new connections while draining
            requests.post(f"http://127.0.0.1:{port}/", json=sample_request(), timeout=5)
        asker.join()
        assert result["response"].text == SAMPLE_RESPONSE
        assert target.wait(20) == 0
    finally:
        for process in processes:
            process.kill()
            process.wait()


def _answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/__lbheartbeat__", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def test_full_disk_is_logged_and_answers_go_on(make_trio, symbol_store, big_module, small_filesystem):
    trio = make_trio([symbol_store.url("plain")],
                     {"DiskCache": {"cachePath": str(small_filesystem / "cache")}})
    trio.cache_dir = small_filesystem / "cache"
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE
    for table in ("44E4EC8C2F41492B9369D6B9A059577C2.xul.pdb.symtab", "D74F79EB1F8D4A45ABCD2F476CCABACC2.wntdll.pdb.symtab"):
        assert trio.wait_for_file(table)  # (built after the answer)
    before = sorted(trio.cache_files())
    response = trio.post(big_request(), server="DiskCache")  # 40 MB: does not fit
    assert response.status_code == 200 and response.json()["knownModules"] == [False]
    assert sorted(trio.cache_files()) == before  # nothing half-written, nothing lost
    assert list((trio.cache_dir / ".tmp").iterdir()) == []
    log = (trio.workdir / "DiskCache.log").read_text()
    assert "No space left on device" in log
    assert trio.post(sample_request(), server="DiskCache").text == SAMPLE_RESPONSE


def test_read_only_cache_is_logged_and_answers_go_on(make_trio, symbol_store, small_filesystem):
    trio = make_trio([symbol_store.url("plain")],
                     {"DiskCache": {"cachePath": str(small_filesystem / "cache")}})
    trio.cache_dir = small_filesystem / "cache"
    body = {"version": 4, "memoryMap": [XUL], "stacks": [[[0, 11723767]]]}
    assert trio.post(body, server="DiskCache").json()["knownModules"] == [True]
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    try:
        ntdll = {"version": 4, "memoryMap": [["wntdll.pdb", "D74F79EB1F8D4A45ABCD2F476CCABACC2"]],
                 "stacks": [[[0, 65802]]]}
        response = trio.post(ntdll, server="DiskCache")
        assert response.status_code == 200 and response.json()["knownModules"] == [False]
        assert trio.post(body, server="DiskCache").json()["symbolicatedStacks"] == [
            ["XREMain::XRE_mainRun() (in xul.pdb)"]]  # what exists is still served
        assert trio.session.get(trio.url("DiskCache", "/__heartbeat__"), timeout=10).status_code == 503
        assert "Read-only file system" in (trio.workdir / "DiskCache.log").read_text()
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_filesystem)], check=True)
    assert trio.post(body, server="DiskCache").json()["knownModules"] == [True]


def test_no_stray_processes_after_stop(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")])
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE
    diskcache = psutil.Process(trio.pid("DiskCache"))
    family = [diskcache, *diskcache.children(recursive=True)]
    trio.quickstart("--stop")
    assert wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family), 5, 0.01)
