"""HTTP plumbing both servers share: JSON handlers, request ids, and a graceful server loop."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import signal
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable

import tornado.httputil
import tornado.web
from tornado.httputil import responses

from symcommon import jsonio
from symcommon.connections import (ConnectionLimits, GuardedHTTPServer, connection_cap,
                                   raise_descriptor_limit)
from symcommon.fastlane import WarmLane
from symcommon.logs import printable, request_line
from symcommon.responses import v4_body_rendered, v5_body_rendered
from symcommon.metrics import record_request
from symcommon.requests import (BIG_ANSWER_FRAMES, BIG_BODY_BYTES, DebugRequest, Job, Limits, RequestError,
                                check_body_counts, frame_total, parse_debug, parse_v4, parse_v5)

log = logging.getLogger("http")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# A CORS preflight's Access-Control-Request-Headers: header names (RFC 9110 tokens) separated
# by commas. Anything else is not echoed back into our answer.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_HEADER_NAME_LIST = re.compile(rf"{_TOKEN}(?:[ \t]*,[ \t]*{_TOKEN})*")
_MAX_REQUEST_HEADERS_CHARS = 2000
# What a preflight allows when the browser's list is missing or malformed: our own headers
# and the one the Firefox Profiler sets.
SAFE_REQUEST_HEADERS = "Content-Type, Debug, X-Request-Id, User-Agent"


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip: named with a q above 0, or not named
    but allowed by ``*`` (``gzip;q=0`` refuses it, which a substring test would miss)."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, *parameters = item.split(";")
        weight = 1.0
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
        weights.setdefault(name.strip().lower(), weight)
    for name in ("gzip", "x-gzip", "*"):
        if name in weights:
            return weights[name] > 0
    return False


class CompressedAnswers(tornado.web.GZipContentEncoding):
    """gzip for clients that accept it (answers of 1 KB or more, JSON and text), at level 1.

    A 12,000-frame v5 answer (4.0 MB) shrinks to 17% at level 1 (21 ms of CPU) and to 12.5%
    at level 6 (47 ms), spent on the event loop of a server whose warm answer to that request
    takes about 0.1 s; the 0.16 MB level 6 saves more are worth that only on slow links.
    Figures: README, "Compressed answers".
    """

    GZIP_LEVEL = 1

    def __init__(self, request: tornado.httputil.HTTPServerRequest) -> None:
        super().__init__(request)
        self._gzipping = accepts_gzip(request.headers.get("Accept-Encoding", ""))


def cors_headers(settings: dict[str, Any]) -> list[tuple[str, str]]:
    """Browsers (the Firefox Profiler) call SymServer's API from other origins. The DiskCache
    is no browser API: it sends no CORS headers, so pages cannot read it."""
    if settings.get("cors"):
        return [("Access-Control-Allow-Origin", "*"), ("Access-Control-Expose-Headers", "X-Request-Id")]
    return []


def request_id(headers: tornado.httputil.HTTPHeaders) -> str:
    """The client's ``X-Request-Id`` when it is a short plain token, else a new one."""
    given = headers.get("X-Request-Id", "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]


def decode_body(body: bytes, limits: Limits) -> Any:
    """A request body's JSON; raises :class:`RequestError` or :class:`ApiError` (400)."""
    # Counted before decoding: decoding cannot be interrupted or moved off the loop.
    check_body_counts(body, limits)
    try:
        return jsonio.loads(body)
    except jsonio.JsonError as error:
        raise ApiError(400, str(error)) from None


class ApiError(Exception):
    """Answer the request with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (an IP address, or ``localhost``) is this machine; an IPv4 address
    mapped into IPv6 counts as itself."""
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


@tornado.web.stream_request_body
class JsonHandler(tornado.web.RequestHandler):
    """A handler that speaks JSON, errors included, and tags each request with an id.

    The body is streamed in, so one larger than the ``max_request_bytes`` setting is refused
    with 413 before it is read (when it declares its length) or without being kept.
    """

    request_id = "-"
    _counted = False
    _body_too_large = False
    _body_read = False

    def set_default_headers(self) -> None:
        for name, value in cors_headers(self.settings):
            self.set_header(name, value)

    def prepare(self) -> None:
        self.application.settings.setdefault("active_requests", [0])[0] += 1
        self._counted = True
        self.request_id = request_id(self.request.headers)
        self.set_header("X-Request-Id", self.request_id)
        self._chunks: list[bytes] = []
        self._body_bytes = 0
        declared = self.request.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._body_limit():
            raise ApiError(413, self._too_large_message())

    def _body_limit(self) -> int:
        return self.settings.get("max_request_bytes", 16 * 1024 * 1024)

    def _too_large_message(self) -> str:
        return f"request body larger than the limit of {self._body_limit()} bytes"

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        self._body_bytes += len(chunk)
        if self._body_bytes <= self._body_limit():
            self._chunks.append(chunk)
            return
        # Over the limit without having declared it (chunked): answer 413 now.  Answering
        # before the body is read makes Tornado close the connection once the answer is sent,
        # so the rest of an endless body is never read.
        self._body_too_large = True
        self._chunks = []
        error = ApiError(413, self._too_large_message())
        self.send_error(413, exc_info=(ApiError, error, None))

    def on_finish(self) -> None:
        if self._counted:
            self.application.settings["active_requests"][0] -= 1
            self._counted = False

    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish_json(jsonio.dumps(value))

    def finish_json(self, payload: bytes) -> None:
        """Answer with JSON already encoded."""
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(payload)

    def json_body(self) -> Any:
        self._body_read = True
        if self._body_too_large:
            raise ApiError(413, self._too_large_message())
        body = b"".join(self._chunks)
        self._chunks = []  # one copy of a big body is enough
        return decode_body(body, self.settings["limits"])

    async def v5_jobs(self) -> list[Job]:
        """The request's v5 jobs, validated; a big body off the event loop."""
        body = self.json_body()
        if self._body_bytes > BIG_BODY_BYTES:
            return await asyncio.to_thread(parse_v5, body, self.settings["limits"])
        return parse_v5(body, self.settings["limits"])

    async def finish_rendered(self, jobs: list[Job], render: Callable[..., bytes], *args: Any) -> None:
        """Answer with the JSON ``render(*args)`` makes; off the event loop when ``jobs`` ask
        for so many frames that rendering would hold it."""
        if frame_total(jobs) > BIG_ANSWER_FRAMES:
            payload = await asyncio.to_thread(render, *args)
        else:
            payload = render(*args)
        self.finish_json(payload)

    def is_loopback_peer(self) -> bool:
        """Whether the TCP peer is this machine (headers such as X-Forwarded-For never count)."""
        address = self.request.connection.context.address  # type: ignore[union-attr]
        return isinstance(address, tuple) and is_loopback_host(address[0])

    def require_loopback(self) -> None:
        if not self.is_loopback_peer():
            raise ApiError(403, "debug requests are accepted only from the local machine")

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, (ApiError, RequestError)):
            return  # an expected answer, logged with the request line
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, ApiError):
            status_code, message = error.status, error.message
        elif isinstance(error, RequestError):
            status_code, message = 400, str(error)
        elif isinstance(error, tornado.web.HTTPError):
            message = error.log_message or error.reason or responses.get(status_code, "error")
        else:
            message = "internal error; see the server log"
        if self._has_body() and not self._body_read:
            # Answered before the body was read: the server drops the connection after this
            # answer, so tell the client not to reuse it (or its next request meets a reset).
            self.set_header("Connection", "close")
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(jsonio.dumps({"error": message}))

    def _has_body(self) -> bool:
        headers = self.request.headers
        return headers.get("Content-Length", "0") not in ("", "0") or "Transfer-Encoding" in headers

    def options(self, *args: Any) -> None:
        """CORS preflight: any origin may POST, with whatever request headers it asks for.

        The asked-for list is echoed back rather than answered with ``*``: a wildcard is not
        understood by older browsers and never covers ``Authorization``, while an echo of a
        well-formed list works in every browser (Firefox asks for ``user-agent``, which the
        Firefox Profiler sets). Our answers never depend on credentials, so nothing is lost.
        """
        if not self.settings.get("cors"):
            raise ApiError(405, "OPTIONS: this server answers no CORS preflights (it is no browser API)")
        asked = self.request.headers.get("Access-Control-Request-Headers", "").strip()
        well_formed = len(asked) <= _MAX_REQUEST_HEADERS_CHARS and _HEADER_NAME_LIST.fullmatch(asked)
        self.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.set_header("Access-Control-Allow-Headers", asked if well_formed else SAFE_REQUEST_HEADERS)
        self.set_header("Access-Control-Max-Age", "86400")
        if self.request.headers.get("Access-Control-Request-Private-Network", "").strip().lower() == "true":
            # Chromium's Private Network Access: the profiler's public page calling a server on
            # the user's machine. Only its permission prompt, where it has one, may still stop it.
            self.set_header("Access-Control-Allow-Private-Network", "true")
        # The answer depends on those request headers: caches must not give one to another.
        self.set_header("Vary", "Access-Control-Request-Headers, Access-Control-Request-Private-Network")
        self.set_status(204)
        self.finish()

    def refuse_web_pages(self) -> None:
        """Debug requests change the servers' state, so a web page must not be able to send
        them. A browser adds ``Origin`` to every cross-origin POST (and to form posts), and
        without a preflight it can only send text/plain, form or multipart bodies; demanding
        no ``Origin`` and ``Content-Type: application/json`` shuts every page out."""
        if "Origin" in self.request.headers:
            raise ApiError(403, "debug requests are refused from web pages (the request has an Origin header)")
        media_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise ApiError(403, "debug requests must be sent with Content-Type: application/json")


