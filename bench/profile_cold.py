"""A whole profile, cold (issue 12, goal 2): what the Firefox Profiler asks after loading a
fresh profile, every cache empty.

126 modules: one 74 MB xul-class module, 15 of about 7 MB, 90 small ones (0.2 to 0.5 MB)
and 20 that no store has; about 7,400 addresses (3,000 in xul, 150 in each 7 MB module, 20
in each small one, the rest in the missing ones).  Asked the Profiler's way: ``POST
/symbolicate/v5``, one job per module, 10 jobs a request, 4 requests at once, in a seeded
order; timed from the first request sent to the last answer read.  The store (``tests/
symbol_store.py``, ``/plain``) runs in a process of its own on 127.0.0.1.

Ours: a fresh trio through quickstart (empty cache directory, fresh memcached): SymServer
with 1 process, the DiskCache with ``processWorkers`` = one per core.

Baseline, the design of Mozilla's current service: a pool of one process per core (started
and warmed before the clock starts); each request goes to one pool process, which, job by
job, downloads the module from the same store, builds a symcache with ``symbolic`` and looks
the job's addresses up.  Every address's outermost function is compared between the two.
Goal: ours <= 0.35 x the pool's time, and the same answers.
"""

from __future__ import annotations

import datetime
import json
import multiprocessing
import os
import random
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import (MB, BenchTrio, StoreProcess, Workload, build_module, log, module_names, offsets_inside_funcs,
                    place_in_store, public_inside_func, store_path)
from table import Row, not_measured, ratio_text
from cold import tables_built_after

GOAL_RATIO = 0.35
JOBS_PER_REQUEST = 10
PARALLEL_REQUESTS = 4
SEVEN_MB = 15
SMALL = 90
MISSING = 20
ADDRESSES = {"xul": 3000, "seven": 150, "small": 20, "missing": 350}


def build_profile(seed: int) -> list[dict[str, Any]]:
    """The 126 modules with their addresses, in the order the requests carry them."""
    rng = random.Random(seed)
    modules: list[dict[str, Any]] = []
    xul = build_module("74", 74.0, seed, quiet=True)
    modules.append({**xul, "kind": "xul", "offsets": offsets_inside_funcs(xul, ADDRESSES["xul"], seed + 1000)})
    for index in range(SEVEN_MB):
        module = build_module(f"p7x{index}", 7.3, seed + 100 + index, quiet=True)  # 7.3 makes about 7 MB
        modules.append({**module, "kind": "7 MB", "offsets": offsets_inside_funcs(module, ADDRESSES["seven"],
                                                                                  seed + 1100 + index)})
    for index in range(SMALL):
        size = round(0.21 + 0.31 * index / (SMALL - 1), 3)  # 0.2 to 0.5 MB written
        module = build_module(f"psx{index}", size, seed + 200 + index, quiet=True)
        modules.append({**module, "kind": "small", "offsets": offsets_inside_funcs(module, ADDRESSES["small"],
                                                                                   seed + 1200 + index)})
    per_missing = ADDRESSES["missing"] // MISSING
    for index in range(MISSING):
        names = module_names(f"pmx{index}", 1.0, seed + 300 + index)
        count = per_missing + (1 if index < ADDRESSES["missing"] - per_missing * MISSING else 0)
        modules.append({**names, "kind": "missing", "bytes": 0,
                        "offsets": [rng.randrange(0x1000, 0x4000000) for _ in range(count)]})
    rng.shuffle(modules)
    return modules


