"""``python -m symserver -c CONFIG``: run the public symbolication server."""

from __future__ import annotations

import sys
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient

from symcommon.cli import server_main
from symcommon.metrics import Metrics
from symcommon.prefork import SharedState
from symcommon.web import serve
from symserver.app import make_app
from symserver.diskcache_client import DiskCacheClient
from symcommon.recentframes import RecentFrames
from symserver.framecache import FrameCache
from symserver.symbolicate import Symbolicator


async def run(config: dict, pidfile: Path | None, shared: SharedState | None = None,
              sockets: list | None = None) -> None:
    section = config["SymServer"]
    AsyncHTTPClient.configure(None, max_clients=100)
    frames = FrameCache(section["memcachedServers"])
    # The LRU fronts memcached: with no memcached (a local build being rebuilt), no caching.
    shared = shared or SharedState()
    recent = RecentFrames(section["frameCacheEntries"] if section["memcachedServers"] else 0,
                          section["frameCacheSeconds"], shared)
    symbolicator = Symbolicator(frames, DiskCacheClient(section["DiskCacheServer"]), Metrics("symserver"),
                                recent)

    async def stop() -> None:
        frames.close()

    await serve(make_app(section, symbolicator, shared), section["port"],
                name="SymServer", pidfile=pidfile, on_stop=stop, sockets=sockets,
                address=section["listenAddress"])


def main(argv: list[str] | None = None) -> int:
    return server_main(argv, prog="symserver", section="SymServer", run=run,
                       description="Symbolicates stacks: memcached first, then the DiskCache.")


if __name__ == "__main__":
    sys.exit(main())
