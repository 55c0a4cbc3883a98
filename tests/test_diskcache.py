"""Where the DiskCache gets symbols, how it caches them, and how it survives a bad cache."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from harness import SAMPLE_RESPONSE, parsing_workers, sample_request

XUL = ["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"]
XUL_TABLE = "44E4EC8C2F41492B9369D6B9A059577C2.xul.pdb.symtab"
XUL_PATH = "xul.pdb/44E4EC8C2F41492B9369D6B9A059577C2/xul.sym"
NTDLL_PATH = "wntdll.pdb/D74F79EB1F8D4A45ABCD2F476CCABACC2/wntdll.sym"


def xul_request(offset: int = 11723767) -> dict:
    return {"stacks": [[[0, offset]]], "memoryMap": [XUL], "version": 4}


def xul_answer(trio, offset: int = 11723767) -> str:
    return trio.post(xul_request(offset), server="DiskCache").json()["symbolicatedStacks"][0][0]


def make_module(root: Path, name: str, publics: int, seed: int) -> tuple[list[str], int]:
    """A module of random (incompressible) PUBLIC names, so its table has a predictable size."""
    rng = random.Random(seed)
    debug_id = f"{rng.getrandbits(128):032X}1"
    lines = [f"MODULE Linux x86_64 {debug_id} {name}"]
    for i in range(publics):
        lines.append(f"PUBLIC {0x1000 + 16 * i:x} 0 sym_{rng.getrandbits(256):064x}")
    path = root / name / debug_id / f"{name}.sym"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return [name, debug_id], 0x1000


# -- symbol stores -------------------------------------------------------------------------------


def test_store_order_404_moves_on_without_retry(make_trio, symbol_store):
    symbol_store.reset()
    trio = make_trio([symbol_store.url("nowhere"), symbol_store.url("plain")],
                     {"DiskCache": {"retries": 3}})
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE
    assert symbol_store.count("/nowhere/" + XUL_PATH) == 1
    assert symbol_store.count("/plain/" + XUL_PATH) == 1


def test_failing_store_is_retried_then_the_next_one_used(make_trio, symbol_store):
    symbol_store.reset()
    trio = make_trio([symbol_store.url("fail"), symbol_store.url("gzip")],
                     {"DiskCache": {"retries": 2, "retryDelayMs": 1}})
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE
    assert symbol_store.count("/fail/" + XUL_PATH) == 3  # first try + 2 retries
    assert symbol_store.count("/gzip/" + XUL_PATH) == 1


def test_flaky_store_succeeds_within_the_retries(make_trio, symbol_store):
    symbol_store.reset()
    trio = make_trio([symbol_store.url("flaky/2")], {"DiskCache": {"retries": 2}})
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE
    assert symbol_store.count("/flaky/2/" + XUL_PATH) == 3


def test_flaky_store_beyond_the_retries_is_unknown_and_remembered(make_trio, symbol_store):
    symbol_store.reset()
    trio = make_trio([symbol_store.url("flaky/5")], {"DiskCache": {"retries": 1}})
    assert xul_answer(trio) == "0xb2e3f7 (in xul.pdb)"
    assert xul_answer(trio) == "0xb2e3f7 (in xul.pdb)"  # remembered missing: not asked again
    assert symbol_store.count("/flaky/5/" + XUL_PATH) == 2


def test_missing_module_is_forgotten_after_its_ttl(make_trio, symbol_store):
    symbol_store.reset()
    trio = make_trio([symbol_store.url("flaky/1")],
                     {"DiskCache": {"retries": 0, "missingModuleTTLSeconds": 0}})
    assert xul_answer(trio) == "0xb2e3f7 (in xul.pdb)"
    assert xul_answer(trio) == "XREMain::XRE_mainRun() (in xul.pdb)"


@pytest.mark.parametrize("variant", ["gzip", "deflate"])
def test_content_encodings_are_decoded(make_trio, symbol_store, variant):
    trio = make_trio([symbol_store.url(variant)])
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE


@pytest.mark.parametrize("variant", ["badgzip", "truncated", "html"])
def test_broken_downloads_are_unknown_and_never_cached(make_trio, symbol_store, variant):
    trio = make_trio([symbol_store.url(variant)], {"DiskCache": {"retries": 1}})
    response = trio.post(sample_request())
    assert response.status_code == 200
    assert response.json()["knownModules"] == [False, False]
    assert trio.cache_files() == []
    assert list((trio.cache_dir / ".tmp").iterdir()) == []


def test_hanging_store_is_bounded_by_the_download_timeout(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("hang"), symbol_store.url("plain")],
                     {"DiskCache": {"retries": 0, "downloadTimeoutSeconds": 2}})
    response = trio.post(sample_request())
    # the hanging store used up the module's time budget; the answer still comes, in time
    assert response.status_code == 200
    assert response.elapsed.total_seconds() < 20


# -- local symbol directories --------------------------------------------------------------------


def test_local_dirs_come_before_stores_and_are_not_copied(make_trio, symbol_store, store_root, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for directory, name in ((first, "FirstDirFunction"), (second, "SecondDirFunction")):
        target = directory / XUL_PATH
        target.parent.mkdir(parents=True)
        target.write_text("MODULE windows x86_64 44E4EC8C2F41492B9369D6B9A059577C2 xul.pdb\n"
                          f"FUNC b2e000 1000 0 {name}\n")
    symbol_store.reset()
    trio = make_trio([symbol_store.url("plain")],
                     {"DiskCache": {"localSymbolDirs": [str(first), str(second)]}})
    assert xul_answer(trio) == "FirstDirFunction (in xul.pdb)"
    assert trio.wait_for_file("44E4EC8C2F41492B9369D6B9A059577C2.xul.pdb.localtab")  # built after the answer
    assert symbol_store.count(XUL_PATH) == 0
    # no copy of the file, only its processed table
    assert trio.cache_files() == ["44E4EC8C2F41492B9369D6B9A059577C2.xul.pdb.localtab"]
    # a rebuilt local file is picked up (bypass memcached by asking the DiskCache)
    (first / XUL_PATH).write_text("MODULE windows x86_64 44E4EC8C2F41492B9369D6B9A059577C2 xul.pdb\n"
                                  "FUNC b2e000 1000 0 RebuiltFunction\n")
    assert xul_answer(trio) == "RebuiltFunction (in xul.pdb)"
    # a module the local dirs lack still comes from the store
    body = {"stacks": [[[0, 65802]]], "memoryMap": [["wntdll.pdb", "D74F79EB1F8D4A45ABCD2F476CCABACC2"]],
            "version": 4}
    assert trio.post(body).json()["symbolicatedStacks"] == [["KiUserCallbackDispatcher (in wntdll.pdb)"]]
    assert symbol_store.count(NTDLL_PATH) == 1


def _processed_count(trio) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = trio.session.get(trio.url("DiskCache", "/metrics"), timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "diskcache_processing_seconds_count":
                return sample.value
    raise AssertionError("no processing_seconds metric")


def _trio_with_a_local_xul(make_trio, symbol_store, tmp_path: Path):
    """A trio whose xul.pdb is a small file in a local symbol directory (store behind it),
    whose table is built before the answer (these tests count how often it is processed)."""
    local = tmp_path / "local"
    target = local / XUL_PATH
    target.parent.mkdir(parents=True)
    target.write_text("MODULE windows x86_64 44E4EC8C2F41492B9369D6B9A059577C2 xul.pdb\n"
                      "FUNC b2e000 1000 0 LocalFunction\n")
    return target, make_trio([symbol_store.url("plain")], {"DiskCache": {"localSymbolDirs": [str(local)],
                                                                          "answerBeforeTable": False}})


def test_a_local_table_is_kept_in_the_cache_across_restarts(make_trio, symbol_store, tmp_path):
    """The processed table of a local file is kept in the on-disk cache with the file's
    identity: a restart answers from it without processing the file again; a rebuilt
    (touched) file is processed again at once, and replaces it."""
    fetched_before = symbol_store.count(XUL_PATH)  # the store serves the whole session
    target, trio = _trio_with_a_local_xul(make_trio, symbol_store, tmp_path)
    assert xul_answer(trio) == "LocalFunction (in xul.pdb)"
    assert _processed_count(trio) == 1
    assert trio.cache_files() == ["44E4EC8C2F41492B9369D6B9A059577C2.xul.pdb.localtab"]
    trio.quickstart("--stop")
    trio.start()
    assert xul_answer(trio) == "LocalFunction (in xul.pdb)"
    assert _processed_count(trio) == 0, "the unchanged local file was processed again after a restart"
    # the same bytes, touched (a rebuild that changed nothing): processed again, at once
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert xul_answer(trio) == "LocalFunction (in xul.pdb)"
    assert _processed_count(trio) == 1
    target.write_text("MODULE windows x86_64 44E4EC8C2F41492B9369D6B9A059577C2 xul.pdb\n"
                      "FUNC b2e000 1000 0 RebuiltFunction\n")
    assert xul_answer(trio) == "RebuiltFunction (in xul.pdb)"
    assert _processed_count(trio) == 2
    trio.quickstart("--stop")
    trio.start()
    assert xul_answer(trio) == "RebuiltFunction (in xul.pdb)"
    assert _processed_count(trio) == 0
    assert trio.cache_files() == ["44E4EC8C2F41492B9369D6B9A059577C2.xul.pdb.localtab"]
    assert symbol_store.count(XUL_PATH) == fetched_before  # never fetched: the local file wins


def test_a_local_table_with_a_damaged_index_is_made_again(make_trio, symbol_store, tmp_path):
    """The check at start reads header, trailer and directory only; an index damaged inside
    is found when the table is opened: it is deleted and the local file processed again."""
    import json

    from diskcache import tableformat

    target, trio = _trio_with_a_local_xul(make_trio, symbol_store, tmp_path)
    assert xul_answer(trio) == "LocalFunction (in xul.pdb)"
    trio.quickstart("--stop")
    [table] = [trio.cache_dir / name for name in trio.cache_files()]
    data = bytearray(table.read_bytes())
    offset, length = tableformat.check_header(data, len(data))
    chunk = json.loads(data[offset:offset + length])["tables"]["funcs"]["keys"][1][0]
    data[chunk[0]:chunk[0] + chunk[1]] = b"\xff" * chunk[1]
    table.write_bytes(bytes(data))
    trio.start()
    assert trio.cache_files() == [table.name]  # header, trailer and directory are whole
    assert xul_answer(trio) == "LocalFunction (in xul.pdb)"
    assert _processed_count(trio) == 1
    assert trio.wait_for_log("DiskCache.log", "is unusable")


# -- the on-disk LRU -----------------------------------------------------------------------------


def test_lru_evicts_least_recently_used_past_max_size(make_trio, symbol_store, store_root):
    # two modules whose tables are over 0.5 MB each, in a 1 MB cache (tables first: the
    # accounting of .sym files answered from meanwhile is in test_answer_first)
    modules = [make_module(store_root, f"lru{i}.so", 16000, seed=i) for i in range(2)]
    symbol_store.reset()
    trio = make_trio([symbol_store.url("plain")], {"DiskCache": {"maxSizeMB": 1, "answerBeforeTable": False}})

    def ask(index: int) -> str:
        module, offset = modules[index]
        body = {"stacks": [[[0, offset]]], "memoryMap": [module], "version": 4}
        return trio.post(body, server="DiskCache").json()["symbolicatedStacks"][0][0]

    assert ask(0).startswith("sym_")
    assert ask(1).startswith("sym_")  # saved first, then module 0 evicted
    files = trio.cache_files()
    assert (trio.cache_dir / files[0]).stat().st_size > 512 * 1024
    assert len(files) == 1 and files[0].startswith(modules[1][0][1])
    assert ask(1).startswith("sym_")
    assert symbol_store.count(f"lru1.so/{modules[1][0][1]}/lru1.so.sym") == 1  # served from cache
    assert ask(0).startswith("sym_")  # evicted earlier: fetched again
    assert symbol_store.count(f"lru0.so/{modules[0][0][1]}/lru0.so.sym") == 2
    total = sum((trio.cache_dir / name).stat().st_size for name in trio.cache_files())
    assert total <= 1024 * 1024


def test_restart_reuses_the_cache(make_trio, symbol_store):
    symbol_store.reset()
    trio = make_trio([symbol_store.url("plain")])
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE
    for table in (XUL_TABLE, "D74F79EB1F8D4A45ABCD2F476CCABACC2.wntdll.pdb.symtab"):
        assert trio.wait_for_file(table)  # (built after the answer)
    assert len(trio.cache_files()) == 2
    trio.quickstart("--stop")
    trio.start()
    assert xul_answer(trio) == "XREMain::XRE_mainRun() (in xul.pdb)"
    assert symbol_store.count(XUL_PATH) == 1


@pytest.mark.parametrize("damage", ["truncate", "foreign", "old-version", "empty"])
def test_damaged_cache_file_is_deleted_and_refetched(make_trio, symbol_store, damage):
    symbol_store.reset()
    trio = make_trio([symbol_store.url("plain")])
    assert xul_answer(trio) == "XREMain::XRE_mainRun() (in xul.pdb)"
    assert trio.wait_for_file(XUL_TABLE)  # (built after the answer)
    trio.quickstart("--stop")
    [table] = [trio.cache_dir / name for name in trio.cache_files()]
    data = table.read_bytes()
    if damage == "truncate":
        table.write_bytes(data[: len(data) // 2])
    elif damage == "foreign":
        table.write_bytes(b"this is not a table" * 10)
    elif damage == "old-version":
        table.write_bytes(data[:8] + (0).to_bytes(4, "little") + data[12:])
    else:
        table.write_bytes(b"")
    stray = trio.cache_dir / "notes.txt"
    stray.write_text("not ours")
    trio.start()
    assert not stray.exists()
    assert trio.cache_files() == []  # the damaged table was deleted at start
    assert xul_answer(trio) == "XREMain::XRE_mainRun() (in xul.pdb)"
    assert symbol_store.count(XUL_PATH) == 2


# -- concurrency ---------------------------------------------------------------------------------


def test_concurrent_requests_cause_one_download(make_trio, symbol_store):
    symbol_store.reset()
    trio = make_trio([symbol_store.url("slow/1000")])
    answers: list[str] = []

    def ask() -> None:
        import requests
        body = {"stacks": [[[0, 11723767]]], "memoryMap": [XUL], "version": 4}
        response = requests.post(trio.url("DiskCache"), json=body, timeout=60)
        answers.append(response.json()["symbolicatedStacks"][0][0])

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == ["XREMain::XRE_mainRun() (in xul.pdb)"] * 20
    assert symbol_store.count("/slow/1000/" + XUL_PATH) == 1


def test_a_freed_download_slot_goes_to_the_job_with_the_most_addresses():
    """DownloadSlots: first come first served only among equals; a waiter that gives up
    (its request's timeout) is skipped, and a slot handed to one just as it gave up is
    passed on, never lost."""
    import asyncio

    from diskcache.fetcher import DownloadSlots

    async def scenario() -> list[str]:
        slots = DownloadSlots(1)
        order: list[str] = []
        await slots.acquire(1)  # the slot is taken

        async def download(name: str, addresses: int) -> None:
            await slots.acquire(addresses)
            order.append(name)
            await asyncio.sleep(0.01)
            slots.release()

        tasks = [asyncio.create_task(download(name, addresses))
                 for name, addresses in [("small", 1), ("none", 0), ("xul", 3000), ("small2", 1), ("mid", 150)]]
        gives_up = asyncio.create_task(asyncio.wait_for(slots.acquire(10_000), 0.05))
        while slots.waiting < 6:
            await asyncio.sleep(0.001)
        with pytest.raises(asyncio.TimeoutError):
            await gives_up
        assert slots.waiting == 5  # the one that gave up left the queue
        slots.release()
        await asyncio.gather(*tasks)
        await slots.acquire(0)  # every slot came back: this one is free at once
        return order

    assert asyncio.run(scenario()) == ["xul", "mid", "small", "small2", "none"]


def test_one_watchdog_fires_each_download_at_its_deadline(monkeypatch):
    """Deadlines out of order each fire on time; a download finished before its deadline is
    never fired, and the finished ones are dropped from the watchdog's list as it grows."""
    from diskcache import fetcher

    monkeypatch.setattr(fetcher, "WATCHDOG_COMPACT_AT", 8)
    watchdog = fetcher._Watchdog()
    now = time.monotonic()
    late, early, finished = fetcher._Watch(), fetcher._Watch(), fetcher._Watch()
    watchdog.watch(now + 0.6, late)
    watchdog.watch(now + 0.1, early)  # earlier than the one the thread sleeps for
    watchdog.watch(now + 0.2, finished)
    finished.finish()
    time.sleep(0.35)
    assert (early.fired, finished.fired, late.fired) == (True, False, False)
    time.sleep(0.5)
    assert late.fired
    for _ in range(20):
        done = fetcher._Watch()
        watchdog.watch(time.monotonic() + 60, done)
        done.finish()
    assert len(watchdog._due) <= 8


def test_big_jobs_download_first_when_the_store_slots_are_taken(make_trio, symbol_store, store_root):
    """Through a real DiskCache with one download slot and a slow store: a module asked for
    with 60 addresses is downloaded before one asked for earlier with 1."""
    import requests

    symbol_store.reset()
    modules = [make_module(store_root, f"slots{n}.so", 200, seed=900 + n) for n in range(3)]
    trio = make_trio([symbol_store.url("slow/700")], {"DiskCache": {"downloadsPerStore": 1}})

    known: list[bool] = []

    def ask(module: list[str], addresses: int) -> None:
        body = {"stacks": [[[0, 0x1000 + 16 * i] for i in range(addresses)]], "memoryMap": [module], "version": 4}
        known.extend(requests.post(trio.url("DiskCache"), json=body, timeout=60).json()["knownModules"])

    threads = []
    for (module, _), addresses in zip(modules, [1, 1, 60]):
        threads.append(threading.Thread(target=ask, args=(module, addresses)))
        threads[-1].start()
        time.sleep(0.2)  # the first holds the slot; the second, then the third, wait for it
    for thread in threads:
        thread.join()
    assert known == [True, True, True]
    fetched = [path.split("/")[3] for path in symbol_store.requests if path.startswith("/slow/700/slots")]
    assert fetched == ["slots0.so", "slots2.so", "slots1.so"]


def test_cached_modules_answer_while_another_is_downloading(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("drip/200")])
    # warm xul through the slow store, then ask for ntdll (slow) and xul (cached) at once
    assert xul_answer(trio) == "XREMain::XRE_mainRun() (in xul.pdb)"
    import requests
    import time
    slow = threading.Thread(target=lambda: requests.post(trio.url("DiskCache"), timeout=60, json={
        "stacks": [[[0, 65802]]], "version": 4,
        "memoryMap": [["wntdll.pdb", "D74F79EB1F8D4A45ABCD2F476CCABACC2"]]}))
    slow.start()
    time.sleep(0.3)
    started = time.monotonic()
    assert xul_answer(trio) == "XREMain::XRE_mainRun() (in xul.pdb)"
    assert time.monotonic() - started < 0.5
    slow.join()


