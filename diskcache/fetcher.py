"""Downloads symbol files from the configured symbol stores, in order, whatever the stores do.

Blocking (``http.client`` on sockets of our own), so the DiskCache runs it in threads of its
own.  The body is decoded (gzip, deflate) in bounded pieces and streamed to a file as it
arrives; memory does not grow with the file.  A 404 (or 403, which S3-backed stores send for
missing keys) moves on to the next store; a 5xx or a network error is retried ``retries``
times, ``retryDelayMs`` apart, before moving on.

A store is not trusted to behave:

* ``downloadTimeoutSeconds`` bounds a module's whole download by the wall clock: a watchdog
  shuts the socket down at the deadline, so a store trickling one byte at a time (which no
  per-read timeout notices) is cut off like a hanging one.  Shutdown aborts downloads the
  same way.
* ``maxSymbolFileMB`` caps the decoded bytes: a small gzip body that inflates without end is
  abandoned (and its partial file removed) as soon as it passes the cap.
* Redirects (stores send their files from a storage host) are followed, at most
  ``MAX_REDIRECTS`` of them, to http(s) only, and never to a loopback, private, link-local,
  multicast, reserved or unspecified address unless it is the configured store's own host and
  port.  The address checked is the one the socket is connected to, so a name that resolves
  differently the second time (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import asyncio
import fcntl
import heapq
import http.client
import ipaddress
import itertools
import logging
import os
import select
import socket
import ssl
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import SplitResult, urljoin, urlsplit

from diskcache.cachefiles import open_new
from symcommon.logs import printable
from symcommon.modules import ModuleId

log = logging.getLogger("diskcache.fetcher")

CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 30.0  # per read; the watchdog bounds the whole download
CHUNK_BYTES = 256 * 1024
SPLICE_PIPE_BYTES = 1024 * 1024  # a plain body moves through a pipe this big, in the kernel
DECODED_PIECE_BYTES = 1024 * 1024  # at most this much decoded output is held at once
PROGRESS_INTERVAL_SECONDS = 5.0  # big downloads say how far they are, at most this often
MAX_REDIRECTS = 5
#: The watchdog's list of deadlines is cleared of finished downloads when it is this long.
WATCHDOG_COMPACT_AT = 1024
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
USER_AGENT = "symbolication-server/1.0 (+DiskCache)"
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass
class FetchResult:
    """How a download went: ``url`` is set when the file was written to the destination."""

    url: str | None = None
    final_url: str | None = None  # where the file came from after redirects
    bytes: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    failure_reasons: list[str] = field(default_factory=list)  # one per failed attempt, for metrics
    restarted: bool = False  # an attempt failed after writing some of the file
    too_large: bool = False  # abandoned past maxSymbolFileMB
    zero_copy: bool = False  # the body went socket -> file in the kernel (os.splice), not through Python

    @property
    def found(self) -> bool:
        return self.url is not None


class _Retryable(Exception):
    """A failure worth trying again (5xx, connection trouble, a cut-off body)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # a short fixed word: http_status, timeout, connection, truncated, ...


class _Refused(Exception):
    """The store sent us somewhere we do not go (a redirect to a private address, a file: URL,
    too many redirects): not retried, the next store is tried."""


class _TooLarge(Exception):
    """The decoded file passed maxSymbolFileMB: no store is tried further."""


class DiskError(OSError):
    """The download could not be written here (not the store's fault: not retried)."""


class _Aborted(Exception):
    """The DiskCache is shutting down."""


