"""``symbolicate``: symbolicate stacks from the command line, for people.

    symbolicate request.json              # a v4 or v5 request
    symbolicate crash.json                # minidump-stackwalk JSON or a crash ping's stackTraces
    symbolicate profile.json              # a Firefox profile (Gecko or processed; .json.gz too)
    symbolicate --top 10 profile.json.gz  # each thread's 10 heaviest stacks (default 5)
    symbolicate frames.txt                # lines of "debug_file debug_id offset"
    echo "xul.pdb 44E4EC8C2F41492B9369D6B9A059577C2 0xb2e3f7" | symbolicate
    symbolicate --json --server http://symbols.example:8080 request.json

Prints readable stacks (frame number, module, function + offset, file:line, inlined frames
indented above their function), or the v5 answer with ``--json``. For a profile, each thread
with samples is printed with its heaviest distinct stacks, their sample counts and shares;
only those stacks are sent to the server, and the profile's JS and label frames are printed
with their names between the symbolicated native ones. When the server takes more than a
second (a large module being fetched), a progress line runs on stderr.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import gzip
import itertools
import json
import re
import sys
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TextIO

import requests

DEFAULT_SERVER = "http://127.0.0.1:8080"
PROGRESS_AFTER_SECONDS = 1.0


class InputError(ValueError):
    """The input cannot be turned into a request; the message says where."""


def parse_lines(text: str) -> dict[str, Any]:
    """``debug_file debug_id offset`` (or ``debug_file/debug_id offset``) per line -> one v5 job."""
    modules: list[list[str]] = []
    index: dict[tuple[str, str], int] = {}
    frames = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) == 2 and "/" in parts[0]:
            parts = [*parts[0].split("/", 1), parts[1]]
        if len(parts) != 3:
            raise InputError(f"line {number}: expected 'debug_file debug_id offset', got {line[:80]!r}")
        try:
            offset = int(parts[2], 16) if parts[2].lower().startswith("0x") else int(parts[2])
        except ValueError:
            raise InputError(f"line {number}: {parts[2]!r} is not an offset (decimal or 0x hex)") from None
        key = (parts[0], parts[1])
        if key not in index:
            index[key] = len(modules)
            modules.append([parts[0], parts[1]])
        frames.append([index[key], offset])
    if not frames:
        raise InputError("no frames in the input")
    return {"jobs": [{"memoryMap": modules, "stacks": [frames]}]}


def _number(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return int(value, 16) if value.lower().startswith("0x") else int(value)
    raise ValueError(f"{value!r} is not an address")


def parse_crash_report(report: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A v5 request (one stack per thread, the crashing one first) and the threads' labels.

    Two shapes: minidump-stackwalk's JSON (frames name their ``module`` by file name and give
    ``module_offset``) and a Firefox crash ping's ``stackTraces`` (frames give ``ip`` and
    ``module_index``; the module offset is ``ip - base_addr``).
    """
    report = report.get("stackTraces", report.get("json_dump", report))
    modules = report.get("modules")
    threads = report.get("threads")
    if not isinstance(modules, list) or not isinstance(threads, list):
        raise InputError("a crash report needs \"modules\" and \"threads\"")
    memory_map, by_file = [], {}
    for index, module in enumerate(modules):
        debug_file, debug_id = module.get("debug_file"), module.get("debug_id")
        if not isinstance(debug_file, str) or not isinstance(debug_id, str):
            raise InputError(f"modules[{index}] has no debug_file/debug_id")
        memory_map.append([debug_file, debug_id])
        if isinstance(module.get("filename"), str):
            by_file[module["filename"]] = index
    crashing = report.get("crash_info", {}).get("crashing_thread", report.get("crashing_thread_index"))
    order = list(range(len(threads)))
    if isinstance(crashing, int) and 0 <= crashing < len(threads):
        order.remove(crashing)
        order.insert(0, crashing)
    stacks, labels = [], []
    for thread_index in order:
        frames = []
        for number, frame in enumerate(threads[thread_index].get("frames", [])):
            try:
                if "module_index" in frame and "ip" in frame:
                    module_index = frame["module_index"]
                    offset = _number(frame["ip"]) - _number(modules[module_index]["base_addr"])
                elif frame.get("module") in by_file and "module_offset" in frame:
                    module_index = by_file[frame["module"]]
                    offset = _number(frame["module_offset"])
                else:
                    module_index, offset = -1, _number(frame.get("ip", frame.get("offset", 0)))
            except (ValueError, KeyError, IndexError, TypeError) as error:
                raise InputError(f"threads[{thread_index}].frames[{number}]: {error}") from None
            frames.append([module_index, offset])
        stacks.append(frames)
        labels.append(f"thread {thread_index}" + (" (crashing)" if thread_index == crashing else ""))
    return {"jobs": [{"memoryMap": memory_map, "stacks": stacks}]}, labels


