#!/usr/bin/env python3
"""The benchmark against the issue's six goals, baselines included, in one run.

    python bench/run.py [--size-mb 74] [--big-mb 200] [--duration 10] [--connections 8] [--keep]

Builds the workload in ``bench/work/`` (generated .sym files are kept and reused while their
size and seed match), measures the baselines, starts a trio through quickstart (its own
config, free ports, fresh cache directory, fresh memcached, pid dir in ``bench/work/run/``)
with a symbol store served by this process on 127.0.0.1, measures, stops everything, prints
a table and writes every figure to ``bench/work/results.json``. Exit status: 0 when every
goal is met, 1 when one is not (or a phase failed), 2 when a tool is missing.

The goals and how each is measured:

1. Cold: a fresh module of --size-mb, one v5 frame POSTed to SymServer, timed from the request
   to the answer (download from the store over loopback, processing, lookup): T_cold, the
   median of --repeat runs (the module is evicted from the DiskCache before each, and a new
   offset asked, so each run downloads and processes it; each answer is checked against
   symbolic's). Nothing else runs meanwhile: the instruments below run in one more cold run of
   their own, because on two cores they slow what they measure.
   Baseline: ``symbolic`` building a symcache from the same bytes in a subprocess
   (``bench/symbolic_baseline.py``), median of --repeat runs: T_sym. Goal T_cold <= 0.5 x T_sym.
   Not blocking: during the instrumented run a separate client process POSTs a one-frame v5
   request for a small, already processed module straight to the DiskCache (no memcached in
   front; a new offset every time; one job without the ``jobs`` wrapper, as SymServer sends
   it), one every 20 ms; its max and p99 latency during the cold request are reported beside
   the same client's figures for the second before it. This bench counts the goal met when
   no probe failed and the slowest took at most 100 ms (the goal names no figure; a blocked
   event loop would show as a probe as slow as the processing).
2. Size: the module's files in the cache directory / the .sym size <= 25% (symbolic's
   symcache / .sym beside it).
3. Memory: the DiskCache's RSS sampled every 10 ms during the instrumented cold run: its main
   process, each child (pool workers, multiprocessing's resource tracker) and their sum.
   The goal (<= 120 MB) is judged on the peak of the sum; main and largest child are shown
   beside it. The same again for a --big-mb module (0 skips it): it must not grow with the file.
4. Warm: a 200-frame v4 request (seeded offsets, each inside a FUNC of the module) to
   SymServer ``/`` under ``wrk -t2 -c<connections> -d<duration>s``, after one warming
   request whose answer is checked; the same body to ``bench/echo_server.py`` (Tornado that
   only parses and re-serialises the JSON) under the same command. Goal req/s >= 0.5 x
   echo, and no non-2xx responses or socket errors.
5. DiskCache path: the same body straight to the DiskCache's port; goal >= 500 req/s, no errors.
6. Sample: README's two-frame sample request (demo symbols, served from ``demo_symbols/`` as a
   local symbol directory) to SymServer vs the echo server; goal >= 0.5 x echo, no errors.

The servers, wrk and the clients share this machine's cores; the machine facts printed
with the table say how many there are.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import mmap
import multiprocessing
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
WORK = BENCH / "work"
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))

MB = 1_000_000
MEMORY_LIMIT_MB = 120.0
PROBE_INTERVAL_SECONDS = 0.020
PROBE_MAX_LATENCY_SECONDS = 0.100
SAMPLE_INTERVAL_SECONDS = 0.010
WARM_FRAMES = 200
SMALL_MODULE_MB = 2.0

DEMO_REQUEST = {"stacks": [[[0, 11723767], [1, 65802]]],
                "memoryMap": [["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"],
                              ["wntdll.pdb", "D74F79EB1F8D4A45ABCD2F476CCABACC2"]],
                "version": 4}
DEMO_ANSWER = {"symbolicatedStacks": [["XREMain::XRE_mainRun() (in xul.pdb)",
                                       "KiUserCallbackDispatcher (in wntdll.pdb)"]],
               "knownModules": [True, True]}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------- prerequisites

def missing_tools() -> list[str]:
    """What is not installed, each with the command that installs it."""
    import importlib.util
    missing = []
    if shutil.which("wrk") is None:
        missing.append("wrk is not installed: apt-get install -y wrk")
    if shutil.which("memcached") is None:
        missing.append("memcached is not installed: apt-get install -y memcached")
    if importlib.util.find_spec("symbolic") is None:
        missing.append("the Python package symbolic is not installed: pip install symbolic")
    for module, package in (("psutil", "psutil"), ("requests", "requests"), ("tornado", "tornado")):
        if importlib.util.find_spec(module) is None:
            missing.append(f"the Python package {package} is not installed: pip install -e .")
    return missing


def machine_facts() -> dict[str, Any]:
    import psutil
    from importlib.metadata import version

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    wrk_version = (wrk.stdout + wrk.stderr).strip().splitlines()[0] if (wrk.stdout + wrk.stderr).strip() else "?"
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    status = subprocess.run(["git", "status", "--porcelain", "--", "diskcache", "symserver", "symcommon"],
                            capture_output=True, text=True, cwd=REPO)
    changed = [line[3:] for line in status.stdout.splitlines() if line.strip()]

    def package(name: str) -> str | None:
        try:
            return version(name)
        except Exception:  # noqa: BLE001 - a label only
            return None

    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "wrk": wrk_version,
        "symbolic": package("symbolic"),
        "tornado": package("tornado"),
        "git_commit": git.stdout.strip() or None,
        "uncommitted_server_files": changed,
    }


# --------------------------------------------------------------------------- workload

def module_names(tag: str, size_mb: float, seed: int) -> dict[str, str]:
    digest = hashlib.sha256(f"{tag}/{size_mb}/{seed}".encode()).hexdigest().upper()
    name = f"bench{tag}"
    return {"debug_file": f"{name}.pdb", "debug_id": digest[:32] + "1", "code_file": f"{name}.dll"}


def build_module(tag: str, size_mb: float, seed: int) -> dict[str, Any]:
    """A generated .sym in bench/work/syms (reused when size, seed and names match) and the
    (address, size) of every FUNC in it."""
    from gen_symfile import generate

    names = module_names(tag, size_mb, seed)
    syms = WORK / "syms"
    syms.mkdir(parents=True, exist_ok=True)
    stem = f"{names['debug_file'][:-4]}-{size_mb:g}mb-seed{seed}"
    path, meta_path = syms / f"{stem}.sym", syms / f"{stem}.json"
    wanted = {"size_mb": size_mb, "seed": seed, **names}
    meta = None
    if path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = None
        if meta and ({k: meta.get(k) for k in wanted} != wanted or meta.get("stats", {}).get("bytes") != path.stat().st_size):
            meta = None
    if meta is None:
        started = time.perf_counter()
        stats = generate(path, size_mb, seed=seed, **names)
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            funcs = [(int(a, 16), int(s, 16)) for a, s in
                     re.findall(rb"^FUNC (?:m )?([0-9a-f]+) ([0-9a-f]+) ", data, re.MULTILINE)]
        meta = {**wanted, "stats": stats, "funcs": funcs}
        meta_path.write_text(json.dumps(meta))
        log(f"generated {path.name}: {stats['bytes'] / MB:.1f} MB, {stats['funcs']} FUNCs "
            f"in {time.perf_counter() - started:.1f} s")
    else:
        log(f"reusing {path.name}: {meta['stats']['bytes'] / MB:.1f} MB, {meta['stats']['funcs']} FUNCs")
    return {**meta, "path": path, "bytes": path.stat().st_size, "funcs": [tuple(f) for f in meta["funcs"]]}


def offsets_inside_funcs(module: dict, count: int, seed: int, distinct: bool = False) -> list[int]:
    """Seeded offsets, each inside one FUNC (so every one must be answered by name)."""
    import random
    rng = random.Random(seed)
    funcs = module["funcs"]
    offsets: list[int] = []
    seen: set[int] = set()
    while len(offsets) < count:
        address, size = funcs[rng.randrange(len(funcs))]
        offset = address + rng.randrange(size)
        if distinct and offset in seen:
            continue
        seen.add(offset)
        offsets.append(offset)
    return offsets


def place_in_store(store_root: Path, module: dict) -> None:
    from symcommon.modules import ModuleId

    target = store_root / module["debug_file"] / module["debug_id"] / \
        ModuleId.parse(module["debug_file"], module["debug_id"]).sym_file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(module["path"], target)
    except OSError:
        shutil.copyfile(module["path"], target)


def v4_body(module: dict, offsets: list[int]) -> dict:
    return {"memoryMap": [[module["debug_file"], module["debug_id"]]],
            "stacks": [[[0, offset] for offset in offsets]], "version": 4}


def v5_job(module: dict, offsets: list[int]) -> dict:
    """One v5 job without the ``jobs`` wrapper: the form SymServer itself sends the DiskCache."""
    return {"memoryMap": [[module["debug_file"], module["debug_id"]]], "stacks": [[[0, offset] for offset in offsets]]}


def v5_body(module: dict, offsets: list[int]) -> dict:
    """A v5 request as clients (the Firefox Profiler) send it."""
    return {"jobs": [v5_job(module, offsets)]}


# --------------------------------------------------------------------------- measuring helpers

class RssSampler(threading.Thread):
    """Samples the RSS of a process and of each of its children every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = SAMPLE_INTERVAL_SECONDS) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.interval = pid, interval
        self._stop_event = threading.Event()
        self.samples = 0
        self.peak_main = 0
        self.peak_total = 0
        self.first_main: int | None = None
        self.first_total: int | None = None
        self.peak_children: dict[int, int] = {}
        self.child_roles: dict[int, str] = {}
        self.errors = 0

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)

    def run(self) -> None:
        import psutil

        main = psutil.Process(self.pid)
        children: dict[int, psutil.Process] = {}
        count = 0
        while not self._stop_event.is_set():
            began = time.monotonic()
            try:
                main_rss = main.memory_info().rss
            except psutil.Error:
                self.errors += 1
                break
            if count % 10 == 0:  # listing children scans /proc: not every 10 ms
                try:
                    for child in main.children(recursive=True):
                        if child.pid not in children:
                            children[child.pid] = child
                            self.child_roles[child.pid] = _child_role(child)
                except psutil.Error:
                    self.errors += 1
            total = main_rss
            for pid, child in list(children.items()):
                try:
                    rss = child.memory_info().rss
                except psutil.Error:
                    del children[pid]
                    continue
                total += rss
                self.peak_children[pid] = max(self.peak_children.get(pid, 0), rss)
            if self.first_main is None:
                self.first_main, self.first_total = main_rss, total
            self.peak_main = max(self.peak_main, main_rss)
            self.peak_total = max(self.peak_total, total)
            self.samples += 1
            count += 1
            self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def report(self) -> dict[str, Any]:
        largest = max(self.peak_children.items(), key=lambda item: item[1], default=(None, 0))
        return {
            "samples": self.samples,
            "interval_ms": self.interval * 1000,
            "main_at_start_mb": (self.first_main or 0) / MB,
            "total_at_start_mb": (self.first_total or 0) / MB,
            "peak_main_mb": self.peak_main / MB,
            "peak_largest_child_mb": largest[1] / MB,
            "largest_child_role": self.child_roles.get(largest[0]) if largest[0] else None,
            "peak_sum_mb": self.peak_total / MB,
            "children": {str(pid): {"role": self.child_roles.get(pid), "peak_mb": rss / MB}
                         for pid, rss in self.peak_children.items()},
        }


