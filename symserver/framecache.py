"""The frame caches: one entry per (module, offset), shared by the v4 and v5 APIs.

Two tiers.  :class:`~symcommon.recentframes.RecentFrames` is a small in-process cache in
front of memcached: a warm 200-frame request costs 200 dict lookups instead of a memcached
round trip whose 200 values python-memcached parses and we decode (the round trip alone held
SymServer to 190 req/s).  Its entries expire after ``frameCacheSeconds``, so restarting
memcached after regenerating symbols (as the original README advises) still takes effect
within that time.

:class:`FrameCache` is the memcached tier.  python-memcached is blocking, so every call runs
in a small thread pool and is bounded by a timeout: memcached being down or slow makes a
request skip the cache, never fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import memcache

from symcommon import jsonio
from symcommon.frames import FrameInfo
from symcommon.modules import ModuleId

log = logging.getLogger("symserver.memcached")

KEY_PREFIX = "sym1:"  # bump when the value format changes
SOCKET_TIMEOUT_SECONDS = 0.25
CALL_TIMEOUT_SECONDS = 0.5
DEAD_RETRY_SECONDS = 1

CachedFrame = tuple[str | None, FrameInfo | None]  # (module code file, symbol)


def frame_key(module: ModuleId, offset: int) -> str:
    """A short key memcached accepts whatever the debug file name contains."""
    digest = hashlib.blake2b(f"{module.debug_file}/{module.debug_id}/{offset:x}".encode(),
                             digest_size=16).hexdigest()
    return KEY_PREFIX + digest


def encode(code_file: str | None, info: FrameInfo | None) -> bytes:
    return jsonio.dumps([code_file, info.to_compact() if info is not None else None])


def decode(value: Any) -> CachedFrame | None:
    try:
        code_file, compact = jsonio.loads(value)
        return code_file, FrameInfo.from_compact(compact) if compact is not None else None
    except (ValueError, TypeError):
        return None  # a foreign or damaged value counts as a miss


class FrameCache:
    """Batched, time-bounded access to the memcached servers (none: always a miss)."""

    def __init__(self, servers: list[str]) -> None:
        self.servers = servers
        self._threads = ThreadPoolExecutor(4, thread_name_prefix="memcached")
        self._client = memcache.Client(servers, socket_timeout=SOCKET_TIMEOUT_SECONDS,
                                       dead_retry=DEAD_RETRY_SECONDS) if servers else None

    async def _call(self, method: str, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self._threads, getattr(self._client, method), *args)
        return await asyncio.wait_for(call, CALL_TIMEOUT_SECONDS)

    async def get_many(self, keys: list[str]) -> dict[str, CachedFrame]:
        if self._client is None or not keys:
            return {}
        try:
            raw = await self._call("get_multi", keys)
        except Exception as error:  # noqa: BLE001 - any memcached trouble is a cache miss
            log.warning("memcached get skipped: %s", error or type(error).__name__)
            return {}
        found = {}
        for key, value in raw.items():
            decoded = decode(value)
            if decoded is not None:
                found[key] = decoded
        return found

    async def set_many(self, values: dict[str, bytes]) -> None:
        if self._client is None or not values:
            return
        try:
            await self._call("set_multi", values)
        except Exception as error:  # noqa: BLE001
            log.warning("memcached set skipped: %s", error or type(error).__name__)

    async def delete(self, key: str) -> bool:
        """True when the key is not in the cache afterwards."""
        if self._client is None:
            return True
        try:
            return bool(await self._call("delete", key))
        except Exception as error:  # noqa: BLE001
            log.warning("memcached delete failed: %s", error or type(error).__name__)
            return False

    async def ping(self) -> bool:
        """Whether every memcached server answers a stats request."""
        if self._client is None:
            return True
        try:
            stats = await self._call("get_stats")
        except Exception:  # noqa: BLE001
            return False
        # a server whose connection died mid-call is listed with no figures
        return sum(1 for _, figures in stats if figures) == len(self.servers)

    async def ping_each(self) -> dict[str, bool]:
        """Whether each server of the pool answers, on a connection of its own: the heartbeat
        lists them, and one server down costs only its share of the cache."""
        if not self.servers:
            return {}
        loop = asyncio.get_running_loop()
        calls = [loop.run_in_executor(self._threads, _answers_version, server) for server in self.servers]
        try:
            results = await asyncio.wait_for(asyncio.gather(*calls), CALL_TIMEOUT_SECONDS * 2)
        except asyncio.TimeoutError:
            return {server: False for server in self.servers}
        return dict(zip(self.servers, results))

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


def _answers_version(server: str) -> bool:
    """One ``version`` round trip, parsed the way python-memcached parses server strings."""
    host = memcache._Host(server, dead_retry=0, socket_timeout=SOCKET_TIMEOUT_SECONDS)
    try:
        if not host.connect():
            return False
        host.send_cmd("version")
        return host.readline().startswith(b"VERSION")
    except Exception:  # noqa: BLE001 - any failure is "not answering"
        return False
    finally:
        host.close_socket()
