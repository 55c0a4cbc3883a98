#!/usr/bin/env python3
"""The performance goals, each against its baseline measured in the same run.

    python bench/run.py --quick                 # a few minutes: sizes 10 and 74 MB, short wrk runs
    python bench/run.py                         # everything, the 1 GB module included
    python bench/run.py --only warm,cold --sizes 10,74,300 --duration 10

Workloads (one module each; ``bench/common.py`` has what they share, ``bench/table.py``
prints the table and writes ``bench/work/results.json``):

* ``warm`` (``bench/warm.py``): warm throughput per process: SymServer (1 process) and the
  DiskCache's recent-frames path against an HTTP floor and a stdlib-JSON echo (1 process
  each), all under ``wrk -t1 -c8``; 2 / 200 / 2,000 frames per request; a cProfile breakdown
  of one warm SymServer process.
* ``cold`` (``bench/cold.py``): the cold request for a 74 MB module against ``symbolic``
  (round one: time, the DiskCache answering meanwhile, table size, peak RSS), and the size
  ladder 10 / 74 / 300 / 1024 MB (time, MB/s, peak RSS, table size, symbolic beside each);
  the 1 GB step carries issue 12's goal 3.
* ``profile`` (``bench/profile_cold.py``): what the Firefox Profiler asks after loading a
  fresh profile (126 modules, 10 jobs a request, 4 requests at once), our trio against a
  pool of ``symbolic`` processes, one per core, downloading from the same store.

Exit status: 0 when every counted goal is met, 1 when one is not or a workload failed,
2 when a tool is missing (nothing is installed by this script).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import WORK, Context, log, machine_facts, missing_tools  # noqa: E402
from table import Row, all_met, print_report, write_results, not_measured  # noqa: E402

WORKLOADS = ("warm", "cold", "profile")
FULL_SIZES = "10,74,300,1024"
QUICK_SIZES = "10,74"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"short runs: sizes {QUICK_SIZES}, wrk 3 s, one cold run each, no DiskCache profile")
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help=f"workloads to run, comma-separated (default all: {','.join(WORKLOADS)})")
    parser.add_argument("--sizes", help=f"cold ladder sizes in MB (default {FULL_SIZES}; --quick {QUICK_SIZES})")
    parser.add_argument("--duration", type=float, help="seconds of each wrk run (default 10; --quick 3)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument("--repeat", type=int,
                        help="cold runs of the 74 MB module and of symbolic, medians compared (default 3; --quick 1)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated modules and offsets (default 1)")
    return parser.parse_args(argv)


def make_context(args: argparse.Namespace) -> Context:
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    return Context(quick=args.quick, duration=args.duration or (3.0 if args.quick else 10.0),
                   connections=args.connections, seed=args.seed,
                   repeat=args.repeat or (1 if args.quick else 3),
                   sizes=[float(size) for size in sizes.split(",") if size.strip()],
                   run_dir=WORK / "run")


def compile_bytecode() -> None:
    """Write the project's .pyc files, as any install does: where PYTHONDONTWRITEBYTECODE is
    set (it is on our build machines) every worker process started during a measurement
    would otherwise compile its modules again (about 30 ms of CPU each)."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for package in ("symcommon", "symserver", "diskcache", "symclient"):
        compileall.compile_dir(root / package, quiet=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in WORKLOADS]
    if unknown:
        print(f"bench/run.py: unknown workload(s) {', '.join(unknown)} (known: {', '.join(WORKLOADS)})",
              file=sys.stderr)
        return 2
    missing = missing_tools()
    if missing:
        for line in missing:
            print(f"bench/run.py: {line}", file=sys.stderr)
        print("bench/run.py installs nothing itself; install the above and run it again.", file=sys.stderr)
        return 2
    ctx = make_context(args)
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    compile_bytecode()
    results: dict[str, Any] = {"machine": machine_facts(),
                               "options": {"quick": ctx.quick, "workloads": ",".join(chosen),
                                           "sizes_mb": ",".join(f"{s:g}" for s in ctx.sizes),
                                           "wrk": f"-t1 -c{ctx.connections} -d{int(ctx.duration)}s",
                                           "repeat": ctx.repeat, "seed": ctx.seed,
                                           "cores": os.cpu_count()},
                               "phases": {}, "errors": {}}
    rows: list[Row] = []
    details: list[str] = []
    for name in chosen:
        module = __import__({"warm": "warm", "cold": "cold", "profile": "profile_cold"}[name])
        log(f"=== workload {name}")
        # a workload starts with nothing left to write back from the one before (the cold
        # ladder writes over a gigabyte of tables, which the kernel otherwise flushes during
        # the next workload's timings, both sides', about 30 s later)
        os.sync()
        started = time.perf_counter()
        try:
            figures, new_rows, new_details, errors = module.run(ctx)
        except Exception as error:  # noqa: BLE001 - reported; the other workloads still run
            traceback.print_exc()
            results["errors"][name] = f"{type(error).__name__}: {error}"
            rows.append(not_measured(f"{name} workload", "runs", f"failed: {type(error).__name__}: {error}"))
            continue
        finally:
            results["phases"][name] = round(time.perf_counter() - started, 1)
        results[name] = figures
        results["errors"].update(errors)
        rows.extend(new_rows)
        details.extend(new_details)
    met = all_met(rows, results["errors"])
    results["all_goals_met"] = met
    print_report(results, rows, details)
    write_results(WORK / "results.json", results, rows)
    print(f"\nfigures written to {WORK / 'results.json'}; logs and wrk output in {ctx.run_dir}")
    if results["errors"]:
        print("phases that failed: " + "; ".join(f"{k}: {v}" for k, v in results["errors"].items()))
    print("ALL GOALS MET" if met else "NOT ALL GOALS MET")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
