"""Cold requests: one module the trio has never seen, against ``symbolic`` on the same bytes.

Round one's goals, on the 74 MB module (``--sizes`` must include 74):

1. T_cold: one v5 frame POSTed to SymServer, from the request to the answer (download from
   the store over loopback, processing, lookup), the median of ``--repeat`` runs (the module
   is evicted from the DiskCache before each and a new offset asked, so each run downloads
   and processes it; each answer is checked against symbolic's).  Baseline T_sym:
   ``bench/symbolic_baseline.py`` reading the file and building a symcache in a process of
   its own, median of ``--repeat`` runs.  Goal T_cold <= 0.5 x T_sym.  In one more,
   instrumented run, a client process asks the DiskCache for a small, processed module every
   20 ms: goal no failure and none slower than 100 ms while the cold request runs.
2. The module's table / its .sym <= 25%.
3. The DiskCache's peak RSS (main process + every child, sampled every 10 ms) <= 120 MB.

The size ladder (issue 12, goal 4): for each of ``--sizes`` (10 / 74 / 300 / 1024 MB), one
cold request with the RSS sampler running: time, MB/s of .sym, peak RSS, table size, and
symbolic's time and peak RSS on the same file beside it.  Up to 300 MB the peak RSS must stay
<= 120 MB (round one: it must not grow with the file).  The 1 GB step (>= 1000 MB) carries
issue 12's goal 3: time <= 0.12 x symbolic's, peak RSS <= 150 MB, table <= 22%.
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import time
from pathlib import Path
from typing import Any

from common import (MB, BenchTrio, Context, RssSampler, StoreProcess, Workload, build_module, latency_summary, log,
                    module_summary, ms, offsets_inside_funcs, place_in_store, public_inside_func, run_symbolic, v5_body,
                    v5_job)
from table import Row, not_measured, ratio_text

PROBE_INTERVAL_SECONDS = 0.020
PROBE_MAX_LATENCY_SECONDS = 0.100
COLD_RATIO = 0.5
TABLE_RATIO = 0.25
MEMORY_LIMIT_MB = 120.0
GIGABYTE_MB = 1000.0
GIGABYTE_RATIO = 0.12
GIGABYTE_MEMORY_MB = 150.0
GIGABYTE_TABLE_RATIO = 0.22
MAIN_SIZE_MB = 74.0
SMALL_MODULE_MB = 2.0


#: How long to wait, after the last answer, for every table to be built in the background.
TABLES_TIMEOUT_SECONDS = 900.0


def tables_built_after(cache_dir: Path, since: float, timeout: float = TABLES_TIMEOUT_SECONDS) -> float | None:
    """Seconds from ``since`` (time.monotonic) until the cache directory holds no RAW .sym
    file any more: a module answered from its .sym before its table existed keeps it until
    the table, built in the background, replaces it.  None if that did not happen in time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            raw = [p for p in cache_dir.iterdir() if p.name.endswith(".sym") and p.is_file()]
        except OSError:
            raw = []
        if not raw:
            return time.monotonic() - since
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def probe_client(url: str, module: dict, offsets: list[int], stop: Any, ready: Any, queue: Any) -> None:
    """Runs in its own process: a one-frame v5 job every PROBE_INTERVAL_SECONDS, each for a new
    offset, until ``stop``; puts (monotonic start, seconds, ok) records on ``queue``."""
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