# Firefox profiles ------------------------------------------------------------------------------
#
# Both shapes are reduced to the same thing, a ThreadStacks per thread with samples, so counting,
# the request and the printing are shared; only reading the tables differs.

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
                spans.append((_number(lib["start"]), _number(lib["end"]), index))
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


def _looks_like_profile(body: dict[str, Any]) -> bool:
    """Keys only profiles have, so a broken profile gets a profile's error messages."""
    return any(key in body for key in ("libs", "meta", "processes", "shared"))


Printer = Callable[[dict[str, Any], TextIO], None]


def to_request(text: str, top: int = DEFAULT_TOP) -> tuple[dict[str, Any], Printer]:
    """A v5 request from a v4/v5 request, a crash report, a Firefox profile or module/offset
    lines, and how to print its answer (profiles and crash reports label their stacks)."""
    if not text.lstrip().startswith(("{", "[")):
        return parse_lines(text), render
    try:
        body = json.loads(text)
    except ValueError as error:
        raise InputError(f"not valid JSON: {error}") from None
    if isinstance(body, dict) and isinstance(body.get("jobs"), list):
        return {"jobs": body["jobs"]}, render
    if isinstance(body, dict) and "memoryMap" in body and "stacks" in body:
        return {"jobs": [{"memoryMap": body["memoryMap"], "stacks": body["stacks"]}]}, render
    if isinstance(body, dict) and any(key in body for key in ("stackTraces", "json_dump", "modules")):
        request, labels = parse_crash_report(body)
        return request, functools.partial(render, labels=labels)
    if isinstance(body, dict) and _looks_like_profile(body):
        request, threads = parse_profile(body, top)
        return request, functools.partial(render_profile, threads=threads)
    raise InputError("JSON input must be a v4 or v5 symbolication request "
                     "(with \"jobs\", or \"memoryMap\" and \"stacks\"), a crash report "
                     "(\"modules\" and \"threads\") or a Firefox profile (\"meta\", \"libs\" and \"threads\")")


def render(answer: dict[str, Any], out: TextIO, labels: list[str] | None = None) -> None:
    """Readable stacks, labelled (crash reports) or numbered when there are several."""
    results = answer.get("results", [])
    for job_number, result in enumerate(results, start=1):
        for stack_number, stack in enumerate(result.get("stacks", []), start=1):
            if labels:
                print(labels[stack_number - 1].capitalize(), file=out)
            elif len(results) > 1 or len(result["stacks"]) > 1:
                print(f"Job {job_number}, stack {stack_number}", file=out)
            render_frames(stack, out)
        _render_missing(result, out)


def render_frames(frames: list[dict[str, Any]], out: TextIO) -> None:
    """One stack: innermost first, inlined frames indented above their function. A frame with
    only a ``name`` (a profile's JS or label frame) is printed as that name."""
    for frame in frames:
        label = f"#{frame['frame']}"
        if "module" not in frame:
            print(f"  {label:<5} {frame.get('name', '?')}", file=out)
            continue
        for inline in frame.get("inlines", []):  # deepest first, as a stack reads
            print(f"  {label:<5} {frame['module']}    {inline['function']} (inlined)"
                  f"{_where(inline)}", file=out)
            label = ""
        if "function" in frame:
            symbol = f"{frame['function']} + {frame['function_offset']}"
        else:
            symbol = frame["module_offset"]
        print(f"  {label:<5} {frame['module']}  {symbol}{_where(frame)}", file=out)


def _render_missing(result: dict[str, Any], out: TextIO) -> None:
    missing = [name for name, found in result.get("found_modules", {}).items() if found is False]
    if missing:
        print(f"  (no symbols found for {', '.join(missing)})", file=out)


def _where(frame: dict[str, Any]) -> str:
    return f"  {frame['file']}:{frame.get('line', '?')}" if "file" in frame else ""


