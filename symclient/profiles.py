"""Firefox profiles: the Gecko profile Firefox writes and the processed one profiler.firefox.com saves.

Both shapes are reduced to the same thing, a :class:`ThreadStacks` per thread with samples, so
counting, the request and the printing are shared; only reading the tables differs.
"""

from __future__ import annotations

import bisect
import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from symclient.lines import InputError, parse_number

DEFAULT_TOP = 5
_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


@dataclass(frozen=True)
class Frame:
    """One frame of a profile stack.

    A native frame has ``name`` None and is symbolicated: ``module`` is its lib's (debugName,
    breakpadId), or None when no lib holds the address (then ``offset`` is the address, sent
    with module index -1 so it prints as unknown). Any other frame (JS, a label) keeps its name.
    """

    name: str | None = None
    module: tuple[str, str] | None = None
    offset: int = 0


@dataclass
class ThreadStacks:
    """What is printed for one thread: its heaviest stacks (leaf first) and what they weigh."""

    label: str
    total: float
    stacks: list[tuple[float, list[Frame]]]
    hidden_stacks: int = 0
    hidden_weight: float = 0


def _cell(values: Any, index: Any, where: str) -> Any:
    """``values[index]``, or an InputError naming the place, since profiles index tables freely."""
    if isinstance(values, list) and type(index) is int and 0 <= index < len(values):
        return values[index]
    raise InputError(f"{where}[{index!r}] does not exist")


def _lib_module(lib: Any, where: str) -> tuple[str, str]:
    """The memoryMap entry of a lib; asked only of libs that printed stacks use."""
    if not isinstance(lib, dict):
        raise InputError(f"{where} is not a lib object")
    debug_name, breakpad_id = lib.get("debugName"), lib.get("breakpadId")
    if not isinstance(debug_name, str) or not debug_name:
        raise InputError(f"{where} ({lib.get('name', '?')}) has no debugName")
    if not isinstance(breakpad_id, str) or not breakpad_id:
        raise InputError(f"{where} ({debug_name}) has no breakpadId")
    return debug_name, breakpad_id


def _walk(stack: int, step: Callable[[int], tuple[Any, Frame | None]], depth_limit: int,
          where: str) -> list[Frame]:
    """A stack's frames, leaf first, following prefixes; ``step`` gives (prefix, frame or None
    to leave it out). The limit turns a prefix cycle into an error instead of a hang."""
    frames: list[Frame] = []
    current: Any = stack
    for _ in range(depth_limit + 1):
        if current is None or current == -1:
            return frames
        current, frame = step(current)
        if frame is not None:
            frames.append(frame)
    raise InputError(f"{where}: stack {stack} has a prefix cycle")


def heaviest_stacks(label: str, samples: Iterable[tuple[Any, Any]], frames_of: Callable[[int], list[Frame]],
                    top: int, where: str) -> ThreadStacks | None:
    """Weigh each sampled stack index (weight None counts 1) and keep the ``top`` heaviest;
    None for a thread without samples. Only those stacks are walked, and later sent."""
    weights: Counter[int] = Counter()
    for stack, weight in samples:
        if stack is None:
            continue
        if type(stack) is not int:
            raise InputError(f"{where}: sample stack {stack!r} is not a stack index")
        if weight is None:
            weight = 1
        elif isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise InputError(f"{where}: sample weight {weight!r} is not a number")
        weights[stack] += weight
    total = sum(weights.values())
    if not weights or total <= 0:
        return None
    heaviest = weights.most_common(top)
    shown = sum(weight for _, weight in heaviest)
    return ThreadStacks(label, total, [(weight, frames_of(stack)) for stack, weight in heaviest],
                        len(weights) - len(heaviest), total - shown)


def _thread_label(thread: dict[str, Any]) -> str:
    """``GeckoMain (pid 4242, Isolated Web Content)``: the name, then the process if known."""
    details = []
    if thread.get("pid") not in (None, ""):
        details.append(f"pid {thread['pid']}")
    if thread.get("processName"):
        details.append(str(thread["processName"]))
    elif thread.get("processType") not in (None, "", "default"):
        details.append(f"{thread['processType']} process")
    name = str(thread.get("name") or "(unnamed thread)")
    return f"{name} ({', '.join(details)})" if details else name


# The Gecko profile: what Firefox dumps. Tables are {"schema": {column: position}, "data": rows};
# native frames are absolute addresses, in the libs of their own process.

class _GeckoLibs:
    """A process's libs by address, to turn an absolute address into a lib and an offset."""

    def __init__(self, libs: Any, where: str) -> None:
        if libs is None:
            libs = []
        if not isinstance(libs, list):
            raise InputError(f"{where}libs is not a list")
        spans = []
        for index, lib in enumerate(libs):
            try:
                spans.append((parse_number(lib["start"]), parse_number(lib["end"]), index))
            except (KeyError, TypeError, ValueError):
                raise InputError(f"{where}libs[{index}] has no start and end addresses") from None
        spans.sort()
        self._starts = [start for start, _, _ in spans]
        self._spans = spans
        self._libs = libs
        self._where = where

    def frame(self, address: int) -> Frame:
        position = bisect.bisect_right(self._starts, address) - 1
        if position >= 0:
            start, end, index = self._spans[position]
            if address < end:
                return Frame(module=_lib_module(self._libs[index], f"{self._where}libs[{index}]"),
                             offset=address - start)
        return Frame(offset=address)


