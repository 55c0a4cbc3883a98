"""A small in-process cache of recently answered frames, used by both servers.

SymServer puts it in front of memcached; the DiskCache in front of its tables (a warm lookup
is then a dict lookup instead of a bisection, a page and a parsed FUNC block).
"""

from __future__ import annotations

import itertools
import time
from operator import itemgetter
from typing import Any, Callable

from symcommon.frames import FrameInfo
from symcommon.prefork import SharedState


#: An entry: (expires, value, size, rendered); see :meth:`RecentFrames.rendered_stacks`.
Entry = tuple[float, Any, int, Any]
_EXPIRY = itemgetter(0)
ENTRY_SIZE, ENTRY_RENDERED = itemgetter(2), itemgetter(3)
#: Bytes the entries of one cache may hold (two generations of at most half each).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
ENTRY_OVERHEAD = 200  # a key, a tuple, a FrameInfo and two dict slots, roughly
#: Frames whose names are longer are not rendered ahead (``render``): a rendering is a copy
#: of the names, while values share them, and a few thousand frames of 64 KiB names would
#: copy hundreds of MB; such frames are answered by the handlers.
MAX_RENDERED_SIZE = 4096


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


class _Generation:
    """Entries grouped by the key's first part (its module): ``groups[module][offset]``, so
    that the frames of one module are looked up by offset alone, one ``map`` in C."""

    __slots__ = ("groups", "count", "bytes", "first_expiry", "largest", "unrendered")

    def __init__(self) -> None:
        self.groups: dict[Any, dict[Any, Entry]] = {}
        self.count = 0
        self.bytes = 0
        #: No entry expires before this, and none is bigger than ``largest`` (bounds kept as
        #: entries come, so a warm lookup need not look at every entry's).
        self.first_expiry = float("inf")
        self.largest = 0
        self.unrendered = 0  # entries put without a rendering (ever: a bound, not a count)

    def get(self, key: tuple[Any, Any]) -> Entry | None:
        group = self.groups.get(key[0])
        return None if group is None else group.get(key[1])

    def put(self, key: tuple[Any, Any], entry: Entry) -> None:
        group = self.groups.get(key[0])
        if group is None:
            group = self.groups[key[0]] = {}
        previous = group.get(key[1])
        if previous is None:
            self.count += 1
        else:
            self.bytes -= previous[2]
        group[key[1]] = entry
        self.bytes += entry[2]
        if entry[0] < self.first_expiry:
            self.first_expiry = entry[0]
        if entry[2] > self.largest:
            self.largest = entry[2]
        if entry[3] is None:
            self.unrendered += 1

    def pop(self, key: tuple[Any, Any]) -> Entry | None:
        group = self.groups.get(key[0])
        entry = None if group is None else group.pop(key[1], None)
        if entry is not None:
            self.count -= 1
            self.bytes -= entry[2]
            if not group:
                del self.groups[key[0]]
        return entry


_NO_GROUP: dict[Any, Entry] = {}


