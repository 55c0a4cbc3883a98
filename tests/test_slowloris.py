"""Slow and idle clients (slowloris) against the real trio: every connection is bounded in
time, the number of connections in a process is bounded below its descriptor limit, running
out of descriptors does not flood the log, and an endless body is cut at ``maxRequestMB``.

All traffic stays on loopback, is bounded in count, and every test stops by itself.
"""

from __future__ import annotations

import select
import socket
import time
from contextlib import ExitStack

import psutil
import pytest

from harness import SAMPLE_RESPONSE, sample_request

SHORT = {"headerTimeoutSeconds": 2, "bodyTimeoutSeconds": 3}


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def seconds_until_closed(sock: socket.socket, limit: float) -> float | None:
    """How long until the server closes ``sock`` (anything it sends first is read and
    dropped), or None if it is still open after ``limit`` seconds."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        readable, _, _ = select.select([sock], [], [], 0.2)
        if not readable:
            continue
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - started
    return None


@pytest.mark.parametrize("server", ["SymServer", "DiskCache"])
def test_half_sent_headers_are_closed_within_the_header_timeout(make_trio, symbol_store, server):
    trio = make_trio([symbol_store.url("plain")], {"SymServer": SHORT, "DiskCache": SHORT})
    port = trio.symserver_port if server == "SymServer" else trio.diskcache_port
    with connect(port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
        closed = seconds_until_closed(sock, 15)
    assert closed is not None, "a half-sent request was kept open past 15 s (headerTimeoutSeconds: 2)"
    assert closed < 8


def test_idle_keep_alive_connection_is_closed(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")], {"SymServer": SHORT})
    with connect(trio.symserver_port) as sock:
        sock.sendall(b"GET /__lbheartbeat__ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")  # kept alive: the server waits for more
        closed = seconds_until_closed(sock, 15)
    assert closed is not None and closed < 8, "an idle keep-alive connection was kept past 15 s"


def test_half_sent_body_is_closed_within_the_body_timeout(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")], {"SymServer": SHORT})
    with connect(trio.symserver_port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{\"ver")
        closed = seconds_until_closed(sock, 20)
    assert closed is not None and closed < 10, "a half-sent body was kept open past 20 s"


def _server_connections(pid: int, port: int) -> int:
    return sum(1 for c in psutil.Process(pid).net_connections("tcp")
               if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED)


def test_connections_beyond_max_connections_do_not_starve_a_real_request(make_trio, symbol_store):
    """300 idle connections against maxConnections 50: the server keeps at most 50 and the
    sample request is answered at once (the longest-idle connections make room for it)."""
    trio = make_trio([symbol_store.url("plain")], {"SymServer": {"maxConnections": 50}})
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE  # warm: the answer is quick
    with ExitStack() as stack:
        idle = [stack.enter_context(connect(trio.symserver_port)) for _ in range(300)]
        time.sleep(1.0)  # let the server accept what it will
        started = time.monotonic()
        response = trio.post(sample_request())
        assert response.text == SAMPLE_RESPONSE
        assert time.monotonic() - started < 10
        held = _server_connections(trio.pid("SymServer"), trio.symserver_port)
        assert held <= 52, f"the server holds {held} connections with maxConnections 50"
        assert len(idle) == 300
    log = (trio.workdir / "SymServer.log").read_text()
    assert "maxConnections" in log  # what happened is logged...
    assert len(log) < 200_000  # ...without a flood


def test_running_out_of_descriptors_neither_floods_the_log_nor_spins(make_trio, symbol_store):
    """The descriptor limit lowered under a running SymServer (as if 20,000 slow clients had
    used it up): accept fails with EMFILE; that is logged a few times, not on every accept,
    the process does not spin, and once the slow clients are gone requests are answered."""
    trio = make_trio([symbol_store.url("plain")], {"SymServer": SHORT})
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE
    server = psutil.Process(trio.pid("SymServer"))
    log_path = trio.workdir / "SymServer.log"
    log_before = len(log_path.read_text())
    soft, hard = server.rlimit(psutil.RLIMIT_NOFILE)
    server.rlimit(psutil.RLIMIT_NOFILE, (64, hard))
    try:
        with ExitStack() as stack:
            for _ in range(200):  # not waiting for each: the backlog fills while accepts pause
                sock = stack.enter_context(socket.socket())
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", trio.symserver_port))
            time.sleep(1.0)
            server.cpu_percent(None)
            time.sleep(3.0)
            cpu = server.cpu_percent(None)
        log = log_path.read_text()[log_before:]
        emfile_lines = [line for line in log.splitlines() if "Too many open files" in line]
        assert emfile_lines, "the descriptor limit was never reached: the test did not test anything"
        assert len(emfile_lines) <= 10, f"{len(emfile_lines)} log lines about EMFILE in 4 s"
        assert len(log) < 50_000, f"{len(log)} bytes of log in 4 s"
        assert cpu < 50, f"SymServer used {cpu:.0f}% CPU while out of descriptors"
        deadline = time.monotonic() + 30
        while True:  # the server's side of the closed connections goes within the timeouts
            try:
                if trio.session.post(trio.url(), json=sample_request(), timeout=10).text == SAMPLE_RESPONSE:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the sample request failed 30 s after the slow clients left"
            time.sleep(0.5)
    finally:
        server.rlimit(psutil.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("server", ["SymServer", "DiskCache"])
def test_endless_chunked_body_gets_413_and_the_connection_is_closed(make_trio, symbol_store, server):
    limits = {"maxRequestMB": 1, "bodyTimeoutSeconds": 120}
    trio = make_trio([symbol_store.url("plain")], {"SymServer": limits, "DiskCache": limits})
    port = trio.symserver_port if server == "SymServer" else trio.diskcache_port
    chunk = b"%x\r\n%s\r\n" % (16384, b" " * 16384)
    answer = b""
    sent = 0
    ended = None
    started = time.monotonic()
    with connect(port) as sock:
        sock.setblocking(False)
        headers = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n")
        pending = headers + chunk
        while time.monotonic() - started < 30 and sent < 200 * 1024 * 1024:
            readable, writable, _ = select.select([sock], [sock], [], 0.5)
            try:
                if readable:
                    data = sock.recv(65536)
                    if not data:
                        ended = "closed"
                        break
                    answer += data
                if writable:
                    count = sock.send(pending)
                    sent += count
                    pending = pending[count:] or chunk
            except (ConnectionResetError, BrokenPipeError) as error:
                ended = type(error).__name__
                break
    elapsed = time.monotonic() - started
    assert ended is not None, f"{sent} bytes sent in {elapsed:.0f} s and the connection is still open"
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"larger than the limit" in answer
    assert elapsed < 15
    assert sent < 50 * 1024 * 1024  # cut near the 1 MB limit, not after reading much more