class OriginalProtocolHandler(JsonHandler):
    """POST / and /symbolicate/v4: a v3/v4 request, or a debug request from a loopback peer.

    Subclasses say how a job is answered and which debug actions they have.
    """

    def initialize(self, default_version: int | None) -> None:
        self.default_version = default_version  # None: "version" is required, as on POST /

    async def post(self) -> None:
        body = self.json_body()
        debug = parse_debug(body)
        if debug is not None:
            if not self.settings["debug_protocol"]:
                raise ApiError(403, "the debug protocol is disabled on this server (debugProtocol: false)")
            self.require_loopback()
            self.refuse_web_pages()
            self.write_json(await self.debug_action(debug))
            return
        version, job = parse_v4(body, self.default_version, self.settings["limits"])
        self.finish_json(await self.v4_answer(job, version))

    async def v4_answer(self, job: Job, version: int) -> bytes:
        """The answer's JSON, with the original server's spacing (``responses.v4_body``)."""
        raise NotImplementedError

    async def debug_action(self, request: DebugRequest) -> dict[str, Any]:
        raise NotImplementedError


class NotFoundHandler(JsonHandler):
    def prepare(self) -> None:
        super().prepare()
        raise ApiError(404, f"no such endpoint: {self.request.method} {self.request.path}")