class _Watch:
    """One download's socket, shut down at the deadline by the watchdog (or by shutdown)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._finished = False
        self.fired = False
        self.spliced = False  # the body was moved by os.splice

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._socket = sock
            fired = self.fired
        if fired:
            self.fire()

    def fire(self) -> None:
        """Shut the socket down: a read blocked on it returns at once."""
        with self._lock:
            self.fired = True
            if self._socket is None or self._finished:
                return
            try:
                # the base class's shutdown also works on an SSL socket without touching its TLS state
                socket.socket.shutdown(self._socket, socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def finish(self) -> None:
        with self._lock:
            self._finished = True

    @property
    def done(self) -> bool:
        return self._finished


class _Watchdog:
    """Fires each download's watch at its deadline: one thread, started on first use, for
    all the downloads (a threading.Timer each was a thread started and stopped per download,
    126 of them for a fresh profile)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, _Watch]] = []  # (deadline, order, watch), a heap
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: float, watch: _Watch) -> None:
        """Fire ``watch`` at ``deadline`` (time.monotonic()) unless it is finished before."""
        with self._changed:
            if len(self._due) >= WATCHDOG_COMPACT_AT:  # finished ones wait for their deadline: drop them
                self._due = [entry for entry in self._due if not entry[2].done]
                heapq.heapify(self._due)
            heapq.heappush(self._due, (deadline, next(self._order), watch))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="download-watchdog", daemon=True)
                self._thread.start()
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while self._due and (self._due[0][2].done or self._due[0][0] <= time.monotonic()):
                    _, _, watch = heapq.heappop(self._due)
                    if not watch.done:
                        watch.fire()
                wait = self._due[0][0] - time.monotonic() if self._due else None
                self._changed.wait(wait)