def requests_of(modules: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [modules[start:start + JOBS_PER_REQUEST] for start in range(0, len(modules), JOBS_PER_REQUEST)]


def v5_request(group: list[dict[str, Any]]) -> bytes:
    return json.dumps({"jobs": [{"memoryMap": [[m["debug_file"], m["debug_id"]]],
                                 "stacks": [[[0, offset] for offset in m["offsets"]]]} for m in group]}).encode()


# --------------------------------------------------------------------------- the symbolic pool

def _pool_start() -> None:
    import symbolic  # noqa: F401 - imported before the clock starts, as a running service has it


def _pool_ready(_: int) -> int:
    time.sleep(0.2)  # long enough that every pool process takes one
    return os.getpid()


def symbolic_request(store_url: str, jobs: list[tuple[str, list[int]]]) -> list[list[str | None]]:
    """One request in one pool process: per job, download, build a symcache, look up."""
    import symbolic

    answers = []
    for path, offsets in jobs:
        try:
            with urllib.request.urlopen(f"{store_url}/{path}", timeout=300) as response:
                data = response.read()
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise
            answers.append([None] * len(offsets))
            continue
        archive = symbolic.Archive.from_bytes(data)
        symcache = next(archive.iter_objects()).make_symcache()
        found = []
        for offset in offsets:
            locations = symcache.lookup(offset)
            found.append(locations[-1].symbol if locations else None)  # outermost frame is last
        answers.append(found)
    return answers


class CpuAccount:
    """CPU seconds (user + system) that groups of processes, and the children each has reaped,
    use between :meth:`start` and :meth:`stop`, by role.  ``children``: roles whose live
    children (looked for at each end) count too, under the role named here (the DiskCache's
    workers; a SymServer's forked processes).  Where a side's time goes, and whether the two
    sides of the comparison use the cores alike."""

    def __init__(self, roles: dict[str, list[int]], children: dict[str, str] | None = None) -> None:
        import psutil

        self.roles = {role: [psutil.Process(pid) for pid in pids] for role, pids in roles.items()}
        self.children = children or {}
        self.before: dict[tuple[str, int], float] = {}

    def _snapshot(self) -> dict[tuple[str, int], float]:
        """CPU seconds so far by (role, pid)."""
        import psutil

        found: dict[tuple[str, int], float] = {}
        for role, processes in self.roles.items():
            for process in processes:
                try:
                    times = process.cpu_times()
                    found[(role, process.pid)] = (times.user + times.system + times.children_user
                                                  + times.children_system)
                    children = process.children(recursive=True) if role in self.children else []
                except psutil.Error:
                    continue
                for child in children:
                    try:
                        times = child.cpu_times()
                    except psutil.Error:
                        continue
                    found[(self.children[role], child.pid)] = times.user + times.system
        return found

    def start(self) -> None:
        self.before = self._snapshot()

    def stop(self) -> dict[str, float]:
        """The seconds by role since :meth:`start`, and their ``total``."""
        seconds: dict[str, float] = {}
        for (role, pid), value in self._snapshot().items():
            seconds[role] = seconds.get(role, 0.0) + value - self.before.get((role, pid), 0.0)
        seconds["total"] = sum(seconds.values())
        return {role: round(value, 3) for role, value in seconds.items()}


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \d+ \w+ diskcache\.\w+: "
                      r"(downloaded|processed) (\S+?):? .* in ([0-9.]+)s$")


def diskcache_timeline(log_path: Path, began: float) -> dict[str, Any]:
    """When each module was downloaded and processed, from the DiskCache's log (its INFO
    lines), in seconds since the first request was sent: where the whole profile's time goes.
    A "processed ... in N s" counts from when the module was handed to the workers (waiting
    for a free one included), so these seconds overlap and do not add up to CPU."""
    events: dict[str, dict[str, float]] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        match = LOG_LINE.match(line)
        if not match:
            continue
        stamp, what, name, seconds = match.groups()
        at = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp() - began
        name = name.rsplit("/", 1)[-1] if what == "downloaded" else name.split("/", 1)[0]
        name = name.removesuffix(".sym").removesuffix(".pdb")
        events.setdefault(name, {})[what] = round(at, 3)
        events[name][f"{what}_seconds"] = float(seconds)
    processed = [e for e in events.values() if "processed" in e]
    return {
        "modules_processed": len(processed),
        "last_processed_at": max((e["processed"] for e in processed), default=None),
        "modules": events,
    }


# --------------------------------------------------------------------------- the workload

