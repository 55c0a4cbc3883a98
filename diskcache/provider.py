"""Where symbols come from: the processed cache, local symbol dirs, then the symbol stores.

Each module is fetched and processed at most once at a time: concurrent requests for it
wait on the same task.  A module found nowhere is remembered as missing for
``missingModuleTTLSeconds`` so a burst of requests does not refetch it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

from diskcache.fetcher import DownloadSlots, FetchResult, SymbolFetcher
from diskcache.cachefiles import discard, open_new
from diskcache.lru import LOCAL, RAW, TABLE, CacheEntry, DiskLRU
from diskcache.processing import NeedsTable, ProcessingError, Processor, RawAnswer, SourceMissing
from diskcache.symfile import ModuleMismatch, NotASymbolFile, ProcessStats
from diskcache.tableformat import TableFormatError
from diskcache.tablereader import ByteLRU, SymbolTable, check_table_file
from symcommon.config import per_core
from symcommon.logs import printable
from symcommon.metrics import Metrics
from symcommon.modules import ModuleId
from symcommon.recentframes import RecentFrames
from symcommon.requests import Job
from symcommon.responses import JobAnswers, ModuleAnswer, rendered_frame, used_modules as _used_modules

log = logging.getLogger("diskcache.provider")

OPEN_TABLES = 256
LOCAL_TABLES = 64
MISSING_LIMIT = 10_000
INLINE_LOOKUP_LIMIT = 32  # more uncached frames than this are looked up off the event loop
#: Lookup results kept in memory, keyed by (table token, offset): a table replaced by a newer
#: one (a rebuilt local file, a refetch) gets a new token, so nothing stale is ever answered.
RECENT_FRAMES = 50_000
MB = 1024 * 1024
TABLE_CACHE_MB = 128
DRAIN_MARGIN_SECONDS = 2.0  # downloads end this long before the drain does
#: A worker following a download for its table goes on at this lower priority once the module
#: is answered from its RAW entry instead (a ``cacheGet`` fetch; see _fetch_table).
BUILD_NICE = 10
#: A background build waits at most this long for a quiet moment (no module being fetched or
#: answered from its .sym) to run at idle priority; then it runs at normal priority anyway.
BUILD_DEFER_SECONDS = 10.0
#: A quiet moment must last this long for the builds waiting for it to start: a client's
#: next request often follows its last answer by tens of milliseconds (the profiler keeps 3
#: or 4 in flight), and builds started in such a gap take the workers the next answers
#: then need, so that extra workers are started for them (40 ms of CPU each).
QUIET_SETTLE_SECONDS = 0.25
#: A job with more offsets than this waits for its module's table rather than being answered
#: from the .sym (each 20,000 FUNC blocks it lands in cost another pass over the names).
RAW_ANSWER_MAX_OFFSETS = 20_000
#: How often a download is looked at, to start answering from it once it is big enough.
ARRIVING_POLL_SECONDS = 0.01


class RawSource:
    """A module answered from its complete .sym file (``kind`` RAW: the cache's copy; LOCAL:
    a file in ``localSymbolDirs``, with its ``identity``) while its table is being built."""

    def __init__(self, path: Path, kind: str, identity: dict[str, Any] | None = None) -> None:
        self.path = path
        self.kind = kind
        self.identity = identity
        #: the offsets of the job whose download this was, answered while it arrived
        self.early: tuple[list[int], RawAnswer] | None = None


class FetchBudget:
    """How many more modules one request may cause to be fetched from the symbol stores."""

    def __init__(self, limit: int) -> None:
        self.left = limit
        self.counted: set[ModuleId] = set()
        self.deferred = 0


class SymbolProvider:
    """Finds (fetching and processing when needed) the table for a module."""

    def __init__(self, section: dict[str, Any], metrics: Metrics | None = None) -> None:
        self.lru = DiskLRU(Path(section["cachePath"]), section["maxSizeMB"] * MB,
                           on_evict=self._forget_open)
        self.local_dirs = [Path(d) for d in section["localSymbolDirs"]]
        self.fetcher = SymbolFetcher(section["symbolURLs"], section["retries"],
                                     section["retryDelayMs"], section["downloadTimeoutSeconds"],
                                     section["maxSymbolFileMB"] * MB)
        self.processor = Processor(per_core(section["processWorkers"]))
        #: Fetches and answers from .sym files in flight: background builds wait until there
        #: are none (see _until_quiet), unless a request waits for that table (``_urgent``).
        self._cold_work = 0
        self._urgent: set[ModuleId] = set()
        #: Set (and replaced) when the cold work ends or a build becomes urgent: the waiting
        #: builds wake then, instead of each polling (a hundred of them after a fresh profile).
        self._builds_may_start = asyncio.Event()
        #: Cold modules at least this big are answered from the .sym first (None: never).
        self.answer_first_bytes: int | None = (section["answerBeforeTableMB"] * MB
                                               if section["answerBeforeTable"] else None)
        self._background: set[asyncio.Future] = set()
        self.missing_ttl = section["missingModuleTTLSeconds"]
        self.max_fetches = section["maxFetchesPerRequest"]
        self.max_answer_bytes = section["maxAnswerMB"] * MB
        # Opening tables, lookups and the heartbeat: never used by downloads, which have their
        # own threads, at most ``downloadsPerStore`` per store, so slow stores starve nothing.
        self.threads = ThreadPoolExecutor(8, thread_name_prefix="diskcache-io")
        self._store_slots = {url: DownloadSlots(section["downloadsPerStore"])
                             for url in section["symbolURLs"]}
        self._open: OrderedDict[ModuleId, SymbolTable] = OrderedDict()
        # open tables of local files, with the identity (path, size, mtime_ns) of the file
        # they were made from (table None: the file is another module's symbols)
        self._local: OrderedDict[ModuleId, tuple[dict[str, Any], SymbolTable | None]] = OrderedDict()
        self._missing: dict[ModuleId, float] = {}
        self._inflight: dict[Any, asyncio.Future] = {}
        self._loads: dict[ModuleId, dict[str, Any]] = {}
        self._recent = RecentFrames(RECENT_FRAMES, 24 * 3600)
        #: Every open table's inflated pages, parsed FUNC blocks and names, bounded in bytes.
        self.table_cache = ByteLRU(TABLE_CACHE_MB * MB)
        self.metrics = metrics or Metrics("diskcache")
        self._count_metrics(self.metrics)

    def _count_metrics(self, metrics: Metrics) -> None:
        self._warm_requests = metrics.counter(
            "warm_lane_requests", "Requests answered whole from the recent-frames cache by the warm lane")
        self._tables = metrics.counter("table_requests", "Tables asked for, by where they came from",
                                       ["source"])
        self._downloads = metrics.counter("downloads", "Symbol file downloads, by result", ["result"])
        self._download_bytes = metrics.counter("download_bytes", "Bytes downloaded (decoded)")
        self._download_seconds = metrics.histogram("download_seconds", "Time to download a symbol file")
        self._download_failures = metrics.counter("download_failures", "Failed download attempts",
                                                  ["reason"])
        self._processing_seconds = metrics.histogram("processing_seconds", "Time to process a symbol file")
        self._processing_failures = metrics.counter("processing_failures", "Symbol files that could not "
                                                    "be processed")
        self._raw_answers = metrics.counter("raw_answers", "Jobs' modules answered from the .sym file before "
                                            "its table was built, by result", ["result"])
        self._raw_answer_seconds = metrics.histogram("raw_answer_seconds", "Time to answer a job's offsets "
                                                     "from a .sym file")
        self._background_builds = metrics.counter("background_builds", "Tables built in the background "
                                                  "after answering from the .sym, by result", ["result"])
        metrics.gauge("background_builds_in_flight", "Tables being built (or waiting to be) in the "
                      "background", lambda: len(self._background))
        metrics.gauge("cache_bytes", "Bytes in the on-disk cache", lambda: self.lru.total_bytes)
        metrics.gauge("cache_files", "Files in the on-disk cache", lambda: len(self.lru))
        metrics.gauge("cache_max_bytes", "The cache's size limit (maxSizeMB)", lambda: self.lru.max_bytes)
        metrics.gauge("cache_evictions", "Files evicted to stay under maxSizeMB since start",
                      lambda: self.lru.evictions)

    def start(self) -> None:
        self.lru.load(_is_valid_table)
        self.processor.warm_up()

    def drain(self, seconds: float) -> None:
        """Shutting down: downloads still running shortly before the drain ends are aborted,
        so the requests waiting for them are answered (unknown) and the process exits in time."""
        timer = threading.Timer(max(seconds - DRAIN_MARGIN_SECONDS, 0), self.fetcher.abort_all)
        timer.daemon = True
        timer.start()

    async def close(self) -> None:
        self.fetcher.abort_all()  # downloads in flight end now; their threads are daemons anyway
        self.processor.shutdown()
        self.threads.shutdown(wait=False, cancel_futures=True)

    # -- finding a table ------------------------------------------------------------------

    async def table(self, module: ModuleId, offsets: list[int] | None = None) -> SymbolTable | RawSource | None:
        """The module's table, or None if its symbols cannot be found or processed; or, for a
        big cold module (``answerBeforeTableMB``), its .sym file to answer from while the
        table is built in the background.  ``offsets``: the caller's, which a download this
        causes may answer while it arrives (``RawSource.early``)."""
        table = self._cached_table(module)
        if table is not None:
            self._tables.labels("cache").inc()
            return table
        self._tables.labels("loaded").inc()
        if self.lru.contains(module, RAW):
            raw = self._raw_source(module)
            if raw is not None:
                return raw
            return await self._once(("raw-to-table", module), lambda: self._process_raw(module))
        local = self._local_file(module)
        if local is not None:
            return await self._once(("local", local), lambda: self._load_local(local, module))
        deadline = self._missing.get(module)
        if deadline is not None:
            if time.monotonic() < deadline:
                return None
            del self._missing[module]
        return await self._once(("fetch", module), lambda: self._cold_work_of(self._fetch_table(module, offsets)))

    def _cached_table(self, module: ModuleId) -> SymbolTable | None:
        entry = self.lru.get(module, TABLE)
        if entry is None:
            return None
        table = self._open.get(module)
        if table is not None:
            self._open.move_to_end(module)
            return table
        try:
            table = SymbolTable.open(entry.path, self.table_cache)
        except (OSError, TableFormatError) as error:
            log.warning("cached table %s is unusable (%s); fetching it again",
                        printable(entry.path.name), error)
            self.lru.remove(module, TABLE)
            return None
        self._keep_open(module, table)
        return table

    def _keep_open(self, module: ModuleId, table: SymbolTable) -> None:
        """Remember an open table; the least recently used beyond OPEN_TABLES are let go."""
        self._open[module] = table
        self._open.move_to_end(module)
        if len(self._open) > OPEN_TABLES:
            self._open.popitem(last=False)[1].release_caches()

    def _forget_open(self, entry: CacheEntry) -> None:
        if entry.kind == TABLE:
            table = self._open.pop(entry.module, None)
            if table is not None:
                table.release_caches()
        elif entry.kind == LOCAL:
            known = self._local.pop(entry.module, None)
            if known is not None and known[1] is not None:
                known[1].release_caches()

    async def _once(self, key: Any, make: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``make`` once for concurrent callers with the same key; all get its result.

        Every load goes through here, so this is where a failure nobody foresaw (a disk
        error, a bug) becomes what the protocol promises: the module is unknown, logged.
        """
        future = self._inflight.get(key)
        if future is None:

            async def guarded() -> Any:
                try:
                    return await make()
                except Exception:  # noqa: BLE001
                    log.exception("loading %s failed; answering as unknown", printable(key))
                    return None

            future = asyncio.ensure_future(guarded())
            self._inflight[key] = future
            future.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(future)  # a client hanging up does not cancel the load

    def _local_file(self, module: ModuleId) -> Path | None:
        for directory in self.local_dirs:
            path = directory / module.debug_file / module.debug_id / module.sym_file_name
            if path.is_file():
                return path
        return None

    async def _load_local(self, path: Path, module: ModuleId) -> SymbolTable | None:
        """A local file's table.  It is kept in the on-disk cache (kind LOCAL, counted in
        ``maxSizeMB``) with the path, size and mtime of the file it was made from: reused
        while the file still has them, after a restart too; a rebuilt file is processed again
        at once.  The cache file's name comes from the module id only, like every other."""
        try:
            stat = path.stat()
        except OSError:
            return None
        identity = {"path": os.fspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        known = self._local.get(module)
        if known is not None and known[0] == identity:
            self._local.move_to_end(module)
            return known[1]
        table = await self._cached_local(module, identity)
        if table is None and self._answers_first(stat.st_size):
            self._in_background(("local-build", path), lambda: self._build_local(path, module))
            return RawSource(path, LOCAL, identity)
        if table is None:
            try:
                table = await self._process_to_table(path, module, keep=True, kind=LOCAL)
            except ModuleMismatch:  # remembered, so the unchanged file is not processed or logged again
                self.lru.remove(module, LOCAL)  # an older table of it is stale
                self._remember_local(module, identity, None)
                return None
            if table is not None:
                # the identity of the file as the worker opened it: if it changed since the
                # stat above, the next request sees a difference and processes it again
                identity = table.source or identity
        if table is not None:
            self._remember_local(module, identity, table)
        return table

    async def _build_local(self, path: Path, module: ModuleId) -> SymbolTable | None:
        """A local file's table, built in the background after answering from the file."""
        try:
            table = await self._process_to_table(path, module, keep=True, kind=LOCAL, builder=True)
        except ModuleMismatch:
            self.lru.remove(module, LOCAL)
            return None
        if table is not None and table.source is not None:
            self._remember_local(module, table.source, table)
        self._background_builds.labels("built" if table is not None else "failed").inc()
        return table

    async def _cached_local(self, module: ModuleId, identity: dict[str, Any]) -> SymbolTable | None:
        """The cached table of a local file, if it was made from the file as it is now."""
        entry = self.lru.get(module, LOCAL)
        if entry is None:
            return None
        loop = asyncio.get_running_loop()
        try:
            table = await loop.run_in_executor(self.threads, SymbolTable.open, entry.path, self.table_cache)
        except (OSError, TableFormatError) as error:
            log.warning("cached table %s is unusable (%s); processing the local file again",
                        printable(entry.path.name), error)
            self.lru.remove(module, LOCAL)
            return None
        if table.source != identity:  # the file was rebuilt: processing it replaces the entry
            table.release_caches()
            return None
        return table

    def _remember_local(self, module: ModuleId, identity: dict[str, Any], table: SymbolTable | None) -> None:
        """Keep a local file's table open; beyond LOCAL_TABLES the oldest are let go (their
        cached tables stay on disk and are opened again when asked for)."""
        old = self._local.pop(module, None)
        if old is not None and old[1] is not None and old[1] is not table:
            old[1].release_caches()
        self._local[module] = (identity, table)
        if len(self._local) > LOCAL_TABLES:
            dropped = self._local.popitem(last=False)[1][1]
            if dropped is not None:
                dropped.release_caches()

    async def _process_to_table(self, source: Path, module: ModuleId, keep: bool,
                                processing: Awaitable[ProcessStats] | None = None,
                                destination: Path | None = None, kind: str = TABLE,
                                builder: bool = False, keep_if: Callable[[], bool] | None = None
                                ) -> SymbolTable | None:
        """Process ``source``; ``keep`` adds the table to the cache (as ``kind``: LOCAL for a
        local file, whose identity the table then records), else it lives in memory only.
        ``builder``: a background build (the module is answered meanwhile), once the DiskCache
        is quiet, by a worker at idle priority (at normal priority if that wait ends otherwise:
        see _until_quiet);
        ``keep_if``: asked once the table is written, whether it is still wanted (else None).

        ``processing``: already under way (a followed download) and writing ``destination``.
        Raises :class:`ModuleMismatch` (logged here) if the file is another module's symbols.
        """
        idle = builder and await self._until_quiet(module)
        destination = destination or self.lru.temporary_path(module.cache_stem, "table")
        started = time.monotonic()
        try:
            stats = await (processing or self.processor.process(source, destination, module.debug_id,
                                                                record_source=kind == LOCAL, idle=idle))
            loop = asyncio.get_running_loop()
            if keep and keep_if is not None and not keep_if():
                discard(destination)
                return None
            if keep:
                entry = self.lru.add(module, kind, destination)
                table = await loop.run_in_executor(self.threads, SymbolTable.open, entry.path, self.table_cache)
                if kind == TABLE:
                    self._keep_open(module, table)
            else:  # stays mapped after the unlink below
                table = await loop.run_in_executor(self.threads, SymbolTable.open, destination, self.table_cache)
        except ModuleMismatch as error:
            log.warning("symbols for %s are another module's: %s; answering as unknown",
                        printable(module), printable(str(error)))
            raise
        except NotASymbolFile as error:
            log.warning("symbols for %s are not a symbol file: %s", printable(module), error)
            self._processing_failures.inc()
            return None
        except Exception as error:  # noqa: BLE001 - whatever went wrong, the module is unknown
            log.error("processing %s failed: %s: %s", printable(module), type(error).__name__, error)
            self._processing_failures.inc()
            return None
        finally:
            if not keep:
                discard(destination)
        seconds = time.monotonic() - started
        self._processing_seconds.observe(seconds)
        log.info("processed %s: %d bytes -> %d bytes (%d funcs, %d publics) in %.2fs",
                 printable(module), stats.input_bytes, stats.output_bytes, stats.funcs,
                 stats.publics, seconds)
        self._record_load(module, "processed", {"input_bytes": stats.input_bytes,
                                                 "output_bytes": stats.output_bytes,
                                                 "seconds": round(seconds, 4),
                                                 "answered_from": "table",
                                                 **({"built": "in the background"} if builder else {})})
        return table

    @contextlib.contextmanager
    def _counted_as_cold_work(self, counted: bool = True) -> Iterator[None]:
        """While inside (if ``counted``), background builds wait (see _until_quiet)."""
        self._cold_work += counted
        try:
            yield
        finally:
            self._cold_work -= counted
            if counted and not self._cold_work:
                self._wake_builds()

    def _wake_builds(self) -> None:
        """Let the builds in _until_quiet look again."""
        self._builds_may_start.set()
        self._builds_may_start = asyncio.Event()

    async def _cold_work_of(self, work: Awaitable[Any]) -> Any:
        """Await ``work``, counted as cold work."""
        with self._counted_as_cold_work():
            return await work

    async def _until_quiet(self, module: ModuleId) -> bool:
        """Wait until no module is being fetched or answered from its .sym (True), at most
        BUILD_DEFER_SECONDS, or until a request waits for this very table (``_urgent``).

        A burst of cold requests (a fresh profile: a hundred modules) is CPU-bound: a table
        built meanwhile would slow every answer and hold another worker's memory, while the
        module it is for is already answered from its .sym.  Under load that does not end,
        the table is built anyway (False): each request would otherwise scan the .sym again."""
        deadline = time.monotonic() + BUILD_DEFER_SECONDS
        while True:
            if module in self._urgent:
                return False
            if not self._cold_work:
                await asyncio.sleep(QUIET_SETTLE_SECONDS)
                if not self._cold_work:
                    return module not in self._urgent
                continue
            try:
                await asyncio.wait_for(self._builds_may_start.wait(), deadline - time.monotonic())
            except TimeoutError:
                return False

    def _record_load(self, module: ModuleId, what: str, figures: dict[str, Any]) -> None:
        """Remember the latest download/processing of a module, for ``Debug: true`` answers."""
        record = self._loads.setdefault(module, {})
        record[what] = dict(figures, module=str(module))
        record["finished"] = time.monotonic()
        if len(self._loads) > OPEN_TABLES:
            self._loads.pop(next(iter(self._loads)))

    async def _fetch_table(self, module: ModuleId, offsets: list[int] | None = None
                           ) -> SymbolTable | RawSource | None:
        """Download and process a module.

        With ``answerBeforeTable`` and ``offsets`` to answer, a worker answers them from the
        download while it arrives, once it has ``answerBeforeTableMB`` (``RawSource.early``);
        a complete download of at least ``answerBeforeTableMB`` becomes the module's RAW
        entry and a RawSource is returned, to answer from.  Its table is built afterwards in
        the background, once the burst of cold work is over (see _until_quiet), and then
        replaces the RAW entry.

        Otherwise (no offsets, as for ``cacheGet``; too many; the feature off), when a worker
        is idle it builds the table from the download as it arrives, so a big module costs
        about its download time instead of download plus processing; if the download fails
        or has to restart, that work is dropped.  If the module is answered from its RAW
        entry after all, that worker finishes the table in the background."""
        download = self.lru.temporary_path(module.cache_stem, "download")
        end_marker = download.with_name(download.name + ".end")
        destination = self.lru.temporary_path(module.cache_stem, "table")
        handed_over = False  # the download and its follower now belong to a background build
        watching: list[bool] = [False]  # [the early answer started]
        early = following = None
        if offsets and len(offsets) <= RAW_ANSWER_MAX_OFFSETS and self.answer_first_bytes is not None:
            early = asyncio.ensure_future(self._answer_arriving(module, download, end_marker, offsets, watching))
        else:
            following = self.processor.follow(download, end_marker, destination, self.fetcher.timeout,
                                              module.debug_id)
        try:
            result = await self._download(module, download, len(offsets or ()))
            usable = result is not None and not result.restarted
            if not _write_end_marker(end_marker, result.bytes if usable else None):
                if following is not None:
                    self.processor.abandon(destination)
                    usable = False
                if early is not None:  # a worker answering from the download waits for that marker
                    self.processor.abandon(end_marker)
            answered = None
            if early is not None and not watching[0]:  # the download ended before it was big enough
                early.cancel()
            elif early is not None:
                try:
                    answered = await early
                except Exception as error:  # noqa: BLE001 - the complete file is answered from instead
                    log.warning("answering %s while it arrived failed (%s: %s); asking another worker",
                                printable(module), type(error).__name__, printable(str(error)))
            if usable and self._answers_first(result.bytes):
                raw = self._keep_raw(module, download)
                if raw is not None:
                    if answered is not None:
                        raw.early = (offsets, answered)  # type: ignore[assignment]
                    if following is not None:
                        handed_over = True
                        self.processor.lower_priority(destination, BUILD_NICE)
                        self._in_background(("build", module), lambda: self._finish_followed(
                            module, following, download, end_marker, destination))
                    else:
                        self._in_background(("build", module), lambda: self._build_from_raw(module))
                    return raw
            if following is not None and usable:
                table = await self._process_to_table(download, module, keep=True,
                                                     processing=following, destination=destination)
            else:
                if following is not None:
                    await _settle(following)
                    discard(destination)
                if result is None:
                    return None
                table = await self._process_to_table(download, module, keep=True)
            if table is None:
                self._remember_missing(module)
            return table
        except ModuleMismatch:  # not this module's symbols: not found, and not fetched again soon
            self._remember_missing(module)
            return None
        finally:
            if early is not None and not early.done():
                if watching[0]:
                    await _settle(early)  # its worker reads the download and end marker until done
                else:
                    early.cancel()
            if not handed_over:
                discard(download)
                discard(end_marker)

    async def _answer_arriving(self, module: ModuleId, download: Path, end_marker: Path, offsets: list[int],
                               started: list[bool]) -> RawAnswer | None:
        """Answer ``offsets`` from a download while it arrives, once it is big enough to be
        answered first (None if it ends before: the complete file is answered from instead)."""
        threshold = self.answer_first_bytes or 0
        while True:
            if end_marker.exists():
                return None
            try:
                size = download.stat().st_size
            except FileNotFoundError:
                size = -1
            if size >= threshold:
                break
            await asyncio.sleep(ARRIVING_POLL_SECONDS)
        started[0] = True
        return await self.processor.answer(download, offsets, module.debug_id, follow=end_marker,
                                           timeout_seconds=self.fetcher.timeout)

    def _keep_raw(self, module: ModuleId, download: Path) -> RawSource | None:
        """Make a complete download the module's RAW entry, by a hard link renamed into place."""
        linked = self.lru.temporary_path(module.cache_stem, "raw")
        try:
            os.link(download, linked)
            entry = self.lru.add(module, RAW, linked)
        except OSError as error:
            discard(linked)
            log.warning("cannot keep the download of %s to answer from: %s", printable(module), error)
            return None
        return RawSource(entry.path, RAW)

    async def _finish_followed(self, module: ModuleId, following: Awaitable[ProcessStats], download: Path,
                               end_marker: Path, destination: Path) -> SymbolTable | None:
        """The table a worker has been building while the download arrived, finished in the
        background while the module is answered from its RAW entry; if that fails, it is
        built again from the RAW file."""
        try:
            table = await self._built_over_raw(module, self._process_to_table(
                download, module, keep=True, processing=following, destination=destination,
                keep_if=lambda: self.lru.contains(module, RAW)))
        finally:
            discard(download)
            discard(end_marker)
        if table is None and self.lru.contains(module, RAW):  # (not after a wrong module: RAW is gone)
            return await self._build_from_raw(module)
        return table

    async def _built_over_raw(self, module: ModuleId, building: Awaitable[SymbolTable | None]) -> SymbolTable | None:
        """Await the table of a module answered from its RAW entry; the TABLE entry then
        replaces the RAW one.  None if that failed (logged), or if the file is another
        module's symbols (the RAW entry is dropped, the module remembered as missing)."""
        try:
            table = await building
        except ModuleMismatch:
            self.lru.remove(module, RAW)
            self._remember_missing(module)
            self._background_builds.labels("wrong_module").inc()
            return None
        if table is not None:
            self.lru.remove(module, RAW)  # the table answers from now on
            self._background_builds.labels("built").inc()
        return table

    def _answers_first(self, size: int) -> bool:
        return self.answer_first_bytes is not None and size >= self.answer_first_bytes

    def _raw_source(self, module: ModuleId) -> RawSource | None:
        """The module's RAW file to answer from, with its table being built in the background;
        None when the table should be built first (a small file, or the feature off)."""
        entry = self.lru.get(module, RAW)
        if entry is None or not self._answers_first(entry.size):
            return None
        self._in_background(("build", module), lambda: self._build_from_raw(module))
        return RawSource(entry.path, RAW)

    def _in_background(self, key: Any, make: Callable[[], Awaitable[Any]]) -> None:
        """Start ``make`` (once per key at a time), not waited for by the request."""
        if key in self._inflight:
            return
        future = asyncio.ensure_future(self._once(key, make))
        self._background.add(future)
        future.add_done_callback(self._background.discard)

    async def _build_from_raw(self, module: ModuleId) -> SymbolTable | None:
        """Build the table of a module answered from its RAW file, in the background; then
        the TABLE entry replaces the RAW one."""
        entry = self.lru.get(module, RAW)
        if entry is None:
            return None
        table = await self._built_over_raw(module, self._process_to_table(
            entry.path, module, keep=True, builder=True, keep_if=lambda: self.lru.contains(module, RAW)))
        if table is None and self.lru.contains(module, RAW):
            self._background_builds.labels("failed").inc()  # (logged; the RAW entry still answers)
        return table

    async def _download(self, module: ModuleId, destination: Path, addresses: int = 0) -> Any:
        """``addresses``: how many the download is for (the more, the sooner it gets a slot)."""
        try:
            result = await self._fetch(module, destination, addresses)
        except OSError as error:
            log.error("cannot write the download of %s: %s", module, error)
            self._download_failures.labels("disk").inc()
            return None
        for reason in result.failure_reasons:
            self._download_failures.labels(reason).inc()
        self._downloads.labels("found" if result.found else "not_found").inc()
        if not result.found:
            log.info("symbols for %s not found (%s)", printable(module),
                     "; ".join(printable(e) for e in result.errors[-3:]) or "not in any store")
            self._remember_missing(module)
            return None
        self._download_bytes.inc(result.bytes)
        self._download_seconds.observe(result.seconds)
        self._record_load(module, "fetched", {"url": result.url, "bytes": result.bytes,
                                              "seconds": round(result.seconds, 4)})
        return result

    async def _fetch(self, module: ModuleId, destination: Path, addresses: int = 0) -> FetchResult:
        """Try the stores in order, each download in a thread of its own once the store has a
        free slot (see DownloadSlots); ``downloadTimeoutSeconds`` bounds the whole, waiting
        for a slot included."""
        result = FetchResult()
        started = time.monotonic()
        deadline = started + self.fetcher.timeout
        for base in self.fetcher.urls:
            slots = self._store_slots[base]
            try:
                await asyncio.wait_for(slots.acquire(addresses), max(deadline - time.monotonic(), 0.001))
            except asyncio.TimeoutError:
                result.errors.append(f"{base}: no free download slot within {self.fetcher.timeout:g}s")
                result.failure_reasons.append("timeout")
                break
            try:
                done = await _in_daemon_thread(self.fetcher.fetch_from, base, module, destination,
                                               deadline, result)
            finally:
                slots.release()
            if done:
                break
        result.seconds = time.monotonic() - started
        return result

    def _remember_missing(self, module: ModuleId) -> None:
        if self.missing_ttl <= 0:
            return
        now = time.monotonic()
        if len(self._missing) >= MISSING_LIMIT:  # clients choose the names: keep this bounded
            self._missing = {m: t for m, t in self._missing.items() if t > now}
            while len(self._missing) >= MISSING_LIMIT:
                self._missing.pop(next(iter(self._missing)))
        self._missing[module] = now + self.missing_ttl

    async def _process_raw(self, module: ModuleId) -> SymbolTable | None:
        entry = self.lru.get(module, RAW)
        if entry is None:
            return None
        try:
            return await self._process_to_table(entry.path, module, keep=True)
        except ModuleMismatch:
            return None

    # -- debug actions ----------------------------------------------------------------------

    async def add_raw(self, module: ModuleId) -> Path | None:
        """``cacheAddRaw``: evict, download again and keep the bytes exactly as received."""
        self.evict(module)

        async def fetch_raw() -> Path | None:
            download = self.lru.temporary_path(module.cache_stem, "download")
            try:
                if await self._download(module, download) is None:
                    return None
                return self.lru.add(module, RAW, download).path
            finally:
                discard(download)
        return await self._once(("raw", module), fetch_raw)

    async def cache_path(self, module: ModuleId) -> Path | None:
        """``cacheGet``: the cached file's path, fetching it first if needed."""
        for kind in (TABLE, RAW):
            entry = self.lru.get(module, kind)
            if entry is not None:
                return entry.path
        self._missing.pop(module, None)
        await self._once(("fetch", module), lambda: self._cold_work_of(self._fetch_table(module)))
        entry = self.lru.get(module, TABLE) or self.lru.get(module, RAW)  # (RAW: its table is being built)
        return entry.path if entry is not None else None

    def evict(self, module: ModuleId) -> bool:
        """``cacheEvict``: afterwards the cache holds nothing for the module."""
        for kind in (TABLE, RAW, LOCAL):
            self.lru.remove(module, kind)  # closes the open table too (on_evict)
        self._missing.pop(module, None)
        return not self.exists(module)

    def exists(self, module: ModuleId) -> bool:
        return any(self.lru.contains(module, kind) for kind in (TABLE, RAW, LOCAL))

    async def health(self) -> dict[str, Any]:
        """Whether the cache directory takes a write, and how full the cache is."""
        loop = asyncio.get_running_loop()
        error = await loop.run_in_executor(self.threads, self.lru.check_writable)
        body: dict[str, Any] = {
            "status": "ok" if error is None else "error",
            "checks": {"cache_writable": "ok" if error is None else error},
            "cache": {"files": len(self.lru), "bytes": self.lru.total_bytes,
                      "max_bytes": self.lru.max_bytes, "evictions": self.lru.evictions},
        }
        if error is not None:
            body["error"] = f"cache directory is not writable: {error}"
        return body

    # -- answering a job ----------------------------------------------------------------------

    def needs_fetch(self, module: ModuleId) -> bool:
        """Whether answering for ``module`` would ask the symbol stores for it now (it is not
        cached, not local, not remembered as missing, and no other request is fetching it)."""
        if self.lru.contains(module, TABLE) or self.lru.contains(module, RAW):
            return False
        deadline = self._missing.get(module)
        if deadline is not None and time.monotonic() < deadline:
            return False
        return ("fetch", module) not in self._inflight and self._local_file(module) is None

    def _within_fetch_budget(self, job: Job, frames: set[tuple[int, int]],
                             budget: FetchBudget) -> list[int]:
        """The memoryMap indexes to look up: those with frames, except the modules that would
        be fetched once the request has used up its ``maxFetchesPerRequest`` (the modules with
        the most frames get the fetches).  The others are not looked up this time: their
        found_modules is null, and they are not remembered as missing."""
        uses = Counter(index for index, _ in frames)
        deferred = set()
        for index in sorted(uses, key=lambda i: (-uses[i], i)):
            module = job.memory_map[index].module
            if module in budget.counted or not self.needs_fetch(module):
                continue
            if budget.left > 0:
                budget.left -= 1
                budget.counted.add(module)
            else:
                deferred.add(index)
        if deferred:
            budget.deferred += len(deferred)
            log.info("%d modules not fetched: more than maxFetchesPerRequest (%d) in one request",
                     len(deferred), self.max_fetches)
        return sorted(index for index in uses if index not in deferred)

    async def _answer_raw(self, module: ModuleId, source: RawSource, offsets: list[int]
                          ) -> RawAnswer | SymbolTable | None:
        """Answer ``offsets`` from the module's .sym file in a worker.  A worker that dies is
        replaced and asked once more; a file that must be answered from its table (or that
        is gone: replaced by its table, evicted) gives the table, waited for; a file that is
        not this module's symbols, or not a symbol file, makes the module unknown."""
        started = time.monotonic()
        if len(offsets) > RAW_ANSWER_MAX_OFFSETS:
            # a whole library in one job touches most FUNC blocks: the table does that better
            self._raw_answers.labels("table_instead").inc()
            return await self._table_instead(module, source)
        if source.early is not None and source.early[0] == offsets:
            answer = source.early[1]
            self._raw_answers.labels("answered").inc()
            self._record_load(module, "processed", {"input_bytes": answer.stats.get("input_bytes"),
                                                     "offsets": len(offsets), "answered_from": "sym",
                                                     "while_downloading": True,
                                                     "seconds": answer.stats.get("scan_seconds", 0)
                                                     + answer.stats.get("answer_seconds", 0),
                                                     "table": "building in the background"})
            log.info("answered %s from its .sym while it arrived: %d offsets (answer %.2fs after the scan)",
                     printable(module), len(offsets), answer.stats.get("answer_seconds", 0))
            return answer
        for attempt in (1, 2):
            try:
                answer = await self.processor.answer(source.path, offsets, module.debug_id)
            except ModuleMismatch as error:
                log.warning("symbols for %s are another module's: %s; answering as unknown",
                            printable(module), printable(str(error)))
                self._raw_answers.labels("wrong_module").inc()
                self._drop_raw(module, source, mismatch=True)
                return None
            except NotASymbolFile as error:
                log.warning("symbols for %s are not a symbol file: %s", printable(module), error)
                self._processing_failures.inc()
                self._raw_answers.labels("not_a_symbol_file").inc()
                self._drop_raw(module, source)
                return None
            except (NeedsTable, SourceMissing) as error:
                log.info("%s: answering from its table instead (%s)", printable(module), printable(str(error)))
                self._raw_answers.labels("table_instead").inc()
                return await self._table_instead(module, source)
            except ProcessingError as error:
                self._raw_answers.labels("worker_failed").inc()
                if attempt == 1:
                    log.warning("answering %s from its .sym failed (%s); asking another worker",
                                printable(module), printable(str(error)))
                    continue
                log.error("answering %s from its .sym failed twice (%s); answering as unknown",
                          printable(module), printable(str(error)))
                return None
            seconds = time.monotonic() - started
            log.info("answered %s from its .sym: %d offsets in %.2fs (scan %.2fs); its table is being built",
                     printable(module), len(offsets), seconds, answer.stats.get("scan_seconds", 0))
            self._raw_answers.labels("answered").inc()
            self._raw_answer_seconds.observe(seconds)
            self._record_load(module, "processed", {"input_bytes": answer.stats.get("input_bytes"),
                                                     "offsets": len(offsets), "seconds": round(seconds, 4),
                                                     "answered_from": "sym",
                                                     "table": "building in the background"})
            return answer
        return None

    def _drop_raw(self, module: ModuleId, source: RawSource, mismatch: bool = False) -> None:
        """The .sym file cannot answer for ``module``: forget it (not fetched again soon)."""
        if source.kind == RAW:
            self.lru.remove(module, RAW)
            self._remember_missing(module)
        elif mismatch and source.identity is not None:
            self.lru.remove(module, LOCAL)
            self._remember_local(module, source.identity, None)

    async def _table_instead(self, module: ModuleId, source: RawSource) -> SymbolTable | None:
        """The module's table, waited for (the background build, or a table already there)."""
        self._urgent.add(module)  # its build does not wait for a quiet moment
        self._wake_builds()
        try:
            if source.kind == LOCAL:
                table = await self._once(("local-build", source.path), lambda: self._build_local(source.path, module))
            else:
                table = self._cached_table(module)
                if table is None and self.lru.contains(module, RAW):
                    table = await self._once(("build", module), lambda: self._build_from_raw(module))
        finally:
            self._urgent.discard(module)
        return table if isinstance(table, SymbolTable) else None

    async def answer(self, job: Job, debug: dict[str, list] | None = None,
                     budget: FetchBudget | None = None) -> JobAnswers:
        """Find each referenced module's table and look up every frame of the job.

        With ``debug``, the downloads and processing this request caused or waited for are
        appended to its ``modules_fetched`` and ``modules_processed`` lists.  ``budget``: the
        fetches the request may still cause, shared by its jobs (else this job's own).
        """
        started = time.monotonic()
        frames = job.frames()
        indexes = self._within_fetch_budget(job, frames, budget or FetchBudget(self.max_fetches))
        offsets_of: dict[int, set[int]] = {}
        for i, offset in frames:
            offsets_of.setdefault(i, set()).add(offset)
        wanted_offsets = {i: sorted(offsets) for i, offsets in offsets_of.items()}
        by_index: dict[int, Any] = {}
        # cold work from the first fetch to the last answer from a .sym, with no gap between
        # them in which a background build would start
        cold = any(not self.lru.contains(job.memory_map[i].module, TABLE) for i in indexes)
        with self._counted_as_cold_work(cold):
            tables = await asyncio.gather(*(self.table(job.memory_map[i].module, wanted_offsets[i])
                                            for i in indexes))
            by_index.update(zip(indexes, tables))
            raw = [index for index, table in by_index.items() if isinstance(table, RawSource)]
            if raw:  # answered from .sym files, each in a worker; a None or a table comes back if not
                found = await asyncio.gather(*(self._answer_raw(job.memory_map[i].module, by_index[i],
                                                                wanted_offsets[i]) for i in raw))
                for index, result in zip(raw, found):
                    by_index[index] = result
        answers = JobAnswers()
        for index, table in by_index.items():
            if isinstance(table, RawAnswer):
                answers.modules[index] = ModuleAnswer(True, table.module.get("code_file"))
                answers.symbols.update(((index, offset), info) for offset, info in table.frames.items())
                by_index[index] = None  # nothing to look up in a table
            else:
                answers.modules[index] = ModuleAnswer(table is not None,
                                                      table.code_file if table is not None else None)
            record = self._loads.get(job.memory_map[index].module)
            if debug is not None and record is not None and record["finished"] >= started:
                for what in ("fetched", "processed"):
                    if what in record:
                        debug.setdefault(f"modules_{what}", []).append(record[what])
        # (table token, offset) -> the frames asking for it (a module may be listed twice)
        wanted: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for i, offset in frames:
            if by_index.get(i) is not None:
                wanted.setdefault((by_index[i].token, offset), []).append((i, offset))  # type: ignore[union-attr]
        recent = self._recent.get_many(wanted)
        for key, info in recent.items():
            for frame in wanted[key]:
                answers.symbols[frame] = info
        misses = [frame for key, frames_here in wanted.items() if key not in recent for frame in frames_here]
        if len(misses) <= INLINE_LOOKUP_LIMIT:
            symbols = _look_up(by_index, misses)
        else:
            loop = asyncio.get_running_loop()
            symbols = await loop.run_in_executor(self.threads, _look_up, by_index, misses)
        for index, symbols_or_error in symbols.items():
            if isinstance(symbols_or_error, TableFormatError):  # (never a RawAnswer's index)
                log.error("table for %s is corrupt (%s); evicting it",
                          job.memory_map[index].module, symbols_or_error)
                self.evict(job.memory_map[index].module)
                answers.modules[index] = ModuleAnswer(False)
            else:
                answers.symbols.update(symbols_or_error)
                table = by_index[index]
                debug_file, code_file = job.memory_map[index].module.debug_file, table.code_file
                self._recent.put_many({(table.token, offset): info for (_, offset), info in symbols_or_error.items()},
                                      lambda key, info: rendered_frame(debug_file, code_file, key[1], info))
        return answers

    def warm_jobs(self, jobs: list[Job]) -> list[list[list[tuple[bytes, bytes]]]] | None:
        """The warm lane's answer to ``jobs`` (see :mod:`symcommon.fastlane`): every frame in a
        table already open and in the recent-frames cache, rendered when it was cached; else
        None, and :meth:`answer` answers. (Local and not yet processed modules always go there:
        their files are checked on each request.)"""
        answers = []
        for job in jobs:
            if job.columns is None:
                return None
            groups = []
            for entry in job.memory_map:
                table = self._open.get(entry.module)
                groups.append(None if table is None else table.token)
            stacks = self._recent.rendered_stacks(job.columns, groups, self.max_answer_bytes)
            if stacks is None:
                return None
            answers.append(stacks)
        for job in jobs:  # as answer() would: the tables were used now
            for index in _used_modules(job):
                self._cached_table(job.memory_map[index].module)
                self._tables.labels("cache").inc()
        self._warm_requests.inc()
        return answers


def _look_up(tables: dict[int, SymbolTable | None],
             frames: list[tuple[int, int]]) -> dict[int, Any]:
    """Per module index: {(index, offset): FrameInfo | None}, or the TableFormatError met."""
    results: dict[int, Any] = {}
    # In address order, consecutive lookups share inflated pages and parsed FUNC blocks:
    # 500,000 random addresses took 95 s unsorted (a page inflated for nearly each one).
    for index, offset in sorted(frames):
        found = results.setdefault(index, {})
        if isinstance(found, TableFormatError):
            continue
        try:
            found[(index, offset)] = tables[index].lookup(offset)  # type: ignore[union-attr]
        except TableFormatError as error:
            results[index] = error
    return results


def _is_valid_table(path: Path) -> bool:
    try:
        check_table_file(path)
    except (OSError, TableFormatError):
        return False
    return True


def _write_end_marker(path: Path, size: int | None) -> bool:
    """Tell a worker following a download that it is complete (its size) or abandoned."""
    partial = path.with_name(path.name + ".part")
    try:
        with open_new(partial) as marker:
            marker.write((f"ok {size}" if size is not None else "fail").encode())
        partial.replace(path)  # whole or not there: a worker must never read half a marker
    except OSError as error:
        discard(partial)
        log.warning("cannot write %s: %s", printable(path.name), error)
        return False
    return True


def _in_daemon_thread(function: Callable[..., Any], *args: Any) -> asyncio.Future:
    """Run blocking ``function`` in a new daemon thread: a download stuck in a read can never
    keep the process from exiting (a pool's threads are joined at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if not future.done():
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

    def run() -> None:
        try:
            value, error = function(*args), None
        except BaseException as caught:  # noqa: BLE001 - handed to the awaiting coroutine
            value, error = None, caught
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:
            pass  # the loop is closed: the DiskCache is exiting

    threading.Thread(target=run, name="download", daemon=True).start()
    return future


async def _settle(future: Awaitable[Any]) -> None:
    """Wait for work whose result is no longer wanted, whatever it ends with."""
    try:
        await future
    except Exception:  # noqa: BLE001 - abandoned on purpose
        pass
