"""The v3/v4 protocol and request validation, against a real trio."""

from __future__ import annotations

import json

import pytest

from harness import SAMPLE_RESPONSE, sample_request

XUL = ["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"]
NTDLL = ["wntdll.pdb", "D74F79EB1F8D4A45ABCD2F476CCABACC2"]


def test_sample_request_gives_the_sample_response_byte_for_byte(trio):
    response = trio.post(sample_request())
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.text == SAMPLE_RESPONSE


def test_sample_request_on_the_v4_path_without_version(trio):
    body = sample_request()
    del body["version"]
    response = trio.post(body, path="/symbolicate/v4")
    assert response.status_code == 200
    assert response.text == SAMPLE_RESPONSE


def test_version_3_answers_only_the_stacks(trio):
    response = trio.post(sample_request(version=3))
    assert response.json() == [["XREMain::XRE_mainRun() (in xul.pdb)",
                                "KiUserCallbackDispatcher (in wntdll.pdb)"]]


def test_frames_outside_modules_and_unknown_offsets(trio):
    body = {"stacks": [[[-1, 0x1234], [0, 0x10], [1, 65802]], [[-1, 0]]],
            "memoryMap": [XUL, NTDLL], "version": 4}
    response = trio.post(body)
    assert response.status_code == 200
    data = response.json()
    assert data["symbolicatedStacks"] == [
        ["0x1234", "0x10 (in xul.pdb)", "KiUserCallbackDispatcher (in wntdll.pdb)"], ["0x0"]]
    assert data["knownModules"] == [True, True]


def test_unknown_module_is_reported_unknown_and_the_rest_answered(trio):
    missing = ["nothere.pdb", "00000000000000000000000000000000A"]
    body = {"stacks": [[[0, 11723767], [1, 0x500]]], "memoryMap": [XUL, missing], "version": 4}
    response = trio.post(body)
    assert response.status_code == 200
    assert response.json() == {
        "symbolicatedStacks": [["XREMain::XRE_mainRun() (in xul.pdb)", "0x500 (in nothere.pdb)"]],
        "knownModules": [True, False]}


def test_module_without_frames_is_not_known(trio):
    body = {"stacks": [[[0, 11723767]]], "memoryMap": [XUL, NTDLL], "version": 4}
    assert trio.post(body).json()["knownModules"] == [True, False]


def test_lower_case_debug_id_finds_the_same_symbols(trio):
    body = {"stacks": [[[0, 11723767]]], "memoryMap": [["xul.pdb", XUL[1].lower()]], "version": 4}
    assert trio.post(body).json()["symbolicatedStacks"] == [["XREMain::XRE_mainRun() (in xul.pdb)"]]


