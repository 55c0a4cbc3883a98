"""A symbol store the tests serve themselves on 127.0.0.1, with every way a store misbehaves.

The behaviour is chosen by the first URL path segment, so one server covers all cases:

=====================  ==========================================================
``/plain/<path>``      200 with the file, or 404
``/gzip/<path>``       200, ``Content-Encoding: gzip`` (404 if no such file)
``/deflate/<path>``    200, ``Content-Encoding: deflate``, zlib-wrapped (or 404)
``/fail/<path>``       always 500
``/flaky/<n>/<path>``  503 for the first n requests of that exact request path
                       (since the start or the last ``reset()``), then like plain
``/slow/<ms>/<path>``  waits ms, then like plain
``/drip/<ms>/<path>``  headers at once, then the body in pieces of 256 bytes, each
                       sent ms after the one before (the first ms after the headers)
``/hang/<path>``       never answers (until the store stops)
``/truncated/<path>``  declares the full length, sends half, closes (or 404)
``/cutoff/<n>/<path>`` for the first n requests of that exact request path, like
                       truncated but the half sent is upper-cased (so its bytes must
                       not be used), then like plain (a download that must start over)
``/badgzip/<path>``    ``Content-Encoding: gzip`` with a body that is not gzip (or 404)
``/html/<path>``       200 with an HTML error page, whatever the path
``/trickle/<ms>/<path>`` headers at once, then the body 1 byte at a time, each byte
                       ms after the one before (a store that defeats per-read timeouts)
``/bomb/<mb>/<path>``  200, ``Content-Encoding: gzip``, whatever the path: a small
                       gzip body that decodes to <mb> MB of repeated .sym text
``/redirect/<target>/<path>`` 302 to ``<target>/<path>``; ``<target>`` is a base URL,
                       percent-encoded into one segment (see ``redirect_url``)
anything else          404
=====================  ==========================================================

``<path>`` is ``<debug_file>/<debug_id>/<sym file>`` under ``root``; it never leaves ``root``:
an empty, ``.`` or ``..`` segment, or one holding a separator once percent-decoded, is a 404.
Nothing is printed: tests read ``requests`` / ``count()`` instead of stderr.
``stop()`` returns promptly and closes every open connection, hanging or kept alive, so a
stopped store really is gone.
"""

from __future__ import annotations

import gzip
import os
import re
import socket
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote

DRIP_PIECE_BYTES = 256
HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>\n"
             b"<body><h1>Error</h1><p>The symbol service is down for maintenance.</p></body></html>\n")
FILE_MODES = {"plain", "gzip", "deflate", "flaky", "slow", "drip", "truncated", "cutoff", "badgzip",
              "trickle"}
