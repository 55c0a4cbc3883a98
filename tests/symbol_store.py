"""A symbol store the tests serve themselves on 127.0.0.1, with every way a store misbehaves.

The behaviour is chosen by the first URL path segment, so one server covers all cases:

=====================  ==========================================================
``/plain/<path>``      200 with the file, or 404
``/gzip/<path>``       200, ``Content-Encoding: gzip``
``/deflate/<path>``    200, ``Content-Encoding: deflate`` (zlib-wrapped)
``/fail/<path>``       always 500
``/flaky/<n>/<path>``  503 for the first n requests of that path, then like plain
``/slow/<ms>/<path>``  waits ms, then like plain
``/drip/<ms>/<path>``  headers at once, then the body in small pieces ms apart
``/hang/<path>``       never answers (until the store stops)
``/truncated/<path>``  declares the full length, sends half, closes
``/badgzip/<path>``    ``Content-Encoding: gzip`` with a body that is not gzip
``/html/<path>``       200 with an HTML error page
anything else          404
=====================  ==========================================================
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

DRIP_PIECE_BYTES = 256


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client dropping its connection (as the DiskCache's pool does) is not news


class SymbolStore:
    """Serves ``root`` (laid out ``<debug_file>/<debug_id>/<sym file>``) in a background thread."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._lock = threading.Lock()
        self._requests: list[str] = []
        self._flaky_counts: dict[str, int] = {}
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> SymbolStore:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        store = self

        class Handler(_StoreHandler):
            pass

        Handler.store = store
        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def url(self, prefix: str) -> str:
        assert self._server is not None, "start the store first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/{prefix}"

    @property
    def requests(self) -> list[str]:
        with self._lock:
            return list(self._requests)

    def count(self, path_suffix: str) -> int:
        """How many requests had a path ending with ``path_suffix``."""
        return sum(1 for path in self.requests if path.endswith(path_suffix))

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._flaky_counts.clear()

    def _record(self, path: str) -> None:
        with self._lock:
            self._requests.append(path)

    def _flaky_attempt(self, path: str) -> int:
        with self._lock:
            self._flaky_counts[path] = self._flaky_counts.get(path, 0) + 1
            return self._flaky_counts[path]

    def file_for(self, parts: list[str]) -> Path | None:
        """The file a store path names, or None; never anything outside ``root``."""
        if not parts or any(part in ("", ".", "..") or "/" in part or "\\" in part or "\0" in part
                            for part in parts):
            return None
        path = self.root.joinpath(*parts).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path


class _StoreHandler(BaseHTTPRequestHandler):
    store: SymbolStore
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        pass  # tests read the request list, not stderr

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        store = self.store
        store._record(self.path)
        segments = [unquote(part) for part in self.path.split("?")[0].split("/")[1:]]
        if not segments:
            return self._send(404, b"not found")
        mode, rest = segments[0], segments[1:]
        argument = None
        if mode in ("flaky", "slow", "drip"):
            if not rest or not rest[0].isdigit():
                return self._send(404, b"not found")
            argument, rest = int(rest[0]), rest[1:]
        path = store.file_for(rest)
        if mode == "fail":
            return self._send(500, b"internal error")
        if mode == "flaky" and store._flaky_attempt(self.path) <= argument:
            return self._send(503, b"try again")
        if mode == "hang":
            store._stopping.wait()
            self.close_connection = True
            return None
        if path is None or mode not in ("plain", "gzip", "deflate", "flaky", "slow", "drip",
                                        "truncated", "badgzip", "html"):
            return self._send(404, b"not found")
        data = path.read_bytes()
        if mode == "slow":
            time.sleep(argument / 1000)
        if mode == "gzip":
            return self._send(200, gzip.compress(data), {"Content-Encoding": "gzip"})
        if mode == "deflate":
            return self._send(200, zlib.compress(data), {"Content-Encoding": "deflate"})
        if mode == "badgzip":
            return self._send(200, b"this is not gzip" + data[:100], {"Content-Encoding": "gzip"})
        if mode == "html":
            return self._send(200, b"<html><body>Error: the symbol service is down</body></html>",
                              {"Content-Type": "text/html"})
        if mode == "truncated":
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return None
        if mode == "drip":
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for start in range(0, len(data), DRIP_PIECE_BYTES):
                self.wfile.write(data[start:start + DRIP_PIECE_BYTES])
                self.wfile.flush()
                if store._stopping.wait(argument / 1000):
                    break
            return None
        return self._send(200, data)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
