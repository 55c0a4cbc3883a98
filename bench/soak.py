#!/usr/bin/env python3
"""Soak test: several client processes against a real trio, with outages injected.

    python bench/soak.py --minutes 10 --clients 4
    python bench/soak.py --minutes 10 --clients 4 --hostile

Starts a trio through quickstart (loopback only, its own directories, ports and pid dir) and
a symbol store serving generated modules; a small ``maxSizeMB`` keeps modules being evicted
and fetched again. Clients send a mix of warm and cold v4 and v5 requests, requests for
missing modules and invalid requests, and check every answer against the plain reference
implementation of the lookup rule. Meanwhile memcached and the DiskCache are killed and
restarted. At the end it prints requests, errors by kind (inside and outside the outage
windows), wrong answers, latency percentiles and the RSS of each process at start and end.
Bounded in time (--minutes) and requests (--max-requests).

``--hostile`` adds, beside that workload, the neighbours of ``bench/hostile.py``: a trickling
store and a gzip bomb behind the real store (clients ask for those modules too, with normal
ones in the same request), poisoned memcached values under the keys of frames the clients
ask for, and a few thousand idle half-sent connections to SymServer.  RSS of every process
is sampled every 5 s and must stay under the bounds of :data:`RSS_BOUNDS_MB`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

from gen_symfile import generate  # noqa: E402
from hostile import BOMB_MODULE, TRICKLE_MODULE, IdleConnections, MemcachedPoisoner, hostile_store_urls  # noqa: E402
from harness import free_port  # noqa: E402
from reference_rule import ReferenceModule  # noqa: E402
from symbol_store import SymbolStore  # noqa: E402

OUTAGE_GRACE_SECONDS = 3.0
MISSING = ["missing.pdb", "00000000000000000000000000000000A"]
#: --hostile: the most each process may use (DiskCache with its parsing workers), in MB.
RSS_BOUNDS_MB = {"SymServer": 150, "DiskCache": 300, "memcached": 100}


def build_modules(root: Path, count: int, size_mb: float, offsets_per_module: int, seed: int) -> list[dict]:
    """Generate modules into the store and precompute reference answers for an offset pool."""
    rng = random.Random(seed)
    modules = []
    for index in range(count):
        debug_id = f"{index + 1:032X}1"
        name = f"soak{index}.pdb"
        path = root / name / debug_id / f"soak{index}.sym"
        path.parent.mkdir(parents=True, exist_ok=True)
        stats = generate(path, size_mb, seed=seed + index, debug_file=name, debug_id=debug_id,
                         code_file=f"soak{index}.dll")
        reference = ReferenceModule.from_bytes(path.read_bytes())
        end = 0x1000 + stats["funcs"] * 0x1C0
        offsets = sorted({rng.randrange(0x800, end) for _ in range(offsets_per_module)})
        answers = {offset: reference.lookup(offset) for offset in offsets}
        modules.append({"memory_map": [name, debug_id], "code_file": f"soak{index}.dll", "answers": answers})
        print(f"  module {name}: {path.stat().st_size / 1e6:.1f} MB, {len(answers)} reference answers", flush=True)
    return modules


def expected_v4(module: dict, offset: int) -> str:
    answer = module["answers"][offset]
    if answer is None:
        return f"{hex(offset)} (in {module['memory_map'][0]})"
    return f"{answer['function']} (in {module['memory_map'][0]})"


def v5_matches(module: dict, offset: int, frame: dict) -> bool:
    answer = module["answers"][offset]
    if frame.get("module") != module["code_file"] or frame.get("module_offset") != hex(offset):
        return False
    if answer is None:
        return "function" not in frame
    inlines = [{k: v for k, v in i.items() if v is not None} for i in answer["inlines"]]
    return (frame.get("function") == answer["function"]
            and frame.get("function_offset") == hex(answer["function_offset"])
            and frame.get("function_size") == (hex(answer["function_size"]) if answer["function_size"] is not None else None)
            and frame.get("file") == answer["file"] and frame.get("line") == answer["line"]
            and frame.get("inlines", []) == inlines)


def client(number: int, url: str, modules: list[dict], deadline: float, max_requests: int,
           results: multiprocessing.Queue, hostile: bool = False) -> None:
    """One client process: a weighted mix of request kinds, every answer checked."""
    rng = random.Random(number)
    session = requests.Session()
    records = []
    sent = 0
    kinds, weights = ["warm-v4", "v4", "v5", "missing", "invalid"], [40, 20, 25, 5, 10]
    if hostile:
        kinds, weights = kinds + ["hostile"], weights + [3]
    while time.time() < deadline and sent < max_requests:
        kind = rng.choices(kinds, weights)[0]
        started = time.time()
        try:
            if kind == "hostile":
                module = rng.choice(modules)
                offsets = rng.sample(list(module["answers"]), 10)
                bad = rng.choice([TRICKLE_MODULE, BOMB_MODULE])
                jobs = [{"memoryMap": [module["memory_map"]], "stacks": [[[0, o] for o in offsets]]},
                        {"memoryMap": [bad], "stacks": [[[0, 0x1234]]]}]
                response = session.post(url + "/symbolicate/v5", json={"jobs": jobs}, timeout=120)
                outcome = _status(response)
                if not outcome:
                    good, unknown = response.json()["results"]
                    right = all(v5_matches(module, o, frame) for o, frame in zip(offsets, good["stacks"][0]))
                    outcome = "ok" if right and not any(unknown["found_modules"].values()) else "wrong"
            elif kind == "invalid":
                body = rng.choice([b"{", b'{"version": 4}', b'{"stacks": [[[0, -1]]], "memoryMap": [], "version": 4}',
                                   json.dumps({"jobs": "x"}).encode()])
                path = "/symbolicate/v5" if b"jobs" in body else "/"
                response = session.post(url + path, data=body, timeout=60)
                outcome = "ok" if response.status_code == 400 and "error" in response.json() else \
                    f"http {response.status_code}"
            elif kind == "missing":
                body = {"version": 4, "memoryMap": [MISSING], "stacks": [[[0, 0x1234]]]}
                response = session.post(url + "/", json=body, timeout=60)
                outcome = _status(response) or ("ok" if response.json()["knownModules"] == [False] else "wrong")
            elif kind in ("warm-v4", "v4"):
                module = modules[0] if kind == "warm-v4" else rng.choice(modules)
                pool = list(module["answers"])[:20] if kind == "warm-v4" else list(module["answers"])
                offsets = [rng.choice(pool) for _ in range(rng.randrange(1, 60))]
                body = {"version": 4, "memoryMap": [module["memory_map"]], "stacks": [[[0, o] for o in offsets]]}
                response = session.post(url + "/", json=body, timeout=60)
                outcome = _status(response) or (
                    "ok" if response.json()["symbolicatedStacks"][0] == [expected_v4(module, o) for o in offsets]
                    else "wrong")
            else:
                chosen = rng.sample(modules, rng.randrange(1, min(4, len(modules)) + 1))
                jobs, wanted = [], []
                for module in chosen:
                    offsets = rng.sample(list(module["answers"]), rng.randrange(1, 40))
                    jobs.append({"memoryMap": [module["memory_map"]], "stacks": [[[0, o] for o in offsets]]})
                    wanted.append((module, offsets))
                response = session.post(url + "/symbolicate/v5", json={"jobs": jobs}, timeout=60)
                outcome = _status(response)
                if not outcome:
                    results_json = response.json()["results"]
                    good = all(v5_matches(module, offset, frame)
                               for (module, offsets), result in zip(wanted, results_json)
                               for offset, frame in zip(offsets, result["stacks"][0]))
                    outcome = "ok" if good else "wrong"
        except requests.RequestException as error:
            outcome = f"connection {type(error).__name__}"
        records.append((started, time.time() - started, kind, outcome))
        sent += 1
        if len(records) >= 200:
            results.put(records)
            records = []
    results.put(records)
    results.put(None)


def _status(response: requests.Response) -> str:
    return "" if response.status_code == 200 else f"http {response.status_code}"


def rss_mb(pid: int | None, children: bool = True) -> float | None:
    """RSS of a process, with its children (the DiskCache's parsing workers) unless told not to."""
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        family = [process, *process.children(recursive=True)] if children else [process]
        return sum(member.memory_info().rss for member in family) / 1e6
    except psutil.Error:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-requests", type=int, default=2_000_000, help="per client")
    parser.add_argument("--modules", type=int, default=6)
    parser.add_argument("--module-mb", type=float, default=3.0)
    parser.add_argument("--memcached-every", type=float, default=75.0, help="seconds between memcached kills")
    parser.add_argument("--diskcache-every", type=float, default=110.0, help="seconds between DiskCache kills")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hostile", action="store_true",
                        help="add a trickling store, a gzip bomb, poisoned memcached values and idle connections")
    parser.add_argument("--idle-connections", type=int, default=2000, help="with --hostile")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    print(f"soak: working in {workdir}", flush=True)
    store_root = workdir / "store"
    modules = build_modules(store_root, args.modules, args.module_mb, 300, args.seed)
    store = SymbolStore(store_root)
    store.start()
    symbol_urls = [store.url("plain")]
    hostile_store = None
    if args.hostile:
        hostile_root = workdir / "hostile-store"
        name, debug_id = TRICKLE_MODULE
        path = hostile_root / name / debug_id / (name[:-4] + ".sym")
        path.parent.mkdir(parents=True)
        generate(path, 1.0, seed=args.seed, debug_file=name, debug_id=debug_id, code_file="trickle0.dll")
        hostile_store = SymbolStore(hostile_root)
        hostile_store.start()
        symbol_urls = hostile_store_urls(store.url("plain"), hostile_store)
    ports = {"DiskCache": free_port(), "SymServer": free_port(), "memcached": free_port()}
    config = {
        "DiskCache": {"cachePath": str(workdir / "cache"), "port": ports["DiskCache"], "localSymbolDirs": [],
                      "symbolURLs": symbol_urls, "maxSizeMB": 3, "missingModuleTTLSeconds": 5,
                      "log": {"path": str(workdir / "DiskCache.log")}},
        "SymServer": {"port": ports["SymServer"], "DiskCacheServer": f"127.0.0.1:{ports['DiskCache']}",
                      "memcachedServers": [f"127.0.0.1:{ports['memcached']}"],
                      "log": {"path": str(workdir / "SymServer.log")}},
        "quickstart": {"memcached": {"port": ports["memcached"], "restart": True, "maxMemoryMB": "32"},
                       "DiskCache": {"restart": False}, "SymServer": {"restart": False}},
    }
    if args.hostile:
        config["DiskCache"].update({"downloadTimeoutSeconds": 4, "maxSymbolFileMB": 64})
    config_path = workdir / "config.json"
    config_path.write_text(json.dumps(config))
    pid_dir = workdir / "pids"
    quickstart = [sys.executable, str(REPO / "quickstart.py"), "--pidDir", str(pid_dir)]

    def start() -> None:
        subprocess.run([*quickstart, "-c", str(config_path)], check=True, capture_output=True)

    def pid(name: str) -> int | None:
        try:
            return int((pid_dir / f"{name}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    start()
    url = f"http://127.0.0.1:{ports['SymServer']}"
    time.sleep(1)
    rss_start = {name: rss_mb(pid(name)) for name in ("SymServer", "DiskCache", "memcached")}
    started = time.time()
    deadline = started + args.minutes * 60
    queue: multiprocessing.Queue = multiprocessing.Queue()
    clients = [multiprocessing.Process(target=client, args=(n, url, modules, deadline, args.max_requests, queue,
                                                            args.hostile))
               for n in range(args.clients)]
    for process in clients:
        process.start()
    marker = workdir / "memcached-value-ran-code"
    neighbours: list = []
    if args.hostile:
        neighbours = [MemcachedPoisoner(ports["memcached"], modules, marker, deadline - 5),
                      IdleConnections(ports["SymServer"], args.idle_connections, deadline - 5)]
        for neighbour in neighbours:
            neighbour.start()
    peak_rss: dict[str, float] = {}

    outages: list[tuple[float, float, str]] = []

    def outage(name: str) -> None:
        """Kill one program, wait a second, start it again (quickstart restarts only the dead)."""
        begin = time.time()
        os.kill(pid(name), signal.SIGKILL)
        time.sleep(1)
        start()
        outages.append((begin, time.time(), name))
        print(f"  {begin - started:6.0f}s {name} killed and restarted", flush=True)

    next_memcached = started + args.memcached_every
    next_diskcache = started + args.diskcache_every
    diskcache_rss_after_restarts: list[float | None] = []
    records: list[tuple] = []
    samples: list[tuple[float, float | None, float | None]] = []
    next_sample = next_peak_sample = started
    finished = 0
    while finished < len(clients):
        now = time.time()
        if now >= next_sample:
            samples.append((now - started, rss_mb(pid("SymServer")), rss_mb(pid("DiskCache"), children=False)))
            next_sample += 30
        if args.hostile and now >= next_peak_sample:
            for name in RSS_BOUNDS_MB:
                peak_rss[name] = max(peak_rss.get(name, 0.0), rss_mb(pid(name)) or 0.0)
            next_peak_sample = now + 5
        if now < deadline - 10 and now >= next_memcached:
            outage("memcached")
            next_memcached += args.memcached_every
        if now < deadline - 10 and now >= next_diskcache:
            outage("DiskCache")
            diskcache_rss_after_restarts.append(rss_mb(pid("DiskCache")))
            next_diskcache += args.diskcache_every
        try:
            batch = queue.get(timeout=0.5)
        except Exception:  # noqa: BLE001 - queue.Empty
            continue
        if batch is None:
            finished += 1
        else:
            records.extend(batch)
    for process in clients:
        process.join()
    rss_end = {name: rss_mb(pid(name)) for name in ("SymServer", "DiskCache", "memcached")}
    diskcache_alone = rss_mb(pid("DiskCache"), children=False)
    symserver_pid = pid("SymServer")
    for neighbour in neighbours:
        neighbour.join(timeout=10)
    subprocess.run([*quickstart, "--stop"], capture_output=True)
    store.stop()
    if hostile_store is not None:
        hostile_store.stop()

    def in_outage(moment: float, duration: float) -> str | None:
        for begin, end, what in outages:
            if moment <= end + OUTAGE_GRACE_SECONDS and moment + duration >= begin:
                return what
        return None

    errors_in, errors_out, wrong = {}, {}, 0
    for moment, duration, kind, outcome in records:
        if outcome == "ok":
            continue
        if outcome == "wrong":
            wrong += 1
            continue
        window = in_outage(moment, duration)
        target = errors_in if window else errors_out
        label = f"{outcome} ({window})" if window else outcome
        target[label] = target.get(label, 0) + 1
    latencies = sorted(duration for _, duration, _, outcome in records if outcome == "ok")
    by_kind = {}
    for _, _, kind, _ in records:
        by_kind[kind] = by_kind.get(kind, 0) + 1

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    elapsed = time.time() - started
    print("\nsoak results")
    print(f"  duration                      {elapsed / 60:.1f} min, {args.clients} client processes")
    print(f"  requests                      {len(records)} ({len(records) / elapsed:.0f}/s): "
          + ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items())))
    print(f"  injected outages              {sum(1 for o in outages if o[2] == 'memcached')} memcached, "
          f"{sum(1 for o in outages if o[2] == 'DiskCache')} DiskCache")
    print(f"  wrong answers                 {wrong}")
    print(f"  errors outside outages        {sum(errors_out.values())} {errors_out or ''}")
    print(f"  errors inside outage windows  {sum(errors_in.values())} {errors_in or ''}")
    print(f"  latency p50 / p99             {percentile(0.5):.1f} ms / {percentile(0.99):.1f} ms "
          f"(mean {statistics.mean(latencies) * 1000 if latencies else 0:.1f} ms)")
    print(f"  SymServer RSS start -> end    {rss_start['SymServer']:.1f} MB -> {rss_end['SymServer']:.1f} MB "
          f"(pid {symserver_pid}, never restarted)")
    print(f"  DiskCache RSS start -> end    {rss_start['DiskCache']:.1f} MB -> {rss_end['DiskCache']:.1f} MB "
          f"with its worker process ({diskcache_alone:.1f} MB without; right after restarts: "
          f"{', '.join(f'{r:.1f}' for r in diskcache_rss_after_restarts if r)} MB)")
    print("  RSS every 30 s (SymServer / DiskCache without workers, MB): " + ", ".join(
        f"{t:.0f}s {a or 0:.0f}/{b or 0:.0f}" for t, a, b in samples))
    print(f"  memcached RSS start -> end    {rss_start['memcached']:.1f} MB -> {rss_end['memcached']:.1f} MB")
    over_bound = []
    if args.hostile:
        poisoner, idle = neighbours
        ran_code = marker.exists()
        over_bound = [name for name, peak in peak_rss.items() if peak > RSS_BOUNDS_MB[name]]
        print(f"  poisoned memcached values     {poisoner.planted}; a value ran code: {'YES' if ran_code else 'no'}")
        print(f"  idle connections              {args.idle_connections} held: {idle.opened} opened, "
              f"{idle.closed_by_server} closed by the server, {idle.refused} refused")
        print("  peak RSS (every 5 s)          " + ", ".join(
            f"{name} {peak:.0f} MB (bound {RSS_BOUNDS_MB[name]})" for name, peak in peak_rss.items()))
        if ran_code:
            over_bound.append("memcached value ran code")
    print(f"  logs in                       {workdir}")
    return 1 if wrong or errors_out or over_bound else 0


if __name__ == "__main__":
    sys.exit(main())