INVALID_BODIES = [
    ("not json", b"{stacks", "not valid JSON"),
    ("not utf-8", b'{"stacks": "\xff\xfe"}', "UTF-8"),
    ("NaN", b'{"stacks": [[[0, NaN]]], "memoryMap": [], "version": 4}', "NaN"),
    ("Infinity", b'{"stacks": [[[0, Infinity]]], "memoryMap": [], "version": 4}', "Infinity"),
    ("-Infinity", b'{"stacks": [[[0, -Infinity]]], "memoryMap": [], "version": 4}', "Infinity"),
    ("a list", b"[1, 2]", "expected a JSON object"),
    ("no version", json.dumps({"stacks": [], "memoryMap": []}).encode(), "version"),
    ("version 5 on /", json.dumps({"stacks": [], "memoryMap": [], "version": 5}).encode(), "version"),
    ("version as string", json.dumps({"stacks": [], "memoryMap": [], "version": "4"}).encode(), "version"),
    ("no stacks", json.dumps({"memoryMap": [], "version": 4}).encode(), "stacks"),
    ("stacks not a list", json.dumps({"stacks": {}, "memoryMap": [], "version": 4}).encode(), "stacks"),
    ("stack not a list", json.dumps({"stacks": [5], "memoryMap": [], "version": 4}).encode(), "stacks[0]"),
    ("frame too short", json.dumps({"stacks": [[[0]]], "memoryMap": [XUL], "version": 4}).encode(),
     "stacks[0][0]"),
    ("index out of range", json.dumps({"stacks": [[[1, 5]]], "memoryMap": [XUL], "version": 4}).encode(),
     "stacks[0][0]: module index 1"),
    ("index below -1", json.dumps({"stacks": [[[-2, 5]]], "memoryMap": [XUL], "version": 4}).encode(),
     "module index -2"),
    ("index is a bool", json.dumps({"stacks": [[[True, 5]]], "memoryMap": [XUL], "version": 4}).encode(),
     "module index True"),
    ("index is a float", json.dumps({"stacks": [[[0.0, 5]]], "memoryMap": [XUL], "version": 4}).encode(),
     "module index 0.0"),
    ("negative offset", json.dumps({"stacks": [[[0, -1]]], "memoryMap": [XUL], "version": 4}).encode(),
     "offset -1"),
    ("offset too big", json.dumps({"stacks": [[[0, 2 ** 64]]], "memoryMap": [XUL], "version": 4}).encode(),
     "offset"),
    ("offset is a float", json.dumps({"stacks": [[[0, 12.5]]], "memoryMap": [XUL], "version": 4}).encode(),
     "offset 12.5"),
    ("offset is a bool", json.dumps({"stacks": [[[0, False]]], "memoryMap": [XUL], "version": 4}).encode(),
     "offset False"),
    ("offset as string", json.dumps({"stacks": [[[0, "12"]]], "memoryMap": [XUL], "version": 4}).encode(),
     "offset"),
    ("memoryMap not a list", json.dumps({"stacks": [], "memoryMap": "x", "version": 4}).encode(), "memoryMap"),
    ("memoryMap entry short", json.dumps({"stacks": [], "memoryMap": [["xul.pdb"]], "version": 4}).encode(),
     "memoryMap[0]"),
    ("debug file with slash", json.dumps({"stacks": [], "memoryMap": [["a/xul.pdb", XUL[1]]], "version": 4}).encode(),
     "memoryMap[0]: invalid debug file name"),
    ("debug file with backslash", json.dumps({"stacks": [], "memoryMap": [["a\\xul.pdb", XUL[1]]],
                                               "version": 4}).encode(), "memoryMap[0]"),
    ("debug file ..", json.dumps({"stacks": [], "memoryMap": [["..", XUL[1]]], "version": 4}).encode(),
     "memoryMap[0]"),
    ("debug file with NUL", json.dumps({"stacks": [], "memoryMap": [["x\u0000.pdb", XUL[1]]], "version": 4}).encode(),
     "memoryMap[0]"),
    ("debug file not a string", json.dumps({"stacks": [], "memoryMap": [[5, XUL[1]]], "version": 4}).encode(),
     "memoryMap[0]"),
    ("debug id not hex", json.dumps({"stacks": [], "memoryMap": [["xul.pdb", "XYZ"]], "version": 4}).encode(),
     "memoryMap[0]: invalid debug id"),
    ("debug id with dots", json.dumps({"stacks": [], "memoryMap": [["xul.pdb", "../../etc"]], "version": 4}).encode(),
     "invalid debug id"),
    ("debug id empty", json.dumps({"stacks": [], "memoryMap": [["xul.pdb", ""]], "version": 4}).encode(),
     "invalid debug id"),
    ("deeply nested", b"[" * 100000 + b"]" * 100000, "nested too deeply"),
]


@pytest.mark.parametrize("server", ["SymServer", "DiskCache"])
@pytest.mark.parametrize("name,body,message", INVALID_BODIES, ids=[case[0] for case in INVALID_BODIES])
def test_invalid_requests_get_400_with_a_located_json_error(trio, server, name, body, message):
    response = trio.post(None, raw=body, server=server)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert message in error


@pytest.mark.parametrize("server", ["SymServer", "DiskCache"])
def test_servers_still_answer_after_invalid_requests(trio, server):
    for _, body, _ in INVALID_BODIES:
        trio.post(None, raw=body, server=server)
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE


@pytest.mark.parametrize("server", ["SymServer", "DiskCache"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_on_root_are_405_json(trio, server, method):
    response = trio.session.request(method, trio.url(server, "/"), timeout=10)
    assert response.status_code == 405
    assert "error" in response.json()


def test_unknown_path_is_404_json(trio):
    response = trio.session.post(trio.url("SymServer", "/nope"), data=b"{}", timeout=10)
    assert response.status_code == 404
    assert "/nope" in response.json()["error"]


def test_request_id_is_echoed_and_logged(trio):
    response = trio.post(sample_request(), headers={"X-Request-Id": "test-id-123"})
    assert response.headers["X-Request-Id"] == "test-id-123"
    assert trio.wait_for_log("SymServer.log", "request id=test-id-123 POST / 200")
    # passed on to the DiskCache too, when it was asked
    body = {"stacks": [[[0, 0x777]]], "memoryMap": [XUL], "version": 4}
    trio.post(body, headers={"X-Request-Id": "test-id-456"})
    assert trio.wait_for_log("DiskCache.log", "request id=test-id-456 POST /symbolicate/v5 200")


def test_bad_request_id_is_replaced(trio):
    response = trio.post(sample_request(), headers={"X-Request-Id": "bad id; x"})
    assert response.headers["X-Request-Id"] != "bad id"
    assert len(response.headers["X-Request-Id"]) == 16


@pytest.mark.parametrize("server", ["SymServer", "DiskCache"])
def test_oversized_bodies_get_413_declared_or_streamed(trio, server):
    declared = trio.post(None, raw=b" " * (32 * 1024 * 1024 + 1), server=server)
    assert declared.status_code == 413
    assert "33554432" in declared.json()["error"]

    def chunked():
        for _ in range(33):
            yield b" " * (1024 * 1024)

    streamed = trio.session.post(trio.url(server), data=chunked(), timeout=60)
    assert streamed.status_code == 413
    assert trio.post(sample_request(), server=server).status_code == 200


def test_frame_and_module_limits_name_the_limit(trio):
    frames = {"version": 4, "memoryMap": [XUL], "stacks": [[[0, 1]] * 600000, [[0, 2]] * 400001]}
    response = trio.post(frames)
    assert response.status_code == 400
    assert "1000001 frames, more than the limit of 1000000" in response.json()["error"]
    modules = {"version": 4, "memoryMap": [XUL] * 5001, "stacks": []}
    response = trio.post(modules)
    assert response.status_code == 400
    assert "5001 modules, more than the limit of 5000" in response.json()["error"]
    v5 = {"jobs": [{"memoryMap": [XUL], "stacks": [[[0, 1]] * 500001]}] * 2}
    response = trio.post(v5, path="/symbolicate/v5")
    assert response.status_code == 400
    assert "jobs[1].stacks: 1000002 frames" in response.json()["error"]


def test_the_largest_real_requests_are_within_the_default_limits(trio):
    # the Firefox Profiler: 10 jobs of one module, 10,000 addresses in all
    profiler = {"jobs": [{"memoryMap": [XUL], "stacks": [[[0, 11723767 + i] for i in range(1000)]]}] * 10}
    assert trio.post(profiler, path="/symbolicate/v5").status_code == 200
    # a crash report: a few hundred modules
    crash = {"version": 4, "memoryMap": [[f"lib{i}.so", f"{i:032X}0"] for i in range(400)],
             "stacks": [[[i, 0x1000 + i] for i in range(400)]]}
    assert trio.post(crash).status_code == 200


@pytest.mark.parametrize("server", ["SymServer", "DiskCache"])
def test_early_answers_close_the_connection_so_reuse_never_meets_a_reset(trio, server):
    """A 404 or 413 sent before the body is read ends the connection; the client must know."""
    for _ in range(20):
        not_found = trio.session.post(trio.url(server, "/no/such/path"), data=b"{}", timeout=10)
        assert not_found.status_code == 404 and not_found.headers.get("Connection") == "close"
        assert trio.post(sample_request(), server=server).status_code == 200  # same session, no reset
    too_big = trio.post(None, raw=b" " * (32 * 1024 * 1024 + 1), server=server)
    assert too_big.status_code == 413 and too_big.headers.get("Connection") == "close"
    assert trio.post(sample_request(), server=server).status_code == 200
    bad = trio.post(None, raw=b"{bad", server=server)  # body read: the connection stays usable
    assert bad.status_code == 400 and bad.headers.get("Connection") != "close"


@pytest.mark.parametrize("server", ["SymServer", "DiskCache"])
def test_a_module_listed_twice_is_symbolicated_under_both_indexes(trio, server):
    """Both servers cache lookups per module and offset; two memoryMap entries for one module
    must still each get their frames, cold and warm."""
    xul = ["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"]
    body = {"version": 4, "memoryMap": [xul, ["wntdll.pdb", "D74F79EB1F8D4A45ABCD2F476CCABACC2"], xul],
            "stacks": [[[0, 11723767], [2, 11723767], [1, 65802], [2, 16]]]}
    for _ in range(2):
        answer = trio.post(body, server=server).json()
        assert answer == {"symbolicatedStacks": [["XREMain::XRE_mainRun() (in xul.pdb)",
                                                  "XREMain::XRE_mainRun() (in xul.pdb)",
                                                  "KiUserCallbackDispatcher (in wntdll.pdb)",
                                                  "0x10 (in xul.pdb)"]],
                          "knownModules": [True, True, True]}
