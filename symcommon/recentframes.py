"""A small in-process cache of recently answered frames, used by both servers.

SymServer puts it in front of memcached; the DiskCache in front of its tables (a warm lookup
is then a dict lookup instead of a bisection, a page and a parsed FUNC block).
"""

from __future__ import annotations

import time
from typing import Any

from symcommon.prefork import SharedState

class RecentFrames:
    """An in-process cache of recently answered frames with a time limit; 0 entries disables it.

    Approximately LRU at the cost of plain dict lookups: entries live in a young and an old
    generation; a hit in the old one moves the entry to the young one, and when the young
    one holds more than half of ``max_entries`` it becomes the old one (dropping the previous
    old one), so the cache holds about ``max_entries`` at most.
    """

    def __init__(self, max_entries: int, max_age_seconds: float, shared: SharedState | None = None) -> None:
        self.max_entries = max_entries if max_age_seconds > 0 else 0
        self._shared = shared
        self._clears_seen = 0
        self.max_age = max_age_seconds
        self._generation_size = max(self.max_entries // 2, 1)
        self._young: dict[Any, tuple[float, Any]] = {}
        self._old: dict[Any, tuple[float, Any]] = {}

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def get_many(self, keys: Any) -> dict[Any, Any]:
        """The fresh entries among ``keys``."""
        if not self.max_entries:
            return {}
        if self._shared is not None:
            clears = self._shared.get(SharedState.FRAME_CACHE_CLEARS)
            if clears != self._clears_seen:  # another process evicted a frame
                self._clears_seen = clears
                self._young, self._old = {}, {}
        now = time.monotonic()
        young, old = self._young, self._old
        found = {}
        for key in keys:
            entry = young.get(key)
            if entry is None:
                entry = old.pop(key, None)
                if entry is None:
                    continue
                young[key] = entry
            if entry[0] > now:
                found[key] = entry[1]
            else:
                del young[key]
        self._rotate()
        return found

    def put_many(self, values: dict[Any, Any]) -> None:
        if not self.max_entries or not values:
            return
        expires = time.monotonic() + self.max_age
        young = self._young
        for key, value in values.items():
            young[key] = (expires, value)
        self._rotate()

    def _rotate(self) -> None:
        if len(self._young) > self._generation_size:
            self._old = self._young
            self._young = {}

    def discard(self, key: Any) -> None:
        """Forget a frame in every server process (the others clear their whole cache)."""
        self._young.pop(key, None)
        self._old.pop(key, None)
        if self._shared is not None:
            self._clears_seen = self._shared.increment(SharedState.FRAME_CACHE_CLEARS)
