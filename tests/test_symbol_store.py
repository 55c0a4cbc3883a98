"""The test symbol store itself behaves as its docstring says (the other tests rely on it)."""

from __future__ import annotations

import gzip
import http.client
import os
import socket
import time
import zlib
from pathlib import Path

import pytest

from symbol_store import DRIP_PIECE_BYTES, SymbolStore

SYM = "lib.so/0123456789ABCDEF0123456789ABCDEF0/lib.so.sym"
OTHER = "other.pdb/FEDCBA9876543210FEDCBA98765432100/other.sym"
DATA = b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 lib.so\n" + b"PUBLIC 10 0 f\n" * 200
OTHER_DATA = b"MODULE windows x86 FEDCBA9876543210FEDCBA98765432100 other.pdb\n"
PIECES = -(-len(DATA) // DRIP_PIECE_BYTES)


@pytest.fixture
def store(tmp_path: Path):
    root = tmp_path / "root"
    for name, data in ((SYM, DATA), (OTHER, OTHER_DATA)):
        (root / name).parent.mkdir(parents=True)
        (root / name).write_bytes(data)
    (tmp_path / "secret.txt").write_text("outside the root")
    (root / "lib.so" / "escape").symlink_to(tmp_path / "secret.txt")
    with SymbolStore(root) as running:
        yield running


def connect(store: SymbolStore, timeout: float = 5) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", store.port, timeout=timeout)


def get(store: SymbolStore, path: str, timeout: float = 5) -> tuple[int, dict, bytes]:
    connection = connect(store, timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_url_names_the_behaviour(store):
    assert store.url("gzip") == f"http://127.0.0.1:{store.port}/gzip"
    assert store.url("flaky/2") == f"http://127.0.0.1:{store.port}/flaky/2"


def test_plain_missing_and_unknown_modes(store):
    assert get(store, f"/plain/{SYM}")[::2] == (200, DATA)
    assert get(store, f"/plain/{SYM}?x=1")[::2] == (200, DATA)
    assert get(store, "/plain/lib.so/0123/none.sym")[0] == 404
    assert get(store, "/plain/lib.so")[0] == 404  # a directory is not a file
    for path in (f"/unknown-mode/{SYM}", f"/{SYM}", "/", "/plain", "/slow/x/" + SYM, "/flaky/-1/" + SYM):
        assert get(store, path)[0] == 404, path


def test_encodings(store):
    status, headers, body = get(store, f"/gzip/{SYM}")
    assert status == 200 and headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == DATA
    status, headers, body = get(store, f"/deflate/{SYM}")
    assert status == 200 and headers["Content-Encoding"] == "deflate" and zlib.decompress(body) == DATA
    status, headers, body = get(store, f"/badgzip/{SYM}")
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    with pytest.raises(OSError):
        gzip.decompress(body)
    assert get(store, "/gzip/lib.so/0123/none.sym")[0] == 404


def test_fail_is_always_500(store):
    assert get(store, f"/fail/{SYM}")[0] == 500
    assert get(store, "/fail/no/such/file.sym")[0] == 500


def test_flaky_counts_per_path_and_reset(store):
    assert [get(store, f"/flaky/2/{SYM}")[0] for _ in range(4)] == [503, 503, 200, 200]
    assert get(store, f"/flaky/2/{OTHER}")[0] == 503  # a path of its own
    assert [get(store, "/flaky/1/nothing/here.sym")[0] for _ in range(2)] == [503, 404]
    assert get(store, f"/flaky/0/{SYM}")[::2] == (200, DATA)
    store.reset()
    assert get(store, f"/flaky/2/{SYM}")[0] == 503  # counters reset too


def test_request_log_and_count(store):
    get(store, f"/plain/{SYM}")
    get(store, f"/gzip/{SYM}")
    get(store, f"/plain/{OTHER}")
    assert store.requests == [f"/plain/{SYM}", f"/gzip/{SYM}", f"/plain/{OTHER}"]
    assert store.count(SYM) == 2 and store.count(f"/plain/{SYM}") == 1 and store.count("other.sym") == 1
    store.requests.clear()  # a copy: the log is untouched
    assert len(store.requests) == 3
    store.reset()
    assert store.requests == [] and store.count(SYM) == 0


def test_slow_waits_before_answering(store):
    started = time.monotonic()
    assert get(store, f"/slow/300/{SYM}")[::2] == (200, DATA)
    assert time.monotonic() - started >= 0.3


def test_drip_sends_headers_at_once_and_the_body_slowly(store):
    connection = connect(store)
    started = time.monotonic()
    connection.request("GET", f"/drip/40/{SYM}")
    response = connection.getresponse()
    headers_after = time.monotonic() - started
    assert response.status == 200 and int(response.getheader("Content-Length")) == len(DATA)
    assert response.read() == DATA
    connection.close()
    assert PIECES > 5 and headers_after < 0.04 * PIECES / 2
    assert time.monotonic() - started >= 0.04 * PIECES


def test_truncated_body_is_short_of_its_content_length(store):
    connection = connect(store)
    connection.request("GET", f"/truncated/{SYM}")
    response = connection.getresponse()
    assert int(response.getheader("Content-Length")) == len(DATA)
    with pytest.raises(http.client.IncompleteRead) as error:
        response.read()
    assert error.value.partial == DATA[: len(DATA) // 2]
    connection.close()


def test_html_page_with_200_for_any_path(store):
    for path in (f"/html/{SYM}", "/html/no/such/file.sym"):
        status, headers, body = get(store, path)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert body.startswith(b"<!DOCTYPE html>")


def test_hang_never_answers_and_does_not_block_stop(tmp_path):
    store = SymbolStore(tmp_path).start()
    with pytest.raises((socket.timeout, TimeoutError)):
        get(store, "/hang/anything", timeout=0.5)
    hanging = connect(store, timeout=5)
    hanging.request("GET", "/hang/anything")
    time.sleep(0.1)
    started = time.monotonic()
    store.stop()
    assert time.monotonic() - started < 2
    with pytest.raises((OSError, http.client.HTTPException)):  # closed unanswered, not timed out
        hanging.getresponse()
    store.stop()  # twice is harmless


def test_stop_closes_kept_alive_connections(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").write_bytes(b"x")
    store = SymbolStore(tmp_path).start()
    connection = connect(store, timeout=2)
    connection.request("GET", "/plain/a/b")
    assert connection.getresponse().read() == b"x"
    store.stop()
    with pytest.raises((OSError, http.client.HTTPException)):
        connection.request("GET", "/plain/a/b")
        connection.getresponse()


@pytest.mark.parametrize("path", [
    "/plain/../secret.txt", "/plain/%2e%2e/secret.txt", "/plain/lib.so/../../secret.txt",
    "/plain/lib.so%2F..%2F..%2Fsecret.txt", "/plain/lib.so%2f..%2f..%2fsecret.txt",
    "/plain/..%5Csecret.txt", "/plain//etc/passwd", "/plain/%2Fetc%2Fpasswd", "/gzip//etc/passwd",
    "/plain/lib.so/escape", "/plain/./" + SYM, "/plain/lib.so%00/x", "/truncated/../secret.txt",
])
def test_paths_never_escape_the_root(store, path):
    assert get(store, path)[0] == 404


def test_nothing_is_printed(store, capfd):
    get(store, f"/plain/{SYM}")
    get(store, "/plain/none")
    raw = socket.create_connection(("127.0.0.1", store.port))
    raw.sendall(b"BREW /pot HTTP/1.1\r\n\r\n")  # an unknown method, answered 501
    assert raw.recv(100).startswith(b"HTTP/1.1 501")
    raw.close()
    dropped = socket.create_connection(("127.0.0.1", store.port))
    dropped.sendall(f"GET /drip/20/{SYM} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    dropped.close()  # the client goes away mid-body
    time.sleep(0.2)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_symlinks_inside_the_root_still_work(store):
    (store.root / "alias.so").symlink_to(store.root / "lib.so", target_is_directory=True)
    assert get(store, "/plain/alias.so/0123456789ABCDEF0123456789ABCDEF0/lib.so.sym")[::2] == (200, DATA)


def test_cutoff_cuts_the_first_n_requests_short_then_serves_whole(store):
    store.reset()
    for _ in range(2):
        connection = connect(store)
        connection.request("GET", f"/cutoff/2/{SYM}")
        response = connection.getresponse()
        with pytest.raises(http.client.IncompleteRead) as error:
            response.read()
        assert error.value.partial == DATA[: len(DATA) // 2].upper()
        connection.close()
    assert get(store, f"/cutoff/2/{SYM}")[2] == DATA