class LoadBalancerHeartbeat(JsonHandler):
    """GET /__lbheartbeat__: the process is up and its event loop answers."""

    async def get(self) -> None:
        self.write_json({"status": "ok"})


class MetricsHandler(JsonHandler):
    """GET /metrics: the Prometheus text format."""

    async def get(self) -> None:
        body, content_type = self.settings["metrics"].exposition()
        self.set_header("Content-Type", content_type)
        self.finish(body)


class VersionHandler(JsonHandler):
    """GET /__version__: what is running (the commit when the source is a git checkout)."""

    async def get(self) -> None:
        self.write_json(version_info())


def version_info() -> dict[str, Any]:
    from importlib import metadata

    try:
        version = metadata.version("symbolication-server")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"name": "symbolication-server", "version": version, "commit": _source_commit()}


def _source_commit() -> str | None:
    git = Path(__file__).resolve().parent.parent / ".git"
    try:
        reference = (git / "HEAD").read_text().strip()
        if not reference.startswith("ref: "):
            return reference
        name = reference[5:]
        if (git / name).exists():
            return (git / name).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + name):
                return line.split()[0]
    except OSError:
        pass
    return None


def protocol_application(section: dict[str, Any], v4: type, v5: type, heartbeat: type,
                         extra_routes: list[tuple] = (), cors: bool = False,
                         **settings: Any) -> tornado.web.Application:
    """The routes both servers share, since they speak the same protocol, with the
    request limits of the server's config ``section``. ``cors``: answer browsers of any
    origin (SymServer's public API only)."""
    return tornado.web.Application(
        [
            *extra_routes,
            (r"/", v4, {"default_version": None}),
            (r"/symbolicate/v4", v4, {"default_version": 4}),
            (r"/symbolicate/v5", v5),
            (r"/__lbheartbeat__", LoadBalancerHeartbeat),
            (r"/__heartbeat__", heartbeat),
            (r"/__version__", VersionHandler),
            (r"/metrics", MetricsHandler),
        ],
        default_handler_class=NotFoundHandler,
        transforms=[CompressedAnswers],
        log_function=log_request,
        limits=Limits.from_section(section),
        max_request_bytes=section["maxRequestMB"] * 1024 * 1024,
        debug_protocol=section["debugProtocol"],
        connection_limits=ConnectionLimits.from_section(section),
        cors=cors,
        **settings,
    )


def wants_debug(headers: tornado.httputil.HTTPHeaders) -> bool:
    """Whether the client sent the ``Debug: true`` header (timings and cache figures wanted)."""
    return headers.get("Debug", "").strip().lower() == "true"


def log_request(handler: tornado.web.RequestHandler) -> None:
    """One line per request: id, method, path, status, time; and the request metrics."""
    log_request_line(handler.application.settings, getattr(handler, "request_id", "-"),
                     handler.request.method or "", handler.request.path, handler.get_status(),
                     handler.request.request_time())


def log_request_line(settings: dict[str, Any], request_id: str, method: str, path: str, status: int,
                     seconds: float) -> None:
    """:func:`log_request` for a request answered by the warm lane, and for the handlers."""
    record_request(settings, path, method, status, seconds)
    shown = path if path in WARM_LANE_PATHS else printable(path, 100)
    if status < 500:
        request_line(log, f"request id={request_id} {method} {shown} {status} {1000 * seconds:.1f}ms")
    else:
        log.error("request id=%s %s %s %d %.1fms", request_id, method, shown, status, 1000 * seconds)


