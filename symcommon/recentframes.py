"""A small in-process cache of recently answered frames, used by both servers.

SymServer puts it in front of memcached; the DiskCache in front of its tables (a warm lookup
is then a dict lookup instead of a bisection, a page and a parsed FUNC block).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from symcommon.frames import FrameInfo
from symcommon.prefork import SharedState


#: Bytes the entries of one cache may hold (two generations of at most half each).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
ENTRY_OVERHEAD = 200  # a key, a tuple, a FrameInfo and two dict slots, roughly


def value_size(value: Any) -> int:
    """About how many bytes a cached value holds: its strings plus a fixed overhead, so a few
    frames with 64 KiB names weigh as much as thousands of ordinary ones."""
    size = ENTRY_OVERHEAD
    if isinstance(value, tuple) and len(value) == 2 and not isinstance(value, FrameInfo):
        code_file, value = value  # SymServer's (code file, symbol)
        size += len(code_file or "")
    if isinstance(value, FrameInfo):
        size += len(value.function) + len(value.file or "")
        for inline in value.inlines:
            size += ENTRY_OVERHEAD // 2 + len(inline.function) + len(inline.file or "")
    return size


class RecentFrames:
    """An in-process cache of recently answered frames with a time limit; 0 entries disables it.

    Approximately LRU at the cost of plain dict lookups: entries live in a young and an old
    generation; a hit in the old one moves the entry to the young one, and when the young
    one holds more than half of ``max_entries`` or of ``max_bytes`` it becomes the old one
    (dropping the previous old one), so the cache holds about ``max_entries`` and
    ``max_bytes`` at most, whatever the size of one request: a request of a million frames
    rotates the generations as it goes instead of growing the young one to a million.
    """

    def __init__(self, max_entries: int, max_age_seconds: float, shared: SharedState | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_entries = max_entries if max_age_seconds > 0 else 0
        self._shared = shared
        self._clears_seen = 0
        self.max_age = max_age_seconds
        self.max_bytes = max_bytes
        self._generation_size = max(self.max_entries // 2, 1)
        self._generation_bytes = max(max_bytes // 2, 1)
        self._young: dict[Any, tuple[float, Any, int]] = {}
        self._old: dict[Any, tuple[float, Any, int]] = {}
        self._young_bytes = 0
        self._old_bytes = 0

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    @property
    def bytes(self) -> int:
        """About how many bytes the entries hold (see :func:`value_size`)."""
        return self._young_bytes + self._old_bytes

    def get_many(self, keys: Any) -> dict[Any, Any]:
        """The fresh entries among ``keys``."""
        if not self.max_entries:
            return {}
        if self._shared is not None:
            clears = self._shared.get(SharedState.FRAME_CACHE_CLEARS)
            if clears != self._clears_seen:  # another process evicted a frame
                self._clears_seen = clears
                self._clear()
        now = time.monotonic()
        young, old = self._young, self._old
        found = {}
        promoted, expired = [], []
        # Look everything up first, then move the hits of the old generation: moving them
        # as we go could rotate away entries this very call is about to ask for.
        for key in keys:
            entry = young.get(key)
            if entry is None:
                entry = old.get(key)
                if entry is None:
                    continue
                if entry[0] > now:
                    promoted.append(key)
            if entry[0] > now:
                found[key] = entry[1]
            else:
                expired.append(key)
        for key in expired:
            self._drop(key)
        for key in promoted:
            entry = self._old.pop(key, None)
            if entry is not None:
                self._old_bytes -= entry[2]
                self._add_young(key, entry)
        return found

    def put_many(self, values: dict[Any, Any]) -> None:
        if not self.max_entries or not values:
            return
        expires = time.monotonic() + self.max_age
        items = iter(values.items())
        if len(values) > self.max_entries:  # the first ones would be rotated out by the last ones
            items = itertools.islice(items, len(values) - self.max_entries, None)
        for key, value in items:
            self._add_young(key, (expires, value, value_size(value)))

    def _add_young(self, key: Any, entry: tuple[float, Any, int]) -> None:
        previous = self._young.get(key)
        if previous is not None:
            self._young_bytes -= previous[2]
        self._young[key] = entry
        self._young_bytes += entry[2]
        if len(self._young) > self._generation_size or self._young_bytes > self._generation_bytes:
            self._old, self._old_bytes = self._young, self._young_bytes
            self._young, self._young_bytes = {}, 0

    def _clear(self) -> None:
        self._young, self._old = {}, {}
        self._young_bytes = self._old_bytes = 0

    def discard(self, key: Any) -> None:
        """Forget a frame in every server process (the others clear their whole cache)."""
        self._drop(key)
        if self._shared is not None:
            self._clears_seen = self._shared.increment(SharedState.FRAME_CACHE_CLEARS)

    def _drop(self, key: Any) -> None:
        entry = self._young.pop(key, None)
        if entry is not None:
            self._young_bytes -= entry[2]
        entry = self._old.pop(key, None)
        if entry is not None:
            self._old_bytes -= entry[2]