def _child_role(process: Any) -> str:
    try:
        command = " ".join(process.cmdline())
    except Exception:  # noqa: BLE001 - a label only
        return "?"
    if "resource_tracker" in command:
        return "resource tracker"
    if "spawn_main" in command or "multiprocessing" in command:
        return "pool worker"
    return process.name()


def probe_client(url: str, module: dict, offsets: list[int], stop: Any, ready: Any, queue: Any) -> None:
    """Runs in its own process: one one-frame v5 request every PROBE_INTERVAL_SECONDS, each
    for a new offset, until ``stop``; puts (monotonic start, seconds, ok) records on ``queue``."""
    import requests

    session = requests.Session()
    records = []
    index = 0
    next_at = time.monotonic()
    ready.set()
    while not stop.is_set():
        offset = offsets[index % len(offsets)]
        index += 1
        began = time.monotonic()
        try:
            response = session.post(url, data=json.dumps(v5_job(module, [offset])), timeout=60)
            ok = response.status_code == 200 and "function" in response.json()["results"][0]["stacks"][0][0]
        except Exception:  # noqa: BLE001 - any failure is a failed probe
            ok = False
        records.append((began, time.monotonic() - began, ok))
        next_at += PROBE_INTERVAL_SECONDS
        pause = next_at - time.monotonic()
        if pause > 0:
            stop.wait(pause)
        else:
            next_at = time.monotonic()
    queue.put(records)


