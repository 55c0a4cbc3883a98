"""What every workload of ``bench/run.py`` shares: the workload files, the trio, the store,
wrk, the RSS sampler, symbolic, and the facts about the machine.

Each workload module (``warm``, ``cold``, ``profile_cold``) gets a :class:`Context` and
returns its figures and its goal rows; nothing here judges a goal.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import mmap
import multiprocessing
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
WORK = BENCH / "work"
for _path in (REPO / "tests", BENCH, REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

MB = 1_000_000
SAMPLE_INTERVAL_SECONDS = 0.010


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


@dataclass
class Context:
    """The options of the run and where it keeps its files."""

    quick: bool = False
    duration: float = 10.0
    connections: int = 8
    seed: int = 1
    repeat: int = 3
    sizes: list[float] = field(default_factory=lambda: [10.0, 74.0, 300.0, 1024.0])
    run_dir: Path = WORK / "run"

    def workdir(self, name: str) -> Path:
        """A fresh directory for one workload's trio, logs and wrk files."""
        path = self.run_dir / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path


class Workload:
    """One workload of the bench: :meth:`run` measures and returns (results, table rows,
    detail lines); a phase that fails is logged and named in ``errors``, and the rest goes on."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.results: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def run(self) -> tuple[dict[str, Any], list, list[str]]:
        raise NotImplementedError

    def phase(self, name: str, function: Any) -> Any:
        """``function()``, or None when it failed (then logged and kept in ``errors``)."""
        log(f"{name} ...")
        try:
            return function()
        except Exception as error:  # noqa: BLE001 - reported as a failed phase; the rest goes on
            self.errors[name] = f"{type(error).__name__}: {error}"
            log(f"{name} FAILED: {type(error).__name__}: {error}")
            return None

    @classmethod
    def measure(cls, ctx: Context) -> tuple[dict[str, Any], list, list[str], dict[str, str]]:
        """What ``bench/run.py`` calls: the workload's results, rows, details and errors."""
        workload = cls(ctx)
        results, rows, details = workload.run()
        return results, rows, details, workload.errors


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
        missing.append("the Python package symbolic is not installed: pip install -e '.[bench]'")
    for module in ("psutil", "requests", "tornado"):
        if importlib.util.find_spec(module) is None:
            missing.append(f"the Python package {module} is not installed: pip install -e .")
    return missing


def machine_facts() -> dict[str, Any]:
    """What a reader needs to compare figures: the machine, the tools and the commit."""
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
    wrk_text = (wrk.stdout + wrk.stderr).strip()
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    status = subprocess.run(["git", "status", "--porcelain", "--", "diskcache", "symserver", "symcommon"],
                            capture_output=True, text=True, cwd=REPO)

    def package(name: str) -> str | None:
        try:
            return version(name)
        except Exception:  # noqa: BLE001 - a label only
            return None

    return {
        "cpu": cpu, "logical_cores": os.cpu_count(), "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "python": platform.python_version(), "platform": platform.platform(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "wrk": wrk_text.splitlines()[0] if wrk_text else "?",
        "symbolic": package("symbolic"), "tornado": package("tornado"),
        "git_commit": git.stdout.strip() or None,
        "uncommitted_server_files": [line[3:] for line in status.stdout.splitlines() if line.strip()],
    }


# --------------------------------------------------------------------------- workload files

def module_names(tag: str, size_mb: float, seed: int) -> dict[str, str]:
    digest = hashlib.sha256(f"{tag}/{size_mb}/{seed}".encode()).hexdigest().upper()
    name = f"bench{tag}"
    return {"debug_file": f"{name}.pdb", "debug_id": digest[:32] + "1", "code_file": f"{name}.dll"}


def build_module(tag: str, size_mb: float, seed: int, quiet: bool = False) -> dict[str, Any]:
    """A generated .sym in bench/work/syms (reused while size, seed and names match) and the
    (address, size) of every FUNC in it, so offsets can be chosen inside functions."""
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
        if meta and ({k: meta.get(k) for k in wanted} != wanted
                     or meta.get("stats", {}).get("bytes") != path.stat().st_size):
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
    elif not quiet:
        log(f"reusing {path.name}: {meta['stats']['bytes'] / MB:.1f} MB, {meta['stats']['funcs']} FUNCs")
    return {**meta, "path": path, "bytes": path.stat().st_size, "funcs": [tuple(f) for f in meta["funcs"]]}


