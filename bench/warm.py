"""Warm throughput per process (issue 12, goal 1; round one's goals 4 to 6).

Every server here is ONE process with one event loop, and every one is loaded by the same
``wrk -t1 -c<connections> -d<duration>s`` with the same body:

* the HTTP floor: ``bench/echo_server.py --answers``, a Tornado handler that reads the body
  and writes a constant answer, byte for byte SymServer's own answer to that body;
* the stdlib-JSON echo: ``bench/echo_server.py``, ``json.dumps(json.loads(body))``;
* SymServer with ``processes`` 1 (its in-process recent-frames LRU answers every frame;
  memcached and the DiskCache are not asked once warm);
* the DiskCache's main process answering the same v4 body from its recent-frames cache.

Bodies: v4, one stack of 2, 200 and 2,000 frames (seeded offsets, each inside a FUNC of the
module), and README's two-frame sample (demo symbols).  Goals: SymServer >= 0.6x the floor
and DiskCache >= 0.4x the floor at 200 frames (issue 12); SymServer >= 0.5x echo at 200
frames and with the sample, DiskCache >= 500 req/s (round one, now with equal process
counts); no errors.  The other ladder steps are context.

Then a profile: a second SymServer (``bench/profiled.py``, cProfile switched on by a signal
after warming) under the same wrk for the same time, its time split into categories
(HTTP parsing, JSON decode, validation, cache lookups, response building, JSON encode,
socket I/O, event loop, ...); C functions are charged to the Python code that called them.
"""

from __future__ import annotations

import json
import pstats
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import (BENCH, BenchTrio, ServerProcess, StoreProcess, Workload, build_module, log, module_summary,
                    ms, offsets_inside_funcs, place_in_store, run_wrk, v4_body)
from table import Row, not_measured, ratio_text

FRAME_COUNTS = (2, 200, 2000)
FLOOR_RATIO_SYMSERVER = 0.6
FLOOR_RATIO_DISKCACHE = 0.4
ECHO_RATIO = 0.5
DISKCACHE_MIN_RPS = 500.0
DEMO_REQUEST = {"stacks": [[[0, 11723767], [1, 65802]]],
                "memoryMap": [["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"],
                              ["wntdll.pdb", "D74F79EB1F8D4A45ABCD2F476CCABACC2"]],
                "version": 4}
DEMO_ANSWER = {"symbolicatedStacks": [["XREMain::XRE_mainRun() (in xul.pdb)",
                                       "KiUserCallbackDispatcher (in wntdll.pdb)"]],
               "knownModules": [True, True]}

# Where a function's own time goes, by the file it is in (first match wins).
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("JSON decode", ("json/decoder.py", "symcommon/jsonio.py:loads", "json/__init__.py:loads")),
    ("JSON encode", ("json/encoder.py", "symcommon/jsonio.py:dumps", "json/__init__.py:dumps")),
    ("validation (request parsing)", ("symcommon/requests.py", "symcommon/modules.py")),
    ("cache lookups (recent frames, memcached)", ("symcommon/recentframes.py", "symserver/framecache.py",
                                                  "symserver/symbolicate.py", "symserver/sharding.py",
                                                  "diskcache/provider.py", "diskcache/tablereader.py",
                                                  "diskcache/lru.py")),
    ("response building", ("symcommon/responses.py", "symcommon/frames.py")),
    ("handlers and warm lane (app.py, symcommon/web.py, fastlane.py)",
     ("symserver/app.py", "diskcache/app.py", "symcommon/web.py", "symcommon/fastlane.py", "symcommon/metrics.py")),
    ("HTTP parsing and headers (tornado)", ("tornado/http1connection.py", "tornado/httputil.py",
                                            "tornado/httpserver.py", "tornado/routing.py", "tornado/escape.py",
                                            "http/", "email/")),
    ("Tornado RequestHandler (web.py, gen, futures)", ("tornado/web.py", "tornado/gen.py", "tornado/concurrent.py",
                                                       "tornado/util.py", "tornado/locks.py")),
    ("socket I/O (tornado iostream, send, recv)", ("tornado/iostream.py", "tornado/netutil.py", "socket.py",
                                                   "ssl.py")),
    ("logging", ("logging/", "symcommon/logs.py")),
    ("event loop (asyncio, tornado ioloop)", ("asyncio/", "selectors.py", "tornado/ioloop.py",
                                              "tornado/platform/", "contextvars", "_weakrefset.py")),
]
IDLE = ("poll' of 'select.epoll", "select.epoll", "'poll' of")


