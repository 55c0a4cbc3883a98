"""SymServer's client of the DiskCache: one v5 request per client request, for the misses."""

from __future__ import annotations

import logging
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from symcommon import jsonio
from symcommon.web import is_loopback_host

log = logging.getLogger("symserver.diskcache")

CONNECT_TIMEOUT_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 600.0  # a cold request may download and process a large module


class DiskCacheUnavailable(Exception):
    """The DiskCache did not answer; the client gets a 503."""


class DiskCacheDown(DiskCacheUnavailable):
    """The DiskCache refused, dropped the connection or said 503: another one may answer."""


class DiskCacheClient:
    def __init__(self, address: str) -> None:
        self.address = address
        self.url = f"http://{address}/symbolicate/v5"
        self._http = AsyncHTTPClient()
        #: gzip saves a network the answers' megabytes; on loopback it only costs both
        #: processes CPU (a whole cold profile's answers: about 20 ms of it).
        host = address.rpartition(":")[0].strip("[]") if ":" in address else address
        self.compressed = not is_loopback_host(host)

    async def symbolicate(self, body: dict[str, Any], request_id: str,
                          debug: bool = False) -> dict[str, Any]:
        """POST a v5 request; returns the decoded answer (with its ``debug`` figures if asked)."""
        headers = {"Content-Type": "application/json", "X-Request-Id": request_id}
        if debug:
            headers["Debug"] = "true"
        try:
            response = await self._http.fetch(
                self.url, method="POST", body=jsonio.dumps(body), headers=headers,
                connect_timeout=CONNECT_TIMEOUT_SECONDS, request_timeout=REQUEST_TIMEOUT_SECONDS,
                decompress_response=self.compressed)  # True: sends Accept-Encoding: gzip
        except HTTPClientError as error:
            detail = error.response.body[:200] if error.response is not None else b""
            # 599 is Tornado's code for a connection that failed or closed; only a slow
            # answer ("Timeout during request") is not a sign the server is gone.
            down = error.code == 503 or error.code == 599 and "during request" not in str(error)
            raise (DiskCacheDown if down else DiskCacheUnavailable)(
                f"DiskCache at {self.address} answered {error.code}: "
                f"{detail.decode('utf-8', 'replace') or error.message}") from error
        except OSError as error:
            raise DiskCacheDown(f"DiskCache at {self.address} is unreachable: {error}") from error
        try:
            answer = jsonio.loads(response.body)
            if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
                raise ValueError("no results")
            return answer
        except ValueError as error:
            raise DiskCacheUnavailable(f"DiskCache at {self.address} sent a bad answer: {error}") from error

    async def ping(self) -> bool:
        """Whether the DiskCache's own ``/__heartbeat__`` answers in time.  Not its
        ``/__lbheartbeat__``: that one needs only its event loop, and says ok while every
        thread that opens tables and answers lookups is stuck.  A 503 (its cache directory is
        not writable) still counts as answering: lookups of cached modules go on."""
        try:
            await self._http.fetch(f"http://{self.address}/__heartbeat__",
                                   connect_timeout=2, request_timeout=3)
        except HTTPClientError as error:
            return error.response is not None and error.code != 599
        except Exception:  # noqa: BLE001
            return False
        return True