def _gecko_table(table: Any, where: str, *columns: str) -> tuple[list[Any], list[int]]:
    """A Gecko table's rows and the positions of ``columns``, always read from its schema."""
    if not isinstance(table, dict) or not isinstance(table.get("schema"), dict) \
            or not isinstance(table.get("data"), list):
        raise InputError(f"{where} needs \"schema\" and \"data\"")
    positions = []
    for column in columns:
        position = table["schema"].get(column)
        if type(position) is not int:
            raise InputError(f"{where}.schema has no {column!r} column")
        positions.append(position)
    return table["data"], positions


def _gecko_thread(thread: Any, libs: _GeckoLibs, where: str, top: int) -> ThreadStacks | None:
    """A Gecko thread's heaviest stacks: rows are read by schema position, locations that are
    hex addresses become native frames of the process's libs, other locations stay names."""
    if not isinstance(thread, dict):
        raise InputError(f"{where} is not a thread object")
    samples, (stack_at,) = _gecko_table(thread.get("samples"), f"{where}.samples", "stack")
    weight_at = thread["samples"]["schema"].get("weight")
    stacks, (prefix_at, frame_at) = _gecko_table(thread.get("stackTable"), f"{where}.stackTable",
                                                 "prefix", "frame")
    frames, (location_at,) = _gecko_table(thread.get("frameTable"), f"{where}.frameTable", "location")
    strings = thread.get("stringTable", thread.get("stringArray"))
    if not isinstance(strings, list):
        raise InputError(f"{where} has no \"stringTable\" list")

    def frame(index: int) -> Frame:
        row = _cell(frames, index, f"{where}.frameTable.data")
        location = _cell(strings, _cell(row, location_at, f"{where}.frameTable.data[{index}]"),
                         f"{where}.stringTable")
        if isinstance(location, str) and _HEX_ADDRESS.fullmatch(location):
            return libs.frame(int(location, 16))
        return Frame(name=str(location))

    def step(stack: int) -> tuple[Any, Frame]:
        row = _cell(stacks, stack, f"{where}.stackTable.data")
        place = f"{where}.stackTable.data[{stack}]"
        return _cell(row, prefix_at, place), frame(_cell(row, frame_at, place))

    def rows() -> Iterator[tuple[Any, Any]]:
        for number, row in enumerate(samples):
            place = f"{where}.samples.data[{number}]"
            weight = _cell(row, weight_at, place) if type(weight_at) is int else None
            yield _cell(row, stack_at, place), weight

    return heaviest_stacks(_thread_label(thread), rows(), lambda stack: _walk(stack, step, len(stacks), where),
                           top, f"{where}.samples")


def gecko_threads(profile: Any, top: int, where: str = "") -> Iterator[ThreadStacks]:
    """Every thread with samples of a Gecko profile and, depth first, of its child processes."""
    if not isinstance(profile, dict):
        raise InputError(f"{where.rstrip('.')} is not a profile object")
    threads = profile.get("threads")
    if not isinstance(threads, list):
        raise InputError(f"{where.rstrip('.') or 'a Firefox profile'} needs a \"threads\" list")
    libs = _GeckoLibs(profile.get("libs"), where)
    for index, thread in enumerate(threads):
        summary = _gecko_thread(thread, libs, f"{where}threads[{index}]", top)
        if summary:
            yield summary
    children = profile.get("processes", [])
    if not isinstance(children, list):
        raise InputError(f"{where}processes is not a list")
    for index, child in enumerate(children):
        if isinstance(child, str):  # very old profiles embed child processes as JSON text
            try:
                child = json.loads(child)
            except ValueError as error:
                raise InputError(f"{where}processes[{index}]: not valid JSON: {error}") from None
        yield from gecko_threads(child, top, f"{where}processes[{index}].")


# The processed profile: what profiler.firefox.com saves. Tables are objects of columns; frame
# addresses are already lib-relative, and a frame's lib is found through func -> resource -> lib.

def _columns(table: Any, where: str, *names: str) -> list[list[Any]]:
    """The ``names`` columns of a processed table, or an InputError naming the one missing."""
    if not isinstance(table, dict):
        raise InputError(f"{where} is missing")
    for name in names:
        if not isinstance(table.get(name), list):
            raise InputError(f"{where} has no {name!r} column")
    return [table[name] for name in names]


