"""Parts of the trio down, and client input aimed at the filesystem."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from harness import SAMPLE_RESPONSE, sample_request


def test_works_without_memcached_configured(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")], memcached=False)
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE


def test_memcached_down_never_fails_a_request(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")])
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE
    trio.kill("memcached")
    time.sleep(0.2)
    for _ in range(3):
        started = time.monotonic()
        assert trio.post(sample_request()).text == SAMPLE_RESPONSE
        assert time.monotonic() - started < 3


def test_memcached_back_after_a_restart_is_used_again(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")])
    trio.post({"debug": True, "action": "outputCacheHits", "enabled": True})
    trio.kill("memcached")
    time.sleep(0.2)
    assert trio.post(sample_request()).json()["cacheHits"] == [[False, False]]
    symserver = trio.pid("SymServer")
    trio.restart_dead()
    assert trio.pid("SymServer") == symserver
    time.sleep(1.5)  # the client retries a dead server after a second
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if trio.post(sample_request()).json()["cacheHits"] == [[True, True]]:
            break
        time.sleep(0.3)
    else:
        pytest.fail("SymServer never used memcached again after it came back")


def test_diskcache_down_gives_503_json_and_recovers(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")], memcached=False)
    trio.kill("DiskCache", signal.SIGTERM)
    time.sleep(0.5)
    response = trio.post(sample_request())
    assert response.status_code == 503
    assert "DiskCache" in response.json()["error"]
    trio.start()
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE


def test_requests_answered_from_memcached_need_no_diskcache(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")])
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE
    trio.kill("DiskCache", signal.SIGTERM)
    time.sleep(0.5)
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE


TRAVERSAL_NAMES = ["..", "../xul.pdb", "../../etc/passwd", "/etc/passwd", "a\\..\\b", "xul.pdb\u0000",
                   "C:\\Windows\\x.pdb", "sub/xul.pdb", "\n", "x" * 5000]


@pytest.mark.parametrize("name", TRAVERSAL_NAMES, ids=range(len(TRAVERSAL_NAMES)))
def test_path_like_names_are_refused_everywhere(make_trio, symbol_store, tmp_path, name):
    trio = make_trio([symbol_store.url("plain")], {"DiskCache": {"localSymbolDirs": [str(tmp_path)]}})
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    module = {"libName": name, "breakpadId": "44E4EC8C2F41492B9369D6B9A059577C2"}
    body = {"stacks": [[[0, 1]]], "memoryMap": [[name, module["breakpadId"]]], "version": 4}
    for server in ("SymServer", "DiskCache"):
        assert trio.post(body, server=server).status_code == 400
    for action in ("cacheAddRaw", "cacheGet", "cacheEvict", "cacheExists"):
        response = trio.post(dict(module, debug=True, action=action), server="DiskCache")
        assert response.status_code == 400, action
    response = trio.post({"debug": True, "action": "cacheEvict", "offset": 1, **module})
    assert response.status_code == 400
    after = sorted(str(p) for p in tmp_path.rglob("*"))
    assert before == after
    assert trio.cache_files() == []


def test_odd_but_valid_names_stay_inside_the_cache(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")])
    for name in ("%2e%2e", "..%2fetc", "name with spaces.pdb", "ünïcödé.pdb", "-rf", ".hidden"):
        module = {"libName": name, "breakpadId": "44E4EC8C2F41492B9369D6B9A059577C2"}
        assert trio.post(dict(module, debug=True, action="cacheGet"), server="DiskCache").json() == {"path": None}
        body = {"stacks": [[[0, 1]]], "memoryMap": [[name, module["breakpadId"]]], "version": 4}
        assert trio.post(body).json()["knownModules"] == [False]
    for path in trio.workdir.rglob("*"):
        assert path.resolve().is_relative_to(trio.workdir.resolve())
    assert Path("/etc/passwd").exists()


def test_control_characters_never_reach_the_logs(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")])
    for name in ("evil\x1b[31mred.pdb", "two\nlines.pdb", "sep\u2028arator.pdb"):
        body = {"stacks": [[[0, 1]]], "memoryMap": [[name, "44E4EC8C2F41492B9369D6B9A059577C2"]], "version": 4}
        assert trio.post(body).status_code == 400
    trio.session.post(trio.url("SymServer", "/\x1b[2J\nfake log line"), data=b"{}", timeout=10)
    assert trio.wait_for_log("SymServer.log", "404")
    for log in ("SymServer.log", "DiskCache.log"):
        text = (trio.workdir / log).read_text()
        assert "\x1b" not in text and "fake log line\n" not in text.replace("\\n", "")
