"""The warm lane: API requests whose every frame is already cached, answered without
Tornado's RequestHandler.

A warm 200-frame request is little more than a few hundred dict lookups, but Tornado's
RequestHandler around it (creating the handler and its headers, running ``post`` as a task,
output transforms, flush, finish) cost about 70 µs of CPU a request, as much as the
lookups and JSON together. :class:`WarmLane` sits between the HTTP connection and the
:class:`tornado.web.Application`: a POST to one of the API paths, with a ``Content-Length``
within :data:`MAX_LANE_BODY`, is read here and offered to the server's ``answer`` function,
which either answers it whole from its in-process caches (bytes) or declines (None). What it
declines — and every other request — goes to the Application exactly as it arrived (start
line, headers, body), so the handlers decide everything else as before: cold frames, errors
and their wording, debug requests, big bodies, preflights.

A lane answer has the headers the handlers would send (``Server``, ``Date``, CORS on the
public server, ``X-Request-Id``, ``Vary``, gzip when accepted, at the same level), an access
log line and the request metrics, so clients and operators cannot tell the two apart
(tests/test_warm_path.py compares them).
"""

from __future__ import annotations

import gzip
import time
from typing import Any, Callable

import tornado
import tornado.httputil
import tornado.ioloop
import tornado.web
from tornado.httputil import HTTPHeaders, RequestStartLine, ResponseStartLine

#: Bodies larger than this go to the handlers (which validate big ones off the event loop).
MAX_LANE_BODY = 1024 * 1024
#: answer(path, body, headers) -> the JSON answer, or None to leave the request to the handlers.
Answer = Callable[[str, bytes, HTTPHeaders], "bytes | None"]
_SERVER = f"TornadoServer/{tornado.version}"
GZIP_MIN_LENGTH = 1024  # as tornado.web.GZipContentEncoding


class WarmLane(tornado.httputil.HTTPServerConnectionDelegate):
    """Offers POSTs to ``paths`` to ``answer`` first; everything else goes to ``app``."""

    def __init__(self, app: tornado.web.Application, paths: set[str], answer: Answer,
                 request_headers: Callable[[HTTPHeaders], list[tuple[str, str]]],
                 accepts_gzip: Callable[[str], bool], log_request: Callable[..., None],
                 gzip_level: int) -> None:
        """``request_headers(headers)``: the headers a handler would add for this request
        (CORS, X-Request-Id); ``log_request(settings, id, method, path, status, seconds)``."""
        self.app = app
        self.paths = paths
        self.answer = answer
        self.request_headers = request_headers
        self.accepts_gzip = accepts_gzip
        self.log_request = log_request
        self.gzip_level = gzip_level
        self.max_body = min(MAX_LANE_BODY, app.settings.get("max_request_bytes", MAX_LANE_BODY))
        self._date = (0, "")

    def start_request(self, server_conn: object,
                      request_conn: tornado.httputil.HTTPConnection) -> tornado.httputil.HTTPMessageDelegate:
        return _LaneRequest(self, server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)

    def date(self) -> str:
        """The Date header, formatted once a second."""
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, tornado.httputil.format_timestamp(now))
        return self._date[1]

    def respond(self, request_conn: tornado.httputil.HTTPConnection, start_line: RequestStartLine,
                headers: HTTPHeaders, payload: bytes, started: float) -> None:
        response = HTTPHeaders()
        response["Server"] = _SERVER
        response["Content-Type"] = "application/json; charset=utf-8"
        response["Date"] = self.date()
        for name, value in self.request_headers(headers):
            response[name] = value
        request_id = response.get("X-Request-Id", "-")
        gzipping = len(payload) >= GZIP_MIN_LENGTH and self.accepts_gzip(headers.get("Accept-Encoding", ""))
        if gzipping:
            payload = gzip.compress(payload, self.gzip_level)
        response["Content-Length"] = str(len(payload))
        response["Vary"] = "Accept-Encoding"
        if gzipping:
            response["Content-Encoding"] = "gzip"
        request_conn.write_headers(ResponseStartLine("", 200, "OK"), response, payload)
        request_conn.finish()
        self.log_request(self.app.settings, request_id, start_line.method, start_line.path, 200,
                         time.monotonic() - started)


class _LaneRequest(tornado.httputil.HTTPMessageDelegate):
    """One request: kept while it may be a warm one, else handed to the Application."""

    def __init__(self, lane: WarmLane, server_conn: object, request_conn: tornado.httputil.HTTPConnection) -> None:
        self.lane = lane
        self.server_conn = server_conn
        self.request_conn = request_conn
        self.delegate: tornado.httputil.HTTPMessageDelegate | None = None
        self.chunks: list[bytes] = []

    def headers_received(self, start_line: Any, headers: HTTPHeaders) -> Any:
        self.start_line, self.headers = start_line, headers
        self.started = time.monotonic()
        length = headers.get("Content-Length", "")
        if (start_line.method == "POST" and start_line.path in self.lane.paths and length.isdigit()
                and int(length) <= self.lane.max_body and "Transfer-Encoding" not in headers):
            return None
        return self._hand_over()

    def _hand_over(self) -> Any:
        self.delegate = self.lane.app.start_request(self.server_conn, self.request_conn)
        return self.delegate.headers_received(self.start_line, self.headers)

    def data_received(self, chunk: bytes) -> Any:
        if self.delegate is not None:
            return self.delegate.data_received(chunk)
        self.chunks.append(chunk)
        return None

    def finish(self) -> None:
        if self.delegate is not None:
            self.delegate.finish()
            return
        body = b"".join(self.chunks)
        try:
            payload = self.lane.answer(self.start_line.path, body, self.headers)
        except Exception:  # noqa: BLE001 - the handlers meet it again, and answer or log it
            payload = None
        if payload is not None:
            self.lane.respond(self.request_conn, self.start_line, self.headers, payload, self.started)
            return
        future = self._hand_over()
        if future is not None:  # (a streaming handler may ask to wait; ours never does here)
            tornado.ioloop.IOLoop.current().add_future(future, lambda _: self._rest(body))
        else:
            self._rest(body)

    def _rest(self, body: bytes) -> None:
        assert self.delegate is not None
        if body:
            self.delegate.data_received(body)
        self.delegate.finish()

    def on_connection_close(self) -> None:
        if self.delegate is not None:
            self.delegate.on_connection_close()
