"""Downloads symbol files from the configured symbol stores, in order.

Blocking (``requests``), so the DiskCache runs it in a thread.  The body is decoded (gzip,
deflate) and streamed to a file as it arrives; memory does not grow with the file.  A 404
(or 403, which S3-backed stores send for missing keys) moves on to the next store; a 5xx or
a network error is retried ``retries`` times, ``retryDelayMs`` apart, before moving on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from symcommon.logs import printable
from symcommon.modules import ModuleId

log = logging.getLogger("diskcache.fetcher")

CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 30.0
CHUNK_BYTES = 256 * 1024
PROGRESS_INTERVAL_SECONDS = 5.0  # big downloads say how far they are, at most this often
USER_AGENT = "symbolication-server/1.0 (+DiskCache)"


@dataclass
class FetchResult:
    """How a download went: ``url`` is set when the file was written to the destination."""

    url: str | None = None
    bytes: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    failure_reasons: list[str] = field(default_factory=list)  # one per failed attempt, for metrics
    restarted: bool = False  # an attempt failed after writing some of the file

    @property
    def found(self) -> bool:
        return self.url is not None


class _Retryable(Exception):
    """A failure worth trying again (5xx, connection trouble, a cut-off body)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # a short fixed word: http_5xx, timeout, connection, body, ...


class SymbolFetcher:
    def __init__(self, urls: list[str], retries: int, retry_delay_ms: int,
                 timeout_seconds: float) -> None:
        self.urls = urls
        self.retries = retries
        self.retry_delay = retry_delay_ms / 1000
        self.timeout = timeout_seconds

    def url_for(self, base: str, module: ModuleId) -> str:
        return base.rstrip("/") + "/" + module.store_path

    def fetch(self, module: ModuleId, destination: Path) -> FetchResult:
        """Try each store in order; on success the decoded file is at ``destination``."""
        result = FetchResult()
        started = time.monotonic()
        deadline = started + self.timeout
        with requests.Session() as session:
            session.headers["User-Agent"] = USER_AGENT
            for base in self.urls:
                url = self.url_for(base, module)
                for attempt in range(self.retries + 1):
                    if time.monotonic() >= deadline:
                        result.errors.append(f"{url}: gave up after {self.timeout:.0f}s")
                        result.failure_reasons.append("timeout")
                        break
                    try:
                        size = self._download(session, url, destination, deadline)
                    except _Retryable as error:
                        if destination.exists() and destination.stat().st_size:
                            result.restarted = True
                        result.errors.append(f"{url}: {error}")
                        result.failure_reasons.append(error.reason)
                        log.warning("fetching %s failed (attempt %d of %d): %s", printable(url),
                                    attempt + 1, self.retries + 1, printable(error))
                        if attempt < self.retries:
                            time.sleep(min(self.retry_delay, max(deadline - time.monotonic(), 0)))
                        continue
                    if size is None:
                        break  # not in this store: next one
                    result.url, result.bytes = url, size
                    result.seconds = time.monotonic() - started
                    log.info("downloaded %s: %d bytes in %.2fs", printable(url), size, result.seconds)
                    return result
        result.seconds = time.monotonic() - started
        return result

    def _download(self, session: requests.Session, url: str, destination: Path,
                  deadline: float) -> int | None:
        """The decoded size written, or None when the store does not have the file."""
        read_timeout = max(min(READ_TIMEOUT_SECONDS, deadline - time.monotonic()), 0.1)
        try:
            with session.get(url, stream=True,
                             timeout=(CONNECT_TIMEOUT_SECONDS, read_timeout)) as response:
                if response.status_code in (403, 404):
                    return None
                if response.status_code >= 500 or response.status_code == 429:
                    raise _Retryable(f"HTTP {response.status_code}", "http_status")
                if response.status_code != 200:
                    log.warning("%s answered HTTP %d; trying the next store",
                                printable(url), response.status_code)
                    return None
                size = 0
                started = last_report = time.monotonic()
                expected = response.headers.get("Content-Length", "")
                total = f" of {int(expected) / 1e6:.1f} MB" if expected.isdigit() and \
                    "Content-Encoding" not in response.headers else ""
                with open(destination, "wb") as file:
                    for chunk in response.iter_content(CHUNK_BYTES):
                        file.write(chunk)
                        size += len(chunk)
                        now = time.monotonic()
                        if now > deadline:
                            raise _Retryable("download took longer than the timeout", "timeout")
                        if now - last_report >= PROGRESS_INTERVAL_SECONDS:
                            last_report = now
                            log.info("downloading %s: %.1f MB%s so far, %.2f MB/s", printable(url),
                                     size / 1e6, total, size / 1e6 / (now - started))
                return size
        except requests.RequestException as error:
            raise _Retryable(f"{type(error).__name__}: {error}", _reason(error)) from error


def _reason(error: requests.RequestException) -> str:
    """A metric label for a failed download, from a short fixed list."""
    if isinstance(error, requests.Timeout):
        return "timeout"
    if isinstance(error, requests.exceptions.ContentDecodingError):
        return "decoding"
    if isinstance(error, (requests.exceptions.ChunkedEncodingError, requests.exceptions.StreamConsumedError)):
        return "truncated"
    if isinstance(error, requests.ConnectionError):
        return "connection"
    return "other"