def _processed_thread(thread: Any, libs: list[Any], shared_strings: Any, where: str,
                      top: int) -> ThreadStacks | None:
    """A processed thread's heaviest stacks: a frame is native when it has an address and its
    func's resource has a lib; any other frame is printed by its func's name."""
    if not isinstance(thread, dict):
        raise InputError(f"{where} is not a thread object")
    samples = thread.get("samples")
    (sample_stacks,) = _columns(samples, f"{where}.samples", "stack")
    weights = samples["weight"] if isinstance(samples.get("weight"), list) else []  # null: each counts 1
    frame_of_stack, prefixes = _columns(thread.get("stackTable"), f"{where}.stackTable", "frame", "prefix")
    frame_table = thread.get("frameTable")
    addresses, funcs = _columns(frame_table, f"{where}.frameTable", "address", "func")
    inline_depths = frame_table.get("inlineDepth")
    func_names, func_resources = _columns(thread.get("funcTable"), f"{where}.funcTable", "name", "resource")
    (resource_libs,) = _columns(thread.get("resourceTable"), f"{where}.resourceTable", "lib")
    libs = thread["libs"] if isinstance(thread.get("libs"), list) else libs  # older versions: per thread
    strings = next((candidate for candidate in (thread.get("stringArray"), thread.get("stringTable"),
                                                shared_strings) if isinstance(candidate, list)), None)
    if strings is None:
        raise InputError(f"{where} has no strings (thread.stringArray, thread.stringTable "
                         "or shared.stringArray)")

    def frame(index: int) -> Frame | None:
        address = _cell(addresses, index, f"{where}.frameTable.address")
        func = _cell(funcs, index, f"{where}.frameTable.func")
        resource = _cell(func_resources, func, f"{where}.funcTable.resource")
        lib = None
        if type(resource) is int and resource >= 0:
            lib = _cell(resource_libs, resource, f"{where}.resourceTable.lib")
        if type(address) is int and address >= 0 and type(lib) is int and lib >= 0:
            depth = inline_depths[index] if isinstance(inline_depths, list) and index < len(inline_depths) else 0
            if type(depth) is int and depth > 0:
                return None  # an inlined frame of an already symbolicated profile: its depth-0 frame
            return Frame(module=_lib_module(_cell(libs, lib, "libs"), f"libs[{lib}]"), offset=address)
        name = _cell(strings, _cell(func_names, func, f"{where}.funcTable.name"), f"{where} strings")
        return Frame(name=str(name))

    def step(stack: int) -> tuple[Any, Frame | None]:
        return (_cell(prefixes, stack, f"{where}.stackTable.prefix"),
                frame(_cell(frame_of_stack, stack, f"{where}.stackTable.frame")))

    return heaviest_stacks(_thread_label(thread), itertools.zip_longest(sample_stacks, weights),
                           lambda stack: _walk(stack, step, len(prefixes), where), top, f"{where}.samples")


def processed_threads(profile: dict[str, Any], top: int) -> Iterator[ThreadStacks]:
    """Every thread with samples of a processed profile."""
    threads = profile.get("threads")
    if not isinstance(threads, list):
        raise InputError("a processed Firefox profile needs a \"threads\" list")
    libs = profile.get("libs") if isinstance(profile.get("libs"), list) else []
    shared = profile.get("shared")
    shared_strings = shared.get("stringArray") if isinstance(shared, dict) else None
    for index, thread in enumerate(threads):
        summary = _processed_thread(thread, libs, shared_strings, f"threads[{index}]", top)
        if summary:
            yield summary


def _is_processed(profile: dict[str, Any]) -> bool:
    """Processed profiles say so in their meta; without it, column tables (no schema) tell."""
    meta = profile.get("meta")
    if (isinstance(meta, dict) and "preprocessedProfileVersion" in meta) or "shared" in profile:
        return True
    threads = profile.get("threads")
    first = threads[0] if isinstance(threads, list) and threads and isinstance(threads[0], dict) else {}
    samples = first.get("samples")
    return isinstance(samples, dict) and "schema" not in samples and "stack" in samples


def parse_profile(profile: dict[str, Any], top: int) -> tuple[dict[str, Any], list[ThreadStacks]]:
    """A v5 request for the printed stacks of a Gecko or processed profile, and those stacks."""
    threads = list(processed_threads(profile, top) if _is_processed(profile) else gecko_threads(profile, top))
    if not threads:
        raise InputError("no thread of the profile has samples")
    memory_map: list[list[str]] = []
    index: dict[tuple[str, str], int] = {}
    stacks = []
    for thread in threads:
        for _, frames in thread.stacks:
            sent = []
            for frame in frames:
                if frame.name is not None:
                    continue
                if frame.module is not None and frame.module not in index:
                    index[frame.module] = len(memory_map)
                    memory_map.append(list(frame.module))
                sent.append([index[frame.module] if frame.module else -1, frame.offset])
            stacks.append(sent)
    return {"jobs": [{"memoryMap": memory_map, "stacks": stacks}]}, threads


def looks_like_profile(body: dict[str, Any]) -> bool:
    """Keys only profiles have, so a broken profile gets a profile's error messages."""
    return any(key in body for key in ("libs", "meta", "processes", "shared"))