def latency_summary(records: list[tuple[float, float, bool]]) -> dict[str, Any]:
    latencies = sorted(seconds for _, seconds, ok in records if ok)
    failed = sum(1 for _, _, ok in records if not ok)
    if not latencies:
        return {"requests": len(records), "failed": failed, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {"requests": len(records), "failed": failed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000,
            "max_ms": latencies[-1] * 1000}


def run_wrk(url: str, body: bytes, name: str, duration: float, connections: int, workdir: Path) -> dict[str, Any]:
    """``wrk -t2 -c<connections> -d<duration>s --latency -s post.lua url``, parsed."""
    directory = workdir / "wrk"
    directory.mkdir(parents=True, exist_ok=True)
    body_path = directory / f"{name}.json"
    body_path.write_bytes(body)
    script = directory / f"{name}.lua"
    script.write_text(f'local f = assert(io.open("{body_path}", "rb"))\n'
                      'wrk.method = "POST"\n'
                      'wrk.body = f:read("*a")\n'
                      'f:close()\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    seconds = max(1, int(round(duration)))
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    output = result.stdout + result.stderr
    (directory / f"{name}.out").write_text(" ".join(command) + "\n" + output)
    parsed = parse_wrk(output)
    parsed["command"] = " ".join(command)
    parsed["exit_status"] = result.returncode
    return parsed


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    return float(match.group(1)) * scale


def parse_wrk(output: str) -> dict[str, Any]:
    figures: dict[str, Any] = {"requests_per_second": None, "p50_ms": None, "p99_ms": None,
                               "requests": None, "non_2xx": 0, "socket_errors": {}, "errors": 0}
    if match := re.search(r"Requests/sec:\s+([0-9.]+)", output):
        figures["requests_per_second"] = float(match.group(1))
    for percent, key in (("50", "p50_ms"), ("99", "p99_ms")):
        if match := re.search(rf"^\s+{percent}(?:\.000)?%\s+(\S+)", output, re.MULTILINE):
            figures[key] = _seconds(match.group(1)) * 1000
    if match := re.search(r"(\d+) requests in", output):
        figures["requests"] = int(match.group(1))
    if match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        figures["non_2xx"] = int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        figures["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, match.groups())))
    figures["errors"] = figures["non_2xx"] + sum(figures["socket_errors"].values())
    if figures["requests_per_second"] is None:
        figures["error"] = "wrk printed no Requests/sec: " + output.strip()[-300:]
    return figures


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on port {port} after {timeout} s")


# --------------------------------------------------------------------------- the bench

class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir = WORK / "run"
        self.pid_dir = self.run_dir / "pids"
        self.cache_dir = self.run_dir / "cache"
        self.results: dict[str, Any] = {"options": {k: v for k, v in vars(args).items()}, "phases": {},
                                        "errors": {}}
        self.store = None
        self.echo: subprocess.Popen | None = None
        self.trio_started = False
        self.session = None

    # ----- phases
    def phase(self, name: str, function: Callable[[], Any]) -> Any:
        log(f"{name} ...")
        started = time.perf_counter()
        try:
            value = function()
        except Exception as error:  # noqa: BLE001 - reported as a failed phase, the bench goes on
            self.results["errors"][name] = f"{type(error).__name__}: {error}"
            log(f"{name} FAILED: {type(error).__name__}: {error}")
            traceback.print_exc()
            return None
        self.results["phases"][name] = round(time.perf_counter() - started, 2)
        return value

    def quickstart(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
        from harness import run_quickstart

        result = run_quickstart(self.pid_dir, *arguments, cwd=self.run_dir, timeout=180)
        if check and result.returncode != 0:
            raise RuntimeError(f"quickstart {' '.join(arguments)} failed ({result.returncode}): "
                               f"{result.stdout.strip()} {result.stderr.strip()}")
        return result

    def pid(self, name: str) -> int:
        return int((self.pid_dir / f"{name}.pid").read_text().split()[0])

    def prepare_run_dir(self) -> None:
        if any(self.pid_dir.glob("*.pid")):  # a trio left by --keep: stop it (quickstart checks its pidfiles)
            log("stopping the trio a previous run left (--keep)")
            self.quickstart("--stop", check=False)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)

    def build_workload(self) -> None:
        args = self.args
        self.main_module = build_module(f"{args.size_mb:g}", args.size_mb, args.seed)
        self.big_module = build_module(f"{args.big_mb:g}", args.big_mb, args.seed + 1) if args.big_mb > 0 else None
        self.small_module = build_module("small", SMALL_MODULE_MB, args.seed + 2)
        self.warm_offsets = offsets_inside_funcs(self.main_module, WARM_FRAMES, args.seed)
        # one offset per run, so neither memcached nor SymServer's cache can answer a repeat
        self.cold_offsets = offsets_inside_funcs(self.main_module, args.repeat + 1, args.seed + 10, distinct=True)
        self.cold_offset = self.cold_offsets[0]
        self.big_cold_offset = offsets_inside_funcs(self.big_module, 1, args.seed + 11)[0] if self.big_module else None
        self.probe_offsets = offsets_inside_funcs(self.small_module, 20_000, args.seed + 12, distinct=True)
        store_root = self.run_dir / "store"
        for module in (self.main_module, self.big_module, self.small_module):
            if module:
                place_in_store(store_root, module)
        self.warm_body = json.dumps(v4_body(self.main_module, self.warm_offsets)).encode()
        self.sample_body = json.dumps(DEMO_REQUEST).encode()
        for name, module in (("module", self.main_module), ("big_module", self.big_module),
                             ("small_module", self.small_module)):
            if module:
                self.results[name] = {k: module[k] for k in ("debug_file", "debug_id", "code_file", "size_mb",
                                                             "seed", "bytes")} | {"funcs": len(module["funcs"]),
                                                                                  "path": str(module["path"])}

    def symbolic_baseline(self) -> None:
        offsets_path = self.run_dir / "symbolic-offsets.json"
        asked = [*self.cold_offsets, *self.warm_offsets]
        offsets_path.write_text(json.dumps(asked))
        runs = []
        for _ in range(self.args.repeat):  # the median of several runs, as for T_cold
            result = subprocess.run([sys.executable, str(BENCH / "symbolic_baseline.py"), str(self.main_module["path"]),
                                     "--offsets", str(offsets_path)], capture_output=True, text=True, timeout=900)
            if result.returncode != 0:
                raise RuntimeError(f"symbolic_baseline.py failed: {result.stderr.strip()[-500:]}")
            runs.append(json.loads(result.stdout))
        runs.sort(key=lambda run: run["seconds"])
        figures = runs[len(runs) // 2]
        figures["samples"] = [round(run["seconds"], 3) for run in runs]
        functions = figures.pop("functions")
        self.symbolic_functions = dict(zip(asked, functions))
        figures["symcache_ratio"] = figures["symcache_bytes"] / figures["sym_bytes"]
        self.results["symbolic"] = figures
        log(f"symbolic: median {figures['seconds']:.2f} s of {figures['samples']} (read {figures['read_seconds']:.2f} s), symcache "
            f"{figures['symcache_bytes'] / MB:.1f} MB ({figures['symcache_ratio']:.0%} of the .sym), "
            f"peak RSS {figures['peak_rss_bytes'] / MB:.0f} MB")

    def start_services(self) -> None:
        import requests
        from harness import free_port
        from symbol_store import SymbolStore

        self.store = SymbolStore(self.run_dir / "store").start()
        echo_port = free_port()
        echo_log = open(self.run_dir / "echo_server.log", "wb")
        self.echo = subprocess.Popen([sys.executable, str(BENCH / "echo_server.py"), "--port", str(echo_port)],
                                     stdout=echo_log, stderr=subprocess.STDOUT)
        echo_log.close()
        self.echo_url = f"http://127.0.0.1:{echo_port}/"
        ports = {"DiskCache": free_port(), "SymServer": free_port(), "memcached": free_port()}
        config = {
            "DiskCache": {"cachePath": str(self.cache_dir), "port": ports["DiskCache"],
                          "localSymbolDirs": [str(REPO / "demo_symbols")],
                          "symbolURLs": [self.store.url("plain")],
                          "log": {"path": str(self.run_dir / "DiskCache.log")}},
            "SymServer": {"port": ports["SymServer"], "DiskCacheServer": f"127.0.0.1:{ports['DiskCache']}",
                          "memcachedServers": [f"127.0.0.1:{ports['memcached']}"],
                          "processes": self.args.symserver_processes,
                          "log": {"path": str(self.run_dir / "SymServer.log")}},
            "quickstart": {"memcached": {"start": True, "restart": True, "port": ports["memcached"],
                                         "listenAddress": "127.0.0.1", "maxMemoryMB": "64"},
                           "DiskCache": {"start": True, "restart": True},
                           "SymServer": {"start": True, "restart": True}},
        }
        config_path = self.run_dir / "config.json"
        config_path.write_text(json.dumps(config, indent=2))
        self.results["ports"] = ports | {"echo": echo_port, "store": self.store.port}
        self.trio_started = True  # from here on, always try to stop it
        self.quickstart("-c", str(config_path))
        self.symserver = f"http://127.0.0.1:{ports['SymServer']}"
        self.diskcache = f"http://127.0.0.1:{ports['DiskCache']}"
        wait_for_port(echo_port)
        self.session = requests.Session()
        log(f"trio up: SymServer {self.symserver}, DiskCache {self.diskcache}, memcached :{ports['memcached']}; "
            f"store {self.store.url('plain')}; echo {self.echo_url}")

    def stop_services(self) -> None:
        if self.trio_started and not self.args.keep:
            result = self.quickstart("--stop", check=False)
            log("trio stopped" if result.returncode == 0 else f"quickstart --stop said: {result.stderr.strip()}")
        elif self.trio_started:
            log(f"--keep: trio left running (SymServer {getattr(self, 'symserver', '?')}); stop it with: "
                f"{sys.executable} {REPO / 'quickstart.py'} --stop --pidDir {self.pid_dir}")
        if self.echo is not None:
            self.echo.send_signal(signal.SIGTERM)
            try:
                self.echo.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.echo.kill()
                self.echo.wait()
        if self.store is not None:
            self.store.stop()

    def process_small_module(self) -> None:
        response = self.session.post(self.diskcache + "/symbolicate/v5",
                                     data=json.dumps(v5_job(self.small_module, self.probe_offsets[:5])), timeout=120)
        response.raise_for_status()
        frames = response.json()["results"][0]["stacks"][0]
        if not all("function" in frame for frame in frames):
            raise RuntimeError(f"the small module's frames have no function: {frames}")

    def cold(self, module: dict, offset: int, label: str, probe_start: int) -> dict[str, Any]:
        """One v5 frame of a module the DiskCache has never seen, with RSS sampled and the probe running."""
        context = multiprocessing.get_context("spawn")
        stop, ready, queue = context.Event(), context.Event(), context.Queue()
        prober = context.Process(target=probe_client, name="probe",
                                 args=(self.diskcache + "/symbolicate/v5", self.small_module,
                                       self.probe_offsets[probe_start:probe_start + 9000],
                                       stop, ready, queue), daemon=True)
        prober.start()
        ready.wait(30)
        sampler = RssSampler(self.pid("DiskCache"))
        sampler.start()
        time.sleep(1.0)  # the probe's idle figures, and the DiskCache's resting RSS
        began = time.monotonic()
        failure = None
        try:
            response = self.session.post(self.symserver + "/symbolicate/v5", data=json.dumps(v5_body(module, [offset])),
                                         headers={"Debug": "true"}, timeout=900)
            ended = time.monotonic()
            status = response.status_code
            answer = response.json() if status == 200 else {"text": response.text[:300]}
        except Exception as error:  # noqa: BLE001
            ended = time.monotonic()
            status, answer, failure = None, {}, f"{type(error).__name__}: {error}"
        time.sleep(0.3)  # the worker's RSS once the answer is out
        sampler.stop()
        stop.set()
        records = queue.get(timeout=30)
        prober.join(timeout=10)
        seconds = ended - began
        frame = answer.get("results", [{}])[0].get("stacks", [[{}]])[0][0] if status == 200 else {}
        correct = status == 200 and "function" in frame and frame.get("module") == module["code_file"]
        figures = {
            "seconds": seconds,
            "status": status,
            "correct": correct,
            "frame": frame,
            "failure": failure,
            "debug": answer.get("debug"),
            "probe_idle": latency_summary([r for r in records if r[0] < began]),
            "probe_during": latency_summary([r for r in records if began <= r[0] <= ended]),
            "memory": sampler.report(),
        }
        expected = self.symbolic_functions.get(offset) if hasattr(self, "symbolic_functions") else None
        if expected is not None:
            figures["agrees_with_symbolic"] = frame.get("function") == expected
        during, memory = figures["probe_during"], figures["memory"]
        log(f"cold {label}: {seconds:.2f} s, status {status}, correct {correct}; probes during it: "
            f"{during['requests']} ({during['failed']} failed), p99 {_ms(during['p99_ms'])}, max {_ms(during['max_ms'])}; "
            f"DiskCache peak RSS main {memory['peak_main_mb']:.0f} MB, largest child "
            f"{memory['peak_largest_child_mb']:.0f} MB, sum {memory['peak_sum_mb']:.0f} MB")
        return figures

    def evict_main_module(self) -> None:
        evicted = self.session.post(self.diskcache + "/", json={
            "debug": True, "action": "cacheEvict", "libName": self.main_module["debug_file"],
            "breakpadId": self.main_module["debug_id"]}, timeout=30).json()
        if evicted != {"success": True}:
            raise RuntimeError(f"cacheEvict answered {evicted}")

    def timed_cold(self, offset: int, label: str) -> float:
        """The main module cold with nothing else running: the time only."""
        began = time.monotonic()
        response = self.session.post(self.symserver + "/symbolicate/v5",
                                     data=json.dumps(v5_body(self.main_module, [offset])), timeout=900)
        seconds = time.monotonic() - began
        frame = response.json()["results"][0]["stacks"][0][0] if response.status_code == 200 else {}
        if frame.get("function") != self.symbolic_functions.get(offset, frame.get("function")) or "function" not in frame:
            raise RuntimeError(f"cold {label}: wrong answer {response.status_code} {frame}")
        log(f"cold {label}: {seconds:.2f} s")
        return seconds

    def repeated_cold(self) -> dict[str, Any]:
        """The main module cold: once instrumented (RSS sampled, the probe running: goals 1b
        and 3), then ``--repeat`` times with nothing else running, for T_cold (the median).

        The instruments compete for this machine's two cores: measured, the probe alone
        slowed the cold request by 10-15%, so they do not run while T_cold is timed.  The
        module is evicted from the DiskCache before each run and a new offset is asked, so
        every run downloads and processes it and neither memcached nor SymServer can answer.
        """
        figures = self.cold(self.main_module, self.cold_offsets[0], "main (instrumented)", 100)
        samples = []
        for number, offset in enumerate(self.cold_offsets[1:], start=1):
            self.evict_main_module()
            samples.append(self.timed_cold(offset, f"main #{number}"))
        figures["instrumented_seconds"] = figures["seconds"]
        figures["samples"] = [round(seconds, 3) for seconds in samples]
        figures["seconds"] = statistics.median(samples)
        log(f"cold main: median {figures['seconds']:.2f} s of {figures['samples']} "
            f"({figures['instrumented_seconds']:.2f} s with the probe and the RSS sampler running)")
        return figures

    def cache_files_of(self, module: dict) -> dict[str, Any]:
        files = [path for path in self.cache_dir.rglob("*") if path.is_file() and ".tmp" not in path.parts]
        mine = [path for path in files if module["debug_id"].lower() in path.name.lower()]
        if not mine and files:
            mine = [max(files, key=lambda path: path.stat().st_size)]
        total = sum(path.stat().st_size for path in mine)
        return {"files": {path.name: path.stat().st_size for path in mine}, "bytes": total,
                "ratio": total / module["bytes"], "matched_by_debug_id": bool(mine) and
                module["debug_id"].lower() in mine[0].name.lower()}

    def check_warm_answer(self, url: str) -> dict[str, Any]:
        response = self.session.post(url, data=self.warm_body, headers={"Content-Type": "application/json"},
                                     timeout=300)
        problems = []
        symbols: list = []
        if response.status_code != 200:
            problems.append(f"status {response.status_code}: {response.text[:200]}")
        else:
            answer = response.json()
            symbols = answer.get("symbolicatedStacks", [[]])[0]
            if len(symbols) != WARM_FRAMES:
                problems.append(f"{len(symbols)} frames answered, {WARM_FRAMES} sent")
            if not all(isinstance(s, str) for s in symbols):
                problems.append("a frame that is not a string")
            bare = [s for s in symbols if isinstance(s, str) and s.startswith("0x")]
            if bare:
                problems.append(f"{len(bare)} frames answered as bare addresses, e.g. {bare[0]}")
            if answer.get("knownModules") != [True]:
                problems.append(f"knownModules {answer.get('knownModules')}")
        suffix = f" (in {self.main_module['debug_file']})"
        agree = None
        if symbols and hasattr(self, "symbolic_functions"):
            agree = sum(1 for offset, symbol in zip(self.warm_offsets, symbols)
                        if self.symbolic_functions.get(offset) is not None
                        and symbol == self.symbolic_functions[offset] + suffix)
        return {"status": response.status_code, "problems": problems, "correct": not problems,
                "agree_with_symbolic": agree}

    def check_sample_answer(self, url: str) -> dict[str, Any]:
        response = self.session.post(url, data=self.sample_body, timeout=60)
        answer = response.json() if response.status_code == 200 else None
        return {"status": response.status_code, "answer": answer, "correct": answer == DEMO_ANSWER}

    def wrk(self, url: str, body: bytes, name: str) -> dict[str, Any]:
        figures = run_wrk(url, body, name, self.args.duration, self.args.connections, self.run_dir)
        log(f"wrk {name}: {figures['requests_per_second']} req/s, p99 {_ms(figures['p99_ms'])}, "
            f"errors {figures['errors']}")
        return figures

    # ----- the whole run
    def run(self) -> int:
        self.results["machine"] = machine_facts()
        self.prepare_run_dir()
        if self.phase("workload", self.build_workload) is None and "workload" in self.results["errors"]:
            return self.finish()
        self.phase("symbolic baseline", self.symbolic_baseline)
        try:
            if self.phase("start services", self.start_services) is None and "start services" in self.results["errors"]:
                return self.finish()
            self.phase("process the small module", self.process_small_module)
            self.results["cold"] = self.phase(f"cold {self.args.size_mb:g} MB", self.repeated_cold)
            self.results["size"] = self.phase("table size", lambda: self.cache_files_of(self.main_module))
            if self.big_module:
                self.results["cold_big"] = self.phase(f"cold {self.args.big_mb:g} MB",
                                                      lambda: self.cold(self.big_module, self.big_cold_offset, "big", 10_000))
                self.results["size_big"] = self.phase("big table size", lambda: self.cache_files_of(self.big_module))
            self.results["warm_check"] = self.phase("warm answer", lambda: self.check_warm_answer(self.symserver + "/"))
            self.results["warm"] = self.phase("wrk SymServer 200 frames",
                                              lambda: self.wrk(self.symserver + "/", self.warm_body, "symserver-200"))
            self.results["warm_echo"] = self.phase("wrk echo 200 frames",
                                                   lambda: self.wrk(self.echo_url, self.warm_body, "echo-200"))
            self.results["diskcache_check"] = self.phase("DiskCache answer",
                                                         lambda: self.check_warm_answer(self.diskcache + "/"))
            self.results["diskcache"] = self.phase("wrk DiskCache 200 frames",
                                                   lambda: self.wrk(self.diskcache + "/", self.warm_body, "diskcache-200"))
            self.results["sample_check"] = self.phase("sample answer", lambda: self.check_sample_answer(self.symserver + "/"))
            self.results["sample"] = self.phase("wrk SymServer sample",
                                                lambda: self.wrk(self.symserver + "/", self.sample_body, "symserver-sample"))
            self.results["sample_echo"] = self.phase("wrk echo sample",
                                                     lambda: self.wrk(self.echo_url, self.sample_body, "echo-sample"))
        finally:
            self.stop_services()
        return self.finish()

    def finish(self) -> int:
        rows = goal_rows(self.results, self.args)
        self.results["goals"] = rows
        print_report(self.results, rows)
        counted = [row for row in rows if row["counts"]]
        all_met = bool(counted) and all(row["met"] for row in counted) and not self.results["errors"]
        self.results["all_goals_met"] = all_met
        WORK.mkdir(parents=True, exist_ok=True)
        (WORK / "results.json").write_text(json.dumps(self.results, indent=2, default=str))
        print(f"\nfigures written to {WORK / 'results.json'}; logs and wrk output in {self.run_dir}")
        if self.results["errors"]:
            print("phases that failed: " + "; ".join(f"{k}: {v}" for k, v in self.results["errors"].items()))
        print("ALL GOALS MET" if all_met else "NOT ALL GOALS MET")
        return 0 if all_met else 1


# --------------------------------------------------------------------------- the report

def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def goal_rows(results: dict, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per figure: goal, ours, baseline, ratio, target, met, and whether it counts."""
    rows: list[dict[str, Any]] = []

    def row(goal: str, ours: str, baseline: str, ratio: str, target: str, met: bool | None, counts: bool = True,
            note: str = "") -> None:
        rows.append({"goal": goal, "ours": ours, "baseline": baseline, "ratio": ratio, "target": target,
                     "met": bool(met) if met is not None else False, "counts": counts, "note": note})

    size = f"{args.size_mb:g} MB"
    cold, symbolic = results.get("cold"), results.get("symbolic")
    if cold and symbolic:
        ratio = cold["seconds"] / symbolic["seconds"]
        note = "" if cold["correct"] else f"wrong answer: status {cold['status']} frame {cold['frame']}"
        row(f"1 cold {size} (T_cold vs T_sym)", f"{cold['seconds']:.2f} s", f"{symbolic['seconds']:.2f} s symbolic",
            f"{ratio:.2f}x", "<= 0.50x", ratio <= 0.5 and cold["correct"], note=note)
    else:
        row(f"1 cold {size} (T_cold vs T_sym)", "n/a", "n/a", "", "<= 0.50x", False, note="not measured")
    if cold:
        during, idle = cold["probe_during"], cold["probe_idle"]
        met = during["failed"] == 0 and during["max_ms"] is not None and \
            during["max_ms"] <= PROBE_MAX_LATENCY_SECONDS * 1000 and during["requests"] > 0
        row("1 cached answers during cold", f"max {_ms(during['max_ms'])}, p99 {_ms(during['p99_ms'])}, "
            f"{during['failed']}/{during['requests']} failed",
            f"idle: max {_ms(idle['max_ms'])}, p99 {_ms(idle['p99_ms'])}", "",
            f"max <= {PROBE_MAX_LATENCY_SECONDS * 1000:.0f} ms, 0 failed", met)
    size_figures = results.get("size")
    if size_figures:
        symcache = f"symcache {symbolic['symcache_ratio']:.0%}" if symbolic else "n/a"
        row(f"2 table size / .sym ({size})", f"{size_figures['bytes'] / MB:.1f} MB = {size_figures['ratio']:.1%}",
            symcache, "", "<= 25%", size_figures["ratio"] <= 0.25)
    else:
        row(f"2 table size / .sym ({size})", "n/a", "", "", "<= 25%", False, note="not measured")
    for key, label in (("cold", size), ("cold_big", f"{args.big_mb:g} MB")):
        if key == "cold_big" and args.big_mb <= 0:
            continue
        figures = _get(results, key, "memory")
        if not figures:
            row(f"3 DiskCache peak RSS ({label})", "n/a", "", "", f"<= {MEMORY_LIMIT_MB:.0f} MB", False,
                note="not measured")
            continue
        peak = figures["peak_sum_mb"]
        baseline = f"symbolic {symbolic['peak_rss_bytes'] / MB:.0f} MB" if symbolic and key == "cold" else ""
        row(f"3 DiskCache peak RSS ({label}), main+children", f"{peak:.0f} MB", baseline, "",
            f"<= {MEMORY_LIMIT_MB:.0f} MB", peak <= MEMORY_LIMIT_MB)
        for part, value in (("main process", figures["peak_main_mb"]),
                            (f"largest child ({figures['largest_child_role']})", figures["peak_largest_child_mb"])):
            row(f"    {part}", f"{value:.0f} MB", "", "", f"<= {MEMORY_LIMIT_MB:.0f} MB", value <= MEMORY_LIMIT_MB,
                counts=False)
        if key == "cold_big" and results.get("cold_big"):
            big = results["cold_big"]
            row(f"    cold {label} (for reference)", f"{big['seconds']:.2f} s", "", "", "correct answer",
                big["correct"], counts=False, note="" if big["correct"] else "wrong answer")
    def versus_echo(number: str, name: str, ours_key: str, base_key: str, check_key: str) -> None:
        ours, base, check = results.get(ours_key), results.get(base_key), results.get(check_key)
        if not (ours and base and ours.get("requests_per_second") and base.get("requests_per_second")):
            row(f"{number} {name} (req/s vs echo)", "n/a", "n/a", "", ">= 0.50x", False, note="not measured")
            return
        ratio = ours["requests_per_second"] / base["requests_per_second"]
        notes = []
        if ours["errors"]:
            notes.append(f"{ours['errors']} errors ({ours['non_2xx']} non-2xx, sockets {ours['socket_errors']})")
        if not (check and check.get("correct")):
            notes.append(f"wrong answer: {check.get('problems') or check.get('answer') if check else 'not checked'}")
        row(f"{number} {name} (req/s vs echo)",
            f"{ours['requests_per_second']:.0f} req/s, p99 {_ms(ours['p99_ms'])}",
            f"{base['requests_per_second']:.0f} req/s, p99 {_ms(base['p99_ms'])}",
            f"{ratio:.2f}x", ">= 0.50x, 0 errors", ratio >= 0.5 and not notes, note="; ".join(notes))

    versus_echo("4", "warm 200 frames v4", "warm", "warm_echo", "warm_check")
    disk, check = results.get("diskcache"), results.get("diskcache_check")
    if disk and disk.get("requests_per_second"):
        notes = []
        if disk["errors"]:
            notes.append(f"{disk['errors']} errors ({disk['non_2xx']} non-2xx, sockets {disk['socket_errors']})")
        if not (check and check.get("correct")):
            notes.append(f"wrong answer: {check.get('problems') if check else 'not checked'}")
        row("5 DiskCache 200 frames v4 (req/s)", f"{disk['requests_per_second']:.0f} req/s, p99 {_ms(disk['p99_ms'])}",
            "", "", ">= 500 req/s, 0 errors", disk["requests_per_second"] >= 500 and not notes, note="; ".join(notes))
    else:
        row("5 DiskCache 200 frames v4 (req/s)", "n/a", "", "", ">= 500 req/s", False, note="not measured")
    versus_echo("6", "sample 2 frames v4", "sample", "sample_echo", "sample_check")
    return rows


def print_report(results: dict, rows: list[dict]) -> None:
    machine = results.get("machine", {})
    print("\n=== machine")
    print(f"  CPU        {machine.get('cpu')} ({machine.get('logical_cores')} logical / "
          f"{machine.get('physical_cores')} physical cores, {machine.get('memory_gb')} GB)")
    print(f"  Python     {machine.get('python')} on {machine.get('platform')}")
    print(f"  date       {machine.get('date')}; load average at start {machine.get('load_average_at_start')}")
    print(f"  tools      {machine.get('wrk')}; symbolic {machine.get('symbolic')}; tornado {machine.get('tornado')}")
    changed = machine.get("uncommitted_server_files") or []
    print(f"  code       commit {machine.get('git_commit')}"
          + (f", with uncommitted changes to {', '.join(changed)}" if changed else ", no uncommitted server changes"))
    options = results.get("options", {})
    print(f"  options    wrk -t2 -c{options.get('connections')} -d{max(1, int(round(options.get('duration', 10))))}s; "
          f"seed {options.get('seed')}; SymServer processes {options.get('symserver_processes')}")
    module = results.get("module")
    if module:
        print(f"  module     {module['debug_file']} {module['bytes'] / MB:.1f} MB, {module['funcs']} FUNCs"
              + (f"; big {results['big_module']['bytes'] / MB:.1f} MB, {results['big_module']['funcs']} FUNCs"
                 if results.get("big_module") else ""))

    print("\n=== details")
    symbolic = results.get("symbolic")
    if symbolic:
        print(f"  symbolic {symbolic.get('symbolic_version')}: read {symbolic['read_seconds']:.2f} s + build "
              f"{symbolic['build_seconds']:.2f} s = T_sym {symbolic['seconds']:.2f} s (dump {symbolic['dump_seconds']:.2f} s); "
              f"symcache {symbolic['symcache_bytes'] / MB:.1f} MB ({symbolic['symcache_ratio']:.1%}); "
              f"peak RSS {symbolic['peak_rss_bytes'] / MB:.0f} MB ({symbolic['peak_rss_before_bytes'] / MB:.0f} MB "
              f"before reading)")
    for key in ("cold", "cold_big"):
        cold = results.get(key)
        if not cold:
            continue
        memory = cold["memory"]
        children = ", ".join(f"{c['role']} {c['peak_mb']:.0f} MB" for c in memory["children"].values())
        print(f"  {key}: {cold['seconds']:.2f} s, status {cold['status']}, correct {cold['correct']}"
              + (f", agrees with symbolic {cold['agrees_with_symbolic']}" if "agrees_with_symbolic" in cold else "")
              + f"; frame function {cold['frame'].get('function')!r}")
        summary = debug_summary(cold.get("debug"))
        if summary:
            print(f"    SymServer debug: {summary}")
        print(f"    DiskCache RSS before: main {memory['main_at_start_mb']:.0f} MB, with children "
              f"{memory['total_at_start_mb']:.0f} MB; peaks: main {memory['peak_main_mb']:.0f} MB, sum "
              f"{memory['peak_sum_mb']:.0f} MB, children: {children or 'none'} ({memory['samples']} samples)")
        for phase in ("probe_idle", "probe_during"):
            probe = cold[phase]
            print(f"    probe {phase[6:]:6}: {probe['requests']} requests, {probe['failed']} failed, "
                  f"p50 {_ms(probe['p50_ms'])}, p99 {_ms(probe['p99_ms'])}, max {_ms(probe['max_ms'])}")
    for key in ("size", "size_big"):
        if results.get(key):
            files = ", ".join(f"{name} {size / MB:.1f} MB" for name, size in results[key]["files"].items())
            print(f"  {key}: {files} ({results[key]['ratio']:.1%} of the .sym)")
    for key in ("warm_check", "diskcache_check"):
        check = results.get(key)
        if check:
            print(f"  {key}: status {check['status']}, correct {check['correct']}"
                  + (f", problems {check['problems']}" if check["problems"] else "")
                  + (f", {check['agree_with_symbolic']}/{WARM_FRAMES} names agree with symbolic"
                     if check.get("agree_with_symbolic") is not None else ""))
    if results.get("sample_check"):
        print(f"  sample_check: status {results['sample_check']['status']}, "
              f"correct {results['sample_check']['correct']}")
    for key in ("warm", "warm_echo", "diskcache", "sample", "sample_echo"):
        figures = results.get(key)
        if figures:
            print(f"  wrk {key:12} {figures.get('requests_per_second') or 0:8.0f} req/s  p50 {_ms(figures['p50_ms']):>9}  "
                  f"p99 {_ms(figures['p99_ms']):>9}  requests {figures['requests']}  non-2xx {figures['non_2xx']}  "
                  f"socket errors {sum(figures['socket_errors'].values())}")

    print("\n=== goals")
    header = ("goal", "ours", "baseline", "ratio", "target", "met")
    table = [header] + [(r["goal"], r["ours"], r["baseline"], r["ratio"], r["target"],
                         ("yes" if r["met"] else "NO") if r["counts"] else ("(yes)" if r["met"] else "(no)"))
                        for r in rows]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    for index, line in enumerate(table):
        print("  " + " | ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())
        if index == 0:
            print("  " + "-+-".join("-" * width for width in widths))
    for r in rows:
        if r["note"]:
            print(f"  note: {r['goal'].strip()}: {r['note']}")
    print("  (rows in parentheses are shown for context and do not count)")


def debug_summary(debug: Any) -> str:
    """The download and processing figures of a SymServer ``Debug: true`` answer, briefly."""
    if not isinstance(debug, dict):
        return ""
    parts = []
    if isinstance(debug.get("total_seconds"), (int, float)):
        parts.append(f"total {debug['total_seconds']:.2f} s")
    diskcache = debug.get("diskcache") if isinstance(debug.get("diskcache"), dict) else debug
    for item in diskcache.get("modules_fetched", []) or []:
        if isinstance(item, dict):
            parts.append("download " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                                  for k, v in item.items() if k not in ("url", "module")))
    for item in diskcache.get("modules_processed", []) or []:
        if isinstance(item, dict):
            parts.append("processing " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                                    for k, v in item.items() if k != "module"))
    return "; ".join(parts) if parts else json.dumps(debug)[:300]


# --------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=74.0, help="the cold module's size (default 74)")
    parser.add_argument("--big-mb", type=float, default=200.0, help="the large module for goal 3 (default 200; 0 skips)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each wrk run (default 10)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated modules and offsets (default 1)")
    parser.add_argument("--keep", action="store_true", help="leave the trio running at the end")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of the cold measurement and of symbolic, whose medians are compared "
                             "(default 3; single runs vary by 20%% on a shared 2-core machine)")
    parser.add_argument("--symserver-processes", type=int, default=os.cpu_count() or 1,
                        help="SymServer's 'processes' setting (default: one per core, as the README "
                             "advises for throughput)")
    args = parser.parse_args()

    missing = missing_tools()
    if missing:
        for line in missing:
            print(f"bench/run.py: {line}", file=sys.stderr)
        print("bench/run.py installs nothing itself; install the above and run it again.", file=sys.stderr)
        return 2
    bench = Bench(args)
    try:
        return bench.run()
    except KeyboardInterrupt:
        bench.stop_services()
        return 1


if __name__ == "__main__":
    sys.exit(main())
