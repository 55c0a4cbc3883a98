#!/usr/bin/env python3
"""The baseline for cold processing: Sentry's ``symbolic`` turning a .sym file into a symcache.

    python bench/symbolic_baseline.py xul.sym [--offsets offsets.json]

Run in its own process (``bench/run.py`` starts it as a subprocess), so its peak RSS is its
own. Prints one JSON object: the seconds to read the file, to build the symcache from the
bytes (``Archive.from_bytes``, the first object, ``make_symcache``) and to serialise it
(``dump_into``), the symcache's size, the peak RSS (VmHWM) before and after, and,
when offsets are given (a JSON list of ints), the outermost function symbolic finds for
each (``null`` when none), for comparing answers.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import time
from pathlib import Path


def peak_rss_bytes() -> int:
    """This process's peak RSS: VmHWM, which starts afresh at exec (ru_maxrss does not: a
    child started by a large parent would report the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _version() -> str | None:
    try:
        from importlib.metadata import version
        return version("symbolic")
    except Exception:  # noqa: BLE001 - only a label in the report
        return None


def measure(path: Path, offsets: list[int]) -> dict:
    import symbolic  # imported before timing starts, and counted in the "before" RSS

    rss_before = peak_rss_bytes()
    started = time.perf_counter()
    data = path.read_bytes()
    read = time.perf_counter()
    archive = symbolic.Archive.from_bytes(data)
    obj = next(archive.iter_objects())
    symcache = obj.make_symcache()
    built = time.perf_counter()
    buffer = io.BytesIO()
    symcache.dump_into(buffer)
    dumped = time.perf_counter()
    rss_after = peak_rss_bytes()
    functions = []
    for offset in offsets:
        locations = symcache.lookup(offset)
        functions.append(locations[-1].symbol if locations else None)  # outermost frame is last
    return {
        "symbolic_version": _version(),
        "sym_bytes": len(data),
        "read_seconds": read - started,
        "build_seconds": built - read,
        "seconds": built - started,  # T_sym: reading the bytes through the symcache being built
        "dump_seconds": dumped - built,
        "symcache_bytes": len(buffer.getvalue()),
        "peak_rss_before_bytes": rss_before,
        "peak_rss_bytes": rss_after,
        "functions": functions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sym", type=Path)
    parser.add_argument("--offsets", type=Path, help="JSON list of module offsets to look up")
    args = parser.parse_args()
    offsets = json.loads(args.offsets.read_text()) if args.offsets else []
    json.dump(measure(args.sym, offsets), sys.stdout)
    print()


if __name__ == "__main__":
    main()
