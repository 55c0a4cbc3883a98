"""SymServer's lookup path: memcached first, the DiskCache for the misses, then fill memcached.

However many jobs and frames a request has, it costs at most one memcached ``get_multi``,
one DiskCache request and one ``set_multi``.  The fill is awaited (bounded by the memcached
timeout) so that a client repeating a request at once is answered from memcached.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from symcommon.frames import FrameInfo
from symcommon.metrics import Metrics
from symcommon.modules import ModuleId
from symcommon.requests import Job
from symcommon.responses import JobAnswers, ModuleAnswer
from symserver.diskcache_client import DiskCacheClient, DiskCacheUnavailable
from symserver.framecache import FrameCache, encode, frame_key

log = logging.getLogger("symserver.symbolicate")

Lookup = tuple[ModuleId, int]


@dataclass
class Outcome:
    """Answers per job, which frames came from memcached (``cacheHits``), and figures (``Debug``)."""

    answers: list[JobAnswers]
    cache_hits: set[Lookup] = field(default_factory=set)
    memcached_misses: int = 0
    memcached_seconds: float = 0.0
    diskcache_round_trips: int = 0
    diskcache_seconds: float = 0.0
    diskcache_debug: dict[str, Any] = field(default_factory=dict)

    def debug(self) -> dict[str, Any]:
        """The figures a ``Debug: true`` request gets back."""
        return {
            "memcached": {"hits": len(self.cache_hits), "misses": self.memcached_misses,
                          "seconds": round(self.memcached_seconds, 4)},
            "diskcache": {"round_trips": self.diskcache_round_trips,
                          "seconds": round(self.diskcache_seconds, 4),
                          "modules_fetched": self.diskcache_debug.get("modules_fetched", []),
                          "modules_processed": self.diskcache_debug.get("modules_processed", [])},
        }


class Symbolicator:
    def __init__(self, frames: FrameCache, diskcache: DiskCacheClient, metrics: Metrics | None = None) -> None:
        self.frames = frames
        self.diskcache = diskcache
        metrics = metrics or Metrics("symserver")
        self.metrics = metrics
        self._hits = metrics.counter("memcached_hits", "Frames answered from memcached")
        self._misses = metrics.counter("memcached_misses", "Frames memcached did not have")
        self._diskcache_requests = metrics.counter("diskcache_requests", "Requests to the DiskCache",
                                                   ["outcome"])

    async def symbolicate(self, jobs: list[Job], request_id: str, debug: bool = False) -> Outcome:
        """Raises :class:`DiskCacheUnavailable` when misses cannot be looked up."""
        wanted: set[Lookup] = set()
        for job in jobs:
            for index, offset in job.frames():
                wanted.add((job.memory_map[index].module, offset))
        keys = {lookup: frame_key(*lookup) for lookup in wanted}
        started = time.monotonic()
        cached = await self.frames.get_many(list(keys.values()))
        memcached_seconds = time.monotonic() - started
        found: dict[Lookup, tuple[str | None, FrameInfo | None]] = {}
        for lookup, key in keys.items():
            if key in cached:
                found[lookup] = cached[key]
        misses = [lookup for lookup in wanted if lookup not in found]
        self._hits.inc(len(found))
        self._misses.inc(len(misses))
        outcome = Outcome(answers=[], cache_hits=set(found), memcached_misses=len(misses),
                          memcached_seconds=memcached_seconds)
        if misses:
            outcome.diskcache_round_trips = 1
            started = time.monotonic()
            try:
                fresh = await self._ask_diskcache(misses, request_id, debug, outcome)
            except DiskCacheUnavailable:
                self._diskcache_requests.labels("unavailable").inc()
                raise
            self._diskcache_requests.labels("ok").inc()
            outcome.diskcache_seconds = time.monotonic() - started
            found.update(fresh)
            if fresh:
                await self.frames.set_many({keys[lookup]: encode(*value) for lookup, value in fresh.items()})
        for job in jobs:
            answers = JobAnswers()
            for index, offset in job.frames():
                module = job.memory_map[index].module
                value = found.get((module, offset))
                if value is not None:
                    answers.modules[index] = ModuleAnswer(True, value[0])
                    answers.symbols[(index, offset)] = value[1]
                else:  # a found module has a value for every frame, even "no symbol"
                    answers.modules.setdefault(index, ModuleAnswer(False))
            outcome.answers.append(answers)
        return outcome

    async def _ask_diskcache(self, misses: list[Lookup], request_id: str, debug: bool,
                             outcome: Outcome) -> dict[Lookup, tuple[str | None, FrameInfo | None]]:
        """Symbols of the missed frames whose modules the DiskCache found."""
        modules = sorted({module for module, _ in misses}, key=str)
        index_of = {module: i for i, module in enumerate(modules)}
        body = {"memoryMap": [[m.debug_file, m.debug_id] for m in modules],
                "stacks": [[[index_of[module], offset] for module, offset in misses]]}
        answer = await self.diskcache.symbolicate(body, request_id, debug)
        if debug and isinstance(answer.get("debug"), dict):
            outcome.diskcache_debug = answer["debug"]
        try:
            result = answer["results"][0]
            frames = result["stacks"][0]
            found_modules = result["found_modules"]
            found_flags = {m: found_modules.get(f"{m.debug_file}/{m.debug_id}") is True
                           for m in modules}
            fresh = {}
            for (module, offset), frame in zip(misses, frames, strict=True):
                if found_flags[module]:
                    fresh[(module, offset)] = (frame.get("module"), FrameInfo.from_v5_fields(frame))
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise DiskCacheUnavailable(f"DiskCache sent an answer of the wrong shape: {error}") from error
        return fresh
