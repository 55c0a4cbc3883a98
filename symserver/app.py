"""SymServer's public HTTP API: the original protocol on POST / and /symbolicate/v4, v5 too."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import tornado.web

from symcommon import requests as api
from symcommon.responses import v4_body, v5_body
from symcommon.prefork import SharedState
from symcommon.web import (ApiError, JsonHandler, OriginalProtocolHandler, protocol_application, wants_debug,
                           warm_api_answer)
from symserver.diskcache_client import DiskCacheUnavailable
from symserver.framecache import frame_key
from symserver.symbolicate import Outcome, Symbolicator, frame_key_of


class SymServerState:
    """What the debug protocol can change at run time, seen by every server process."""

    def __init__(self, shared: SharedState) -> None:
        self._shared = shared

    @property
    def output_cache_hits(self) -> bool:
        return bool(self._shared.get(SharedState.OUTPUT_CACHE_HITS))

    @output_cache_hits.setter
    def output_cache_hits(self, enabled: bool) -> None:
        self._shared.set(SharedState.OUTPUT_CACHE_HITS, int(enabled))


class SymServerHandler(JsonHandler):
    @property
    def symbolicator(self) -> Symbolicator:
        return self.application.settings["symbolicator"]

    @property
    def state(self) -> SymServerState:
        return self.application.settings["state"]

    async def symbolicate(self, jobs: list[api.Job], debug: bool = False) -> Outcome:
        try:
            return await self.symbolicator.symbolicate(jobs, self.request_id, debug)
        except DiskCacheUnavailable as error:
            raise ApiError(503, str(error)) from None


class V4Handler(OriginalProtocolHandler, SymServerHandler):
    async def v4_answer(self, job: api.Job, version: int) -> bytes:
        outcome = await self.symbolicate([job])
        hits = None
        if self.state.output_cache_hits:
            hits = [[index >= 0 and frame_key_of(job.memory_map[index].module, offset) in outcome.cache_hits
                     for index, offset in stack] for stack in job.stacks]
        return v4_body(job, outcome.answers[0], version, hits)

    async def debug_action(self, request: api.DebugRequest) -> dict[str, Any]:
        if request.action == "outputCacheHits":
            self.state.output_cache_hits = api.debug_flag(request, "enabled")
            return {"success": True}
        if request.action == "cacheEvict":
            lookup = (api.debug_module(request), api.debug_offset(request))
            await self.symbolicator.fills_done()  # a store still on its way would undo the eviction
            self.symbolicator.recent.discard(frame_key_of(*lookup))
            return {"success": await self.symbolicator.frames.delete(frame_key(*lookup))}
        raise ApiError(400, f"action: unknown SymServer debug action {request.action[:60]!r} "
                            "(outputCacheHits, cacheEvict)")


class V5Handler(SymServerHandler):
    async def post(self) -> None:
        jobs = await self.v5_jobs()
        debug = wants_debug(self.request.headers)
        outcome = await self.symbolicate(jobs, debug)
        extra = {"debug": dict(outcome.debug(), seconds=round(self.request.request_time(), 4))} if debug else None
        # the frames just cached were rendered then: a job whose every frame is among them is
        # written from those bytes (a cold profile's 7,400 frames: 20 ms less of this process)
        rendered = [self.symbolicator.warm_stacks(job) for job in jobs]
        await self.finish_rendered(jobs, v5_body, jobs, outcome.answers, extra, rendered)


class HeartbeatHandler(SymServerHandler):
    """GET /__heartbeat__: 200 while at least one memcached and one DiskCache answer (a pool
    member down costs only its share and requests fail over), else 503 naming what is down;
    the body lists every server of both."""

    async def get(self) -> None:
        symbolicator = self.symbolicator
        memcached, diskcaches = await asyncio.gather(symbolicator.frames.ping_each(),
                                                     symbolicator.diskcache.ping_all())
        memcached_ok = not memcached or any(memcached.values())  # none configured: nothing to miss
        checks = {"memcached": "ok" if memcached_ok else "down",
                  "diskcache": "ok" if any(diskcaches.values()) else "down"}
        down = [name for name, state in checks.items() if state != "ok"]
        body: dict[str, Any] = {
            "status": "error" if down else "ok", "checks": checks,
            "memcachedServers": {server: "ok" if up else "down" for server, up in memcached.items()},
            "DiskCacheServers": {server: "ok" if up else "down" for server, up in diskcaches.items()}}
        if down:
            body["error"] = " and ".join(down) + (" is" if len(down) == 1 else " are") + " not answering"
        self.write_json(body, status=503 if down else 200)


class UiHandler(tornado.web.RequestHandler):
    """GET /ui: a page where a person pastes a request and reads the stacks (read-only)."""

    page = (Path(__file__).parent / "ui.html").read_bytes()

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; "
                                                   "style-src 'unsafe-inline'")
        self.finish(self.page)


def make_app(section: dict[str, Any], symbolicator: Symbolicator,
             shared: SharedState | None = None) -> tornado.web.Application:
    state = SymServerState(shared or SharedState())
    limits = api.Limits.from_section(section)
    return protocol_application(section, V4Handler, V5Handler, HeartbeatHandler,
                                extra_routes=[(r"/ui", UiHandler)], cors=True,
                                symbolicator=symbolicator, state=state, metrics=symbolicator.metrics,
                                warm_answer=warm_api_answer(symbolicator.warm_jobs, limits,
                                                            lambda: not state.output_cache_hits))
