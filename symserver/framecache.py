"""The frame caches: one entry per (module, offset), shared by the v4 and v5 APIs.

Two tiers.  :class:`~symcommon.recentframes.RecentFrames` is a small in-process cache in
front of memcached: a warm 200-frame request costs 200 dict lookups instead of a memcached
round trip whose 200 values python-memcached parses and we decode (the round trip alone held
SymServer to 190 req/s).  Its entries expire after ``frameCacheSeconds``, so restarting
memcached after regenerating symbols (as the original README advises) still takes effect
within that time.

:class:`FrameCache` is the memcached tier.  python-memcached is blocking, so every call runs
in a small thread pool and is bounded by a timeout: memcached being down or slow makes a
request skip the cache, never fail.  A big request is read and written in chunks of
:data:`CHUNK_KEYS` keys, each call bounded on its own, so a request of half a million frames
is cached like a small one.

memcached has no authentication: whoever reaches it can store anything under a frame's
(predictable) key.  So a value is trusted for nothing.  python-memcached would unpickle a
value stored with its pickle flag (running code) and inflate one with its zlib flag (a
900 KB value becomes 900 MB): :class:`PlainBytesClient` reads flag 0 values of at most
:data:`MAX_VALUE_BYTES` only, skipping any other value's bytes unread.  A plain value is then
checked field by field (:func:`decode`).  Anything else is a miss, and the fresh answer
overwrites it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import memcache

from symcommon import jsonio
from symcommon.frames import FrameInfo
from symcommon.modules import ModuleId

log = logging.getLogger("symserver.memcached")

KEY_PREFIX = "sym1:"  # bump when the value format changes
SOCKET_TIMEOUT_SECONDS = 0.25
CALL_TIMEOUT_SECONDS = 0.5  # for one small call: a delete, a stats request
DEAD_RETRY_SECONDS = 1
#: Keys per get_multi / set_multi call.  One call of 1000 frames takes 10-20 ms (on a busy
#: 2-core machine, now and then far more: a late chunk is a miss, not the end of caching).
CHUNK_KEYS = 1000
CHUNK_TIMEOUT_SECONDS = 2.0  # generous: on a busy machine a collection pass of the GC alone can take 1 s
PARALLEL_CHUNKS = 2  # chunks of one request in flight at once (each on its own connection)
#: After this many chunks in a row fail (memcached hung or gone), a request stops using it,
#: so its time in memcached is at most CHUNK_TIMEOUT_SECONDS per PARALLEL_CHUNKS chunks
#: that succeed, plus about two timeouts.
FAILURES_TO_GIVE_UP = 2
THREADS = 8
#: The longest value read or written.  Our values are ~100 bytes; a frame with a long chain of
#: inlined C++ templates a few KB.  A longer one is not cached in memcached (it is still
#: answered, and kept by the in-process tier).
MAX_VALUE_BYTES = 64 * 1024

CachedFrame = tuple[str | None, FrameInfo | None]  # (module code file, symbol)
Chunk = TypeVar("Chunk")


def frame_key(module: ModuleId, offset: int) -> str:
    """A short key memcached accepts whatever the debug file name contains."""
    digest = hashlib.blake2b(f"{module.debug_file}/{module.debug_id}/{offset:x}".encode(),
                             digest_size=16).hexdigest()
    return KEY_PREFIX + digest


def encode(code_file: str | None, info: FrameInfo | None) -> bytes:
    """The value stored for a frame: bytes, so python-memcached stores it with flags 0."""
    return jsonio.dumps([code_file, info.to_compact() if info is not None else None])


def decode(value: Any) -> CachedFrame | None:
    """What :func:`encode` wrote, checked field by field; None (a miss) for anything else."""
    if not isinstance(value, bytes) or len(value) > MAX_VALUE_BYTES:
        return None
    try:
        data = _DECODER.decode(value.decode("utf-8"))
        if type(data) is not list or len(data) != 2:
            return None
        code_file, compact = data
        if code_file is not None and type(code_file) is not str:
            return None
        return code_file, FrameInfo.from_compact(compact) if compact is not None else None
    except (ValueError, TypeError, RecursionError):
        return None  # a foreign or damaged value counts as a miss


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: Built once: json.loads with any option builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _refuse(*_: Any) -> Any:
    raise ValueError("SymServer never unpickles or inflates a memcached value")


def _skip_bytes(server: Any, count: int) -> None:
    """Read and drop ``count`` bytes of a server's reply without ever holding them all."""
    buffered = len(server.buffer)
    if buffered >= count:
        server.buffer = server.buffer[count:]
        return
    count -= buffered
    server.buffer = b""
    while count:
        data = server.socket.recv(min(count, 1 << 16))
        if not data:
            raise memcache._Error(f"connection closed with {count} bytes of a value unread")
        count -= len(data)