class ProfileCold(Workload):

    def run(self) -> tuple[dict[str, Any], list[Row], list[str]]:
        ctx = self.ctx
        workdir = ctx.workdir("profile")
        started = time.perf_counter()
        modules = build_profile(ctx.seed)
        for module in modules:
            if module["kind"] != "missing":
                place_in_store(workdir / "store", module)
        groups = requests_of(modules)
        self.results["order"] = [any(m["kind"] == "xul" for m in group) for group in groups]
        present = [m for m in modules if m["kind"] != "missing"]
        self.results["workload"] = {
            "modules": len(modules), "missing": sum(m["kind"] == "missing" for m in modules),
            "addresses": sum(len(m["offsets"]) for m in modules), "requests": len(groups),
            "sym_mb": round(sum(m["bytes"] for m in present) / MB, 1),
            "jobs_per_request": JOBS_PER_REQUEST, "parallel_requests": PARALLEL_REQUESTS,
            "pool_processes": os.cpu_count() or 1}
        log(f"profile workload: {self.results['workload']} (built in {time.perf_counter() - started:.1f} s)")
        store = StoreProcess(workdir / "store")
        runs: dict[str, list[dict[str, Any]]] = {"symbolic": [], "ours": []}
        try:
            for number in range(ctx.repeat):  # alternating, so neither side always runs first
                runs["symbolic"].append(self.symbolic_pool(store, groups))
                runs["ours"].append(self.ours(workdir / f"trio{number}", store, groups))
        finally:
            store.stop()
        for side, side_runs in runs.items():
            side_runs.sort(key=lambda run: run["seconds"])
            median = side_runs[len(side_runs) // 2]
            median["samples"] = [round(run["seconds"], 2) for run in side_runs]
            self.results[side] = median
        self.compare(groups, runs)
        return self.results, self.rows(), self.details()

    def symbolic_pool(self, store: StoreProcess, groups: list[list[dict[str, Any]]]) -> dict[str, Any]:
        processes = os.cpu_count() or 1
        context = multiprocessing.get_context("spawn")
        with context.Pool(processes, initializer=_pool_start) as pool:
            pool_pids = sorted(set(pool.map(_pool_ready, range(processes * 2))))
            log(f"symbolic pool of {processes} processes ready")
            cpu = CpuAccount({"pool": pool_pids, "store": [store.pid]})
            cpu.start()
            began = time.monotonic()

            latencies: list[float] = [0.0] * len(groups)

            def one(index: int) -> list[list[str | None]]:
                sent = time.monotonic()
                answer = pool.apply(symbolic_request, (store.url("plain"),
                                                       [(store_path(m), m["offsets"]) for m in groups[index]]))
                latencies[index] = round(time.monotonic() - sent, 3)
                return answer

            with ThreadPoolExecutor(PARALLEL_REQUESTS) as executor:
                answers = list(executor.map(one, range(len(groups))))
            seconds = time.monotonic() - began
            cpu_seconds = cpu.stop()
        log(f"symbolic pool: {seconds:.2f} s; CPU seconds {cpu_seconds}; per request {latencies}")
        return {"seconds": seconds, "processes": processes, "answers": answers, "request_seconds": latencies,
                "cpu_seconds": cpu_seconds}

    def ours(self, workdir: Any, store: StoreProcess, groups: list[list[dict[str, Any]]]) -> dict[str, Any]:
        import requests

        cores = os.cpu_count() or 1
        workdir.mkdir(parents=True, exist_ok=True)
        trio = BenchTrio(workdir, [store.url("plain")], symserver_processes=1,
                         diskcache={"processWorkers": cores, "localSymbolDirs": []})
        bodies = [v5_request(group) for group in groups]
        try:
            trio.start()
            url = trio.symserver + "/symbolicate/v5"
            statuses: list[int] = []
            latencies: list[float] = [0.0] * len(bodies)

            def one(index: int) -> list[list[str | None]]:
                sent = time.monotonic()
                response = requests.post(url, data=bodies[index], headers={"Content-Type": "application/json"},
                                         timeout=1800)
                latencies[index] = round(time.monotonic() - sent, 3)
                statuses.append(response.status_code)
                if response.status_code != 200:
                    return []
                return [[frame.get("function") for frame in result["stacks"][0]]
                        for result in response.json()["results"]]

            cpu = CpuAccount({"store": [store.pid], "DiskCache": [trio.pid("DiskCache")],
                              "SymServer": [trio.pid("SymServer")], "memcached": [trio.pid("memcached")]},
                             children={"DiskCache": "workers", "SymServer": "SymServer"})
            cpu.start()
            began, began_wall = time.monotonic(), time.time()
            with ThreadPoolExecutor(PARALLEL_REQUESTS) as executor:
                answers = list(executor.map(one, range(len(bodies))))
            seconds = time.monotonic() - began
            cpu_seconds = cpu.stop()
            tables_seconds = tables_built_after(trio.cache_dir, began)  # built in the background
        finally:
            trio.stop()
        try:
            timeline = diskcache_timeline(workdir / "DiskCache.log", began_wall)
        except (OSError, ValueError) as error:
            timeline = {"error": str(error)}
        log(f"ours: {seconds:.2f} s, statuses {sorted(set(statuses))}; every table built at "
            f"{tables_seconds if tables_seconds is None else round(tables_seconds, 2)} s; CPU seconds {cpu_seconds}; "
            f"per request {latencies}")
        return {"seconds": seconds, "statuses": statuses, "answers": answers, "request_seconds": latencies,
                "tables_seconds": tables_seconds, "cpu_seconds": cpu_seconds,
                "timeline": timeline,
                "processes": f"SymServer 1, DiskCache 1 + {cores} workers, memcached 1", "workers": cores}

    def compare(self, groups: list[list[dict[str, Any]]], runs: dict[str, list[dict[str, Any]]]) -> None:
        """Every run of ours against symbolic's first run, address by address."""
        theirs = runs["symbolic"][0]["answers"]
        compared = differing = explained = 0
        examples = []
        pairs = [(group, our_group, their_group) for run in runs["ours"]
                 for group, our_group, their_group in zip(groups, run["answers"], theirs)]
        for group, our_group, their_group in pairs:
            if len(our_group) != len(group):
                differing += sum(len(m["offsets"]) for m in group)
                examples.append(f"request with {group[0]['debug_file']}: {len(our_group)} results")
                continue
            for module, our_frames, their_frames in zip(group, our_group, their_group):
                for offset, our, their in zip(module["offsets"], our_frames, their_frames):
                    compared += 1
                    if our != their:
                        if public_inside_func(module, offset, their):
                            explained += 1
                            continue
                        differing += 1
                        if len(examples) < 5:
                            examples.append(f"{module['debug_file']} 0x{offset:x}: ours {our!r}, symbolic {their!r}")
        self.results["comparison"] = {"compared": compared, "differing": differing, "examples": examples,
                                      "symbolic_public_inside_func": explained}
        for side_runs in runs.values():
            for run in side_runs:
                run.pop("answers", None)

    def rows(self) -> list[Row]:
        ours, theirs = self.results.get("ours"), self.results.get("symbolic")
        comparison = self.results.get("comparison")
        workload = self.results["workload"]
        goal = (f"2 whole profile cold: {workload['modules']} modules ({workload['missing']} missing), "
                f"{workload['addresses']:,} addresses, {workload['sym_mb']} MB of .sym")
        if not (ours and theirs and comparison):
            return [not_measured(goal, f"<= {GOAL_RATIO:.2f}x")]
        ratio = ours["seconds"] / theirs["seconds"]
        bad = [status for status in ours["statuses"] if status != 200]
        notes = []
        if comparison["differing"]:
            notes.append(f"{comparison['differing']} of {comparison['compared']} answers differ from symbolic: "
                         + "; ".join(comparison["examples"]))
        if bad:
            notes.append(f"statuses {bad}")
        tables = ours.get("tables_seconds")
        built = f"; every table built at {tables:.2f} s" if tables is not None else "; tables not all built"
        return [Row(goal, f"{ours['seconds']:.2f} s {ours['samples']} ({ours['processes']}{built})",
                    f"symbolic pool of {theirs['processes']}: {theirs['seconds']:.2f} s {theirs['samples']}",
                    ratio_text(ratio, GOAL_RATIO),
                    f"<= {GOAL_RATIO:.2f}x, same answers", ratio <= GOAL_RATIO and not notes, note=" ".join(notes))]

    def details(self) -> list[str]:
        comparison = self.results.get("comparison") or {}
        lines = [f"profile: {self.results['workload']}; answers compared with symbolic: "
                 f"{comparison.get('compared')} ({comparison.get('differing')} differ; "
                 f"{comparison.get('symbolic_public_inside_func')} more where symbolic answers a PUBLIC that lies "
                 f"inside the FUNC covering the address, which Breakpad's rule answers with the FUNC)"]
        groups = self.results.get("order", [])
        for side in ("ours", "symbolic"):
            run = self.results.get(side) or {}
            lines.append(f"    {side}: seconds per request (in order sent, 4 at once): {run.get('request_seconds')}")
            lines.append(f"    {side}: CPU seconds from the first request to the last answer (user + system, "
                         f"the median run): {run.get('cpu_seconds')}")
        if groups:
            lines.append(f"    the 74 MB module is in request {groups.index(True) + 1}")
        timeline = (self.results.get("ours") or {}).get("timeline") or {}
        xul = (timeline.get("modules") or {}).get("bench74")
        if xul:
            lines.append(f"    DiskCache (its log, seconds since the first request): {timeline['modules_processed']} "
                         f"modules processed by {self.results['ours'].get('workers')} workers, the last at "
                         f"{timeline['last_processed_at']} s; the 74 MB module downloaded at {xul.get('downloaded')} s "
                         f"(in {xul.get('downloaded_seconds')} s), processed at {xul.get('processed')} s "
                         f"({xul.get('processed_seconds')} s after it was handed to the workers)")
        return lines


run = ProfileCold.measure
