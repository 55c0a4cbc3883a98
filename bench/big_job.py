#!/usr/bin/env python3
"""One whole library in one v5 job, as the Firefox Profiler sends it: time and memory.

    python bench/big_job.py [--addresses 500000] [--size-mb 20] [--seed 3]

Generates a module (``bench/gen_symfile.py``, kept in ``bench/work/``), serves it from a
symbol store on 127.0.0.1, starts a trio through quickstart with the default request limits
(its own config, free ports, fresh cache and a 1 GB memcached), then POSTs one v5 job of
--addresses distinct offsets inside the module to SymServer twice: cold (download, processing,
a DiskCache request carrying every address, memcached fill) and warm (from memcached and the
in-process cache).  Meanwhile the RSS of SymServer and of the DiskCache (its children
included) is sampled every 50 ms with psutil.  Prints the body size, both times, both peaks
and the answer size, and checks that the answer has one frame per address, each symbolicated.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

DEBUG_FILE, DEBUG_ID, CODE_FILE = "bigjob.pdb", "B16J0B00B16J0B00B16J0B00B16J0B001".replace("J", "A"), "bigjob.dll"


class PeakRss(threading.Thread):
    """The highest RSS of a process plus its children, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._done.is_set():
            try:
                total = self.process.memory_info().rss
                for child in self.process.children(recursive=True):
                    try:
                        total += child.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
            except psutil.Error:
                return
            time.sleep(self.interval)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def measure(trio: Any, body: bytes) -> dict[str, Any]:
    samplers = {name: PeakRss(trio.pid(name)) for name in ("SymServer", "DiskCache")}
    for sampler in samplers.values():
        sampler.start()
    started = time.monotonic()
    response = trio.session.post(trio.url("SymServer", "/symbolicate/v5"), data=body, timeout=1800)
    seconds = time.monotonic() - started
    peaks = {name: sampler.stop() for name, sampler in samplers.items()}
    response.raise_for_status()
    return {"seconds": round(seconds, 2), "answer_mb": round(len(response.content) / 1e6, 1),
            "peak_rss_mb": {name: round(peak / 1e6) for name, peak in peaks.items()},
            "answer": response.json()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=int, default=500_000)
    parser.add_argument("--size-mb", type=float, default=20)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    from gen_symfile import generate
    from harness import Trio
    from symbol_store import SymbolStore

    work = HERE / "work" / "big_job"
    store_root = work / "store"
    sym = store_root / DEBUG_FILE / DEBUG_ID / "bigjob.sym"
    stats_file = work / f"stats-{args.size_mb}-{args.seed}.json"
    if not stats_file.exists() or not sym.exists():
        sym.parent.mkdir(parents=True, exist_ok=True)
        stats = generate(sym, args.size_mb, seed=args.seed, debug_file=DEBUG_FILE, debug_id=DEBUG_ID,
                         code_file=CODE_FILE)
        stats_file.write_text(json.dumps(stats))
    stats = json.loads(stats_file.read_text())
    end = 0x1000 + stats["funcs"] * 0x1C0  # gen_symfile's FUNCs cover about this much
    offsets = random.Random(args.seed).sample(range(0x1000, end), args.addresses)
    body = json.dumps({"jobs": [{"memoryMap": [[DEBUG_FILE, DEBUG_ID]],
                                 "stacks": [[[0, offset] for offset in offsets]]}]}).encode()
    print(f"module: {sym.stat().st_size / 1e6:.1f} MB, {stats['funcs']} FUNCs; request: one job, "
          f"{args.addresses} distinct addresses, {len(body) / 1e6:.1f} MB of JSON")
    with SymbolStore(store_root) as store, tempfile.TemporaryDirectory(prefix="big_job.") as temporary:
        # memcached big enough to hold every frame, so the warm request is answered from it.
        trio = Trio(Path(temporary), [store.url("plain")],
                    {"quickstart": {"memcached": {"maxMemoryMB": "1024"}}}).start()
        try:
            figures = {attempt: measure(trio, body) for attempt in ("cold", "warm")}
        finally:
            trio.stop()
    for attempt, result in figures.items():
        frames = result.pop("answer")["results"][0]["stacks"][0]
        assert len(frames) == args.addresses, (attempt, len(frames))
        symbolicated = sum(1 for frame in frames if "function" in frame)
        print(f"{attempt}: {result['seconds']} s, answer {result['answer_mb']} MB "
              f"({symbolicated} of {len(frames)} frames with a function); peak RSS "
              f"SymServer {result['peak_rss_mb']['SymServer']} MB, "
              f"DiskCache {result['peak_rss_mb']['DiskCache']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