# -- raw files --------------------------------------------------------------------------------


def test_cache_add_raw_keeps_the_decoded_bytes_and_still_answers(make_trio, symbol_store, store_root):
    symbol_store.reset()
    trio = make_trio([symbol_store.url("gzip")])
    debug = {"debug": True, "libName": XUL[0], "breakpadId": XUL[1]}
    path = trio.post(dict(debug, action="cacheAddRaw"), server="DiskCache").json()["path"]
    assert path is not None and Path(path).parent == trio.cache_dir
    assert Path(path).read_bytes() == (store_root / XUL_PATH).read_bytes()
    assert symbol_store.count(XUL_PATH) == 1
    assert xul_answer(trio) == "XREMain::XRE_mainRun() (in xul.pdb)"
    assert symbol_store.count(XUL_PATH) == 1  # processed from the raw file, not downloaded again



def test_slow_downloads_log_their_progress(make_trio, symbol_store, store_root):
    module, offset = make_module(store_root, "progress.so", 500, seed=42)  # ~45 KB at 256 B / 40 ms
    trio = make_trio([symbol_store.url("drip/40")])
    body = {"stacks": [[[0, offset]]], "memoryMap": [module], "version": 4}
    assert trio.post(body, server="DiskCache").json()["knownModules"] == [True]
    log = (trio.workdir / "DiskCache.log").read_text()
    progress = [line for line in log.splitlines() if "downloading" in line and "so far" in line]
    assert 1 <= len(progress) <= 2  # at most one line per 5 s
    assert "MB/s" in progress[0] and "progress.so" in progress[0]