class PlainBytesClient(memcache.Client):
    """A python-memcached client that returns only plain (flags 0) values of bounded length.

    python-memcached decodes a value by its flags: unpickling (code execution), zlib (a bomb),
    text or int.  Any value with flags, or longer than :data:`MAX_VALUE_BYTES`, is read off the
    socket in small pieces and dropped, so the rest of a multi-get is still read in step.
    """

    def __init__(self, servers: list[str], **kwargs: Any) -> None:
        # check_keys=False: every key is frame_key()'s (a prefix and 32 hex digits); the
        # per-key check was 7% of a cold request's SymServer time (3,000 keys set).
        super().__init__(servers, unpickler=_refuse, decompressor=_refuse,
                         server_max_value_length=MAX_VALUE_BYTES, check_keys=False, **kwargs)

    def _map_and_prefix_keys(self, key_iterable: Any, key_prefix: Any) -> tuple[dict, dict]:
        """python-memcached's own maps key by key, a hash and a connection check each: about
        1 ms per 1,000 keys, paid for a get and a set of every cold frame.  With one server
        (the usual set-up) every key goes to it: the check is made once.  Our keys are
        frame_key()'s, ASCII.  A server down maps no key, as python-memcached's would."""
        if len(self.servers) != 1 or key_prefix:
            return super()._map_and_prefix_keys(key_iterable, key_prefix)
        server = self.servers[0]
        originals = list(key_iterable)
        if not originals or not server.connect():
            return {}, {}
        encoded = [key.encode("ascii") if isinstance(key, str) else key for key in originals]
        return {server: encoded}, dict(zip(encoded, originals))

    def _recv_value(self, server: Any, flags: int, rlen: int) -> bytes | None:
        if flags != 0 or not 0 <= rlen <= MAX_VALUE_BYTES:
            log.warning("memcached value refused (flags %d, %d bytes): a miss", flags, rlen)
            _skip_bytes(server, max(rlen, 0) + 2)
            return None
        data = server.recv(rlen + 2)
        if data[rlen:] != b"\r\n":
            raise memcache._Error("memcached value not followed by CRLF")
        return data[:rlen]


class FrameCache:
    """Chunked, time-bounded access to the memcached servers (none: always a miss)."""

    def __init__(self, servers: list[str]) -> None:
        self.servers = servers
        self._threads = ThreadPoolExecutor(THREADS, thread_name_prefix="memcached")
        # The client is thread-local: each pool thread has its own connections.
        self._client = PlainBytesClient(servers, socket_timeout=SOCKET_TIMEOUT_SECONDS,
                                        dead_retry=DEAD_RETRY_SECONDS) if servers else None

    async def _call(self, method: str | Callable[..., Any], *args: Any,
                    timeout: float = CALL_TIMEOUT_SECONDS) -> Any:
        loop = asyncio.get_running_loop()
        function = getattr(self._client, method) if isinstance(method, str) else method
        call = loop.run_in_executor(self._threads, function, *args)
        return await asyncio.wait_for(call, timeout)

    async def _in_chunks(self, work: Callable[[list[Chunk]], Any], items: list[Chunk],
                         what: str) -> list[Any]:
        """Run ``work`` on chunks of CHUNK_KEYS items, PARALLEL_CHUNKS at a time, each call
        bounded by CHUNK_TIMEOUT_SECONDS.  A failed chunk is skipped (its keys are misses);
        after FAILURES_TO_GIVE_UP failures in a row, so are all the chunks left."""
        chunks = [items[i:i + CHUNK_KEYS] for i in range(0, len(items), CHUNK_KEYS)]
        gate = asyncio.Semaphore(PARALLEL_CHUNKS)
        failures_in_a_row = 0

        async def one(chunk: list[Chunk]) -> Any:
            nonlocal failures_in_a_row
            async with gate:
                if failures_in_a_row >= FAILURES_TO_GIVE_UP:
                    return None
                try:
                    result = await self._call(work, chunk, timeout=CHUNK_TIMEOUT_SECONDS)
                except Exception as error:  # noqa: BLE001 - any memcached trouble is a miss
                    failures_in_a_row += 1
                    log.warning("memcached %s of %d of %d keys skipped%s: %s", what, len(chunk), len(items),
                                "; giving up on the rest" if failures_in_a_row == FAILURES_TO_GIVE_UP else "",
                                str(error) or type(error).__name__)
                    return None
                failures_in_a_row = 0
                return result

        return await asyncio.gather(*(one(chunk) for chunk in chunks))

    def _get_chunk(self, keys: list[str]) -> dict[str, CachedFrame]:
        """In a pool thread: one get_multi, and the values checked there, off the event loop."""
        found = {}
        for key, value in self._client.get_multi(keys).items():
            decoded = decode(value)
            if decoded is not None:
                found[key] = decoded
        return found

    def _set_chunk(self, frames: list[tuple[str, CachedFrame]]) -> None:
        values = {}
        for key, (code_file, info) in frames:
            value = encode(code_file, info)
            if len(value) <= MAX_VALUE_BYTES:
                values[key] = value
        self._client.set_multi(values)  # bytes, never compressed: stored with flags 0

    async def get_many(self, keys: list[str]) -> dict[str, CachedFrame]:
        """The frames memcached holds good values for; a bad value is simply not among them."""
        if self._client is None or not keys:
            return {}
        found: dict[str, CachedFrame] = {}
        for part in await self._in_chunks(self._get_chunk, keys, "get"):
            if part:
                found.update(part)
        return found

    async def set_many(self, frames: dict[str, CachedFrame]) -> None:
        """Store fresh answers (replacing whatever was there, good or bad)."""
        if self._client is None or not frames:
            return
        await self._in_chunks(self._set_chunk, list(frames.items()), "set")

    async def delete(self, key: str) -> bool:
        """True when the key is not in the cache afterwards."""
        if self._client is None:
            return True
        try:
            return bool(await self._call("delete", key))
        except Exception as error:  # noqa: BLE001
            log.warning("memcached delete failed: %s", str(error) or type(error).__name__)
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