class RecentFrames:
    """An in-process cache of recently answered frames with a time limit; 0 entries disables it.
    Keys are pairs, (module, offset): a module's frames are kept together.

    Approximately LRU at the cost of plain dict lookups: entries live in a young and an old
    generation; a hit in the old one moves the entry to the young one, and when the young
    one holds more than half of ``max_entries`` or of ``max_bytes`` it becomes the old one
    (dropping the previous old one), so the cache holds about ``max_entries`` and
    ``max_bytes`` at most, whatever the size of one request: a request of a million frames
    rotates the generations as it goes instead of growing the young one to a million.
    """

    def __init__(self, max_entries: int, max_age_seconds: float, shared: SharedState | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES,
                 render: Callable[[Any, Any], Any] | None = None) -> None:
        """``render(key, value)``: what the server will write for this frame (a tuple of
        bytes), computed once when the frame is cached and handed out by
        :meth:`rendered_stacks` (None: nothing)."""
        self.render = render
        self.max_entries = max_entries if max_age_seconds > 0 else 0
        self._shared = shared
        self._clears_seen = 0
        self.max_age = max_age_seconds
        self.max_bytes = max_bytes
        self._generation_size = max(self.max_entries // 2, 1)
        self._generation_bytes = max(max_bytes // 2, 1)
        self._young = _Generation()
        self._old = _Generation()

    def __len__(self) -> int:
        return self._young.count + self._old.count

    @property
    def bytes(self) -> int:
        """About how many bytes the entries hold (see :func:`value_size`)."""
        return self._young.bytes + self._old.bytes

    def get_many(self, keys: Any) -> dict[Any, Any]:
        """The fresh entries among ``keys``."""
        if not self.max_entries:
            return {}
        self._follow_clears()
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
            entry = self._old.pop(key)
            if entry is not None:
                self._add_young(key, entry)
        return found

    def _follow_clears(self) -> None:
        if self._shared is not None:
            clears = self._shared.get(SharedState.FRAME_CACHE_CLEARS)
            if clears != self._clears_seen:  # another process evicted a frame
                self._clears_seen = clears
                self._clear()

    def rendered_stacks(self, columns: Any, groups: list[Any], max_bytes: int) -> list[list[Any]] | None:
        """The renderings of a job's frames, stack by stack, when every frame is in the young
        generation with a rendering (see ``render``) and the renderings' frames hold at most
        ``max_bytes`` of names; else None. ``columns``: the job's stacks as (module indexes,
        offsets); ``groups[i]``: the key group of module index ``i`` (None: not warm).

        The warm path of a request: a stack of one module is one ``map`` of a dict's ``get``
        over its offsets, in C, and the rest a few passes in C too.
        """
        if not self.max_entries:
            return None
        self._follow_clears()
        young = self._young
        stacks = []
        frames = 0
        for indexes, offsets in columns:
            if not indexes:
                stacks.append([])
                continue
            used = set(indexes)
            if min(used) < 0:
                return None
            try:  # (a miss raises: no None to look for among the entries)
                if len(used) == 1:
                    entries = list(map(young.groups.get(groups[indexes[0]], _NO_GROUP).__getitem__, offsets))
                else:
                    entries = [young.groups.get(groups[index], _NO_GROUP)[offset]
                               for index, offset in zip(indexes, offsets)]
            except (KeyError, TypeError):
                return None
            if young.first_expiry <= time.monotonic() and min(map(_EXPIRY, entries)) <= time.monotonic():
                return None
            frames += len(entries)
            stacks.append(entries)
        # (an entry's size counts more than its names: over the bound by sizes is not yet over)
        if frames * self._young.largest > max_bytes and \
                sum(sum(map(ENTRY_SIZE, entries)) for entries in stacks) > max_bytes:
            return None
        if self._young.unrendered and any(entry[3] is None for entries in stacks for entry in entries):
            return None  # cached without a rendering
        return [list(map(ENTRY_RENDERED, entries)) for entries in stacks]

    def put_many(self, values: dict[Any, Any], render: Callable[[Any, Any], Any] | None = None) -> None:
        """Cache ``values``; ``render``: instead of the cache's own (see ``__init__``)."""
        if not self.max_entries or not values:
            return
        expires = time.monotonic() + self.max_age
        items = iter(values.items())
        if len(values) > self.max_entries:  # the first ones would be rotated out by the last ones
            items = itertools.islice(items, len(values) - self.max_entries, None)
        render = render or self.render
        for key, value in items:
            size = value_size(value)
            if render is None or size > MAX_RENDERED_SIZE:
                self._add_young(key, (expires, value, size, None))
            else:
                rendered = render(key, value)  # a tuple of bytes, counted with the entry
                self._add_young(key, (expires, value, size + sum(map(len, rendered)), rendered))

    def _add_young(self, key: Any, entry: Entry) -> None:
        young = self._young
        young.put(key, entry)
        if young.count > self._generation_size or young.bytes > self._generation_bytes:
            self._old, self._young = young, _Generation()

    def _clear(self) -> None:
        self._young, self._old = _Generation(), _Generation()

    def discard(self, key: Any) -> None:
        """Forget a frame in every server process (the others clear their whole cache)."""
        self._drop(key)
        if self._shared is not None:
            self._clears_seen = self._shared.increment(SharedState.FRAME_CACHE_CLEARS)

    def _drop(self, key: Any) -> None:
        self._young.pop(key)
        self._old.pop(key)