def module_summary(module: dict) -> dict[str, Any]:
    return {k: module[k] for k in ("debug_file", "debug_id", "code_file", "size_mb", "seed", "bytes")} | \
        {"funcs": len(module["funcs"]), "path": str(module["path"])}


def offsets_inside_funcs(module: dict, count: int, seed: int, distinct: bool = False) -> list[int]:
    """Seeded offsets, each inside one FUNC (so every one must be answered by name)."""
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


def store_path(module: dict) -> str:
    """The module's path under a symbol store: ``<debug_file>/<debug_id>/<sym file>``."""
    from symcommon.modules import ModuleId

    sym_name = ModuleId.parse(module["debug_file"], module["debug_id"]).sym_file_name
    return f"{module['debug_file']}/{module['debug_id']}/{sym_name}"


def place_in_store(store_root: Path, module: dict) -> None:
    target = store_root / store_path(module)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return
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


# --------------------------------------------------------------------------- the store

def _serve_store(root: str, port_queue: Any, stop: Any) -> None:
    from symbol_store import SymbolStore

    store = SymbolStore(Path(root)).start()
    port_queue.put(store.port)
    stop.wait()
    store.stop()


class StoreProcess:
    """``tests/symbol_store.py`` in a process of its own, so the bench's client threads and the
    store's threads do not share one interpreter lock (both sides of a comparison download from it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        queue = context.Queue()
        self._process = context.Process(target=_serve_store, args=(str(root), queue, self._stop),
                                        name="symbol-store", daemon=True)
        self._process.start()
        self.port = queue.get(timeout=60)

    def url(self, mode: str = "plain") -> str:
        return f"http://127.0.0.1:{self.port}/{mode}"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def stop(self) -> None:
        self._stop.set()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


# --------------------------------------------------------------------------- the trio

class BenchTrio:
    """memcached + DiskCache + SymServer through quickstart, with its own pid directory, ports,
    config and empty cache directory under ``workdir`` (never one already running)."""

    def __init__(self, workdir: Path, symbol_urls: list[str], symserver_processes: int = 1,
                 diskcache: dict | None = None, symserver: dict | None = None) -> None:
        from harness import free_port

        self.workdir = workdir
        self.pid_dir = workdir / "pids"
        self.cache_dir = workdir / "cache"
        self.ports = {"DiskCache": free_port(), "SymServer": free_port(), "memcached": free_port()}
        self.config = {
            "DiskCache": {"cachePath": str(self.cache_dir), "port": self.ports["DiskCache"],
                          "localSymbolDirs": [str(REPO / "demo_symbols")], "symbolURLs": symbol_urls,
                          "log": {"path": str(workdir / "DiskCache.log")}, **(diskcache or {})},
            "SymServer": {"port": self.ports["SymServer"], "DiskCacheServer": f"127.0.0.1:{self.ports['DiskCache']}",
                          "memcachedServers": [f"127.0.0.1:{self.ports['memcached']}"],
                          "processes": symserver_processes,
                          "log": {"path": str(workdir / "SymServer.log")}, **(symserver or {})},
            "quickstart": {"memcached": {"start": True, "restart": True, "port": self.ports["memcached"],
                                         "listenAddress": "127.0.0.1", "maxMemoryMB": "64"},
                           "DiskCache": {"start": True, "restart": True},
                           "SymServer": {"start": True, "restart": True}},
        }
        self.config_path = workdir / "config.json"
        self.config_path.write_text(json.dumps(self.config, indent=2))
        self.symserver = f"http://127.0.0.1:{self.ports['SymServer']}"
        self.diskcache = f"http://127.0.0.1:{self.ports['DiskCache']}"
        self.started = False

    def quickstart(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
        from harness import run_quickstart

        result = run_quickstart(self.pid_dir, *arguments, cwd=self.workdir, timeout=180)
        if check and result.returncode != 0:
            raise RuntimeError(f"quickstart {' '.join(arguments)} failed ({result.returncode}): "
                               f"{result.stdout.strip()} {result.stderr.strip()}")
        return result

    def start(self) -> BenchTrio:
        self.started = True  # from here on, always try to stop it
        self.quickstart("-c", str(self.config_path))
        log(f"trio up in {self.workdir.name}: SymServer {self.symserver} "
            f"(processes: {self.config['SymServer']['processes']}), DiskCache {self.diskcache}")
        return self

    def stop(self) -> None:
        if self.started:
            result = self.quickstart("--stop", check=False)
            if result.returncode != 0:
                log(f"quickstart --stop said: {result.stderr.strip()}")
            self.started = False

    def pid(self, name: str) -> int:
        return int((self.pid_dir / f"{name}.pid").read_text().split()[0])

    def evict(self, module: dict) -> None:
        import requests
        answer = requests.post(self.diskcache + "/", json={
            "debug": True, "action": "cacheEvict", "libName": module["debug_file"],
            "breakpadId": module["debug_id"]}, timeout=60).json()
        if answer != {"success": True}:
            raise RuntimeError(f"cacheEvict answered {answer}")

    def table_files(self, module: dict) -> dict[str, Any]:
        """The module's files in the cache directory and their size against the .sym's."""
        files = [p for p in self.cache_dir.rglob("*") if p.is_file() and ".tmp" not in p.parts]
        mine = [p for p in files if module["debug_id"].lower() in p.name.lower()]
        total = sum(p.stat().st_size for p in mine)
        return {"files": {p.name: p.stat().st_size for p in mine}, "bytes": total,
                "ratio": total / module["bytes"] if mine else None}


class ServerProcess:
    """A helper server (``bench/echo_server.py``) in its own process, stopped with SIGTERM."""

    def __init__(self, arguments: list[str], port: int, log_path: Path) -> None:
        with open(log_path, "wb") as output:
            self.process = subprocess.Popen([sys.executable, *arguments], stdout=output, stderr=subprocess.STDOUT)
        self.port = port
        wait_for_port(port)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on port {port} after {timeout} s")


# --------------------------------------------------------------------------- RSS

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

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)

    def run(self) -> None:
        import psutil

        main = psutil.Process(self.pid)
        children: dict[int, Any] = {}
        count = 0
        while not self._stop_event.is_set():
            began = time.monotonic()
            try:
                main_rss = main.memory_info().rss
            except psutil.Error:
                break
            if count % 10 == 0:  # listing children scans /proc: not at every sample
                try:
                    for child in main.children(recursive=True):
                        if child.pid not in children:
                            children[child.pid] = child
                            self.child_roles[child.pid] = _child_role(child)
                except psutil.Error:
                    pass
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
            "samples": self.samples, "interval_ms": self.interval * 1000,
            "main_at_start_mb": (self.first_main or 0) / MB, "total_at_start_mb": (self.first_total or 0) / MB,
            "peak_main_mb": self.peak_main / MB, "peak_largest_child_mb": largest[1] / MB,
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
    if "diskcache.worker" in command:
        return "worker"
    if "spawn_main" in command or "multiprocessing" in command or "forkserver" in command:
        return "pool worker"
    return process.name()


# --------------------------------------------------------------------------- latency probe

def latency_summary(records: list[tuple[float, float, bool]]) -> dict[str, Any]:
    latencies = sorted(seconds for _, seconds, ok in records if ok)
    failed = sum(1 for _, _, ok in records if not ok)
    if not latencies:
        return {"requests": len(records), "failed": failed, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {"requests": len(records), "failed": failed, "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000,
            "max_ms": latencies[-1] * 1000}


# --------------------------------------------------------------------------- wrk

def run_wrk(url: str, body: bytes, name: str, duration: float, connections: int, workdir: Path,
            threads: int = 1, server_pid: int | None = None) -> dict[str, Any]:
    """``wrk -t<threads> -c<connections> -d<duration>s --latency -s post.lua url``, parsed; with
    ``server_pid``, also the CPU seconds that process (its threads included) used meanwhile:
    whether the server was busy all along, and its CPU per request."""
    import psutil

    server = psutil.Process(server_pid) if server_pid else None
    cpu_before = sum(server.cpu_times()[:2]) if server else 0.0
    directory = workdir / "wrk"
    directory.mkdir(parents=True, exist_ok=True)
    body_path = directory / f"{name}.json"
    body_path.write_bytes(body)
    script = directory / f"{name}.lua"
    script.write_text(f'local f = assert(io.open("{body_path}", "rb"))\n'
                      'wrk.method = "POST"\nwrk.body = f:read("*a")\nf:close()\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    seconds = max(1, int(round(duration)))
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    began = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    wall = time.monotonic() - began
    output = result.stdout + result.stderr
    (directory / f"{name}.out").write_text(" ".join(command) + "\n" + output)
    parsed = parse_wrk(output)
    parsed["command"] = " ".join(command)
    parsed["exit_status"] = result.returncode
    if server is not None:
        cpu = sum(server.cpu_times()[:2]) - cpu_before
        parsed["server_cpu_busy"] = cpu / wall
        parsed["server_cpu_us_per_request"] = cpu / parsed["requests"] * 1e6 if parsed.get("requests") else None
    log(f"wrk {name}: {parsed['requests_per_second']} req/s, p99 {ms(parsed['p99_ms'])}, errors {parsed['errors']}"
        + (f", server CPU {parsed['server_cpu_busy']:.0%} busy, {parsed['server_cpu_us_per_request'] or 0:.0f} us"
           f"/request" if server is not None else ""))
    return parsed


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    """The figures of wrk's text output (``--latency``)."""
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


