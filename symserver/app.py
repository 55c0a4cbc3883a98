"""SymServer's public HTTP API: the original protocol on POST / and /symbolicate/v4, v5 too."""

from __future__ import annotations

from typing import Any

import tornado.web

from symcommon import requests as api
from symcommon.responses import v4_response, v5_result
from symcommon.web import ApiError, JsonHandler, LoadBalancerHeartbeat, NotFoundHandler, log_request
from symserver.diskcache_client import DiskCacheUnavailable
from symserver.framecache import frame_key
from symserver.symbolicate import Outcome, Symbolicator


class SymServerState:
    """What the debug protocol can change at run time (per process)."""

    def __init__(self) -> None:
        self.output_cache_hits = False


class SymServerHandler(JsonHandler):
    @property
    def symbolicator(self) -> Symbolicator:
        return self.application.settings["symbolicator"]

    @property
    def state(self) -> SymServerState:
        return self.application.settings["state"]

    async def symbolicate(self, jobs: list[api.Job]) -> Outcome:
        try:
            return await self.symbolicator.symbolicate(jobs, self.request_id)
        except DiskCacheUnavailable as error:
            raise ApiError(503, str(error)) from None


class V4Handler(SymServerHandler):
    """POST / (version required, debug protocol allowed) and POST /symbolicate/v4."""

    def initialize(self, default_version: int | None) -> None:
        self.default_version = default_version

    async def post(self) -> None:
        body = self.json_body()
        debug = api.parse_debug(body)
        if debug is not None:
            self.require_loopback()
            self.write_json(await self.debug_action(debug))
            return
        version, job = api.parse_v4(body, self.default_version)
        outcome = await self.symbolicate([job])
        hits = None
        if self.state.output_cache_hits:
            hits = [[index >= 0 and (job.memory_map[index].module, offset) in outcome.cache_hits
                     for index, offset in stack] for stack in job.stacks]
        self.write_json(v4_response(job, outcome.answers[0], version, hits), compact=False)

    async def debug_action(self, request: api.DebugRequest) -> dict[str, Any]:
        if request.action == "outputCacheHits":
            self.state.output_cache_hits = api.debug_flag(request, "enabled")
            return {"success": True}
        if request.action == "cacheEvict":
            key = frame_key(api.debug_module(request), api.debug_offset(request))
            return {"success": await self.symbolicator.frames.delete(key)}
        raise ApiError(400, f"action: unknown SymServer debug action {request.action[:60]!r} "
                            "(outputCacheHits, cacheEvict)")


class V5Handler(SymServerHandler):
    async def post(self) -> None:
        jobs = api.parse_v5(self.json_body(), self.application.settings["max_jobs"])
        outcome = await self.symbolicate(jobs)
        results = [v5_result(job, answers) for job, answers in zip(jobs, outcome.answers)]
        self.write_json({"results": results})


def make_app(symbolicator: Symbolicator, max_jobs: int) -> tornado.web.Application:
    return tornado.web.Application(
        [
            (r"/", V4Handler, {"default_version": None}),
            (r"/symbolicate/v4", V4Handler, {"default_version": 4}),
            (r"/symbolicate/v5", V5Handler),
            (r"/__lbheartbeat__", LoadBalancerHeartbeat),
        ],
        default_handler_class=NotFoundHandler,
        log_function=log_request,
        symbolicator=symbolicator,
        state=SymServerState(),
        max_jobs=max_jobs,
    )