MODES_WITH_NUMBER = {"flaky", "slow", "drip", "cutoff", "trickle", "bomb"}
_NUMBER = re.compile(r"[0-9]{1,9}")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog of 5 drops the connections of a burst of
    # downloads (the DiskCache opens up to downloadsPerStore at once), which then wait 1 s
    # for the SYN to be sent again; a real store (nginx: 511) does not
    request_queue_size = 128

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client dropping its connection (as the DiskCache's pool does) is not news


class SymbolStore:
    """Serves ``root`` (laid out ``<debug_file>/<debug_id>/<sym file>``) in a background thread.

    Use as a context manager, or call ``start()`` and ``stop()``.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._lock = threading.Lock()
        self._requests: list[str] = []
        self._flaky_counts: dict[str, int] = {}
        self._bombs: dict[int, bytes] = {}
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SymbolStore:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> SymbolStore:
        if self._server is not None:
            return self
        self._stopping.clear()
        handler = type("Handler", (_StoreHandler,), {"store": self})
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="symbol-store", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection; hanging requests end unanswered."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        assert self._server is not None, "start the store first"
        return self._server.server_address[1]

    def url(self, prefix: str) -> str:
        """The base URL of one behaviour, e.g. ``url("flaky/2")`` -> ``http://127.0.0.1:PORT/flaky/2``."""
        return f"http://127.0.0.1:{self.port}/{prefix.strip('/')}"

    def redirect_url(self, target_base: str) -> str:
        """The base URL of a store that redirects every path to the same path under ``target_base``."""
        return self.url("redirect/" + quote(target_base.rstrip("/"), safe=""))

    def bomb_body(self, megabytes: int) -> bytes:
        """Gzip of ``megabytes`` MB of one repeated .sym line (made once, kept for later requests)."""
        with self._lock:
            body = self._bombs.get(megabytes)
        if body is None:
            block = b"PUBLIC 1000 0 a_function_name_that_compresses_well\n" * 20_000  # ~1 MB
            compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            parts = [compressor.compress(b"MODULE Linux x86_64 0 bomb.so\n")]
            written = 0
            while written < megabytes * 1024 * 1024:
                parts.append(compressor.compress(block))
                written += len(block)
            parts.append(compressor.flush())
            body = b"".join(parts)
            with self._lock:
                self._bombs[megabytes] = body
        return body

    @property
    def requests(self) -> list[str]:
        """The request paths seen so far, in order (a copy)."""
        with self._lock:
            return list(self._requests)

    def count(self, path_suffix: str) -> int:
        """How many requests had a path ending with ``path_suffix``."""
        return sum(1 for path in self.requests if path.endswith(path_suffix))

    def reset(self) -> None:
        """Forget the request log and the flaky counters."""
        with self._lock:
            self._requests.clear()
            self._flaky_counts.clear()

    def file_for(self, parts: list[str]) -> Path | None:
        """The file that decoded path segments name, or None; never anything outside ``root``."""
        if not parts or any(part in ("", ".", "..") or "/" in part or "\\" in part or "\0" in part
                            for part in parts):
            return None
        try:
            path = self.root.joinpath(*parts).resolve()
        except (OSError, ValueError):
            return None
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path

    # -- used by the handler --------------------------------------------------------------------

    def _record(self, path: str) -> None:
        with self._lock:
            self._requests.append(path)

    def _flaky_attempt(self, path: str) -> int:
        with self._lock:
            self._flaky_counts[path] = self._flaky_counts.get(path, 0) + 1
            return self._flaky_counts[path]

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _StoreHandler(BaseHTTPRequestHandler):
    store: SymbolStore
    protocol_version = "HTTP/1.1"  # keep-alive, as real stores; truncated/hang close explicitly

    def setup(self) -> None:
        super().setup()
        self.store._track(self.connection, True)
        if self.store._stopping.is_set():  # accepted just as the store stopped
            self.close_connection = True

    def finish(self) -> None:
        self.store._track(self.connection, False)
        super().finish()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        pass  # tests read the request list, not stderr

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        store = self.store
        store._record(self.path)
        raw = self.path.split("?", 1)[0].split("#", 1)[0]
        segments = [unquote(part) for part in raw.split("/")[1:]]
        mode, rest = (segments[0], segments[1:]) if segments else ("", [])
        number = 0
        if mode in MODES_WITH_NUMBER:
            if not rest or not _NUMBER.fullmatch(rest[0]):
                return self._send(404, b"not found\n")
            number, rest = int(rest[0]), rest[1:]

        if mode == "fail":
            return self._send(500, b"internal server error\n")
        if mode == "hang":
            store._stopping.wait()
            self.close_connection = True
            return None
        if mode == "html":
            return self._send(200, HTML_PAGE, {"Content-Type": "text/html; charset=utf-8"})
        if mode == "bomb":
            return self._send(200, store.bomb_body(number), {"Content-Encoding": "gzip"})
        if mode == "redirect":
            if len(rest) < 2 or "://" not in rest[0]:
                return self._send(404, b"not found\n")
            location = rest[0] + "/" + "/".join(quote(part, safe="") for part in rest[1:])
            return self._send(302, b"moved\n", {"Location": location})
        if mode == "flaky" and store._flaky_attempt(self.path) <= number:
            return self._send(503, b"service unavailable, try again\n", {"Retry-After": "0"})
        path = store.file_for(rest) if mode in FILE_MODES else None
        if path is None:
            return self._send(404, b"not found\n")
        if mode == "slow" and store._stopping.wait(number / 1000):
            self.close_connection = True
            return None
        if mode in ("plain", "flaky", "slow"):
            return self._send_file(path)
        data = path.read_bytes()

        if mode == "gzip":
            return self._send(200, gzip.compress(data), {"Content-Encoding": "gzip"})
        if mode == "deflate":
            return self._send(200, zlib.compress(data), {"Content-Encoding": "deflate"})
        if mode == "badgzip":
            return self._send(200, b"this is not gzip\n" + data[:100], {"Content-Encoding": "gzip"})
        if mode == "truncated" or mode == "cutoff" and store._flaky_attempt(self.path) <= number:
            self._head(200, len(data))
            half = data[: len(data) // 2]
            self.wfile.write(half if mode == "truncated" else half.upper())
            self.wfile.flush()
            self.close_connection = True
            return None
        if mode == "trickle":
            self._head(200, len(data))
            for start in range(len(data)):
                if store._stopping.wait(number / 1000):
                    self.close_connection = True
                    return None
                try:
                    self.wfile.write(data[start:start + 1])
                    self.wfile.flush()
                except OSError:  # the client gave up, as it should
                    self.close_connection = True
                    return None
            return None
        if mode == "drip":
            self._head(200, len(data))
            for start in range(0, len(data), DRIP_PIECE_BYTES):
                if store._stopping.wait(number / 1000):
                    self.close_connection = True
                    return None
                self.wfile.write(data[start:start + DRIP_PIECE_BYTES])
                self.wfile.flush()
            return None
        return self._send(200, data)  # cutoff past its failures

    def _send_file(self, path: Path) -> None:
        """The file as it is, by sendfile, as nginx or a CDN sends it (reading it whole and
        writing it cost the store twice the CPU of the DiskCache's download of it)."""
        with path.open("rb") as file:
            self._head(200, os.fstat(file.fileno()).st_size)
            try:
                self.connection.sendfile(file)
            except OSError:  # the client gave up
                self.close_connection = True

    def _head(self, status: int, length: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self._head(status, len(body), headers)
        self.wfile.write(body)
