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
    # A DiskCache answer repeats names per frame: a million frames are more than tornado's
    # default 100 MB.  Its names are bounded by maxAnswerMB, the rest by the frame count.
    AsyncHTTPClient.configure(None, max_clients=100, max_body_size=section["maxAnswerMB"] * 1024 * 1024
                              + section["maxFramesPerRequest"] * 1024)
    frames = FrameCache(section["memcachedServers"])
    # The LRU fronts memcached: with no memcached (a local build being rebuilt), no caching.
    shared = shared or SharedState()
    recent = RecentFrames(section["frameCacheEntries"] if section["memcachedServers"] else 0,
                          section["frameCacheSeconds"], shared)
    diskcaches = DiskCacheFleet(diskcache_addresses(section))
    symbolicator = Symbolicator(frames, diskcaches, Metrics("symserver"), recent,
                                max_answer_bytes=section["maxAnswerMB"] * 1024 * 1024)

    async def stop() -> None:
        await symbolicator.fills_done()  # (each store is bounded by memcached's own timeouts)
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
