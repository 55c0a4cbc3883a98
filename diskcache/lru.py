"""The on-disk LRU of processed tables (and raw .sym files added by ``cacheAddRaw``).

Semantics kept from the original: a file is saved first, then the oldest entries are evicted
until the cache is back under ``maxSizeMB``; at start every valid file in the cache directory
is loaded, oldest modification time first.  Files only ever appear by ``rename`` from the
cache's own ``.tmp`` directory, so a reader never sees one half-written, and every path is
derived from a validated :class:`ModuleId`, so nothing outside the directory is touched.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from symcommon.logs import printable
from symcommon.modules import InvalidModule, ModuleId

log = logging.getLogger("diskcache.lru")

TABLE = ".symtab"
RAW = ".sym"
KINDS = (TABLE, RAW)
TOUCH_INTERVAL_SECONDS = 60.0


def discard(path: Path) -> bool:
    """Delete a file if it is there; a disk that refuses (read-only, gone) is logged, not raised."""
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        log.warning("cannot delete %s: %s", printable(path), error.strerror or error)
        return False
    return True


@dataclass(slots=True)
class CacheEntry:
    module: ModuleId
    kind: str  # TABLE or RAW
    path: Path
    size: int
    touched: float


class DiskLRU:
    """Files in ``root`` keyed by (module, kind), evicted oldest first past ``max_bytes``."""

    def __init__(self, root: Path, max_bytes: int,
                 on_evict: Callable[[CacheEntry], None] | None = None) -> None:
        self.root = root
        self.tmp = root / ".tmp"
        self.max_bytes = max_bytes
        self.total_bytes = 0
        self.evictions = 0
        self._entries: OrderedDict[tuple[ModuleId, str], CacheEntry] = OrderedDict()
        self._on_evict = on_evict

    def path_for(self, module: ModuleId, kind: str) -> Path:
        path = self.root / (module.cache_stem + kind)
        if path.parent != self.root:  # cannot happen for a valid ModuleId; refuse anyway
            raise InvalidModule(f"refusing a cache path outside the cache: {printable(path)}")
        return path

    def load(self, is_valid_table: Callable[[Path], bool]) -> None:
        """Create the directories, clear ``.tmp``, and index every valid file (oldest first)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(exist_ok=True)
        for leftover in self.tmp.iterdir():
            if leftover.is_file() or leftover.is_symlink():
                discard(leftover)
        found = []
        for path in self.root.iterdir():
            if path == self.tmp:
                continue
            if path.is_symlink() or not path.is_file():
                if not path.is_dir():
                    self._delete(path, "not a regular file")
                else:
                    log.warning("ignoring directory %s in the cache", printable(path))
                continue
            entry = self._entry_for(path)
            if entry is None:
                self._delete(path, "not a cache file")
            elif entry.kind == TABLE and not is_valid_table(path):
                self._delete(path, "incomplete, foreign or old-format table")
            else:
                found.append(entry)
        found.sort(key=lambda entry: entry.touched)
        for entry in found:
            self._entries[(entry.module, entry.kind)] = entry
            self.total_bytes += entry.size
        log.info("cache %s: %d files, %.1f MB", self.root, len(found), self.total_bytes / 1e6)
        self._evict_over_budget(keep=None)

    def _entry_for(self, path: Path) -> CacheEntry | None:
        for kind in KINDS:
            if path.name.endswith(kind):
                try:
                    module = ModuleId.from_cache_stem(path.name[:-len(kind)])
                except InvalidModule:
                    return None
                if path.name != module.cache_stem + kind:
                    return None  # not a name we would have written
                stat = path.stat()
                return CacheEntry(module, kind, path, stat.st_size, stat.st_mtime)
        return None

    def _delete(self, path: Path, reason: str) -> None:
        log.warning("deleting %s from the cache: %s", printable(path), reason)
        discard(path)

    def get(self, module: ModuleId, kind: str) -> CacheEntry | None:
        """The entry, marked as just used (its mtime too, so the order survives a restart)."""
        entry = self._entries.get((module, kind))
        if entry is None:
            return None
        self._entries.move_to_end((module, kind))
        now = time.time()
        if now - entry.touched > TOUCH_INTERVAL_SECONDS:
            entry.touched = now
            try:
                os.utime(entry.path)
            except OSError:
                pass
        return entry

    def contains(self, module: ModuleId, kind: str) -> bool:
        return (module, kind) in self._entries

    def temporary_path(self, label: str, purpose: str) -> Path:
        """A fresh path in ``.tmp`` for a file being written (``label`` is a cache stem)."""
        return self.tmp / f"{label}.{os.getpid()}.{time.monotonic_ns()}.{purpose}"

    def add(self, module: ModuleId, kind: str, written: Path) -> CacheEntry:
        """Rename a complete file from ``.tmp`` into place, then evict past the budget."""
        self.remove(module, kind)
        path = self.path_for(module, kind)
        written.replace(path)
        entry = CacheEntry(module, kind, path, path.stat().st_size, time.time())
        self._entries[(module, kind)] = entry
        self.total_bytes += entry.size
        self._evict_over_budget(keep=(module, kind))
        return entry

    def remove(self, module: ModuleId, kind: str) -> bool:
        """Delete one entry; True if it existed."""
        entry = self._entries.pop((module, kind), None)
        if entry is None:
            return False
        self._drop(entry)
        return True

    def _drop(self, entry: CacheEntry) -> None:
        self.total_bytes -= entry.size
        discard(entry.path)
        if self._on_evict is not None:
            self._on_evict(entry)

    def _evict_over_budget(self, keep: tuple[ModuleId, str] | None) -> None:
        while self.total_bytes > self.max_bytes and len(self._entries) > (1 if keep else 0):
            key, entry = next(iter(self._entries.items()))
            if key == keep:
                self._entries.move_to_end(key)
                continue
            del self._entries[key]
            log.info("evicting %s (%d bytes) to stay under %d MB",
                     printable(entry.path.name), entry.size, self.max_bytes // (1024 * 1024))
            self.evictions += 1
            self._drop(entry)

    def check_writable(self) -> str | None:
        """None if a file can be created in ``.tmp``, else why not."""
        probe = self.temporary_path("health", "probe")
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as error:
            return error.strerror or str(error)
        return None

    def __len__(self) -> int:
        return len(self._entries)