def _category(function: tuple[str, int, str]) -> str:
    filename, _, name = function
    where = filename.replace("\\", "/") + ":" + name
    for label, patterns in CATEGORIES:
        if any(pattern in where for pattern in patterns):
            return label
    return "other Python"


def profile_breakdown(path: Path, requests: int | None) -> dict[str, Any]:
    """Each function's own time, a C function's charged to its callers (in proportion), summed
    by category; the epoll wait (idle) is set apart.  ``requests`` divides into µs/request."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    totals: dict[str, float] = {}
    functions: dict[str, float] = {}
    idle = 0.0
    handler_calls = 0
    for function, (_, calls, own, _, callers) in stats.items():
        filename, line, name = function
        if filename.endswith("web.py") and name == "_execute":
            handler_calls += calls
        if filename == "~":  # a C function: charge its callers
            if any(marker in name for marker in IDLE):
                idle += own
                continue
            if "send" in name or "recv" in name:
                totals["socket I/O (tornado iostream, send, recv)"] = \
                    totals.get("socket I/O (tornado iostream, send, recv)", 0.0) + own
                functions[name] = functions.get(name, 0.0) + own
                continue
            caller_own = sum(values[2] for values in callers.values()) or 1.0
            for caller, values in callers.items():
                share = own * values[2] / caller_own if caller_own else own / max(1, len(callers))
                label = _category(caller)
                totals[label] = totals.get(label, 0.0) + share
            functions[name] = functions.get(name, 0.0) + own
            continue
        label = _category(function)
        totals[label] = totals.get(label, 0.0) + own
        key = f"{Path(filename).parent.name}/{Path(filename).name}:{line}({name})"
        functions[key] = functions.get(key, 0.0) + own
    busy = sum(totals.values())
    count = requests or handler_calls or 1
    return {
        "requests": count, "busy_seconds": busy, "idle_seconds": idle,
        "categories": [{"category": label, "seconds": seconds, "share": seconds / busy if busy else 0.0,
                        "us_per_request": seconds / count * 1e6}
                       for label, seconds in sorted(totals.items(), key=lambda item: -item[1])],
        "top_functions": [{"function": key, "seconds": seconds, "share": seconds / busy if busy else 0.0}
                          for key, seconds in sorted(functions.items(), key=lambda item: -item[1])[:15]],
    }


# py-spy's collapsed stacks: a sample is charged to the innermost frame that matches one of these.
SPY_CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("idle (waiting in epoll)", ("select (selectors.py", "poll (")),
    ("JSON decode", ("(json/decoder.py", "loads (json/__init__.py", "loads (symcommon/jsonio.py")),
    ("JSON encode", ("(json/encoder.py", "dumps (json/__init__.py", "dumps (symcommon/jsonio.py")),
    ("validation (symcommon/requests.py)", ("(symcommon/requests.py", "(symcommon/modules.py")),
    ("response building (symcommon/responses.py)", ("(symcommon/responses.py", "(symcommon/frames.py")),
    ("lookups (symbolicate, recent frames, memcached)", ("(symserver/symbolicate.py", "(symcommon/recentframes.py",
                                                         "(symserver/framecache.py", "(symserver/sharding.py",
                                                         "(diskcache/provider.py", "(diskcache/tablereader.py")),
    ("access log", ("(logging/", "log_request (", "log_request_line (", "(symcommon/logs.py")),
    ("socket write (tornado iostream, send)", ("(tornado/iostream.py",)),
    ("HTTP parsing and headers (tornado)", ("(tornado/http1connection.py", "(tornado/httputil.py",
                                            "(tornado/routing.py",
                                            "(tornado/httpserver.py", "(symcommon/connections.py", "(email/")),
    ("RequestHandler, warm lane and handler glue (tornado/web.py, symcommon/web.py, fastlane.py, app.py)",
     ("(tornado/web.py", "(symcommon/web.py", "(symcommon/fastlane.py", "(symserver/app.py", "(diskcache/app.py",
      "(tornado/gen.py", "(tornado/concurrent.py", "(symcommon/metrics.py")),
    ("event loop (asyncio, tornado ioloop)", ("(asyncio/", "(tornado/ioloop.py", "(tornado/platform")),
]


def spy_breakdown(path: Path) -> dict[str, Any]:
    """Shares of py-spy's samples (``record -f raw``) by category, idle apart."""
    totals: dict[str, int] = {}
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        label = "other"
        for frame in reversed(stack.split(";")):
            found = next((name for name, patterns in SPY_CATEGORIES if any(p in frame for p in patterns)), None)
            if found:
                label = found
                break
        totals[label] = totals.get(label, 0) + count
    idle = totals.pop("idle (waiting in epoll)", 0)
    busy = samples - idle
    return {"samples": samples, "idle_share": idle / samples if samples else 0.0,
            "categories": [{"category": name, "share": count / busy if busy else 0.0}
                           for name, count in sorted(totals.items(), key=lambda item: -item[1])]}


