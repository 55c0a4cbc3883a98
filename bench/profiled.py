#!/usr/bin/env python3
"""Run SymServer or the DiskCache (one process) under cProfile, switched on and off by signals.

    python bench/profiled.py OUT.pstats symserver -c config.json --port 9001

SIGUSR1 starts the profiler, SIGUSR2 stops it and writes ``OUT.pstats`` (then ``OUT.pstats.done``,
so the caller knows the file is whole); SIGTERM stops the server as usual.  Only the warm
requests sent between the two signals are profiled: no start-up, no warming request.  The
server code is not changed: its own ``main`` runs in this process (``processes`` must be 1).
"""

from __future__ import annotations

import cProfile
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    out, server, arguments = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    profiler = cProfile.Profile()

    def start(_signum: int, _frame: object) -> None:
        profiler.enable()

    def stop(_signum: int, _frame: object) -> None:
        profiler.disable()
        profiler.dump_stats(str(out))
        Path(str(out) + ".done").write_text("done\n")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    if server == "symserver":
        from symserver.__main__ import main as server_main
    elif server == "diskcache":
        from diskcache.__main__ import main as server_main
    else:
        print(f"profiled.py: unknown server {server!r} (symserver, diskcache)", file=sys.stderr)
        return 2
    return server_main(arguments)


if __name__ == "__main__":
    sys.exit(main())