class SymbolFetcher:
    """Downloads one module from one store at a time; the caller goes through the stores
    (see :meth:`fetch_from`) and bounds how many downloads each store gets at once."""

    def __init__(self, urls: list[str], retries: int, retry_delay_ms: int,
                 timeout_seconds: float, max_bytes: int | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.urls = urls
        self.retries = retries
        self.retry_delay = retry_delay_ms / 1000
        self.timeout = timeout_seconds
        self.max_bytes = max_bytes
        self._closing = threading.Event()
        self._watches: set[_Watch] = set()
        self._watchdog = _Watchdog()
        self._lock = threading.Lock()
        self._tls = tls or _tls_context()  # certificates and host names are always verified

    def url_for(self, base: str, module: ModuleId) -> str:
        return base.rstrip("/") + "/" + module.store_path

    def fetch(self, module: ModuleId, destination: Path) -> FetchResult:
        """Try each store in order, one after the other, in this thread."""
        result = FetchResult()
        started = time.monotonic()
        deadline = started + self.timeout
        for base in self.urls:
            if self.fetch_from(base, module, destination, deadline, result):
                break
        result.seconds = time.monotonic() - started
        return result

    def fetch_from(self, base: str, module: ModuleId, destination: Path, deadline: float,
                   result: FetchResult) -> bool:
        """Try one store (with retries) before ``deadline``, recording into ``result``.

        True when no further store should be tried: the file is at ``destination``
        (``result.url`` set), it is too large, or the DiskCache is shutting down.
        """
        url = self.url_for(base, module)
        started = time.monotonic()
        for attempt in range(self.retries + 1):
            if time.monotonic() >= deadline:
                result.errors.append(f"{url}: gave up after {self.timeout:.0f}s")
                result.failure_reasons.append("timeout")
                return False
            try:
                size, final_url, spliced = self._download(base, url, destination, deadline)
            except _Retryable as error:
                if destination.exists() and destination.stat().st_size:
                    result.restarted = True
                result.errors.append(f"{url}: {error}")
                result.failure_reasons.append(error.reason)
                log.warning("fetching %s failed (attempt %d of %d): %s", printable(url),
                            attempt + 1, self.retries + 1, printable(error))
                if attempt < self.retries:
                    self._closing.wait(min(self.retry_delay, max(deadline - time.monotonic(), 0)))
                continue
            except _Refused as error:
                result.errors.append(f"{url}: {error}")
                result.failure_reasons.append("refused")
                log.warning("not following %s: %s", printable(url), printable(error))
                return False
            except _TooLarge as error:
                destination.unlink(missing_ok=True)
                result.errors.append(f"{url}: {error}")
                result.failure_reasons.append("too_large")
                result.too_large = True
                log.warning("abandoned %s: %s", printable(url), printable(error))
                return True
            except _Aborted:
                result.errors.append(f"{url}: aborted, the DiskCache is stopping")
                result.failure_reasons.append("aborted")
                return True
            if size is None:
                return False  # not in this store: next one
            result.url, result.final_url, result.bytes = url, final_url, size
            result.zero_copy = spliced
            log.info("downloaded %s: %d bytes in %.2fs%s", printable(url), size,
                     time.monotonic() - started,
                     f", from {printable(final_url)}" if final_url != url else "")
            return True
        return False

    def abort_all(self) -> None:
        """Shut down every download's socket now, and start no new one (shutdown)."""
        self._closing.set()
        with self._lock:
            watches = list(self._watches)
        for watch in watches:
            watch.fire()

    # -- one attempt ------------------------------------------------------------------------------

    def _download(self, base: str, url: str, destination: Path,
                  deadline: float) -> tuple[int | None, str, bool]:
        """The decoded size written (None when the store does not have the file), the final URL
        and whether the body was moved by the kernel (see :meth:`_splice`)."""
        if self._closing.is_set():
            raise _Aborted()
        watch = _Watch()
        with self._lock:
            self._watches.add(watch)
        self._watchdog.watch(deadline, watch)
        try:
            size, final_url = self._follow(base, url, destination, deadline, watch)
            if watch.fired:  # cut off at the deadline: what came may look complete but is not
                raise _Retryable("cut off", "timeout")
            return size, final_url, watch.spliced
        except _Retryable:
            if watch.fired:
                self._raise_if_closing()
                raise _Retryable(f"download took longer than the timeout ({self.timeout:g}s)",
                                 "timeout") from None
            raise
        finally:
            watch.finish()
            with self._lock:
                self._watches.discard(watch)

    def _raise_if_closing(self) -> None:
        if self._closing.is_set():
            raise _Aborted()

    def _follow(self, base: str, url: str, destination: Path, deadline: float,
                watch: _Watch) -> tuple[int | None, str]:
        store = urlsplit(base)
        store_origin = (store.hostname or "", store.port or DEFAULT_PORTS.get(store.scheme, 0))
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(current)
            if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
                raise _Refused(f"{printable(current, 200)} is not an http(s) URL")
            try:
                port = parts.port or DEFAULT_PORTS[parts.scheme]
            except ValueError:
                raise _Refused(f"{printable(current, 200)} has a bad port") from None
            own_store = (parts.hostname, port) == store_origin
            connection = self._connect(parts, port, own_store, deadline, watch)
            try:
                response = self._request(connection, parts)
                if response.status in REDIRECT_STATUSES:
                    location = response.getheader("Location")
                    if not location:
                        raise _Retryable(f"HTTP {response.status} without a Location", "http_status")
                    current = urljoin(current, location.strip())
                    log.info("%s redirects to %s", printable(url), printable(current, 300))
                    continue
                if response.status in (403, 404):
                    return None, current
                if response.status >= 500 or response.status == 429:
                    raise _Retryable(f"HTTP {response.status}", "http_status")
                if response.status != 200:
                    log.warning("%s answered HTTP %d; trying the next store",
                                printable(current), response.status)
                    return None, current
                return self._save(response, current, destination, deadline, connection.sock, watch), current
            except DiskError:
                raise
            except (http.client.IncompleteRead, http.client.HTTPException, OSError) as error:
                raise _Retryable(f"{type(error).__name__}: {error}", _reason(error)) from error
            finally:
                connection.close()
        raise _Refused(f"more than {MAX_REDIRECTS} redirects")

    def _connect(self, parts: SplitResult, port: int, own_store: bool, deadline: float,
                 watch: _Watch) -> http.client.HTTPConnection:
        """A connection whose socket is already connected to an address we accept."""
        host = parts.hostname or ""
        try:
            addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            raise _Retryable(f"cannot resolve {printable(host)}: {error}", "connection") from error
        refused, failure = [], None
        for family, kind, protocol, _, address in addresses:
            if not own_store and not admitted(address[0]):
                refused.append(address[0])
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Retryable("connecting took longer than the timeout", "timeout")
            sock = socket.socket(family, kind, protocol)
            watch.attach(sock)
            try:
                sock.settimeout(min(CONNECT_TIMEOUT_SECONDS, left))
                sock.connect(address)
                peer = sock.getpeername()[0]
                if not own_store and not admitted(peer):  # what we are really connected to
                    raise _Refused(f"{printable(host)} connected to {peer}, a loopback, private or "
                                   "link-local address")
                sock.settimeout(max(min(READ_TIMEOUT_SECONDS, deadline - time.monotonic()), 0.01))
                if parts.scheme == "https":
                    sock = self._tls.wrap_socket(sock, server_hostname=host)
                    watch.attach(sock)
                    connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                        host, port, context=self._tls)
                else:
                    connection = http.client.HTTPConnection(host, port)
                connection.sock = sock
                return connection
            except OSError as error:
                sock.close()
                failure = error
            except _Refused:
                sock.close()
                raise
        if failure is not None:
            raise _Retryable(f"cannot connect to {printable(host)}:{port}: {failure}", _reason(failure))
        if refused:
            raise _Refused(f"{printable(host)} is a loopback, private or link-local address "
                           f"({', '.join(refused[:3])}) and not the store's own host")
        raise _Retryable(f"{printable(host)} has no address", "connection")

    def _request(self, connection: http.client.HTTPConnection, parts: SplitResult) -> http.client.HTTPResponse:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            connection.putrequest("GET", target, skip_accept_encoding=True)
        except (http.client.InvalidURL, ValueError) as error:
            raise _Refused(f"bad URL: {error}") from error
        connection.putheader("User-Agent", USER_AGENT)
        connection.putheader("Accept-Encoding", "gzip, deflate")
        connection.putheader("Accept", "*/*")
        connection.putheader("Connection", "close")
        connection.endheaders()
        return connection.getresponse()

    def _save(self, response: http.client.HTTPResponse, url: str, destination: Path,
              deadline: float, sock: socket.socket | None = None, watch: _Watch | None = None) -> int:
        """Decode the body into ``destination``; its decoded size."""
        encoding = (response.getheader("Content-Encoding") or "").strip().lower()
        decoder = _Decoder(encoding)
        expected = response.getheader("Content-Length", "") or ""
        if (self.max_bytes is not None and decoder.identity and expected.isdigit()
                and int(expected) > self.max_bytes):
            raise _TooLarge(f"it declares {int(expected)} bytes, more than maxSymbolFileMB "
                            f"({self.max_bytes // (1024 * 1024)} MB)")
        total = f" of {int(expected) / 1e6:.1f} MB" if expected.isdigit() and decoder.identity else ""
        size = 0
        progress = _Progress(url, deadline, total)
        try:
            file = open_new(destination)  # in the cache's .tmp: never through a link
        except OSError as error:
            raise DiskError(error.errno, f"cannot write {destination.name}: {error.strerror}") from error
        with file:
            spliced = (decoder.identity and bool(response.length) and type(sock) is socket.socket
                       and hasattr(os, "splice"))
            if spliced:
                assert sock is not None
                size = self._splice(response, sock, file, url, deadline, total)
                if watch is not None:
                    watch.spliced = True
            while not spliced:
                chunk = response.read1(CHUNK_BYTES)
                if not chunk:
                    break
                for piece in decoder.feed(chunk):
                    size += len(piece)
                    self._check_size(size)
                    _write(file, piece)
                progress.tick(size)
            if response.length:  # http.client counts down what Content-Length still owes
                raise _Retryable(f"the body ended {response.length} bytes early", "truncated")
            decoder.finish()
        return size

    def _splice(self, response: http.client.HTTPResponse, sock: socket.socket, file: Any,
                url: str, deadline: float, total: str) -> int:
        """Move a plain body of declared length socket -> pipe -> ``file`` in the kernel, so
        the DiskCache's Python never holds it (a 74 MB module cost 60 ms of CPU copied
        through Python).  What http.client has already buffered is written first.  The
        socket stays non-blocking: a read waits at most READ_TIMEOUT_SECONDS, and the
        watchdog's shutdown ends a wait at once.  Leaves ``response.length`` at what the
        body still owes, so a body cut short is caught as truncated."""
        assert response.fp is not None and response.length is not None
        head = response.fp.peek(1)  # bytes read with the headers (at most one buffer)
        size = 0
        if head:
            data = response.read(min(len(head), response.length))
            size = len(data)
            _write(file, data)
        try:
            file.flush()
        except OSError as error:
            raise DiskError(error.errno, f"cannot write the download: {error.strerror}") from error
        remaining = response.length or 0
        progress = _Progress(url, deadline, total)
        source, target = sock.fileno(), file.fileno()
        readable = select.poll()
        readable.register(source, select.POLLIN)
        pipe_out, pipe_in = os.pipe()
        try:
            try:
                fcntl.fcntl(pipe_in, getattr(fcntl, "F_SETPIPE_SZ", 1031), SPLICE_PIPE_BYTES)
            except OSError:
                pass  # the default 64 KiB pipe works, with more calls
            while remaining > 0:
                try:
                    moved = os.splice(source, pipe_in, min(remaining, SPLICE_PIPE_BYTES),
                                      flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK)
                except BlockingIOError:
                    wait = min(READ_TIMEOUT_SECONDS, deadline - time.monotonic())
                    if wait <= 0 or not readable.poll(wait * 1000):
                        raise TimeoutError("timed out") from None
                    continue
                if moved == 0:
                    break  # the store closed the connection (or the watchdog shut it down)
                remaining -= moved
                size += moved
                while moved:
                    try:
                        moved -= os.splice(pipe_out, target, moved, flags=os.SPLICE_F_MOVE)
                    except OSError as error:
                        raise DiskError(error.errno,
                                        f"cannot write the download: {error.strerror}") from error
                progress.tick(size)
        finally:
            os.close(pipe_in)
            os.close(pipe_out)
        response.length = remaining
        return size

    def _check_size(self, size: int) -> None:
        if self.max_bytes is not None and size > self.max_bytes:
            raise _TooLarge(f"it decodes to more than maxSymbolFileMB "
                            f"({self.max_bytes // (1024 * 1024)} MB)")


