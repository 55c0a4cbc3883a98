"""What browsers and other clients see at the HTTP level: CORS preflights on SymServer (and
none at all on the DiskCache), gzip-compressed answers (client to SymServer, SymServer to
the DiskCache), and a debug protocol that no web page can drive."""

from __future__ import annotations

import gzip
import json
import random
import sys
import time

import pytest
import requests

from harness import REPO
from netns import NoNamespace, peer_host
from relay import Relay

XUL = ["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"]
NTDLL = ["wntdll.pdb", "D74F79EB1F8D4A45ABCD2F476CCABACC2"]
SAFE_REQUEST_HEADERS = "Content-Type, Debug, X-Request-Id, User-Agent"


def raw_post(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    """POST whose answer is kept as sent (``response.wire`` holds the undecoded body)."""
    response = requests.post(url, data=body, headers=headers, timeout=120, stream=True)
    response.wire = response.raw.read(decode_content=False)
    return response


def decoded(response: requests.Response) -> object:
    body = response.wire
    if response.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return json.loads(body)


# -- CORS preflights --------------------------------------------------------------------------

@pytest.mark.parametrize("asked", ["user-agent", "user-agent,debug", "Content-Type, X-Custom-Thing",
                                   "x-a,x-b ,\tx-c"])
def test_a_preflight_allows_the_headers_asked_for(trio, asked):
    response = requests.options(trio.url("SymServer", "/symbolicate/v5"), timeout=30, headers={
        "Origin": "http://profiler.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": asked})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Headers"] == asked
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Max-Age"] == "86400"
    assert "Access-Control-Request-Headers" in response.headers["Vary"]


@pytest.mark.parametrize("asked", [None, "", "user agent", "a,,b", "x-a;y", "x-\u00e9", "(x)", ",x",
                                   "x" * 2001, ",".join(["x-header"] * 300)])
def test_a_preflight_with_no_or_a_malformed_list_gets_the_safe_list(trio, asked):
    headers = {"Origin": "http://profiler.example", "Access-Control-Request-Method": "POST"}
    if asked is not None:
        headers["Access-Control-Request-Headers"] = asked.encode("utf-8")
    response = requests.options(trio.url("SymServer", "/symbolicate/v5"), headers=headers, timeout=30)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Headers"] == SAFE_REQUEST_HEADERS


def test_a_private_network_preflight_is_allowed(trio):
    """Chromium's Private Network Access preflight (a public page calling a server on the
    user's machine or network) asks for one more header; other preflights do not get it."""
    url = trio.url("SymServer", "/symbolicate/v5")
    base = {"Origin": "https://profiler.example", "Access-Control-Request-Method": "POST"}
    asked = requests.options(url, headers=dict(base, **{"Access-Control-Request-Private-Network": "true"}),
                             timeout=30)
    assert asked.status_code == 204
    assert asked.headers["Access-Control-Allow-Private-Network"] == "true"
    assert "Access-Control-Allow-Private-Network" not in requests.options(url, headers=base, timeout=30).headers


def test_the_diskcache_sends_no_cors_headers(trio):
    """Only SymServer is a browser API: nothing a page sends to the DiskCache is readable."""
    answers = [
        requests.options(trio.url("DiskCache", "/symbolicate/v5"), timeout=30, headers={
            "Origin": "http://profiler.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"}),
        requests.options(trio.url("DiskCache", "/"), timeout=30),
        requests.post(trio.url("DiskCache", "/symbolicate/v5"), timeout=60, headers={"Origin": "http://x.example"},
                      data=json.dumps({"memoryMap": [XUL], "stacks": [[[0, 11723767]]]})),
        requests.post(trio.url("DiskCache", "/"), data="not json", timeout=30),
        requests.get(trio.url("DiskCache", "/__heartbeat__"), timeout=30),
        requests.get(trio.url("DiskCache", "/nothing-here"), timeout=30),
    ]
    assert [answer.status_code for answer in answers] == [405, 405, 200, 400, 200, 404]
    assert "CORS" in answers[0].json()["error"]
    for answer in answers:
        assert not [name for name in answer.headers if name.lower().startswith("access-control-")], answer.headers
    # SymServer, the browser API, still has them on the same requests
    assert requests.options(trio.url("SymServer", "/symbolicate/v5"), timeout=30).status_code == 204
    assert requests.get(trio.url("SymServer", "/nothing-here"), timeout=30).headers[
        "Access-Control-Allow-Origin"] == "*"


# -- the debug protocol and web pages -----------------------------------------------------------

BROWSER_LIKE = {
    "Origin header with a JSON body": {"Origin": "http://evil.example", "Content-Type": "application/json"},
    "text/plain (a page's simple POST)": {"Content-Type": "text/plain;charset=UTF-8"},
    "form-encoded (curl -d, an HTML form)": {"Content-Type": "application/x-www-form-urlencoded"},
    "multipart": {"Content-Type": "multipart/form-data; boundary=x"},
    "no Content-Type": {},
    "a page's text/plain POST": {"Origin": "http://evil.example", "Content-Type": "text/plain;charset=UTF-8"},
}


@pytest.mark.parametrize("how", list(BROWSER_LIKE))
def test_the_diskcache_refuses_debug_requests_a_page_could_send(make_trio, symbol_store, how):
    trio = make_trio([symbol_store.url("plain")])
    body = json.dumps({"debug": True, "action": "cacheGet", "libName": XUL[0], "breakpadId": XUL[1]})
    response = requests.post(trio.url("DiskCache", "/"), data=body, headers=BROWSER_LIKE[how], timeout=60)
    assert response.status_code == 403, response.text
    assert "debug requests" in response.json()["error"]
    assert not [name for name in response.headers if name.lower().startswith("access-control-")]
    # the action did not run: the module was not fetched into the cache
    exists = requests.post(trio.url("DiskCache", "/"), json={"debug": True, "action": "cacheExists",
                                                              "libName": XUL[0], "breakpadId": XUL[1]}, timeout=30)
    assert exists.json() == {"exists": False}


@pytest.mark.parametrize("how", list(BROWSER_LIKE))
def test_symserver_refuses_debug_requests_a_page_could_send(make_trio, symbol_store, how):
    trio = make_trio([symbol_store.url("plain")])
    body = json.dumps({"debug": True, "action": "outputCacheHits", "enabled": True})
    response = requests.post(trio.url("SymServer", "/"), data=body, headers=BROWSER_LIKE[how], timeout=60)
    assert response.status_code == 403, response.text
    assert "debug requests" in response.json()["error"]
    # the setting did not change: standard answers have no cacheHits
    answer = requests.post(trio.url(), json={"stacks": [[[0, 11723767]]], "memoryMap": [XUL], "version": 4},
                           timeout=60).json()
    assert "cacheHits" not in answer


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON"])
def test_json_debug_requests_from_the_local_machine_work(make_trio, symbol_store, content_type):
    trio = make_trio([symbol_store.url("plain")])
    headers = {"Content-Type": content_type}
    module = {"libName": XUL[0], "breakpadId": XUL[1]}
    cache_get = requests.post(trio.url("DiskCache", "/"), headers=headers, timeout=60,
                              data=json.dumps({"debug": True, "action": "cacheGet", **module}))
    assert cache_get.status_code == 200 and cache_get.json()["path"]
    enabled = requests.post(trio.url("SymServer", "/"), headers=headers, timeout=60,
                            data=json.dumps({"debug": True, "action": "outputCacheHits", "enabled": True}))
    assert enabled.json() == {"success": True}
    assert "cacheHits" in trio.post({"stacks": [[[0, 11723767]]], "memoryMap": [XUL], "version": 4}).json()


def test_standard_requests_still_take_any_content_type(trio):
    """Only the debug protocol is strict: curl -d (form-encoded) and pages' text/plain
    symbolication requests are answered as before."""
    body = json.dumps({"stacks": [[[0, 11723767]]], "memoryMap": [XUL], "version": 4})
    for headers in ({"Content-Type": "application/x-www-form-urlencoded"},
                    {"Content-Type": "text/plain;charset=UTF-8", "Origin": "http://profiler.example"}):
        for server in ("SymServer", "DiskCache"):
            response = requests.post(trio.url(server, "/"), data=body, headers=headers, timeout=60)
            assert response.json()["symbolicatedStacks"] == [["XREMain::XRE_mainRun() (in xul.pdb)"]]


# -- compressed answers -----------------------------------------------------------------------

def many_frames(count: int = 400) -> tuple[dict, dict]:
    """A v4 and a v5 request with answers well over the size worth compressing."""
    stack = [[0, 11723767 + i] for i in range(count)] + [[1, 65802]]
    v4 = {"stacks": [stack], "memoryMap": [XUL, NTDLL], "version": 4}
    return v4, {"jobs": [{"memoryMap": [XUL, NTDLL], "stacks": [stack]}]}


@pytest.mark.parametrize("server", ["SymServer", "DiskCache"])
@pytest.mark.parametrize("version", [4, 5])
def test_answers_are_gzipped_when_the_client_accepts_it(trio, server, version):
    v4, v5 = many_frames()
    url = trio.url(server, "/symbolicate/v4" if version == 4 else "/symbolicate/v5")
    body = json.dumps(v4 if version == 4 else v5).encode()
    plain = raw_post(url, body, {"Accept-Encoding": "identity", "Content-Type": "application/json"})
    zipped = raw_post(url, body, {"Accept-Encoding": "gzip, deflate, br", "Content-Type": "application/json"})
    refused = raw_post(url, body, {"Accept-Encoding": "gzip;q=0, identity", "Content-Type": "application/json"})
    assert plain.status_code == zipped.status_code == refused.status_code == 200
    assert "Content-Encoding" not in plain.headers and "Content-Encoding" not in refused.headers
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    assert int(zipped.headers["Content-Length"]) == len(zipped.wire) < len(plain.wire) / 5
    assert decoded(zipped) == decoded(plain) == decoded(refused)


def test_small_answers_go_uncompressed(trio):
    body = json.dumps({"stacks": [[[0, 11723767]]], "memoryMap": [XUL], "version": 4}).encode()
    small = raw_post(trio.url("SymServer", "/"), body, {"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers and small.status_code == 200


def generated_module(directory, funcs_mb: float = 4) -> tuple[list[str], int]:
    """A realistic generated .sym in a local symbol directory: (memoryMap entry, FUNC count)."""
    sys.path.insert(0, str(REPO / "bench"))
    from gen_symfile import generate

    debug_id = "5A1E5A1E5A1E5A1E5A1E5A1E5A1E5A1E1"
    path = directory / "big.pdb" / debug_id / "big.sym"
    path.parent.mkdir(parents=True)
    stats = generate(path, size_mb=funcs_mb, seed=7, debug_file="big.pdb", debug_id=debug_id, code_file="big.dll")
    return ["big.pdb", debug_id], stats["funcs"]


def test_a_12000_frame_v5_answer_gzipped(make_trio, tmp_path):
    """The size of a big profiler request's answer, as sent and as gzipped."""
    module, funcs = generated_module(tmp_path / "symbols")
    trio = make_trio([], {"DiskCache": {"localSymbolDirs": [str(tmp_path / "symbols")]}})
    rng = random.Random(3)
    offsets = rng.sample(range(0x1000, 0x1000 + funcs * 0x1C0), 12000)
    body = json.dumps({"jobs": [{"memoryMap": [module], "stacks": [[[0, offset] for offset in offsets]]}]}).encode()
    url = trio.url("SymServer", "/symbolicate/v5")
    headers = {"Content-Type": "application/json"}
    assert raw_post(url, body, headers).status_code == 200  # cold: fetched and processed
    started = time.monotonic()
    plain = raw_post(url, body, dict(headers, **{"Accept-Encoding": "identity"}))
    plain_seconds = time.monotonic() - started
    started = time.monotonic()
    zipped = raw_post(url, body, dict(headers, **{"Accept-Encoding": "gzip"}))
    zipped_seconds = time.monotonic() - started
    print(f"12,000-frame v5 answer: {len(plain.wire)} bytes raw ({plain_seconds:.2f} s warm), "
          f"{len(zipped.wire)} bytes gzipped ({zipped_seconds:.2f} s warm)")
    frames = decoded(zipped)["results"][0]["stacks"][0]
    assert len(frames) == 12000 and decoded(zipped) == decoded(plain)
    assert sum("function" in frame for frame in frames) > 10000
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert len(plain.wire) > 3_000_000
    assert len(zipped.wire) < len(plain.wire) / 3


def _diskcache_hop(make_trio, symbol_store, host: str):
    """The SymServer -> DiskCache exchange, seen on the wire by a relay on ``host`` between
    the two, and the answer the client got."""
    trio = make_trio([symbol_store.url("plain")], run=False)
    relay = Relay(trio.diskcache_port, host)
    try:
        trio.reconfigure({"SymServer": {"DiskCacheServer": f"{host}:{relay.port}"}})
        trio.start()
        v4, v5 = many_frames()
        answer = trio.post(v5, "/symbolicate/v5", headers={"Content-Type": "application/json"})
        assert answer.status_code == 200
        frames = answer.json()["results"][0]["stacks"][0]
        assert frames[0]["function"] == "XREMain::XRE_mainRun()" and frames[-1]["function"] == "KiUserCallbackDispatcher"
        hops = [exchange for exchange in relay.exchanges() if exchange.request_head.startswith("POST /symbolicate/v5")]
    finally:
        relay.stop()
    assert len(hops) == 1
    return hops[0], answer.json()


def test_symserver_asks_a_diskcache_across_a_network_for_gzip(make_trio, symbol_store):
    """A DiskCache on another address: its megabytes of answers travel gzipped."""
    try:
        with peer_host() as host:
            ours, _ = host.addresses[0]  # an address of this machine that is not loopback
            hop, _ = _diskcache_hop(make_trio, symbol_store, ours)
    except NoNamespace as error:
        pytest.skip(str(error))
    assert "gzip" in hop.request_header("Accept-Encoding")
    assert hop.response_header("Content-Encoding") == "gzip"
    raw = gzip.decompress(hop.response_body)
    assert len(hop.response_body) < len(raw) / 5
    print(f"SymServer <- DiskCache: {len(hop.response_body)} bytes on the wire for {len(raw)} bytes of JSON")


@pytest.mark.parametrize("host, loopback", [
    ("localhost", True), ("LocalHost", True), ("127.0.0.1", True), ("127.9.9.9", True), ("::1", True),
    ("::ffff:127.0.0.1", True), ("10.0.0.1", False), ("::ffff:10.0.0.1", False), ("192.0.2.7", False),
    ("2001:db8::1", False), ("symbols.example", False), ("", False)])
def test_what_counts_as_this_machine(host, loopback):
    """One rule for a debug request's peer and for a DiskCache address in the config."""
    from symcommon.web import is_loopback_host

    assert is_loopback_host(host) is loopback


def test_symserver_asks_a_diskcache_on_loopback_for_plain_json(make_trio, symbol_store):
    """On loopback gzip would only cost both processes CPU (about 20 ms a cold profile)."""
    hop, answer = _diskcache_hop(make_trio, symbol_store, "127.0.0.1")
    assert "gzip" not in (hop.request_header("Accept-Encoding") or "")
    assert hop.response_header("Content-Encoding") is None
    assert b'"XREMain::XRE_mainRun()"' in hop.response_body and json.loads(hop.response_body)["results"]
    assert len(answer["results"][0]["stacks"][0]) == len(many_frames()[1]["jobs"][0]["stacks"][0])