# --------------------------------------------------------------------------- symbolic

def run_symbolic(path: Path, offsets: list[int], workdir: Path, repeat: int = 1,
                 timeout: float = 1800) -> dict[str, Any]:
    """``bench/symbolic_baseline.py`` in a subprocess (its RSS its own), the median of ``repeat``
    runs; ``functions`` maps each offset to the outermost function symbolic finds."""
    offsets_path = workdir / f"symbolic-offsets-{path.stem}.json"
    offsets_path.write_text(json.dumps(offsets))
    runs = []
    for _ in range(repeat):
        result = subprocess.run([sys.executable, str(BENCH / "symbolic_baseline.py"), str(path),
                                 "--offsets", str(offsets_path)], capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"symbolic_baseline.py failed: {result.stderr.strip()[-500:]}")
        runs.append(json.loads(result.stdout))
    runs.sort(key=lambda run: run["seconds"])
    figures = runs[len(runs) // 2]
    figures["samples"] = [round(run["seconds"], 3) for run in runs]
    figures["functions"] = dict(zip(offsets, figures.pop("functions")))
    figures["symcache_ratio"] = figures["symcache_bytes"] / figures["sym_bytes"]
    log(f"symbolic {path.name}: median {figures['seconds']:.2f} s of {figures['samples']}, symcache "
        f"{figures['symcache_ratio']:.0%} of the .sym, peak RSS {figures['peak_rss_bytes'] / MB:.0f} MB")
    return figures


def public_inside_func(module: dict, offset: int, name: str | None) -> bool:
    """Whether symbolic's ``name`` for ``offset`` is a PUBLIC lying inside the FUNC that covers
    the offset: by Breakpad's rule (README, "The lookup rule", 1) the FUNC is the answer, so
    such a difference is symbolic's rule, not a wrong answer of ours."""
    import bisect

    if not name or "funcs" not in module:
        return False
    funcs = module["funcs"]
    index = bisect.bisect_right(funcs, (offset, float("inf"))) - 1
    if index < 0 or not funcs[index][0] <= offset < funcs[index][0] + funcs[index][1]:
        return False
    start, size = funcs[index]
    with open(module["path"], "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for match in re.finditer(rb"^PUBLIC (?:m )?([0-9a-f]+) [0-9a-f]+ " + re.escape(name.encode()) + rb"\r?$",
                                 data, re.MULTILINE):
            if start < int(match.group(1), 16) <= offset < start + size:
                return True
    return False