class _Progress:
    """One body's wall-clock deadline, and a line every PROGRESS_INTERVAL_SECONDS saying how
    far a big download is."""

    def __init__(self, url: str, deadline: float, total: str) -> None:
        self.url, self.deadline, self.total = url, deadline, total
        self.started = self.last_report = time.monotonic()

    def tick(self, size: int) -> None:
        """``size`` bytes are written so far; raises once the deadline has passed."""
        now = time.monotonic()
        if now > self.deadline:
            raise _Retryable("download took longer than the timeout", "timeout")
        if now - self.last_report >= PROGRESS_INTERVAL_SECONDS:
            self.last_report = now
            log.info("downloading %s: %.1f MB%s so far, %.2f MB/s", printable(self.url),
                     size / 1e6, self.total, size / 1e6 / (now - self.started))


class _Decoder:
    """Content-Encoding decoding whose output comes in pieces of bounded size, so a body that
    inflates a thousandfold never sits whole in memory."""

    def __init__(self, encoding: str) -> None:
        self.identity = encoding in ("", "identity")
        self._gzip = encoding in ("gzip", "x-gzip")
        self._head = b""  # deflate: the first bytes, until we know whether they have a zlib header
        if self.identity:
            self._inflate = None
        elif self._gzip:
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._inflate = None  # chosen once two bytes are here
        else:
            raise _Retryable(f"unsupported Content-Encoding {printable(encoding, 40)!r}", "decoding")

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self.identity:
            yield data
            return
        if self._inflate is None:  # deflate: zlib-wrapped (as the standard says) or raw (as some send)
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        yield from self._run(data)

    def _run(self, data: bytes) -> Iterator[bytes]:
        assert self._inflate is not None
        pending = data
        while True:
            try:
                out = self._inflate.decompress(pending, DECODED_PIECE_BYTES)
            except zlib.error as error:
                raise _Retryable(f"cannot decode the body: {error}", "decoding") from error
            if out:
                yield out
            if self._inflate.eof:
                rest = self._inflate.unused_data
                if self._gzip and rest.strip(b"\0"):  # another gzip member follows
                    self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    pending = rest
                    continue
                return  # anything after the end is ignored
            pending = self._inflate.unconsumed_tail
            if not pending and len(out) < DECODED_PIECE_BYTES:
                return

    def finish(self) -> None:
        """The end of the body: a compressed stream must be complete."""
        if self.identity:
            return
        if self._inflate is None:
            if self._head:
                raise _Retryable("the compressed body is too short", "decoding")
            return  # an empty deflate body: an empty file
        if not self._inflate.eof:
            raise _Retryable("the compressed body ended early", "truncated")