def render_profile(answer: dict[str, Any], out: TextIO, threads: list[ThreadStacks]) -> None:
    """Each thread, then its heaviest stacks with their share, the answer's stacks in order."""
    result = (answer.get("results") or [{}])[0]
    answered = iter(result.get("stacks", []))
    for number, thread in enumerate(threads):
        if number:
            print(file=out)
        print(f"Thread {thread.label}: {_samples(thread.total)}", file=out)
        for weight, frames in thread.stacks:
            print(f"\n  {_samples(weight)} ({_share(weight, thread.total)}):", file=out)
            render_frames(_merge(frames, next(answered, [])), out)
        if thread.hidden_stacks:
            more = "1 more stack" if thread.hidden_stacks == 1 else f"{thread.hidden_stacks} more stacks"
            print(f"\n  ({more}: {_samples(thread.hidden_weight)}, "
                  f"{_share(thread.hidden_weight, thread.total)}; see --top)", file=out)
    _render_missing(result, out)


def _merge(frames: list[Frame], answered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The whole stack to print: the answer's frames for native ones, names for the others,
    numbered by their place in the profile's stack (the server only saw the native ones)."""
    native = iter(answered)
    merged = []
    for number, frame in enumerate(frames):
        if frame.name is not None:
            merged.append({"frame": number, "name": frame.name})
            continue
        symbolicated = next(native, None) or {
            "module": frame.module[0] if frame.module else "<unknown>", "module_offset": hex(frame.offset)}
        merged.append(dict(symbolicated, frame=number))
    return merged


def _samples(weight: float) -> str:
    count = int(weight) if float(weight).is_integer() else round(weight, 1)
    return f"{count} sample{'' if count == 1 else 's'}"


def _share(weight: float, total: float) -> str:
    return f"{100 * weight / total:.1f}%"


def post_with_progress(url: str, body: dict[str, Any], progress: bool, err: TextIO) -> requests.Response:
    """POST, showing a progress line on ``err`` while the answer takes over a second."""
    done = threading.Event()
    started = time.monotonic()

    def report() -> None:
        if done.wait(PROGRESS_AFTER_SECONDS):
            return
        spinner = "|/-\\"
        turn = 0
        while not done.wait(0.2):
            err.write(f"\rsymbolicating {spinner[turn % 4]} {time.monotonic() - started:5.1f} s "
                      "(the server may be fetching symbols)")
            err.flush()
            turn += 1
        err.write("\r" + " " * 70 + "\r")
        err.flush()

    reporter = threading.Thread(target=report, daemon=True) if progress else None
    if reporter:
        reporter.start()
    try:
        return requests.post(url, json=body, timeout=(10, 900))
    finally:
        done.set()
        if reporter:
            reporter.join()


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def read_input(name: str) -> str:
    """The input's text; gzipped input (a profile saved by profiler.firefox.com) is unpacked."""
    if name == "-":
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    else:
        data = Path(name).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("utf-8")


def main(argv: list[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(prog="symbolicate", description=__doc__.split("\n\n")[0])
    parser.add_argument("input", nargs="?", default="-",
                        help="a v4/v5 request, a crash report or a Firefox profile (JSON, may be gzipped), "
                             "or lines of 'debug_file debug_id offset'; - for stdin")
    parser.add_argument("--server", default=DEFAULT_SERVER, help=f"SymServer's URL (default {DEFAULT_SERVER})")
    parser.add_argument("--json", action="store_true", help="print the v5 answer as JSON")
    parser.add_argument("--top", type=_positive, default=DEFAULT_TOP, metavar="N",
                        help=f"for a profile: how many of each thread's heaviest stacks to symbolicate "
                             f"and print (default {DEFAULT_TOP})")
    parser.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                        help="progress on stderr for slow answers (auto: when stderr is a terminal)")
    args = parser.parse_args(argv)
    try:
        text = read_input(args.input)
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as error:  # EOFError, zlib.error: bad gzip
        print(f"symbolicate: cannot read {args.input}: {getattr(error, 'strerror', None) or error}", file=err)
        return 2
    try:
        body, printer = to_request(text, args.top)
    except InputError as error:
        print(f"symbolicate: {args.input}: {error}", file=err)
        return 2
    progress = args.progress == "always" or (args.progress == "auto" and err.isatty())
    url = args.server.rstrip("/") + "/symbolicate/v5"
    try:
        response = post_with_progress(url, body, progress, err)
    except requests.RequestException as error:
        print(f"symbolicate: cannot reach {args.server}: {error}", file=err)
        return 1
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if response.status_code != 200:
        print(f"symbolicate: the server answered {response.status_code}: "
              f"{answer.get('error', response.text[:200])}", file=err)
        return 1
    if args.json:
        json.dump(answer, out, indent=2)
        out.write("\n")
    else:
        printer(answer, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
