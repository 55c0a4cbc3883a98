"""Bounds on client connections, so slow or idle clients (slowloris) cannot use up a server.

Tornado alone waits an hour for a request's headers and forever for its body, and accepts
connections until ``accept`` fails with EMFILE, after which its accept loop fails again on
every turn of the event loop, a traceback each time.  Here:

* the headers of a request (and the next request on a kept-alive connection) must arrive
  within ``headerTimeoutSeconds``, its body within ``bodyTimeoutSeconds``;
* a process keeps at most ``maxConnections`` connections, a number kept below its
  descriptor limit (whose soft value is raised to the hard one at start).  At the cap, the
  connection that has waited longest for a request (or the rest of one) is closed to make
  room for the new one; when every connection has a request being answered, accepting
  pauses until one closes (new clients wait in the listen backlog);
* when ``accept`` fails anyway for want of descriptors or memory, accepting pauses for a
  moment instead of failing again at once.
"""

from __future__ import annotations

import errno
import logging
import resource
import socket
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import tornado.httpserver
from tornado import httputil
from tornado.http1connection import HTTP1ServerConnection
from tornado.ioloop import IOLoop

log = logging.getLogger("http")

#: Descriptors kept free for everything a server opens besides client connections
#: (memcached and DiskCache connections, log files, tables, worker pipes).
RESERVED_DESCRIPTORS = 256
#: How long accepting pauses after ``accept`` failed for want of descriptors or memory.
ACCEPT_PAUSE_SECONDS = 1.0
#: Connections accepted per readiness event at most, so accepting cannot starve the rest.
ACCEPTS_PER_EVENT = 128
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


@dataclass(frozen=True)
class ConnectionLimits:
    """The config section's connection bounds (see :mod:`symcommon.config`)."""

    header_timeout: float = 20.0
    body_timeout: float = 60.0
    max_connections: int = 4000

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> ConnectionLimits:
        return cls(float(section["headerTimeoutSeconds"]), float(section["bodyTimeoutSeconds"]),
                   int(section["maxConnections"]))


def raise_descriptor_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else target
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as error:
        log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, target, error)
        return soft
    return target


def connection_cap(configured: int, descriptor_limit: int) -> int:
    """``maxConnections``, lowered if need be to leave descriptors for everything else."""
    room = max(descriptor_limit - RESERVED_DESCRIPTORS, descriptor_limit // 2, 1)
    return min(configured, room)


class GuardedHTTPServer(tornado.httpserver.HTTPServer):
    """An HTTPServer with header and body timeouts and a cap on open connections."""

    def initialize(self, *args: Any, limits: ConnectionLimits = ConnectionLimits(),  # type: ignore[override]
                   max_connections: int | None = None, **kwargs: Any) -> None:
        super().initialize(*args, idle_connection_timeout=limits.header_timeout,
                           body_timeout=limits.body_timeout, **kwargs)
        self.max_connections = max_connections or limits.max_connections
        self.open_connections = 0
        # Connections waiting for a request or for the rest of one, longest-waiting first:
        # the ones that may be closed to make room.
        self._waiting: OrderedDict[Any, None] = OrderedDict()
        self._closed_to_make_room: set[Any] = set()
        self._paused = False
        self._resume_handle: Any = None
        self.made_room = 0

    # -- accepting --------------------------------------------------------------------------

    def add_sockets(self, sockets: Any) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = self._watch(sock)

    def _watch(self, sock: socket.socket) -> Callable[[], None]:
        IOLoop.current().add_handler(sock, lambda _fd, _events: self._accept(sock), IOLoop.READ)

        def unwatch() -> None:
            IOLoop.current().remove_handler(sock)
        return unwatch

    def _set_accepting(self, accepting: bool) -> None:
        if self._stopped or self._paused != accepting:
            return  # already so (or stopping: stop() removes the handlers itself)
        self._paused = not accepting
        io_loop = IOLoop.current()
        for sock in self._sockets.values():
            if accepting:
                io_loop.add_handler(sock, lambda _fd, _events, s=sock: self._accept(s), IOLoop.READ)
            else:
                io_loop.remove_handler(sock)

    def _pause_for(self, seconds: float) -> None:
        self._set_accepting(False)
        if self._resume_handle is None:
            def resume() -> None:
                self._resume_handle = None
                if self.open_connections < self.max_connections:
                    self._set_accepting(True)
            self._resume_handle = IOLoop.current().call_later(seconds, resume)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPTS_PER_EVENT):
            if self._stopped or self._paused:
                return
            if self.open_connections >= self.max_connections and not self._waiting:
                log.warning("maxConnections (%d) reached and every connection has a request in "
                            "progress: new connections wait", self.max_connections)
                self._set_accepting(False)  # on_close resumes
                return
            try:
                connection, address = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:
                if error.errno not in _OUT_OF_RESOURCES:
                    raise
                log.error("cannot accept connections: %s; pausing accepts for %.0f s",
                          error.strerror or error, ACCEPT_PAUSE_SECONDS)
                self._pause_for(ACCEPT_PAUSE_SECONDS)
                return
            if self.open_connections >= self.max_connections:
                self._make_room()
            self._handle_connection(connection, address)

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request; False if none waits."""
        if not self._waiting:
            return False
        connection, _ = self._waiting.popitem(last=False)
        self._closed_to_make_room.add(connection)
        self.open_connections -= 1
        self.made_room += 1
        log.warning("maxConnections (%d) reached: closing the connection that waited longest "
                    "for a request to make room", self.max_connections)
        connection.stream.close()
        return True

    # -- following each connection ------------------------------------------------------------

    def handle_stream(self, stream: Any, address: tuple) -> None:
        # As HTTPServer.handle_stream, and the new connection counts as waiting for a request
        # at once (its serving task starts on a later turn of the loop).
        self.open_connections += 1
        context = tornado.httpserver._HTTPRequestContext(stream, address, self.protocol,
                                                         self.trusted_downstream)
        connection = HTTP1ServerConnection(stream, self.conn_params, context)
        self._connections.add(connection)
        self._waiting[connection] = None
        connection.start_serving(self)

    def start_request(self, server_conn: object,
                      request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        # Called when the connection starts waiting for its next request.
        self._waiting[server_conn] = None
        self._waiting.move_to_end(server_conn)
        return _Received(super().start_request(server_conn, request_conn),
                         lambda: self._waiting.pop(server_conn, None))

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        self._waiting.pop(server_conn, None)
        if server_conn in self._closed_to_make_room:
            self._closed_to_make_room.discard(server_conn)
        else:
            self.open_connections -= 1
        if self._paused and self._resume_handle is None and self.open_connections < self.max_connections:
            self._set_accepting(True)


class _Received(httputil.HTTPMessageDelegate):
    """Passes a request on, and tells when the whole of it has arrived (it is then being
    answered, and its connection is no longer one that may be closed to make room)."""

    def __init__(self, delegate: httputil.HTTPMessageDelegate, on_received: Callable[[], Any]) -> None:
        self._delegate = delegate
        self._on_received = on_received

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Any:
        return self._delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self._delegate.data_received(chunk)

    def finish(self) -> None:
        self._on_received()
        self._delegate.finish()

    def on_connection_close(self) -> None:
        self._delegate.on_connection_close()