def _write(file: object, data: bytes) -> None:
    try:
        file.write(data)  # type: ignore[attr-defined]
    except OSError as error:
        raise DiskError(error.errno, f"cannot write the download: {error.strerror}") from error


def admitted(address: str) -> bool:
    """Whether a redirect may take us to ``address``: not loopback, private, link-local,
    multicast, reserved or unspecified (IPv4-mapped IPv6 judged as the IPv4 inside).

    100.64.0.0/10 (carrier-grade NAT's shared space) is none of these for Python's
    ``ipaddress`` and is admitted, like any public address.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    ip = mapped or ip
    return not (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast
                or ip.is_reserved or ip.is_unspecified)


def _tls_context() -> ssl.SSLContext:
    try:
        import certifi  # the CA bundle requests used; the system's otherwise
        return ssl.create_default_context(cafile=certifi.where())
    except (ImportError, OSError, ssl.SSLError):
        return ssl.create_default_context()


def _reason(error: BaseException) -> str:
    """A metric label for a failed download, from a short fixed list."""
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, http.client.IncompleteRead):
        return "truncated"
    if isinstance(error, (ConnectionError, OSError)):
        return "connection"
    return "other"


class DownloadSlots:
    """At most ``count`` downloads from one store at a time.  A freed slot goes to the waiting
    download with the most addresses to answer, ties in arrival order: a fresh profile's
    requests ask for a hundred modules at once, and the one that decides when the profile is
    symbolicated is the big library with thousands of addresses (libxul), which first in,
    first out put behind the thirty small ones asked for before it."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._waiting: list[tuple[int, int, asyncio.Future]] = []  # (-addresses, arrival, future)
        self._arrivals = itertools.count()

    async def acquire(self, addresses: int = 0) -> None:
        if self._free > 0:
            self._free -= 1
            return
        entry = (-addresses, next(self._arrivals), asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiting, entry)
        try:
            await entry[2]
        except asyncio.CancelledError:
            if entry[2].done() and not entry[2].cancelled():
                self.release()  # handed a slot just as it gave up: the next one takes it
            elif entry in self._waiting:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
            raise

    def release(self) -> None:
        while self._waiting:
            future = heapq.heappop(self._waiting)[2]
            if not future.done():
                future.set_result(None)  # the slot passes straight to it
                return
        self._free += 1

    @property
    def waiting(self) -> int:
        return len(self._waiting)