def py_spy() -> str | None:
    """py-spy, if installed (PATH, or the PYSPY environment variable): optional."""
    import os
    import shutil
    return os.environ.get("PYSPY") or shutil.which("py-spy")


def _check_v4(response: Any, frames: int, module: dict) -> dict[str, Any]:
    problems = []
    if response.status_code != 200:
        return {"status": response.status_code, "correct": False, "problems": [response.text[:200]]}
    answer = response.json()
    symbols = answer.get("symbolicatedStacks", [[]])[0]
    if len(symbols) != frames:
        problems.append(f"{len(symbols)} frames answered, {frames} sent")
    suffix = f" (in {module['debug_file']})"
    bare = [s for s in symbols if not isinstance(s, str) or not s.endswith(suffix) or s.startswith("0x")]
    if bare:
        problems.append(f"{len(bare)} frames without a name, e.g. {bare[0]!r}")
    if answer.get("knownModules") != [True]:
        problems.append(f"knownModules {answer.get('knownModules')}")
    return {"status": 200, "correct": not problems, "problems": problems, "bytes": len(response.content)}


def stage_timings(trio: BenchTrio, body: bytes, rounds: int = 300) -> dict[str, Any]:
    """SymServer's own steps for one warm v4 request, timed in this process with nothing else
    running (no profiler): the calls its warm lane makes (``symcommon.web.warm_api_answer``),
    in the same order, with a Symbolicator built as ``symserver/__main__.py`` builds it, on the
    trio's memcached and DiskCache (a first round through ``symbolicate`` fills its LRU). What
    a request costs beyond their sum (1 / req/s of one process under wrk) is Tornado's HTTP
    connection, the socket, the event loop, the response headers and the access log."""
    import asyncio
    import statistics as stats

    from symcommon import jsonio
    from symcommon.config import DEFAULTS, diskcache_addresses
    from symcommon.metrics import Metrics
    from symcommon.prefork import SharedState
    from symcommon.recentframes import RecentFrames
    from symcommon.requests import Limits, check_body_counts, parse_debug, parse_v4
    from symcommon.responses import v4_body_rendered
    from symserver.framecache import FrameCache
    from symserver.sharding import DiskCacheFleet
    from symserver.symbolicate import Symbolicator

    section = {**DEFAULTS["SymServer"], **trio.config["SymServer"]}
    limits = Limits.from_section(section)

    async def measure() -> dict[str, list[float]]:
        frames = FrameCache(section["memcachedServers"])
        recent = RecentFrames(section["frameCacheEntries"], section["frameCacheSeconds"], SharedState())
        fleet = DiskCacheFleet(diskcache_addresses(section))
        symbolicator = Symbolicator(frames, fleet, Metrics("bench"), recent,
                                    max_answer_bytes=section["maxAnswerMB"] * 1024 * 1024)
        clock = time.perf_counter
        timings: dict[str, list[float]] = {name: [] for name in (
            "count brackets (check_body_counts)", "JSON decode (jsonio.loads, orjson)",
            "validation (parse_debug, parse_v4: columns checked in C)",
            "lookups (Symbolicator.warm_jobs: one map over a module's offsets)",
            "response (v4_body_rendered: frames encoded when cached, joined)")}
        names = list(timings)
        try:
            version, job = parse_v4(jsonio.loads(body), None, limits)
            await symbolicator.symbolicate([job], "bench", False)  # the LRU, from memcached
            for number in range(rounds + 3):
                t0 = clock()
                check_body_counts(body, limits)
                t1 = clock()
                value = jsonio.loads(body)
                t2 = clock()
                parse_debug(value)
                version, job = parse_v4(value, None, limits)
                t3 = clock()
                warm = symbolicator.warm_jobs([job])
                t4 = clock()
                if warm is None:
                    raise RuntimeError("the warm request was not warm in a fresh Symbolicator")
                v4_body_rendered(job, warm[0], version)
                t5 = clock()
                if number >= 3:
                    for name, seconds in zip(names, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                        timings[name].append(seconds)
        finally:
            frames.close()
            fleet.close()
        return timings

    timings = asyncio.run(measure())
    steps = [{"step": name, "us_median": stats.median(values) * 1e6, "us_mean": stats.fmean(values) * 1e6}
             for name, values in timings.items()]
    return {"rounds": rounds, "steps": steps, "us_sum_of_medians": sum(step["us_median"] for step in steps)}


class Warm(Workload):

    def run(self) -> tuple[dict[str, Any], list[Row], list[str]]:
        import requests

        ctx = self.ctx
        workdir = ctx.workdir("warm")
        module = build_module("74", 74.0, ctx.seed)
        self.results["module"] = module_summary(module)
        place_in_store(workdir / "store", module)
        bodies = {f"v4-{count}": json.dumps(v4_body(module, offsets_inside_funcs(module, count, ctx.seed + count))
                                            ).encode() for count in FRAME_COUNTS}
        bodies["sample"] = json.dumps(DEMO_REQUEST).encode()
        store = StoreProcess(workdir / "store")
        trio = BenchTrio(workdir, [store.url("plain")], symserver_processes=1)
        servers: list[ServerProcess] = []
        from harness import free_port
        try:
            trio.start()
            session = requests.Session()
            answers_dir = workdir / "answers"
            answers_dir.mkdir()
            checks = {}
            for name, body in bodies.items():
                for server, base in (("symserver", trio.symserver), ("diskcache", trio.diskcache)):
                    response = session.post(base + "/", data=body, timeout=600,
                                            headers={"Content-Type": "application/json"})
                    if name == "sample":
                        checks[f"{server}-{name}"] = {"status": response.status_code,
                                                      "correct": response.status_code == 200
                                                      and response.json() == DEMO_ANSWER}
                    else:
                        checks[f"{server}-{name}"] = _check_v4(response, int(name[3:]), module)
                    if server == "symserver":
                        (answers_dir / f"{name}.json").write_bytes(response.content)
            self.results["checks"] = checks
            floor_port, echo_port = free_port(), free_port()
            floor = ServerProcess([str(BENCH / "echo_server.py"), "--port", str(floor_port), "--answers",
                                   str(answers_dir)], floor_port, workdir / "floor.log")
            servers.append(floor)
            echo = ServerProcess([str(BENCH / "echo_server.py"), "--port", str(echo_port)], echo_port,
                                 workdir / "echo.log")
            servers.append(echo)

            def wrk(url: str, body: bytes, name: str, pid: int) -> dict[str, Any]:
                return run_wrk(url, body, name, ctx.duration, ctx.connections, workdir, threads=1, server_pid=pid)

            figures: dict[str, Any] = {}
            for name, body in bodies.items():
                figures[f"floor-{name}"] = wrk(f"http://127.0.0.1:{floor_port}/{name}", body, f"floor-{name}",
                                               floor.process.pid)
                figures[f"symserver-{name}"] = wrk(trio.symserver + "/", body, f"symserver-{name}",
                                                   trio.pid("SymServer"))
                if name in ("v4-200", "sample"):
                    figures[f"echo-{name}"] = wrk(f"http://127.0.0.1:{echo_port}/", body, f"echo-{name}",
                                                  echo.process.pid)
                figures[f"diskcache-{name}"] = wrk(trio.diskcache + "/", body, f"diskcache-{name}",
                                                   trio.pid("DiskCache"))
            self.results["wrk"] = figures
            # Where the time goes: context for the goals, which stand whether these work or not.
            body_200 = bodies["v4-200"]
            context = [("stages", "warm stage timings", lambda: stage_timings(trio, body_200))]
            if py_spy():
                context.append(("py_spy", "warm py-spy", lambda: self.sample(trio, workdir, body_200)))
            context.append(("profile", "warm profile", lambda: self.profile(trio, workdir, body_200, "symserver")))
            if not ctx.quick:
                context.append(("profile_diskcache", "warm DiskCache profile",
                                lambda: self.profile(trio, workdir, body_200, "diskcache")))
            for key, name, function in context:
                figures_or_none = self.phase(name, function)
                if figures_or_none is not None:
                    self.results[key] = figures_or_none
        finally:
            for server in servers:
                server.stop()
            trio.stop()
            store.stop()
        return self.results, self.rows(), self.details()

    def sample(self, trio: BenchTrio, workdir: Path, body: bytes) -> dict[str, Any]:
        """py-spy sampling the trio's own SymServer (no profiler inside it) under the same wrk."""
        out = workdir / "symserver-warm.pyspy.txt"
        seconds = max(2, int(self.ctx.duration))
        spy = subprocess.Popen([str(py_spy()), "record", "-p", str(trio.pid("SymServer")), "-d", str(seconds + 1),
                                "-r", "200", "-f", "raw", "-o", str(out), "--nonblocking"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(0.5)
        figures = run_wrk(trio.symserver + "/", body, "symserver-py-spy", seconds, self.ctx.connections, workdir,
                          server_pid=trio.pid("SymServer"))
        output = spy.communicate(timeout=120)[0].decode(errors="replace")
        if not out.exists():
            raise RuntimeError(f"py-spy wrote nothing: {output.strip()[-300:]}")
        breakdown = spy_breakdown(out)
        breakdown["wrk"] = {k: figures.get(k) for k in ("requests_per_second", "server_cpu_us_per_request")}
        log("py-spy of SymServer: "
            + ", ".join(f"{c['category']} {c['share']:.0%}" for c in breakdown["categories"][:5]))
        return breakdown

    def profile(self, trio: BenchTrio, workdir: Path, body: bytes, server: str) -> dict[str, Any]:
        """The same wrk against a second, cProfiled ``server`` (one process) of the same trio."""
        import requests
        from harness import free_port

        port = free_port()
        out = workdir / f"{server}-warm.pstats"
        command = [sys.executable, str(BENCH / "profiled.py"), str(out), server, "-c", str(trio.config_path),
                   "--port", str(port), "--logPath", str(workdir / f"{server}-profiled.log"), "--quiet"]
        if server == "diskcache":  # a cache directory of its own: the running DiskCache owns the other
            command += ["--cachePath", str(workdir / "cache-profiled")]
        with open(workdir / f"{server}-profiled.out", "wb") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            from common import wait_for_port
            wait_for_port(port)
            url = f"http://127.0.0.1:{port}/"
            for _ in range(3):  # warm: module fetched (DiskCache), frames in the recent-frames cache
                requests.post(url, data=body, timeout=600).raise_for_status()
            process.send_signal(signal.SIGUSR1)
            time.sleep(0.2)
            figures = run_wrk(url, body, f"{server}-profiled", self.ctx.duration, self.ctx.connections, workdir)
            process.send_signal(signal.SIGUSR2)
            deadline = time.monotonic() + 60
            while not Path(str(out) + ".done").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            breakdown = profile_breakdown(out, figures.get("requests"))
            breakdown["wrk_under_profiler"] = {k: figures.get(k) for k in ("requests_per_second", "requests",
                                                                           "errors")}
            breakdown["pstats"] = str(out)
            log(f"profile of {server}: {breakdown['requests']} requests, "
                + ", ".join(f"{c['category']} {c['share']:.0%}" for c in breakdown["categories"][:6]))
            return breakdown
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    # ----- report
    def rows(self) -> list[Row]:
        wrk = self.results.get("wrk", {})
        checks = self.results.get("checks", {})
        rows: list[Row] = []

        def rps(key: str) -> float | None:
            figures = wrk.get(key) or {}
            return figures.get("requests_per_second")

        def cell(key: str) -> str:
            figures = wrk.get(key) or {}
            return f"{figures.get('requests_per_second') or 0:,.0f} req/s, p99 {ms(figures.get('p99_ms'))}"

        def problems(key: str, check_key: str) -> list[str]:
            notes = []
            figures = wrk.get(key) or {}
            if figures.get("errors"):
                notes.append(f"{figures['errors']} errors ({figures['non_2xx']} non-2xx, "
                             f"sockets {figures['socket_errors']})")
            check = checks.get(check_key)
            if not (check and check.get("correct")):
                notes.append(f"wrong answer: {check}")
            return notes

        def versus(goal: str, ours: str, base: str, base_name: str, target: float, check_key: str,
                   counts: bool = True) -> None:
            if not rps(ours) or not rps(base):
                rows.append(not_measured(goal, f">= {target:.2f}x") if counts else
                            Row(goal, "n/a", counts=False))
                return
            ratio = rps(ours) / rps(base)
            notes = problems(ours, check_key)
            rows.append(Row(goal, cell(ours), f"{base_name} {cell(base)}", ratio_text(ratio, target),
                            f">= {target:.2f}x, 0 errors", ratio >= target and not notes, counts, "; ".join(notes)))

        versus("1 warm 200 frames v4: SymServer (1 process) vs HTTP floor (1 process)",
               "symserver-v4-200", "floor-v4-200", "floor", FLOOR_RATIO_SYMSERVER, "symserver-v4-200")
        versus("1 warm 200 frames v4: DiskCache recent frames (1 process) vs HTTP floor",
               "diskcache-v4-200", "floor-v4-200", "floor", FLOOR_RATIO_DISKCACHE, "diskcache-v4-200")
        versus("r1-4 warm 200 frames v4: SymServer vs stdlib-JSON echo (1 process each)",
               "symserver-v4-200", "echo-v4-200", "echo", ECHO_RATIO, "symserver-v4-200")
        disk = rps("diskcache-v4-200")
        notes = problems("diskcache-v4-200", "diskcache-v4-200")
        rows.append(Row("r1-5 DiskCache 200 frames v4 (1 process)", cell("diskcache-v4-200") if disk else "n/a",
                        target=f">= {DISKCACHE_MIN_RPS:.0f} req/s, 0 errors",
                        met=bool(disk) and disk >= DISKCACHE_MIN_RPS and not notes, note="; ".join(notes)))
        versus("r1-6 README sample, 2 frames: SymServer vs echo (1 process each)",
               "symserver-sample", "echo-sample", "echo", ECHO_RATIO, "symserver-sample")
        def cpu(key: str) -> float | None:
            return (wrk.get(key) or {}).get("server_cpu_us_per_request")

        for server in ("symserver", "diskcache"):  # CPU per request moves less than req/s on a busy machine
            ours, floor = cpu(f"{server}-v4-200"), cpu("floor-v4-200")
            if ours and floor:
                rows.append(Row(f"    {server} 200 frames, server CPU per request (context)", f"{ours:,.0f} us",
                                f"floor {floor:,.0f} us", f"{floor / ours:.2f}x", met=True, counts=False))
        if rps("echo-v4-200") and rps("floor-v4-200"):
            rows.append(Row("    echo vs HTTP floor, 200 frames (what JSON in Python costs)", cell("echo-v4-200"),
                            f"floor {cell('floor-v4-200')}", f"{rps('echo-v4-200') / rps('floor-v4-200'):.2f}x",
                            met=True, counts=False))
        for count in FRAME_COUNTS:
            for server in ("symserver", "diskcache"):
                key = f"{server}-v4-{count}"
                if rps(key) and rps(f"floor-v4-{count}"):
                    ratio = rps(key) / rps(f"floor-v4-{count}")
                    target = FLOOR_RATIO_SYMSERVER if server == "symserver" else FLOOR_RATIO_DISKCACHE
                    rows.append(Row(f"4 warm ladder: {server} {count} frames/request",
                                    f"{cell(key)} = {rps(key) * count:,.0f} frames/s",
                                    f"floor {cell(f'floor-v4-{count}')}", f"{ratio:.2f}x", f"({target:.1f}x at 200)",
                                    met=ratio >= target and not problems(key, key), counts=False))
        return rows

    def details(self) -> list[str]:
        lines = []
        for key, check in self.results.get("checks", {}).items():
            if not check.get("correct"):
                lines.append(f"warm answer {key}: {check}")
        for key, figures in (self.results.get("wrk") or {}).items():
            if figures.get("server_cpu_busy") is not None:
                lines.append(f"wrk {key:20} {figures.get('requests_per_second') or 0:7.0f} req/s; server process CPU "
                             f"{figures['server_cpu_busy']:4.0%} busy, "
                             f"{figures['server_cpu_us_per_request'] or 0:6.0f} "
                             f"us CPU/request")
        stages = self.results.get("stages")
        rps = ((self.results.get("wrk") or {}).get("symserver-v4-200") or {}).get("requests_per_second")
        if stages:
            lines.append(f"SymServer's own steps for one warm 200-frame request, in process, no profiler "
                         f"(median of {stages['rounds']}):")
            for step in stages["steps"]:
                lines.append(f"    {step['us_median']:7.0f} us  {step['step']}")
            lines.append(f"    {stages['us_sum_of_medians']:7.0f} us  sum")
            if rps:
                lines.append(f"    {1e6 / rps - stages['us_sum_of_medians']:7.0f} us  the rest of the "
                             f"{1e6 / rps:.0f} us a request takes under wrk ({rps:.0f} req/s): Tornado HTTP, "
                             f"socket, event loop, access log")
        spy = self.results.get("py_spy")
        if spy:
            wrk = spy.get("wrk", {})
            lines.append(f"py-spy on the running SymServer under the same wrk ({spy['samples']} samples, "
                         f"{wrk.get('requests_per_second')} req/s, {wrk.get('server_cpu_us_per_request') or 0:.0f} us "
                         f"CPU/request; idle {spy['idle_share']:.0%} of the samples); busy samples by innermost "
                         f"matching frame:")
            for category in spy["categories"]:
                lines.append(f"    {category['share']:6.1%}  {category['category']}")
        for name in ("profile", "profile_diskcache"):
            profile = self.results.get(name)
            if not profile:
                continue
            under = profile.get("wrk_under_profiler", {})
            lines.append(f"{name}: cProfile of {profile['requests']} warm 200-frame requests "
                         f"({under.get('requests_per_second')} req/s under the profiler); busy "
                         f"{profile['busy_seconds']:.2f} s, idle in epoll {profile['idle_seconds']:.2f} s")
            for category in profile["categories"]:
                lines.append(f"    {category['share']:6.1%}  {category['us_per_request']:7.0f} us/request  "
                             f"{category['category']}")
            lines.append("    top functions (own time, C functions by name):")
            for function in profile["top_functions"][:10]:
                lines.append(f"    {function['share']:6.1%}  {function['function']}")
        return lines


run = Warm.measure
