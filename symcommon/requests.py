"""Request validation: every shape a client may send, turned into typed jobs or a clear 400.

Error messages say what is wrong and where (``jobs[1].stacks[0][3]: ...``), so a client
author can fix a request from the message alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from symcommon.modules import InvalidModule, ModuleId

U64_LIMIT = 1 << 64
DEFAULT_MAX_JOBS = 10
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]{1,16}|[0-9]{1,20}")


class RequestError(ValueError):
    """The request is malformed; the message is sent back with HTTP 400."""


@dataclass(frozen=True, slots=True)
class Limits:
    """How much one request may ask for (the config's ``max*PerRequest`` keys)."""

    max_jobs: int = DEFAULT_MAX_JOBS
    max_frames: int = 1_000_000
    max_modules: int = 5000
    max_stacks: int = 100_000

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> Limits:
        # The DiskCache's section has no job limit: SymServer sends it one job at a time, but a
        # client talking to it directly gets the same default.  (With slots, cls.max_jobs is
        # the field's descriptor, not its default.)
        return cls(section.get("maxJobsPerRequest", DEFAULT_MAX_JOBS), section["maxFramesPerRequest"],
                   section["maxModulesPerRequest"], section["maxStacksPerRequest"])

    def max_arrays(self) -> int:
        """The most JSON arrays a request within these limits can hold: the jobs list, and per
        job its memoryMap, entries and stacks list, then every stack and frame."""
        return 1 + self.max_jobs * (2 + self.max_modules) + self.max_stacks + self.max_frames


#: Bodies (bytes) and answers (frames) from which validation and rendering run in a thread,
#: so the event loop keeps answering (heartbeats, small requests) beside a big request.
BIG_BODY_BYTES = 1024 * 1024
BIG_ANSWER_FRAMES = 20_000


def frame_total(jobs: list[Job]) -> int:
    return sum(job.frame_count() for job in jobs)


#: A JSON string (escapes included), so the brackets inside strings can be left out of a count.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def check_body_counts(body: bytes, limits: Limits) -> None:
    """Refuse, before decoding, a body with more arrays than any request within ``limits``.

    Decoding is the one step that cannot be interrupted or moved off the event loop (the C
    decoder holds the GIL): 16 MB of ``[]`` took 2 s to decode.  Counting the ``[`` outside
    strings takes 1/40 of that and refuses such bodies at once; a body that passes holds at
    most ``limits.max_arrays()`` lists.
    """
    if body.count(b"[") <= limits.max_arrays():
        return  # the common case: no need to look at strings
    arrays = _JSON_STRING.sub(b"", body).count(b"[")
    if arrays > limits.max_arrays():
        raise RequestError(
            f"request: {arrays} JSON arrays, more than a request within the limits can hold "
            f"({limits.max_frames} frames, {limits.max_stacks} stacks, {limits.max_jobs} jobs of "
            f"{limits.max_modules} modules)")


@dataclass(frozen=True, slots=True)
class MemoryMapEntry:
    module: ModuleId
    label: str  # "<debug_file>/<debug_id>" as the client wrote it, for v5 found_modules


@dataclass(frozen=True, slots=True)
class Job:
    """One set of stacks and the modules they refer to (v4 requests are one job)."""

    memory_map: tuple[MemoryMapEntry, ...]
    #: The stacks as frames (see :attr:`stacks`); None until asked for when ``columns`` hold them.
    pairs: tuple[tuple[tuple[int, int], ...], ...] | None
    #: The same stacks as columns, (module indexes, offsets) each, for the warm lane (which
    #: needs no frame tuples); None when a stack had to be checked frame by frame.
    columns: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] | None = None

    @property
    def stacks(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        """Each stack's frames, (module index or -1, offset)."""
        if self.pairs is None:
            object.__setattr__(self, "pairs", tuple(tuple(zip(*columns)) for columns in self.columns or ()))
        return self.pairs  # type: ignore[return-value]

    def frame_count(self) -> int:
        return sum(len(stack) for stack in self.pairs) if self.pairs is not None else \
            sum(len(indexes) for indexes, _ in self.columns or ())

    def frames(self) -> set[tuple[int, int]]:
        """The distinct (module index, offset) pairs to look up, without index -1."""
        return {frame for stack in self.stacks for frame in stack if frame[0] >= 0}


@dataclass(frozen=True, slots=True)
class DebugRequest:
    action: str
    body: dict[str, Any]


def _is_int(value: Any) -> bool:
    return type(value) is int  # bool is an int subclass, and never a valid index


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_job(body: Any, where: str = "", limits: Limits = Limits(), frames_before: int = 0,
              stacks_before: int = 0) -> Job:
    """Validate ``{"stacks": ..., "memoryMap": ...}``; ``where`` prefixes error locations.

    ``frames_before`` and ``stacks_before`` count the frames and stacks of earlier jobs of the
    same request, for the limits.  Every count is checked before any per-item work.
    """
    if not isinstance(body, dict):
        raise RequestError(f"{where or 'request'}: expected a JSON object, got {_describe(body)}")
    memory_map_value = body.get("memoryMap")
    if not isinstance(memory_map_value, list):
        raise RequestError(f"{where}memoryMap: expected a list of [debug_file, debug_id] pairs")
    if len(memory_map_value) > limits.max_modules:
        raise RequestError(f"{where}memoryMap: {len(memory_map_value)} modules, more than the limit "
                           f"of {limits.max_modules} per request")
    stacks_value = body.get("stacks")
    if not isinstance(stacks_value, list):
        raise RequestError(f"{where}stacks: expected a list of stacks")
    if stacks_before + len(stacks_value) > limits.max_stacks:
        raise RequestError(f"{where}stacks: {stacks_before + len(stacks_value)} stacks, more than the "
                           f"limit of {limits.max_stacks} per request")
    frame_count = frames_before + sum(len(stack) for stack in stacks_value if isinstance(stack, list))
    if frame_count > limits.max_frames:
        raise RequestError(f"{where}stacks: {frame_count} frames, more than the limit of "
                           f"{limits.max_frames} per request")
    memory_map = []
    for index, entry in enumerate(memory_map_value):
        place = f"{where}memoryMap[{index}]"
        if not isinstance(entry, list) or len(entry) != 2:
            raise RequestError(f"{place}: expected [debug_file, debug_id], got {_describe(entry)}")
        try:
            module = ModuleId.parse(entry[0], entry[1])
        except InvalidModule as error:
            raise RequestError(f"{place}: {error}") from None
        memory_map.append(MemoryMapEntry(module, f"{entry[0]}/{entry[1]}"))
    stacks = []
    columns: list[tuple[tuple[int, ...], tuple[int, ...]]] | None = []
    for stack_index, stack in enumerate(stacks_value):
        if not isinstance(stack, list):
            raise RequestError(f"{where}stacks[{stack_index}]: expected a list of frames")
        checked = _frame_columns(stack, len(memory_map))
        if checked is not None:
            if columns is not None:
                columns.append(checked)
            else:
                stacks.append(tuple(zip(*checked)))
            continue
        if columns is not None:  # a stack checked frame by frame: the job keeps frames, not columns
            stacks = [tuple(zip(*done)) for done in columns]
            columns = None
        # Something is wrong: find the first bad frame and say what is wrong with it.
        frames = []
        for frame_index, frame in enumerate(stack):
            place = f"{where}stacks[{stack_index}][{frame_index}]"
            if not isinstance(frame, list) or len(frame) != 2:
                raise RequestError(f"{place}: expected [module_index, module_offset], got {_describe(frame)}")
            module_index, offset = frame
            if not _is_int(module_index) or not -1 <= module_index < len(memory_map):
                raise RequestError(
                    f"{place}: module index {_describe(module_index)} is not -1 or an index into "
                    f"memoryMap ({len(memory_map)} entries)")
            if not _is_int(offset) or not 0 <= offset < U64_LIMIT:
                raise RequestError(f"{place}: offset {_describe(offset)} is not an integer from 0 to 2^64-1")
            frames.append((module_index, offset))
        stacks.append(tuple(frames))
    if columns is not None:
        return Job(tuple(memory_map), None, tuple(columns))
    return Job(tuple(memory_map), tuple(stacks))


def _frame_columns(stack: list, modules: int) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """``stack`` as (module indexes, offsets) if every frame is valid, else None.

    The same checks as the frame-by-frame loop of :func:`parse_job`, each one pass in C over
    the whole stack (types, lengths, then the bounds as minimum and maximum): a 200-frame
    stack is checked in about a tenth of the loop's time.
    """
    if not stack:
        return (), ()
    try:
        # Every frame of two items, whatever they are (a JSON string or object of two would
        # unpack too, into strings, which the type check below refuses).
        indexes, offsets = zip(*stack, strict=True)
    except (TypeError, ValueError):
        return None
    if set(map(type, indexes)) != _INT or set(map(type, offsets)) != _INT:
        return None  # (type, not isinstance: a bool is no index or offset)
    used = set(indexes)  # a few modules: their bounds are checked on this small set
    if min(used) < -1 or max(used) >= modules or min(offsets) < 0 or max(offsets) >= U64_LIMIT:
        return None
    return indexes, offsets


_INT = {int}


def parse_v4(body: Any, default_version: int | None = None, limits: Limits = Limits()) -> tuple[int, Job]:
    """A version 3 or 4 request (POST /); ``default_version`` when "version" may be absent."""
    if not isinstance(body, dict):
        raise RequestError(f"request: expected a JSON object, got {_describe(body)}")
    version = body.get("version", default_version)
    if version not in (3, 4) or not _is_int(version):
        raise RequestError(f"version: expected 3 or 4, got {_describe(version)}")
    return version, parse_job(body, limits=limits)


def parse_v5(body: Any, limits: Limits = Limits()) -> list[Job]:
    """``{"jobs": [job, ...]}`` or a single job without the wrapper."""
    if isinstance(body, dict) and "jobs" in body:
        jobs = body["jobs"]
        if not isinstance(jobs, list):
            raise RequestError("jobs: expected a list of jobs")
        if len(jobs) > limits.max_jobs:
            raise RequestError(f"jobs: {len(jobs)} jobs, more than the limit of {limits.max_jobs} per request")
        parsed: list[Job] = []
        frames = stacks = 0
        for index, job in enumerate(jobs):
            parsed.append(parse_job(job, f"jobs[{index}].", limits, frames, stacks))
            frames += parsed[-1].frame_count()
            stacks += len(parsed[-1].pairs if parsed[-1].pairs is not None else parsed[-1].columns or ())
        return parsed
    return [parse_job(body, limits=limits)]


def parse_debug(body: Any) -> DebugRequest | None:
    """The debug protocol request in ``body``, or None if it is not one."""
    if not isinstance(body, dict) or body.get("debug") is not True:
        return None
    action = body.get("action")
    if not isinstance(action, str):
        raise RequestError("action: a debug request needs a string \"action\"")
    return DebugRequest(action, body)


def debug_module(request: DebugRequest) -> ModuleId:
    """``libName`` and ``breakpadId`` of a debug action, validated like a memoryMap entry."""
    try:
        return ModuleId.parse(request.body.get("libName"), request.body.get("breakpadId"))
    except InvalidModule as error:
        raise RequestError(f"libName/breakpadId: {error}") from None


def debug_offset(request: DebugRequest) -> int:
    """``offset`` of a debug action: an integer, or a decimal or 0x-hex string."""
    value = request.body.get("offset")
    if _is_int(value):
        offset = value
    elif isinstance(value, str) and _NUMBER.fullmatch(value):
        offset = int(value, 16) if value[:2] in ("0x", "0X") else int(value)
    else:
        raise RequestError(f"offset: expected an integer or a numeric string, got {_describe(value)}")
    if not 0 <= offset < U64_LIMIT:
        raise RequestError(f"offset: {offset} is out of range")
    return offset


def debug_flag(request: DebugRequest, name: str) -> bool:
    value = request.body.get(name)
    if not isinstance(value, bool):
        raise RequestError(f"{name}: expected true or false, got {_describe(value)}")
    return value
