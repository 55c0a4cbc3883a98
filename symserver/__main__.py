"""``python -m symserver -c CONFIG``: run the public symbolication server."""

from __future__ import annotations

import sys
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient

from symcommon.cli import server_main
from symcommon.config import diskcache_addresses
from symcommon.metrics import Metrics
from symcommon.prefork import SharedState
from symcommon.web import serve
from symserver.app import make_app
from symcommon.recentframes import RecentFrames
from symserver.framecache import FrameCache
from symserver.sharding import DiskCacheFleet
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
    diskcaches = DiskCacheFleet(diskcache_addresses(section))
    symbolicator = Symbolicator(frames, diskcaches, Metrics("symserver"), recent)

    async def stop() -> None:
        frames.close()
        diskcaches.close()

    await serve(make_app(section, symbolicator, shared), section["port"],
                name="SymServer", pidfile=pidfile, on_stop=stop, sockets=sockets,
                address=section["listenAddress"])


def main(argv: list[str] | None = None) -> int:
    return server_main(argv, prog="symserver", section="SymServer", run=run,
                       description="Symbolicates stacks: memcached first, then the DiskCaches.")


if __name__ == "__main__":
    sys.exit(main())