WarmJobs = Callable[[list[Job]], "list[list[list[tuple[bytes, bytes]]]] | None"]


def warm_api_answer(warm_jobs: WarmJobs, limits: Limits,
                    v4_warm: Callable[[], bool] = lambda: True) -> Callable[[str, bytes, Any], bytes | None]:
    """The warm lane's answer for either server (see :mod:`symcommon.fastlane`): a v3/v4/v5
    request whose jobs ``warm_jobs`` answers from frames rendered when cached; None for
    anything else (a debug request or header, ``v4_warm()`` false, a frame not warm, an invalid
    or big request), which the handlers then answer, errors worded as ever."""

    def answer(path: str, body: bytes, headers: tornado.httputil.HTTPHeaders) -> bytes | None:
        try:
            value = decode_body(body, limits)
            if path == "/symbolicate/v5":
                if wants_debug(headers):
                    return None
                jobs = parse_v5(value, limits)
                warm = warm_jobs(jobs) if frame_total(jobs) <= BIG_ANSWER_FRAMES else None
                return None if warm is None else v5_body_rendered(jobs, warm)
            if not v4_warm() or parse_debug(value) is not None:
                return None
            version, job = parse_v4(value, None if path == "/" else 4, limits)
            warm = warm_jobs([job]) if frame_total([job]) <= BIG_ANSWER_FRAMES else None
            return None if warm is None else v4_body_rendered(job, warm[0], version)
        except (RequestError, ApiError):
            return None  # the handlers word the error
    return answer


#: The API paths whose POSTs the warm lane (``warm_answer`` in the settings) sees first.
WARM_LANE_PATHS = {"/", "/symbolicate/v4", "/symbolicate/v5"}


def warm_lane(app: tornado.web.Application) -> WarmLane | tornado.web.Application:
    """What the HTTP server should hand requests to: the warm lane in front of ``app`` when
    the server gave one (``warm_answer``), else ``app``."""
    answer = app.settings.get("warm_answer")
    if answer is None:
        return app
    settings = app.settings
    return WarmLane(app, WARM_LANE_PATHS, answer,
                    lambda headers: [*cors_headers(settings), ("X-Request-Id", request_id(headers))],
                    accepts_gzip, log_request_line, CompressedAnswers.GZIP_LEVEL)


def write_pidfile(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(f"{os.getpid()}\n")
    temporary.replace(path)


async def serve(app: tornado.web.Application, port: int, *, name: str,
                pidfile: Path | None = None,
                on_stop: Callable[[], Awaitable[None]] | None = None,
                drain_seconds: float = 20.0, sockets: list | None = None,
                address: str = "", on_drain: Callable[[float], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting, let requests in flight finish, exit.

    ``on_drain(seconds)`` is told, when the drain starts, how long it lasts at most (the
    DiskCache ends its downloads before then, so their requests get an answer).

    ``sockets``: already listening sockets (one of several processes on the port); else
    listen on ``address`` ("" for every address) and ``port``.
    """
    limits = app.settings.get("connection_limits") or ConnectionLimits()
    descriptors = raise_descriptor_limit()
    cap = connection_cap(limits.max_connections, descriptors)
    if cap < limits.max_connections:
        log.warning("maxConnections %d is more than the descriptor limit (%d) allows: using %d",
                    limits.max_connections, descriptors, cap)
    # Handlers enforce the configured body limit themselves, with a JSON 413.
    server = GuardedHTTPServer(warm_lane(app), xheaders=False, max_body_size=1 << 40, limits=limits,
                               max_connections=cap)
    if sockets is not None:
        server.add_sockets(sockets)
    else:
        server.listen(port, address)
    log.info("%s listening on %s port %d (pid %d); at most %d connections, headers within %g s, "
             "bodies within %g s", name, address or "every address", port, os.getpid(), cap,
             limits.header_timeout, limits.body_timeout)
    if pidfile is not None:
        write_pidfile(pidfile)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
        log.info("%s stopping: no new connections, draining requests in flight", name)
        server.stop()
        deadline = time.monotonic() + drain_seconds
        if on_drain is not None:
            on_drain(drain_seconds)
        while _active_requests(app) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await server.close_all_connections()
        if on_stop is not None:
            await on_stop()
    finally:
        if pidfile is not None and _pidfile_is_ours(pidfile):
            pidfile.unlink(missing_ok=True)
    log.info("%s stopped", name)


def _active_requests(app: tornado.web.Application) -> int:
    return app.settings.get("active_requests", [0])[0]


def _pidfile_is_ours(pidfile: Path) -> bool:
    try:
        return int(pidfile.read_text().split()[0]) == os.getpid()
    except (OSError, ValueError, IndexError):
        return False
