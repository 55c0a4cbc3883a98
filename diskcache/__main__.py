"""``python -m diskcache -c CONFIG``: run the DiskCache server."""

from __future__ import annotations

import sys
from pathlib import Path

from diskcache.app import make_app
from diskcache.provider import SymbolProvider
from symcommon.cli import server_main
from symcommon.metrics import Metrics
from symcommon.prefork import SharedState
from symcommon.web import serve


async def run(config: dict, pidfile: Path | None, shared: SharedState | None = None) -> None:
    section = config["DiskCache"]
    provider = SymbolProvider(section, Metrics("diskcache"))
    provider.start()
    await serve(make_app(section, provider), section["port"], name="DiskCache", pidfile=pidfile,
                on_stop=provider.close, on_drain=provider.drain, address=section["listenAddress"])


def main(argv: list[str] | None = None) -> int:
    return server_main(argv, prog="diskcache", section="DiskCache", run=run,
                       description="Fetches, processes and caches symbol files; answers lookups.")


if __name__ == "__main__":
    sys.exit(main())
