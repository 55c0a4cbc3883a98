"""The DiskCache's HTTP API: the same protocol as SymServer, plus its own debug actions."""

from __future__ import annotations

import asyncio
from typing import Any

import tornado.web

from diskcache.provider import FetchBudget, SymbolProvider
from symcommon import requests as api
from symcommon.responses import bound_answers, v4_body, v5_body
from symcommon.web import (ApiError, JsonHandler, OriginalProtocolHandler, protocol_application, wants_debug,
                           warm_api_answer)

class DiskCacheHandler(JsonHandler):
    @property
    def provider(self) -> SymbolProvider:
        return self.application.settings["provider"]


class V4Handler(OriginalProtocolHandler, DiskCacheHandler):
    async def v4_answer(self, job: api.Job, version: int) -> bytes:
        answers = await self.provider.answer(job)
        bound_answers([job], [answers], self.provider.max_answer_bytes)
        return v4_body(job, answers, version)

    async def debug_action(self, request: api.DebugRequest) -> dict[str, Any]:
        module = api.debug_module(request)
        if request.action == "cacheAddRaw":
            path = await self.provider.add_raw(module)
            return {"path": str(path) if path else None}
        if request.action == "cacheGet":
            path = await self.provider.cache_path(module)
            return {"path": str(path) if path else None}
        if request.action == "cacheEvict":
            return {"success": self.provider.evict(module)}
        if request.action == "cacheExists":
            return {"exists": self.provider.exists(module)}
        raise ApiError(400, f"action: unknown DiskCache debug action {request.action[:60]!r} "
                            "(cacheAddRaw, cacheGet, cacheEvict, cacheExists)")


class V5Handler(DiskCacheHandler):
    async def post(self) -> None:
        jobs = await self.v5_jobs()
        debug: dict[str, list] | None = {} if wants_debug(self.request.headers) else None
        budget = FetchBudget(self.provider.max_fetches)  # for the whole request
        answers = await asyncio.gather(*(self.provider.answer(job, debug, budget) for job in jobs))
        extra = {"debug": debug} if debug is not None else None
        await self.finish_rendered(jobs, _render, jobs, answers, self.provider.max_answer_bytes, extra)


def _render(jobs: list[api.Job], answers: list[Any], max_answer_bytes: int, extra: dict[str, Any] | None) -> bytes:
    bound_answers(jobs, answers, max_answer_bytes)
    return v5_body(jobs, answers, extra)


class HeartbeatHandler(DiskCacheHandler):
    """GET /__heartbeat__: 200 when the cache directory is writable; sizes for monitoring."""

    async def get(self) -> None:
        health = await self.provider.health()
        self.write_json(health, status=200 if health["status"] == "ok" else 503)


def make_app(section: dict[str, Any], provider: SymbolProvider) -> tornado.web.Application:
    return protocol_application(section, V4Handler, V5Handler, HeartbeatHandler, provider=provider,
                                metrics=provider.metrics,
                                warm_answer=warm_api_answer(provider.warm_jobs, api.Limits.from_section(section)))
