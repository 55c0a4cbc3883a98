"""The debug protocol of both servers, and that only loopback peers may use it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import requests

from harness import sample_request
from netns import NoNamespace, peer_host

XUL = ["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"]


def debug(trio, server: str, action: str, **fields) -> requests.Response:
    return trio.post(dict({"debug": True, "action": action}, **fields), server=server)


def test_output_cache_hits_and_cache_evict(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")])
    assert debug(trio, "SymServer", "outputCacheHits", enabled=True).json() == {"success": True}
    first = trio.post(sample_request()).json()
    assert first["cacheHits"] == [[False, False]]
    second = trio.post(sample_request()).json()
    assert second["cacheHits"] == [[True, True]]
    assert second["symbolicatedStacks"] == first["symbolicatedStacks"]
    evicted = debug(trio, "SymServer", "cacheEvict", libName=XUL[0], breakpadId=XUL[1], offset="11723767")
    assert evicted.json() == {"success": True}
    assert trio.post(sample_request()).json()["cacheHits"] == [[False, True]]
    # offsets as integers and hex strings name the same entry
    debug(trio, "SymServer", "cacheEvict", libName=XUL[0], breakpadId=XUL[1], offset=0xB2E3F7)
    assert trio.post(sample_request()).json()["cacheHits"] == [[False, True]]
    debug(trio, "SymServer", "cacheEvict", libName=XUL[0], breakpadId=XUL[1], offset="0xb2e3f7")
    assert trio.post(sample_request()).json()["cacheHits"] == [[False, True]]
    assert debug(trio, "SymServer", "outputCacheHits", enabled=False).json() == {"success": True}
    assert "cacheHits" not in trio.post(sample_request()).json()


def test_frames_outside_modules_are_never_cache_hits(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")])
    debug(trio, "SymServer", "outputCacheHits", enabled=True)
    body = {"stacks": [[[-1, 5], [0, 11723767]]], "memoryMap": [XUL], "version": 4}
    trio.post(body)
    assert trio.post(body).json()["cacheHits"] == [[False, True]]


def test_diskcache_debug_actions(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")])
    module = {"libName": XUL[0], "breakpadId": XUL[1]}
    assert debug(trio, "DiskCache", "cacheExists", **module).json() == {"exists": False}
    path = debug(trio, "DiskCache", "cacheGet", **module).json()["path"]
    assert Path(path).parent == trio.cache_dir and Path(path).is_file()
    assert debug(trio, "DiskCache", "cacheExists", **module).json() == {"exists": True}
    assert debug(trio, "DiskCache", "cacheGet", **module).json()["path"] == path
    assert debug(trio, "DiskCache", "cacheEvict", **module).json() == {"success": True}
    assert not Path(path).exists()
    assert debug(trio, "DiskCache", "cacheExists", **module).json() == {"exists": False}
    assert debug(trio, "DiskCache", "cacheEvict", **module).json() == {"success": True}
    missing = {"libName": "nothere.pdb", "breakpadId": "0000000000000000000000000000000A"}
    assert debug(trio, "DiskCache", "cacheGet", **missing).json() == {"path": None}
    assert debug(trio, "DiskCache", "cacheAddRaw", **missing).json() == {"path": None}


@pytest.mark.parametrize("server,action,fields,message", [
    ("SymServer", "outputCacheHits", {}, "enabled"),
    ("SymServer", "outputCacheHits", {"enabled": "yes"}, "enabled"),
    ("SymServer", "cacheEvict", {"libName": "xul.pdb", "breakpadId": XUL[1]}, "offset"),
    ("SymServer", "cacheEvict", {"libName": "xul.pdb", "breakpadId": XUL[1], "offset": "12abc"}, "offset"),
    ("SymServer", "cacheEvict", {"libName": "../xul.pdb", "breakpadId": XUL[1], "offset": 1}, "libName"),
    ("SymServer", "noSuchAction", {}, "unknown SymServer debug action"),
    ("DiskCache", "cacheGet", {"breakpadId": XUL[1]}, "libName"),
    ("DiskCache", "cacheGet", {"libName": "xul.pdb", "breakpadId": "not-hex"}, "debug id"),
    ("DiskCache", "noSuchAction", {"libName": "xul.pdb", "breakpadId": XUL[1]}, "unknown DiskCache debug action"),
])
def test_invalid_debug_requests_are_400(trio, server, action, fields, message):
    response = debug(trio, server, action, **fields)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_debug_request_without_action_is_400(trio):
    response = trio.post({"debug": True}, server="DiskCache")
    assert response.status_code == 400
    assert "action" in response.json()["error"]


#: Run inside the test host: POST each body of argv[2] (a JSON list of [headers, body]) to
#: argv[1] and print the statuses and answers as JSON.
_REMOTE_CLIENT = """
import json, sys, urllib.request, urllib.error
answers = []
for headers, body in json.loads(sys.argv[2]):
    request = urllib.request.Request(sys.argv[1], data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answers.append([response.status, json.loads(response.read())])
    except urllib.error.HTTPError as error:
        answers.append([error.code, json.loads(error.read())])
print(json.dumps(answers))
"""


@pytest.mark.parametrize("server", ["SymServer", "DiskCache"])
def test_debug_protocol_refused_from_non_loopback_peers(make_trio, symbol_store, server):
    """From a test host of our own (a network namespace, never this machine's interfaces)."""
    try:
        with peer_host() as host:
            ours, _ = host.addresses[0]
            trio = make_trio([symbol_store.url("plain")], {"DiskCache": {"listenAddress": ""}})
            port = trio.symserver_port if server == "SymServer" else trio.diskcache_port
            debug_body = json.dumps({"debug": True, "action": "cacheExists", "libName": XUL[0],
                                     "breakpadId": XUL[1], "enabled": True, "offset": 1})
            json_type = {"Content-Type": "application/json"}
            spoofed = dict(json_type, **{"X-Forwarded-For": "127.0.0.1", "X-Real-Ip": "127.0.0.1"})
            bodies = [[json_type, debug_body], [spoofed, debug_body], [json_type, json.dumps(sample_request())]]
            done = host.run(sys.executable, "-c", _REMOTE_CLIENT, f"http://{ours}:{port}/", json.dumps(bodies))
            assert done.returncode == 0, done.stderr
            (status1, answer1), (status2, answer2), (status3, answer3) = json.loads(done.stdout)
    except NoNamespace as error:
        pytest.skip(f"no test host: {error}")
    assert (status1, status2) == (403, 403)
    assert "local machine" in answer1["error"] and "local machine" in answer2["error"]
    # a normal request from the same peer is answered
    assert status3 == 200 and answer3["knownModules"] == [True, True]


def test_debug_protocol_can_be_disabled(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")], {"DiskCache": {"debugProtocol": False},
                                                   "SymServer": {"debugProtocol": False}})
    for server, action in (("SymServer", "outputCacheHits"), ("DiskCache", "cacheExists")):
        response = debug(trio, server, action, enabled=True, libName=XUL[0], breakpadId=XUL[1])
        assert response.status_code == 403
        assert "disabled" in response.json()["error"]
    assert trio.post(sample_request()).status_code == 200