def test_open_tables_stay_bounded_however_many_modules_are_fetched(tmp_path, store_root, symbol_store):
    """Freshly processed tables count toward the cap on open tables too."""
    import asyncio

    from diskcache import provider as provider_module
    from symcommon.config import load_config
    from symcommon.modules import ModuleId

    modules = [make_module(store_root, f"bounded{i}.so", 20, seed=100 + i)[0] for i in range(5)]
    section = load_config(overrides={"DiskCache": {"cachePath": str(tmp_path / "cache"), "answerBeforeTable": False,
                                                   "symbolURLs": [symbol_store.url("plain")]}})["DiskCache"]
    original = provider_module.OPEN_TABLES
    provider_module.OPEN_TABLES = 2
    try:
        provider = provider_module.SymbolProvider(section)
        provider.start()

        async def fetch_all() -> None:
            for name, debug_id in modules:
                assert await provider.table(ModuleId.parse(name, debug_id)) is not None
            await provider.close()

        asyncio.run(fetch_all())
        assert len(provider._open) == 2
        assert list(provider._open) == [ModuleId.parse(*m) for m in modules[-2:]]
    finally:
        provider_module.OPEN_TABLES = original


def test_a_dead_parsing_worker_is_replaced(make_trio, symbol_store, store_root):
    """The worker processes start with the DiskCache; one that dies is replaced on next use."""
    import psutil

    symbol_store.reset()
    trio = make_trio([symbol_store.url("plain")], {"DiskCache": {"processWorkers": 1}})
    workers = parsing_workers(trio.pid("DiskCache"))
    assert len(workers) == 1  # processWorkers, started before any module was asked for
    workers[0].kill()
    psutil.wait_procs(workers, timeout=0.5)  # a zombie until the DiskCache notices
    module, offset = make_module(store_root, "afterdeath.so", 50, seed=7)
    body = {"stacks": [[[0, offset]]], "memoryMap": [module], "version": 4}
    assert trio.post(body, server="DiskCache").json()["symbolicatedStacks"][0][0].startswith("sym_")
    replacements = parsing_workers(trio.pid("DiskCache"))  # (and maybe an extra one, for answers)
    assert replacements and workers[0].pid not in {replacement.pid for replacement in replacements}


