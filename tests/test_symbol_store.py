"""The test symbol store itself behaves as its docstring says (the other tests rely on it)."""

from __future__ import annotations

import gzip
import http.client
import socket
import time
import zlib
from pathlib import Path

import pytest

from symbol_store import SymbolStore

SYM = "lib.so/0123456789ABCDEF0123456789ABCDEF0/lib.so.sym"
DATA = b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 lib.so\n" + b"PUBLIC 10 0 f\n" * 200


@pytest.fixture
def store(tmp_path: Path):
    (tmp_path / SYM).parent.mkdir(parents=True)
    (tmp_path / SYM).write_bytes(DATA)
    (tmp_path.parent / "secret.txt").write_text("outside the root")
    with SymbolStore(tmp_path) as running:
        yield running


def get(store: SymbolStore, path: str, timeout: float = 5) -> tuple[int, dict, bytes]:
    port = int(store.url("x").split(":")[2].split("/")[0])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


def test_plain_and_missing(store):
    assert get(store, f"/plain/{SYM}")[::2] == (200, DATA)
    assert get(store, "/plain/lib.so/0123/none.sym")[0] == 404
    assert get(store, f"/unknown-mode/{SYM}")[0] == 404


def test_encodings(store):
    status, headers, body = get(store, f"/gzip/{SYM}")
    assert status == 200 and headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == DATA
    status, headers, body = get(store, f"/deflate/{SYM}")
    assert status == 200 and headers["Content-Encoding"] == "deflate" and zlib.decompress(body) == DATA
    status, headers, body = get(store, f"/badgzip/{SYM}")
    assert headers["Content-Encoding"] == "gzip"
    with pytest.raises(OSError):
        gzip.decompress(body)


def test_failures_flaky_and_counts(store):
    assert get(store, f"/fail/{SYM}")[0] == 500
    assert [get(store, f"/flaky/2/{SYM}")[0] for _ in range(4)] == [503, 503, 200, 200]
    assert store.count(f"/flaky/2/{SYM}") == 4
    store.reset()
    assert store.count(SYM) == 0
    assert get(store, f"/flaky/2/{SYM}")[0] == 503  # counters reset too


def test_slow_and_drip(store):
    started = time.monotonic()
    assert get(store, f"/slow/300/{SYM}")[::2] == (200, DATA)
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert get(store, f"/drip/20/{SYM}")[::2] == (200, DATA)
    assert time.monotonic() - started >= 0.02 * (len(DATA) // 256)


def test_truncated_body_is_short_of_its_content_length(store):
    port = int(store.url("x").split(":")[2].split("/")[0])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", f"/truncated/{SYM}")
    response = connection.getresponse()
    assert int(response.getheader("Content-Length")) == len(DATA)
    with pytest.raises(http.client.IncompleteRead):
        response.read()


def test_html_page_with_200(store):
    status, headers, body = get(store, f"/html/{SYM}")
    assert status == 200 and body.startswith(b"<html>")


def test_hang_never_answers_and_does_not_block_stop(tmp_path):
    store = SymbolStore(tmp_path)
    store.start()
    with pytest.raises((socket.timeout, TimeoutError)):
        get(store, "/hang/anything", timeout=0.5)
    started = time.monotonic()
    store.stop()
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("path", ["/plain/../secret.txt", "/plain/%2e%2e/secret.txt",
                                  "/plain/lib.so%2F..%2F..%2Fsecret.txt", "/plain//etc/passwd"])
def test_paths_never_escape_the_root(store, path):
    assert get(store, path)[0] == 404