class Cold(Workload):
    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.results["ladder"] = {}

    def run(self) -> tuple[dict[str, Any], list[Row], list[str]]:
        import requests

        ctx = self.ctx
        workdir = ctx.workdir("cold")
        modules = {size: build_module(f"{size:g}", size, ctx.seed) for size in ctx.sizes}
        small = build_module("small", SMALL_MODULE_MB, ctx.seed + 2)
        for module in (*modules.values(), small):
            place_in_store(workdir / "store", module)
        self.results["modules"] = {f"{size:g}": module_summary(module) for size, module in modules.items()}
        self.probe_offsets = offsets_inside_funcs(small, 10_000, ctx.seed + 12, distinct=True)
        store = StoreProcess(workdir / "store")
        trio = BenchTrio(workdir, [store.url("plain")], symserver_processes=1)
        self.session = requests.Session()
        try:
            trio.start()
            self.trio = trio
            response = self.session.post(trio.diskcache + "/symbolicate/v5", timeout=300,
                                         data=json.dumps(v5_job(small, self.probe_offsets[:5])))
            response.raise_for_status()
            for size, module in modules.items():
                label = f"{size:g} MB"
                offsets = offsets_inside_funcs(module, ctx.repeat + 2, ctx.seed + 10, distinct=True)
                repeat = ctx.repeat if size == MAIN_SIZE_MB else 1
                symbolic = self.phase(f"symbolic {label}", lambda: run_symbolic(
                    module["path"], offsets, workdir, repeat=repeat))
                step: dict[str, Any] = {"symbolic": symbolic}
                self.results["ladder"][f"{size:g}"] = step
                expected = (symbolic or {}).get("functions", {})
                if size == MAIN_SIZE_MB:
                    step["cold"] = self.phase(f"cold {label} (instrumented)", lambda: self.cold(
                        module, offsets[0], expected, probe=small))
                    samples = []
                    for number, offset in enumerate(offsets[1:1 + ctx.repeat], start=1):
                        self.phase(f"evict {label}", lambda: trio.evict(module))
                        run = self.phase(f"cold {label} #{number}", lambda: self.cold(module, offset, expected))
                        if run:
                            samples.append(run)
                    if step["cold"] and samples:
                        step["cold"]["instrumented_seconds"] = step["cold"]["seconds"]
                        step["cold"]["samples"] = [round(run["seconds"], 3) for run in samples]
                        step["cold"]["seconds"] = statistics.median(run["seconds"] for run in samples)
                        step["cold"]["mb_per_second"] = module["bytes"] / MB / step["cold"]["seconds"]
                        step["cold"]["correct"] = step["cold"]["correct"] and all(r["correct"] for r in samples)
                else:
                    step["cold"] = self.phase(f"cold {label}", lambda: self.cold(module, offsets[0], expected))
                step["table"] = self.phase(f"table {label}", lambda: trio.table_files(module))
        finally:
            trio.stop()
            store.stop()
        return self.results, self.rows(), self.details()

    def cold(self, module: dict, offset: int, expected: dict[int, str | None],
             probe: dict | None = None) -> dict[str, Any]:
        """One v5 frame of a module the DiskCache does not have, with the DiskCache's RSS sampled
        (and, with ``probe``, a client asking for a processed module meanwhile)."""
        prober = None
        if probe is not None:
            context = multiprocessing.get_context("spawn")
            stop, ready, queue = context.Event(), context.Event(), context.Queue()
            prober = context.Process(target=probe_client, name="probe", daemon=True,
                                     args=(self.trio.diskcache + "/symbolicate/v5", probe,
                                           self.probe_offsets[100:9000], stop, ready, queue))
            prober.start()
            ready.wait(60)
        sampler = RssSampler(self.trio.pid("DiskCache"), interval=0.010 if probe is not None else 0.020)
        sampler.start()
        time.sleep(1.0 if probe is not None else 0.3)  # the probe's idle figures, the resting RSS
        began = time.monotonic()
        failure = None
        try:
            response = self.session.post(self.trio.symserver + "/symbolicate/v5", data=json.dumps(
                v5_body(module, [offset])), headers={"Debug": "true"}, timeout=1800)
            ended = time.monotonic()
            status = response.status_code
            answer = response.json() if status == 200 else {"text": response.text[:300]}
        except Exception as error:  # noqa: BLE001
            ended = time.monotonic()
            status, answer, failure = None, {}, f"{type(error).__name__}: {error}"
        # the peak RSS counts the table built in the background after the answer, if any
        table_seconds = tables_built_after(self.trio.cache_dir, began)
        time.sleep(0.3)  # the worker's RSS once the answer is out
        sampler.stop()
        records = []
        if prober is not None:
            stop.set()
            records = queue.get(timeout=60)
            prober.join(timeout=10)
        seconds = ended - began
        frame = answer.get("results", [{}])[0].get("stacks", [[{}]])[0][0] if status == 200 else {}
        correct = status == 200 and "function" in frame and frame.get("module") == module["code_file"]
        if offset in expected and frame.get("function") != expected[offset]:
            correct = correct and public_inside_func(module, offset, expected[offset])
        figures = {"seconds": seconds, "mb_per_second": module["bytes"] / MB / seconds if seconds else None,
                   "status": status, "correct": correct, "frame": frame, "expected": expected.get(offset),
                   "failure": failure, "debug": answer.get("debug"), "memory": sampler.report(),
                   "table_seconds": table_seconds}
        if prober is not None:
            figures["probe_idle"] = latency_summary([r for r in records if r[0] < began])
            figures["probe_during"] = latency_summary([r for r in records if began <= r[0] <= ended])
        memory = figures["memory"]
        log(f"cold {module['debug_file']}: {seconds:.2f} s ({figures['mb_per_second']:.0f} MB/s), status {status}, "
            f"correct {correct}; table built at {_seconds(table_seconds)}; DiskCache peak RSS (until then) main "
            f"{memory['peak_main_mb']:.0f} MB, sum {memory['peak_sum_mb']:.0f} MB")
        return figures

    # ----- report
    def rows(self) -> list[Row]:
        rows: list[Row] = []
        ladder = self.results["ladder"]
        main = ladder.get(f"{MAIN_SIZE_MB:g}")
        if main is None:
            rows.append(Row("r1-1..3 cold 74 MB (round one)", "not run", counts=False,
                            note="--sizes has no 74"))
        else:
            cold, symbolic, table = main.get("cold"), main.get("symbolic"), main.get("table")
            if cold and symbolic:
                ratio = cold["seconds"] / symbolic["seconds"]
                rows.append(Row("r1-1 cold 74 MB: request to v5 answer (median)",
                                f"{cold['seconds']:.2f} s {cold.get('samples', '')}",
                                f"symbolic {symbolic['seconds']:.2f} s {symbolic['samples']}",
                                ratio_text(ratio, COLD_RATIO),
                                f"<= {COLD_RATIO:.2f}x, right answer", ratio <= COLD_RATIO and cold["correct"],
                                note="" if cold["correct"] else f"answer {cold['frame']} expected {cold['expected']}"))
                during, idle = cold["probe_during"], cold["probe_idle"]
                met = during["failed"] == 0 and during["requests"] > 0 and during["max_ms"] is not None \
                    and during["max_ms"] <= PROBE_MAX_LATENCY_SECONDS * 1000
                rows.append(Row("r1-1 cached answers during the cold request (DiskCache, every 20 ms)",
                                f"max {ms(during['max_ms'])}, {during['failed']}/{during['requests']} failed",
                                f"idle: max {ms(idle['max_ms'])}", "",
                                f"max <= {PROBE_MAX_LATENCY_SECONDS * 1000:.0f} ms, 0 failed", met))
            else:
                rows.append(not_measured("r1-1 cold 74 MB", f"<= {COLD_RATIO:.2f}x"))
            if table and table.get("ratio") is not None:
                rows.append(Row("r1-2 table / .sym (74 MB)", f"{table['bytes'] / MB:.1f} MB = {table['ratio']:.1%}",
                                f"symcache {symbolic['symcache_ratio']:.0%}" if symbolic else "", "",
                                f"<= {TABLE_RATIO:.0%}", table["ratio"] <= TABLE_RATIO))
            else:
                rows.append(not_measured("r1-2 table / .sym (74 MB)", f"<= {TABLE_RATIO:.0%}"))
        for key, step in ladder.items():
            size = float(key)
            cold, symbolic, table = step.get("cold"), step.get("symbolic"), step.get("table")
            label = f"{size:g} MB"
            if not cold:
                rows.append(not_measured(f"4 cold ladder {label}", "measured"))
                continue
            memory = cold["memory"]
            peak = memory["peak_sum_mb"]
            ratio = cold["seconds"] / symbolic["seconds"] if symbolic else None
            table_text = f"table {table['ratio']:.1%}" if table and table.get("ratio") is not None else "table n/a"
            base = (f"symbolic {symbolic['seconds']:.2f} s, {symbolic['peak_rss_bytes'] / MB:,.0f} MB, "
                    f"symcache {symbolic['symcache_ratio']:.0%}") if symbolic else "symbolic n/a"
            rows.append(Row(f"4 cold ladder {label}: time, MB/s, peak RSS (main+children), table",
                            f"{cold['seconds']:.2f} s, {cold['mb_per_second']:.0f} MB/s, {peak:.0f} MB, {table_text}, "
                            f"table built at {_seconds(cold.get('table_seconds'))}",
                            base, f"{ratio:.2f}x" if ratio else "", "right answer", cold["correct"], counts=False,
                            note="" if cold["correct"] else f"answer {cold['frame']} expected {cold['expected']}"))
            if size < GIGABYTE_MB:
                rows.append(Row(f"r1-3 DiskCache peak RSS, {label} (main {memory['peak_main_mb']:.0f}, largest "
                                f"child {memory['peak_largest_child_mb']:.0f})", f"{peak:.0f} MB",
                                f"symbolic {symbolic['peak_rss_bytes'] / MB:,.0f} MB" if symbolic else "", "",
                                f"<= {MEMORY_LIMIT_MB:.0f} MB", peak <= MEMORY_LIMIT_MB))
                continue
            if ratio is None:
                rows.append(not_measured(f"3 gigabyte module ({label}): time vs symbolic",
                                         f"<= {GIGABYTE_RATIO:.2f}x", "symbolic failed"))
            else:
                rows.append(Row(f"3 gigabyte module ({label}): cold time vs symbolic", f"{cold['seconds']:.2f} s",
                                f"symbolic {symbolic['seconds']:.2f} s", ratio_text(ratio, GIGABYTE_RATIO),
                                f"<= {GIGABYTE_RATIO:.2f}x, right answer",
                                ratio <= GIGABYTE_RATIO and cold["correct"]))
            rows.append(Row(f"3 gigabyte module ({label}): DiskCache peak RSS (main {memory['peak_main_mb']:.0f}, "
                            f"largest child {memory['peak_largest_child_mb']:.0f})", f"{peak:.0f} MB",
                            f"symbolic {symbolic['peak_rss_bytes'] / MB:,.0f} MB" if symbolic else "", "",
                            f"<= {GIGABYTE_MEMORY_MB:.0f} MB", peak <= GIGABYTE_MEMORY_MB))
            if table and table.get("ratio") is not None:
                rows.append(Row(f"3 gigabyte module ({label}): table / .sym",
                                f"{table['bytes'] / MB:.0f} MB = {table['ratio']:.1%}",
                                f"symcache {symbolic['symcache_ratio']:.0%}" if symbolic else "", "",
                                f"<= {GIGABYTE_TABLE_RATIO:.0%}", table["ratio"] <= GIGABYTE_TABLE_RATIO))
            else:
                rows.append(not_measured(f"3 gigabyte module ({label}): table / .sym",
                                         f"<= {GIGABYTE_TABLE_RATIO:.0%}"))
        if not any(float(key) >= GIGABYTE_MB for key in ladder):
            rows.append(Row("3 gigabyte module: not in --sizes", "not run", target=f"<= {GIGABYTE_RATIO:.2f}x",
                            counts=False, note="run with --sizes ...,1024 (the full run does)"))
        return rows

    def details(self) -> list[str]:
        lines = []
        for key, step in self.results["ladder"].items():
            cold, symbolic = step.get("cold"), step.get("symbolic")
            if symbolic:
                lines.append(f"symbolic {key} MB: read {symbolic['read_seconds']:.2f} s + build "
                             f"{symbolic['build_seconds']:.2f} s = {symbolic['seconds']:.2f} s; peak RSS "
                             f"{symbolic['peak_rss_bytes'] / MB:,.0f} MB")
            if cold:
                memory = cold["memory"]
                children = ", ".join(f"{c['role']} {c['peak_mb']:.0f} MB" for c in memory["children"].values())
                lines.append(f"cold {key} MB: {cold['seconds']:.2f} s to the answer, table built at "
                             f"{_seconds(cold.get('table_seconds'))}, status {cold['status']}, correct "
                             f"{cold['correct']}; DiskCache RSS before {memory['total_at_start_mb']:.0f} MB, peaks "
                             f"(until the table is built): "
                             f"main {memory['peak_main_mb']:.0f} MB, sum {memory['peak_sum_mb']:.0f} MB, children: "
                             f"{children or 'none'}")
                debug = cold.get("debug")
                if debug:
                    lines.append(f"    SymServer debug: {json.dumps(debug)[:400]}")
                for phase in ("probe_idle", "probe_during"):
                    probe = cold.get(phase)
                    if probe:
                        lines.append(f"    probe {phase[6:]:6}: {probe['requests']} requests, {probe['failed']} "
                                     f"failed, p50 {ms(probe['p50_ms'])}, p99 {ms(probe['p99_ms'])}, max "
                                     f"{ms(probe['max_ms'])}")
        return lines


def _seconds(value: float | None) -> str:
    return f"{value:.2f} s" if value is not None else "(not within the timeout)"


run = Cold.measure