# -- processing while downloading ----------------------------------------------------------------


def generated_module(store_root: Path, name: str, size_mb: float, seed: int) -> tuple[list[str], Any, list[int]]:
    """A generated module in the store, its reference answers, and offsets of functions from
    all over it (the first and the last parts of the file among them)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from gen_symfile import generate
    from reference_rule import ReferenceModule

    debug_id = f"{random.Random(seed).getrandbits(128):032X}1"
    path = store_root / name / debug_id / f"{name}.sym"
    path.parent.mkdir(parents=True, exist_ok=True)
    stats = generate(path, size_mb, seed=seed, debug_file=name, debug_id=debug_id, code_file=name + ".dll")
    end = 0x1000 + stats["funcs"] * 0x1C0
    rng = random.Random(seed)
    offsets = sorted([rng.randrange(0x1000, end // 10) for _ in range(20)] +
                     [rng.randrange(end * 9 // 10, end) for _ in range(20)])
    return [name, debug_id], ReferenceModule.from_bytes(path.read_bytes()), offsets


def v5_functions(trio, module: list[str], offsets: list[int]) -> list[str | None]:
    body = {"memoryMap": [module], "stacks": [[[0, offset] for offset in offsets]]}
    frames = trio.post(body, path="/symbolicate/v5", server="DiskCache").json()["results"][0]["stacks"][0]
    return [frame.get("function") for frame in frames]


def test_a_download_cut_off_and_started_again_is_processed_whole(make_trio, symbol_store, store_root):
    """The worker parses the first attempt as it arrives; it stops halfway (and its bytes are
    not the file's), so that work is dropped and the second, complete download is processed."""
    module, reference, offsets = generated_module(store_root, "cutoff.so", 1.5, seed=21)
    symbol_store.reset()
    trio = make_trio([symbol_store.url("cutoff/1")], {"DiskCache": {"retries": 1, "retryDelayMs": 1}})
    expected = [(reference.lookup(offset) or {}).get("function") for offset in offsets]
    assert any(expected)
    assert v5_functions(trio, module, offsets) == expected
    assert symbol_store.count(f"/cutoff/1/cutoff.so/{module[1]}/cutoff.so.sym") == 2
    assert trio.wait_for_file(f"{module[1]}.cutoff.so.symtab")  # (built after the answer)
    assert trio.cache_files() == [f"{module[1]}.cutoff.so.symtab"]
    assert list((trio.cache_dir / ".tmp").iterdir()) == []  # nothing of the dropped work is left


def test_processing_starts_while_the_download_is_still_arriving(make_trio, symbol_store, store_root):
    module, reference, offsets = generated_module(store_root, "dripped.so", 0.15, seed=22)
    symbol_store.reset()
    # (with answerBeforeTable, a worker answers from the download as it arrives instead)
    trio = make_trio([symbol_store.url("drip/1")], {"DiskCache": {"answerBeforeTable": False}})
    tmp = trio.cache_dir / ".tmp"
    overlapped, finished = threading.Event(), threading.Event()

    def watch() -> None:
        while not finished.is_set() and not overlapped.is_set():
            names = [p.name for p in tmp.iterdir()] if tmp.exists() else []
            if any(n.endswith(".download") for n in names) and any(n.endswith(".table") for n in names):
                overlapped.set()
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        answer = v5_functions(trio, module, offsets)
    finally:
        finished.set()
        watcher.join()
    assert overlapped.is_set(), "the table was not being written while the download arrived"
    assert answer == [(reference.lookup(offset) or {}).get("function") for offset in offsets]


def test_a_slow_download_being_followed_does_not_hold_up_other_modules(make_trio, symbol_store, store_root):
    """The only worker follows a dripping download; a module that arrives whole meanwhile is
    processed by an extra worker instead of waiting for that download to end."""
    slow, _, slow_offsets = generated_module(store_root, "dripslow.so", 0.4, seed=23)
    quick, reference, offsets = generated_module(store_root, "quick.so", 0.1, seed=24)
    symbol_store.reset()
    trio = make_trio([symbol_store.url("drip/2")], {"DiskCache": {"processWorkers": 1, "answerBeforeTable": False}})
    tmp = trio.cache_dir / ".tmp"
    slow_answer: list = []
    asker = threading.Thread(target=lambda: slow_answer.append(v5_functions(trio, slow, slow_offsets[:3])))
    asker.start()
    try:
        deadline = time.monotonic() + 30
        while not any(p.name.endswith(".table") for p in tmp.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.01)  # the worker is following the slow download
        # quick.so drips too, but is four times smaller: it arrives whole while the other drips
        quick_functions = v5_functions(trio, quick, offsets)
        assert asker.is_alive(), "the slow download ended first; the test proves nothing"
    finally:
        asker.join()
    assert quick_functions == [(reference.lookup(offset) or {}).get("function") for offset in offsets]
    assert slow_answer and any(slow_answer[0])


def test_a_worker_whose_memory_stays_high_is_replaced_after_its_file(tmp_path):
    """Workers do not keep a fragmented heap forever: one above the limit after a file is
    replaced by a fresh process (here the limit is 1 MB, so every file retires its worker)."""
    import asyncio

    from diskcache.processing import Processor

    source = tmp_path / "a.sym"
    source.write_text("MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 a.so\nFUNC 1000 10 0 f\n")
    processor = Processor(1, retire_mb=1)
    try:
        processor.warm_up()
        first = processor._started[0]

        async def process_twice() -> list:
            return [await processor.process(source, tmp_path / f"t{i}.symtab") for i in range(2)]

        stats = asyncio.run(process_twice())
        assert [s.funcs for s in stats] == [1, 1]
        assert not first.alive() and len(processor._started) == 1 and processor._started[0] is not first
    finally:
        processor.shutdown()


def test_extra_workers_are_kept_for_the_next_file_not_started_per_file(tmp_path):
    """While the only worker follows a download, complete files get an extra worker; a burst
    of them is served by one extra process, not a process started (and its imports paid,
    about 50 ms of CPU) per file."""
    import asyncio

    import psutil

    from diskcache.processing import DownloadAbandoned, Processor

    source = tmp_path / "a.sym"
    source.write_text("MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 a.so\nFUNC 1000 10 0 f\n")
    download, marker = tmp_path / "slow.download", tmp_path / "slow.download.end"
    download.write_bytes(b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 slow.so\n")
    processor = Processor(1)
    seen: set[int] = set()

    def workers_now() -> set[int]:
        return {child.pid for child in psutil.Process().children()
                if "diskcache.worker" in " ".join(child.cmdline())}

    async def burst() -> None:
        following = processor.follow(download, marker, tmp_path / "slow.symtab", 60)
        assert following is not None
        for number in range(4):
            stats = await processor.process(source, tmp_path / f"t{number}.symtab")
            assert stats.funcs == 1
            alive = workers_now()
            assert len(alive) == 2, f"after file {number}: {len(alive)} worker processes alive"
            seen.update(alive)
        marker.write_text("fail")
        with pytest.raises(DownloadAbandoned):
            await following

    try:
        processor.warm_up()
        seen.update(workers_now())
        asyncio.run(burst())
        assert len(seen) == 2, f"worker processes started: {len(seen)}"
    finally:
        processor.shutdown()


SMALL_SYM = "MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 a.so\nFUNC 1000 10 0 f\n"


def test_a_burst_of_short_answers_waits_for_the_workers_there_are(tmp_path):
    """Answers that find every worker busy with other short answers queue for them: starting
    a process costs more CPU than several such answers (a fresh profile is a burst of them)."""
    import asyncio

    from diskcache.processing import Processor

    source = tmp_path / "a.sym"
    source.write_text(SMALL_SYM)
    processor = Processor(1)

    async def burst() -> list:
        return await asyncio.gather(*(processor.answer(source, [0x1004]) for _ in range(8)))

    try:
        processor.warm_up()
        answers = asyncio.run(burst())
        assert [answer.frames[0x1004].function for answer in answers] == ["f"] * 8
        assert len(processor._started) == 1, f"{len(processor._started)} worker processes started"
    finally:
        processor.shutdown()


@pytest.mark.parametrize("tied_up_by", ["a table", "a long answer"])
def test_an_answer_does_not_wait_behind_a_worker_tied_up(tmp_path, tied_up_by):
    """The only worker follows a download that does not end, writing its table or answering
    from it; an answer for a complete file meanwhile gets an extra worker (after
    LONG_ANSWER_SECONDS behind an answer) instead of waiting for that download."""
    import asyncio

    from diskcache.processing import LONG_ANSWER_SECONDS, DownloadAbandoned, Processor

    source = tmp_path / "a.sym"
    source.write_text(SMALL_SYM)
    download, marker = tmp_path / "slow.download", tmp_path / "slow.download.end"
    download.write_bytes(b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 slow.so\n")
    processor = Processor(1)

    async def meanwhile() -> float:
        if tied_up_by == "a table":
            stuck = processor.follow(download, marker, tmp_path / "slow.symtab", 60)
            assert stuck is not None
        else:
            stuck = asyncio.ensure_future(processor.answer(download, [0x1004], follow=marker, timeout_seconds=60))
        await asyncio.sleep(0.2)  # the worker has taken it
        started = time.monotonic()
        answer = await asyncio.wait_for(processor.answer(source, [0x1004]), 30)
        waited = time.monotonic() - started
        assert answer.frames[0x1004].function == "f"
        assert not stuck.done(), "the download ended first; the test proves nothing"
        marker.write_text("fail")
        with pytest.raises(DownloadAbandoned):
            await stuck
        return waited

    try:
        processor.warm_up()
        waited = asyncio.run(meanwhile())
        assert len(processor._started) == 2  # the worker, and an extra one for the answer
        assert waited < LONG_ANSWER_SECONDS + 10, f"the answer waited {waited:.1f}s"
    finally:
        processor.shutdown()


def test_a_followed_download_gets_its_table_file_only_once_bytes_arrive(tmp_path):
    """A worker following a download creates the table only when the first bytes are there:
    a download that never starts (a 404, a store down) leaves no table file behind, and a
    table being written means the download has begun."""
    import asyncio

    from diskcache.processing import DownloadAbandoned, Processor

    text = b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 a.so\nFUNC 1000 10 0 f\n"
    processor = Processor(1)

    async def follow(name: str, data: bytes | None) -> object:
        download, marker = tmp_path / f"{name}.download", tmp_path / f"{name}.download.end"
        following = processor.follow(download, marker, tmp_path / f"{name}.table", 60)
        assert following is not None
        await asyncio.sleep(0.5)
        assert not (tmp_path / f"{name}.table").exists(), "table created before any byte arrived"
        if data is not None:
            download.write_bytes(data)
            marker.write_text(f"ok {len(data)}")
        else:
            marker.write_text("fail")
        return await following

    try:
        processor.warm_up()
        assert asyncio.run(follow("found", text)).funcs == 1
        assert (tmp_path / "found.table").exists()
        with pytest.raises(DownloadAbandoned):
            asyncio.run(follow("missing", None))
        assert not (tmp_path / "missing.table").exists()
    finally:
        processor.shutdown()


def test_a_followed_download_waits_for_a_whole_end_marker(tmp_path):
    """The end marker may be seen while it is being written (empty): that is not a failure."""
    from diskcache.worker import DownloadAbandoned, FollowingReader

    source, marker = tmp_path / "x.download", tmp_path / "x.download.end"
    source.write_bytes(b"MODULE data\n")
    marker.write_text("")
    reader = FollowingReader(source, marker, timeout_seconds=10)
    assert reader.read(1 << 20) == b"MODULE data\n"
    threading.Timer(0.1, lambda: marker.write_text("ok 12")).start()
    assert reader.read(1 << 20) == b""  # waited for the marker, then the end
    reader.close()
    marker.write_text("fail")
    with pytest.raises(DownloadAbandoned):
        FollowingReader(tmp_path / "never.download", marker, timeout_seconds=10).read(10)


def test_a_worker_that_answers_imports_only_what_answering_needs():
    """A worker is started in the middle of a burst of cold requests (an extra one, or one
    replacing a worker that retired): what it imports is paid then.  The LRU, logging, the
    thread pool and tempfile (the table writer's) are not needed to answer from a .sym."""
    import subprocess
    import sys

    heavy = ("diskcache.lru", "logging", "concurrent.futures", "tempfile", "asyncio", "tornado")
    probe = ("import sys, diskcache.worker, diskcache.rawlookup; "
             f"print(' '.join(name for name in {heavy!r} if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parent.parent, check=True)
    assert result.stdout.split() == []
