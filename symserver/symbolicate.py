"""SymServer's lookup path: the recent-frames LRU, then memcached, then the DiskCache for the
misses; then fill both caches.

However many jobs a request has, it costs at most one memcached ``get_multi`` per
:data:`~symserver.framecache.CHUNK_KEYS` frames, one request to each DiskCache holding a
missed module (sent at once; see :mod:`symserver.sharding`) and one ``set_multi`` per
``CHUNK_KEYS`` fresh frames, and none of them when the recent-frames LRU has every frame.
The fill is awaited (each chunk bounded by the memcached timeout) so that a client
repeating a request at once is answered from the caches.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from symcommon.frames import FrameInfo
from symcommon.metrics import Metrics
from symcommon.modules import ModuleId
from symcommon.requests import BIG_ANSWER_FRAMES, Job
from symcommon.responses import JobAnswers, ModuleAnswer, bound_answers, rendered_frame
from symserver.diskcache_client import DiskCacheDown, DiskCacheUnavailable
from symcommon.recentframes import RecentFrames
from symserver.framecache import CachedFrame, FrameCache, frame_key
from symserver.sharding import DiskCacheFleet

log = logging.getLogger("symserver.symbolicate")
#: Fresh frames are stored in memcached after the answer is sent; with this many such stores
#: still running (memcached slow or stuck), the next one is awaited before answering instead.
MAX_PENDING_FILLS = 32

Lookup = tuple[ModuleId, int]
_INDEX, _SYMBOL = itemgetter(0), itemgetter(1)  # of a frame (index, offset); of a CachedFrame (code file, symbol)
FrameKey = tuple[str, int]  # (str(module), offset): how the in-process tier and cacheHits know a frame


def frame_key_of(module: ModuleId, offset: int) -> FrameKey:
    return (str(module), offset)


@dataclass
class Outcome:
    """Answers per job, which frames came from memcached (``cacheHits``), and figures (``Debug``)."""

    answers: list[JobAnswers]
    cache_hits: set[FrameKey] = field(default_factory=set)
    memcached_misses: int = 0
    memcached_seconds: float = 0.0
    diskcache_round_trips: int = 0
    diskcache_seconds: float = 0.0
    diskcache_debug: dict[str, Any] = field(default_factory=dict)
    #: Modules the DiskCache did not look up (over its maxFetchesPerRequest): found_modules null.
    not_looked_up: set[ModuleId] = field(default_factory=set)
    #: Frames the DiskCache shortened to bound its answer: answered, never cached.
    uncacheable: set[Lookup] = field(default_factory=set)

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
    def __init__(self, frames: FrameCache, diskcache: DiskCacheFleet, metrics: Metrics | None = None,
                 recent: RecentFrames | None = None, max_answer_bytes: int = 256 * 1024 * 1024) -> None:
        self.frames = frames
        self.max_answer_bytes = max_answer_bytes
        self.recent = recent if recent is not None else RecentFrames(0, 0)
        self.recent.render = render_cached_frame  # what warm_stacks hands out
        self.diskcache = diskcache
        self._fills: set[asyncio.Future] = set()  # memcached stores still running
        metrics = metrics or Metrics("symserver")
        self.metrics = metrics
        self._recent_hits = metrics.counter("recent_frames_hits", "Frames answered from the in-process LRU")
        self.warm_requests = metrics.counter(
            "warm_lane_requests", "Requests answered whole from the in-process LRU by the warm lane")
        metrics.gauge("recent_frames_entries", "Frames in the in-process LRU", lambda: len(self.recent))
        self._hits = metrics.counter("memcached_hits", "Frames answered from memcached")
        self._misses = metrics.counter("memcached_misses", "Frames memcached did not have")
        self._diskcache_requests = metrics.counter("diskcache_requests", "Requests to the DiskCache",
                                                   ["outcome"])
        self._diskcache_failovers = metrics.counter(
            "diskcache_failovers", "Requests a DiskCache refused or dropped, sent to the next one", ["server"])
        metrics.gauge("diskcaches_up", "DiskCaches not marked down", lambda: diskcache.up_count())

    def warm_stacks(self, job: Job) -> list[list[tuple[bytes, bytes]]] | None:
        """Each stack's frames as :func:`~symcommon.responses.rendered_frame` encoded them,
        when every frame is warm (see :meth:`RecentFrames.rendered_stacks`); else None, and
        :meth:`symbolicate` answers the request."""
        if job.columns is None:
            return None
        return self.recent.rendered_stacks(job.columns, [str(entry.module) for entry in job.memory_map],
                                           self.max_answer_bytes)

    def warm_jobs(self, jobs: list[Job]) -> list[list[list[tuple[bytes, bytes]]]] | None:
        """:meth:`warm_stacks` of every job, or None if one is not warm; counted when answered."""
        answers = []
        for job in jobs:
            stacks = self.warm_stacks(job)
            if stacks is None:
                return None
            answers.append(stacks)
        self.warm_requests.inc()
        self._recent_hits.inc(sum(map(len, (stack for stacks in answers for stack in stacks))))
        return answers

    async def symbolicate(self, jobs: list[Job], request_id: str, debug: bool = False) -> Outcome:
        """Raises :class:`DiskCacheUnavailable` when misses cannot be looked up."""
        # Frames are keyed by (module name, offset): a str and an int hash in C, which matters
        # when a warm request is little else than a few hundred dict lookups.
        wanted: dict[FrameKey, Lookup] = {}
        job_frames = []
        for job in jobs:
            names = [str(entry.module) for entry in job.memory_map]
            modules = [entry.module for entry in job.memory_map]
            frames = job.frames()
            job_frames.append((names, frames))
            # (a key asked twice maps to equal values, so overwriting is harmless)
            wanted.update({(names[index], offset): (modules[index], offset) for index, offset in frames})
        found: dict[FrameKey, CachedFrame] = self.recent.get_many(wanted)
        self._recent_hits.inc(len(found))
        memcached_keys = {key: frame_key(*lookup) for key, lookup in wanted.items() if key not in found}
        started = time.monotonic()
        cached = await self.frames.get_many(list(memcached_keys.values())) if memcached_keys else {}
        memcached_seconds = time.monotonic() - started
        from_memcached = {key: cached[mkey] for key, mkey in memcached_keys.items() if mkey in cached}
        self.recent.put_many(from_memcached)
        found.update(from_memcached)
        misses = [key for key in memcached_keys if key not in from_memcached]
        self._hits.inc(len(from_memcached))
        self._misses.inc(len(misses))
        outcome = Outcome(answers=[], cache_hits=set(found), memcached_misses=len(misses),
                          memcached_seconds=memcached_seconds)
        if misses:
            outcome.diskcache_round_trips = 1
            started = time.monotonic()
            try:
                fresh = await self._ask_diskcache([wanted[key] for key in misses], request_id, debug, outcome)
            except DiskCacheUnavailable:
                self._diskcache_requests.labels("unavailable").inc()
                raise
            self._diskcache_requests.labels("ok").inc()
            outcome.diskcache_seconds = time.monotonic() - started
            fresh_by_key = {frame_key_of(*lookup): value for lookup, value in fresh.items()}
            found.update(fresh_by_key)
            if outcome.uncacheable:
                fresh = {lookup: value for lookup, value in fresh.items() if lookup not in outcome.uncacheable}
                fresh_by_key = {frame_key_of(*lookup): value for lookup, value in fresh.items()}
            if fresh:
                self.recent.put_many(fresh_by_key)
                # (each key's memcached key was made for the lookup above: a hash each)
                await self._fill_memcached({memcached_keys[key]: value for key, value in fresh_by_key.items()})
        unasked = {str(module) for module in outcome.not_looked_up}
        shortened = {frame_key_of(*lookup) for lookup in outcome.uncacheable}
        arguments = (jobs, job_frames, found, unasked, shortened, self.max_answer_bytes)
        if sum(len(frames) for _, frames in job_frames) > BIG_ANSWER_FRAMES:  # off the event loop
            outcome.answers = await asyncio.to_thread(_job_answers, *arguments)
        else:
            outcome.answers = _job_answers(*arguments)
        return outcome

    async def _fill_memcached(self, frames: dict[str, CachedFrame]) -> None:
        """Store fresh frames in memcached while the answer is rendered and sent: the client
        does not wait for it (3,000 frames: 20-40 ms of a cold request), and this process
        answers them from its recent-frames LRU meanwhile.  A failed store is logged by
        FrameCache and is only a later miss."""
        if len(self._fills) >= MAX_PENDING_FILLS:
            await self.frames.set_many(frames)
            return
        fill = asyncio.ensure_future(self.frames.set_many(frames))
        self._fills.add(fill)
        fill.add_done_callback(self._fills.discard)

    async def fills_done(self) -> None:
        """Wait for the memcached stores still running (a clean shutdown, an eviction)."""
        if self._fills:
            await asyncio.gather(*self._fills, return_exceptions=True)

    async def _ask_diskcache(self, misses: list[Lookup], request_id: str, debug: bool,
                             outcome: Outcome) -> dict[Lookup, tuple[str | None, FrameInfo | None]]:
        """Symbols of the missed frames whose modules the DiskCaches found.

        Each module goes to the first DiskCache of its rendezvous order, all DiskCaches at
        once; the modules of one that is down go to their next choice, until every module
        is answered or no DiskCache is left (:class:`DiskCacheUnavailable`).
        """
        fleet = self.diskcache
        by_module: dict[ModuleId, list[Lookup]] = {}
        for lookup in misses:
            by_module.setdefault(lookup[0], []).append(lookup)
        orders = {module: fleet.order(str(module)) for module in by_module}
        failed: dict[str, str] = {}  # DiskCaches down for this request, and why
        pending = sorted(by_module, key=str)
        fresh: dict[Lookup, tuple[str | None, FrameInfo | None]] = {}
        outcome.diskcache_round_trips = 0
        while pending:
            groups: dict[str, list[Lookup]] = {}
            for module in pending:
                address = next((a for a in orders[module] if a not in failed), None)
                if address is None:
                    raise DiskCacheUnavailable("no DiskCache is answering: " + "; ".join(failed.values()))
                groups.setdefault(address, []).extend(by_module[module])
            outcome.diskcache_round_trips += len(groups)
            results = await asyncio.gather(
                *(self._ask_one_diskcache(address, lookups, request_id, debug, outcome)
                  for address, lookups in groups.items()), return_exceptions=True)
            pending = []
            for (address, lookups), result in zip(groups.items(), results):
                if isinstance(result, DiskCacheDown):
                    failed[address] = str(result)
                    fleet.mark_down(address, str(result))
                    self._diskcache_failovers.labels(address).inc()
                    pending.extend(sorted({module for module, _ in lookups}, key=str))
                elif isinstance(result, BaseException):
                    raise result
                else:
                    fleet.mark_up(address)
                    fresh.update(result)
        return fresh

    async def _ask_one_diskcache(self, address: str, misses: list[Lookup], request_id: str, debug: bool,
                                 outcome: Outcome) -> dict[Lookup, tuple[str | None, FrameInfo | None]]:
        """One v5 request to one DiskCache, for the misses of the modules it holds."""
        modules = sorted({module for module, _ in misses}, key=str)
        index_of = {module: i for i, module in enumerate(modules)}
        body = {"memoryMap": [[m.debug_file, m.debug_id] for m in modules],
                "stacks": [[[index_of[module], offset] for module, offset in misses]]}
        answer = await self.diskcache.clients[address].symbolicate(body, request_id, debug)
        if debug and isinstance(answer.get("debug"), dict):
            for name in ("modules_fetched", "modules_processed"):
                figures = answer["debug"].get(name)
                if isinstance(figures, list):
                    outcome.diskcache_debug.setdefault(name, []).extend(figures)
        try:
            result = answer["results"][0]
            frames = result["stacks"][0]
            found_modules = result["found_modules"]
            found_flags = {m: found_modules.get(f"{m.debug_file}/{m.debug_id}") is True
                           for m in modules}
            fresh = {}
            outcome.not_looked_up |= {m for m in modules
                                      if found_modules.get(f"{m.debug_file}/{m.debug_id}", False) is None}
            for (module, offset), frame in zip(misses, frames, strict=True):
                if found_flags[module]:
                    fresh[(module, offset)] = (frame.get("module"), FrameInfo.from_v5_fields(frame))
                    if frame.get("names_shortened") is True:
                        outcome.uncacheable.add((module, offset))
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise DiskCacheUnavailable(f"DiskCache at {address} sent an answer of the wrong shape: "
                                       f"{error}") from error
        return fresh


def render_cached_frame(key: FrameKey, value: CachedFrame) -> tuple[bytes, bytes]:
    """What the recent-frames LRU keeps beside a frame for :meth:`Symbolicator.warm_stacks`."""
    debug_file = key[0].rpartition("/")[0]  # the key's module is "debug_file/debug_id"
    return rendered_frame(debug_file, value[0], key[1], value[1])


def _job_answers(jobs: list[Job], job_frames: list[tuple[list[str], set[tuple[int, int]]]],
                 found: dict[FrameKey, CachedFrame], unasked: set[str], shortened: set[FrameKey],
                 max_answer_bytes: int) -> list[JobAnswers]:
    """Each job's answers from what was found, names bounded to ``max_answer_bytes``; only
    this request's own objects, so a big one can be built in a thread."""
    result = []
    for names, frames in job_frames:
        answers = JobAnswers()
        modules, symbols = answers.modules, answers.symbols
        frames = list(frames)
        values = list(map(found.get, [(names[index], offset) for index, offset in frames]))
        if None not in values:  # the usual case: every frame was found
            symbols.update(zip(frames, map(_SYMBOL, values)))
            # each module's first frame names its code file (reversed: the first one is set last)
            first = dict(zip(map(_INDEX, reversed(frames)), reversed(values)))
            modules.update({index: ModuleAnswer(True, value[0]) for index, value in first.items()})
        else:
            for frame, value in zip(frames, values):
                if value is not None:
                    if frame[0] not in modules:
                        modules[frame[0]] = ModuleAnswer(True, value[0])
                    symbols[frame] = value[1]
                elif names[frame[0]] not in unasked:  # a found module has a value for every frame
                    modules.setdefault(frame[0], ModuleAnswer(False))
        if shortened:
            answers.shortened.update(frame for frame in frames if (names[frame[0]], frame[1]) in shortened)
        result.append(answers)
    bound_answers(jobs, result, max_answer_bytes)
    return result
