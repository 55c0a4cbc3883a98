"""The on-disk LRU of processed tables (and raw .sym files added by ``cacheAddRaw``).

Semantics kept from the original: a file is saved first, then the oldest entries are evicted
until the cache is back under ``maxSizeMB``; at start every valid file in the cache directory
is loaded, oldest modification time first.  Files only ever appear by ``rename`` from the
cache's own ``.tmp`` directory, so a reader never sees one half-written, and every path is
derived from a validated :class:`ModuleId`, so nothing outside the directory is touched.

Nothing in the cache directory is ever followed through a symbolic link: entries are
examined with ``lstat``, files are opened with ``O_NOFOLLOW`` (:mod:`diskcache.cachefiles`),
and a link found there is removed itself, never what it points to (a ``.tmp`` linked to
another directory once had that directory emptied at start).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from diskcache.cachefiles import discard, open_new
from symcommon.logs import printable
from symcommon.modules import InvalidModule, ModuleId

log = logging.getLogger("diskcache.lru")

TABLE = ".symtab"
RAW = ".sym"
#: The table of a file in ``localSymbolDirs``; it records that file's path, size and mtime
#: (see :class:`diskcache.tablereader.SymbolTable`), so a rebuilt file is processed again.
LOCAL = ".localtab"
KINDS = (TABLE, RAW, LOCAL)
TOUCH_INTERVAL_SECONDS = 60.0


def _lexists(path: Path) -> bool:
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: assume it is still there
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
        self._prepare_tmp()
        found = []
        with os.scandir(self.root) as items:
            listed = list(items)
        for item in listed:
            path = Path(item.path)
            if item.name == self.tmp.name:
                continue
            if item.is_symlink():
                self._delete(path, "a symbolic link (the link is removed, not what it points to)")
                continue
            if item.is_dir(follow_symlinks=False):
                log.warning("ignoring directory %s in the cache", printable(path))
                continue
            if not item.is_file(follow_symlinks=False):
                self._delete(path, "not a regular file")
                continue
            entry = self._entry_for(path, item.stat(follow_symlinks=False))
            if entry is None:
                self._delete(path, "not a cache file")
            elif entry.kind in (TABLE, LOCAL) and not is_valid_table(path):
                self._delete(path, "incomplete, foreign or old-format table")
            else:
                found.append(entry)
        found.sort(key=lambda entry: entry.touched)
        for entry in found:
            self._entries[(entry.module, entry.kind)] = entry
            self.total_bytes += entry.size
        log.info("cache %s: %d files, %.1f MB", self.root, len(found), self.total_bytes / 1e6)
        self._evict_over_budget(keep=None)

    def _prepare_tmp(self) -> None:
        """Make ``.tmp`` a real, empty directory.  Whatever else is there (a link to a
        directory, a file) is removed itself: its target is never emptied."""
        try:
            found = os.lstat(self.tmp)
        except FileNotFoundError:
            found = None
        if found is not None and not stat.S_ISDIR(found.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(found.st_mode) else "not a directory"
            log.warning("replacing %s: %s (its target is left alone)", printable(self.tmp), kind)
            self.tmp.unlink()
        try:
            os.mkdir(self.tmp, 0o755)
        except FileExistsError:
            pass
        if not stat.S_ISDIR(os.lstat(self.tmp).st_mode):
            raise OSError(f"{self.tmp} is not a directory")
        with os.scandir(self.tmp) as items:
            leftovers = list(items)
        for item in leftovers:
            if item.is_dir(follow_symlinks=False):
                shutil.rmtree(item.path, ignore_errors=True)  # never follows links inside
            else:
                discard(Path(item.path))

    def _entry_for(self, path: Path, found: os.stat_result) -> CacheEntry | None:
        for kind in KINDS:
            if path.name.endswith(kind):
                try:
                    module = ModuleId.from_cache_stem(path.name[:-len(kind)])
                except InvalidModule:
                    return None
                if path.name != module.cache_stem + kind:
                    return None  # not a name we would have written
                return CacheEntry(module, kind, path, found.st_size, found.st_mtime)
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
                os.utime(entry.path, follow_symlinks=False)
            except OSError:
                pass
        return entry

    def contains(self, module: ModuleId, kind: str) -> bool:
        return (module, kind) in self._entries

    def temporary_path(self, label: str, purpose: str) -> Path:
        """A fresh path in ``.tmp`` for a file being written (``label`` is a cache stem).

        ``.tmp`` is checked each time: one replaced by a link since start is replaced in
        turn by a real directory, so nothing is ever written where the link points."""
        self._ensure_tmp_is_directory()
        return self.tmp / f"{label}.{os.getpid()}.{time.monotonic_ns()}.{purpose}"

    def _ensure_tmp_is_directory(self) -> None:
        try:
            if stat.S_ISDIR(os.lstat(self.tmp).st_mode):
                return
            log.warning("replacing %s: no longer a directory (a symbolic link?); its target is left "
                        "alone", printable(self.tmp))
            self.tmp.unlink()
        except FileNotFoundError:
            pass
        except OSError as error:  # a disk that refuses: the write that follows reports it
            log.warning("cannot check %s: %s", printable(self.tmp), error.strerror or error)
            return
        try:
            os.mkdir(self.tmp, 0o755)
        except OSError as error:
            log.warning("cannot create %s: %s", printable(self.tmp), error.strerror or error)

    def add(self, module: ModuleId, kind: str, written: Path) -> CacheEntry:
        """Rename a complete file from ``.tmp`` into place (over any older one, or a link,
        which the rename replaces without following), then evict past the budget."""
        path = self.path_for(module, kind)
        written.replace(path)
        old = self._entries.pop((module, kind), None)
        if old is not None:
            self.total_bytes -= old.size
            if self._on_evict is not None:
                self._on_evict(old)
        entry = CacheEntry(module, kind, path, os.lstat(path).st_size, time.time())
        self._entries[(module, kind)] = entry
        self.total_bytes += entry.size
        self._evict_over_budget(keep=(module, kind))
        return entry

    def remove(self, module: ModuleId, kind: str) -> bool:
        """Delete one entry; True if it existed and is gone.  A file the disk refuses to
        delete (read-only) stays indexed, so the index always matches the disk."""
        entry = self._entries.get((module, kind))
        if entry is None:
            return False
        if not self._drop(entry):
            return False
        del self._entries[(module, kind)]
        return True

    def _drop(self, entry: CacheEntry) -> bool:
        """Delete an entry's file; False (and nothing forgotten) if it is still there."""
        if not discard(entry.path) and _lexists(entry.path):
            return False
        self.total_bytes -= entry.size
        if self._on_evict is not None:
            self._on_evict(entry)
        return True

    def _evict_over_budget(self, keep: tuple[ModuleId, str] | None) -> None:
        for key in list(self._entries):  # oldest first; each tried once
            if self.total_bytes <= self.max_bytes:
                return
            if key == keep:
                continue
            entry = self._entries[key]
            log.info("evicting %s (%d bytes) to stay under %d MB",
                     printable(entry.path.name), entry.size, self.max_bytes // (1024 * 1024))
            if self._drop(entry):
                del self._entries[key]
                self.evictions += 1

    def check_writable(self) -> str | None:
        """None if a file can be created in ``.tmp``, else why not.  The probe file never
        stays behind, even when it was created but could not be written (a full disk)."""
        probe = self.temporary_path("health", "probe")  # (replaces a .tmp that is a link)
        try:
            if not stat.S_ISDIR(os.lstat(self.tmp).st_mode):
                return f"{self.tmp.name} is not a directory (a symbolic link?)"
        except OSError as error:
            return error.strerror or str(error)
        try:
            with open_new(probe) as file:
                file.write(b"ok")
        except OSError as error:
            return error.strerror or str(error)
        finally:
            try:
                probe.unlink(missing_ok=True)
            except OSError:
                pass
        return None

    def __len__(self) -> int:
        return len(self._entries)
