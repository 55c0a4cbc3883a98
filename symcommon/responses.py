"""Response shapes: v3/v4 strings and v5 frames, rendered from what was found for a job.

Both servers find symbols their own way (memcached + DiskCache, or tables on disk) into a
:class:`JobAnswers`, then render it here, so the two can never answer differently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from operator import attrgetter, itemgetter
from typing import Any, Iterable

from symcommon import jsonio
from symcommon.frames import FrameInfo, InlineFrame
from symcommon.requests import Job

UNKNOWN_MODULE = "<unknown>"
#: Ends a name shortened so that an answer stays within ``maxAnswerMB``: the marker names cut
#: when processed end with too (``diskcache.symfile.TRUNCATION_MARKER``), so clients know one.
SHORTENED_MARKER = "\u2026[truncated]"
#: Answer-bounding never shortens a name below this many characters (marker included).
MIN_SHORTENED_NAME = 256


_NAMES_SIZE = attrgetter("names_size")


@dataclass(frozen=True, slots=True)
class ModuleAnswer:
    """Whether symbols were found for a module, and the name users know it by."""

    found: bool
    code_file: str | None = None


@dataclass(slots=True)
class JobAnswers:
    """What was found for one job, keyed by memoryMap index and (index, offset)."""

    modules: dict[int, ModuleAnswer] = field(default_factory=dict)
    symbols: dict[tuple[int, int], FrameInfo | None] = field(default_factory=dict)
    #: Frames whose names were shortened to bound the answer (v5: ``"names_shortened": true``).
    shortened: set[tuple[int, int]] = field(default_factory=set)


def v4_stacks(job: Job, answers: JobAnswers) -> list[list[str]]:
    """The original protocol's strings: ``function (in debug_file)``, ``0x... (in debug_file)``
    when nothing was found, ``0x...`` for a frame of no module (index -1)."""
    files = [entry.module.debug_file for entry in job.memory_map]
    symbols = answers.symbols
    return [[(f"{info.function} (in {files[index]})" if (info := symbols.get((index, offset))) is not None
              else f"{hex(offset)} (in {files[index]})") if index >= 0 else hex(offset)
             for index, offset in stack]
            for stack in job.stacks]


def _known_modules(job: Job, answers: JobAnswers) -> list[bool]:
    modules = answers.modules
    return [bool(modules.get(i) and modules[i].found) for i in range(len(job.memory_map))]


def v4_body(job: Job, answers: JobAnswers, version: int, cache_hits: list[list[bool]] | None = None) -> bytes:
    """The original protocol's answer (version 3: only the stacks of :func:`v4_stacks`; 4 also
    ``knownModules`` and, when asked for, ``cacheHits``) as JSON with the original server's
    spacing (``", "`` and ``": "``), written without the standard library's encoder, which
    cannot use its C speedups with that spacing."""
    stacks = b", ".join([b"[" + b", ".join(map(jsonio.dumps_string, stack)) + b"]"
                         for stack in v4_stacks(job, answers)])
    if version == 3:
        return b"[" + stacks + b"]"
    parts = [b'{"symbolicatedStacks": [', stacks, b'], "knownModules": ',
             _spaced_booleans(_known_modules(job, answers))]
    if cache_hits is not None:
        parts += [b', "cacheHits": [', b", ".join(map(_spaced_booleans, cache_hits)), b"]"]
    parts.append(b"}")
    return b"".join(parts)


def _spaced_booleans(values: list[bool]) -> bytes:
    return b"[" + b", ".join([b"true" if value else b"false" for value in values]) + b"]"


def rendered_frame(debug_file: str, code_file: str | None, offset: int, info: FrameInfo | None) -> tuple[bytes, bytes]:
    """A found frame's answer in both versions, encoded once (when it is cached) so that a
    warm request only joins bytes: its v4 string as JSON, and its v5 frame as JSON without
    the ``{"frame":N,`` that starts it (see :func:`v4_body_rendered`, :func:`v5_body_rendered`).
    The same bytes as :func:`v4_body` and :func:`v5_body` write for it (tests/test_warm_path.py)."""
    function = f"{info.function} (in {debug_file})" if info is not None else f"{hex(offset)} (in {debug_file})"
    fields: dict[str, Any] = {"module_offset": hex(offset), "module": code_file or debug_file}
    if info is not None:
        fields.update(info.to_v5_fields())
    return jsonio.dumps_string(function), jsonio.dumps(fields)[1:]


_V4, _V5 = itemgetter(0), itemgetter(1)


def used_modules(job: Job) -> set[int]:
    """The memoryMap indexes the job's frames refer to."""
    if job.columns is not None:
        return set().union(*(indexes for indexes, _ in job.columns))
    return set().union(*(map(_V4, stack) for stack in job.stacks))  # (_V4: item 0, the index)


def v4_body_rendered(job: Job, stacks: list[list[tuple[bytes, bytes]]], version: int) -> bytes:
    """:func:`v4_body` for a job whose every frame was found, from :func:`rendered_frame`'s."""
    encoded = b", ".join([b"[" + b", ".join(map(_V4, stack)) + b"]" for stack in stacks])
    if version == 3:
        return b"[" + encoded + b"]"
    used = used_modules(job)
    known = [index in used for index in range(len(job.memory_map))]
    return b'{"symbolicatedStacks": [' + encoded + b'], "knownModules": ' + _spaced_booleans(known) + b"}"


#: b'{"frame":N,' for the first frames of a stack, made once.
_FRAME_STARTS = [b'{"frame":%d,' % number for number in range(4096)]


def _frame_starts(count: int) -> list[bytes]:
    if count <= len(_FRAME_STARTS):
        return _FRAME_STARTS[:count]
    return _FRAME_STARTS + [b'{"frame":%d,' % number for number in range(len(_FRAME_STARTS), count)]


def v5_body_rendered(jobs: list[Job], stacks_per_job: list[list[list[tuple[bytes, bytes]]]]) -> bytes:
    """:func:`v5_body` for jobs whose every frame was found, from :func:`rendered_frame`'s."""
    results = []
    for job, stacks in zip(jobs, stacks_per_job):
        used = used_modules(job)
        found: dict[str, bool | None] = {}
        for index, entry in enumerate(job.memory_map):
            found[entry.label] = True if index in used else None
        encoded = b",".join([b"[" + b",".join(map(bytes.__add__, _frame_starts(len(stack)), map(_V5, stack))) + b"]"
                             for stack in stacks])
        results.append(b'{"stacks":[' + encoded + b'],"found_modules":' + jsonio.dumps(found) + b"}")
    return b'{"results":[' + b",".join(results) + b"]}"


def v5_result(job: Job, answers: JobAnswers) -> dict[str, Any]:
    """One entry of a v5 response's ``results``."""
    return {"stacks": [list(_v5_frames(job, answers, stack)) for stack in job.stacks],
            "found_modules": _found_modules(job, answers)}


def _found_modules(job: Job, answers: JobAnswers) -> dict[str, bool | None]:
    found: dict[str, bool | None] = {}
    for index, entry in enumerate(job.memory_map):
        module = answers.modules.get(index)
        found[entry.label] = None if module is None else module.found
    return found


#: Frames rendered and encoded at a time by :func:`v5_body`.
RENDER_CHUNK = 5000


def v5_body(jobs: list[Job], answers: list[JobAnswers], extra: dict[str, Any] | None = None,
            rendered: list[list[list[tuple[bytes, bytes]]] | None] | None = None) -> bytes:
    """A v5 answer as compact JSON (the same bytes as encoding ``{"results": [v5_result...]}``),
    built a few thousand frames at a time.  ``rendered[i]``: job ``i``'s frames as
    :func:`rendered_frame` encoded them when they were cached (None: rendered here), for a
    job none of whose names :func:`bound_answers` shortened.

    For a big answer this runs in a thread: one ``json.dumps`` of a whole answer keeps the
    GIL (and so the event loop) for seconds, while many short calls let the loop run between
    them; and only one chunk of frame dicts exists at a time.
    """
    parts = [b'{"results":[']
    for number, (job, answer) in enumerate(zip(jobs, answers)):
        parts.append(b'{"stacks":[' if number == 0 else b',{"stacks":[')
        stacks = rendered[number] if rendered is not None else None
        if stacks is not None and not answer.shortened:
            parts.append(b",".join([b"[" + b",".join(map(bytes.__add__, _frame_starts(len(stack)), map(_V5, stack)))
                                    + b"]" for stack in stacks]))
            parts.append(b'],"found_modules":' + jsonio.dumps(_found_modules(job, answer)) + b"}")
            continue
        for stack_number, stack in enumerate(job.stacks):
            parts.append(b"[" if stack_number == 0 else b",[")
            for start in range(0, len(stack), RENDER_CHUNK):
                chunk = list(_v5_frames(job, answer, stack, start, start + RENDER_CHUNK))
                if start:
                    parts.append(b",")
                parts.append(jsonio.dumps(chunk)[1:-1])
            parts.append(b"]")
        parts.append(b'],"found_modules":' + jsonio.dumps(_found_modules(job, answer)) + b"}")
    parts.append(b"]")
    for key, value in (extra or {}).items():
        parts.append(b"," + jsonio.dumps(key) + b":" + jsonio.dumps(value))
    parts.append(b"}")
    return b"".join(parts)


def _v5_frames(job: Job, answers: JobAnswers, stack: tuple[tuple[int, int], ...], start: int = 0,
               end: int | None = None) -> Any:
    """The v5 frames of ``stack[start:end]``."""
    for number, (module_index, offset) in enumerate(stack[start:end], start):
        frame: dict[str, Any] = {"frame": number, "module_offset": hex(offset)}
        if module_index < 0:
            frame["module"] = UNKNOWN_MODULE
        else:
            module = answers.modules.get(module_index)
            frame["module"] = (module and module.code_file) or \
                job.memory_map[module_index].module.debug_file
            info = answers.symbols.get((module_index, offset))
            if info is not None:
                frame.update(info.to_v5_fields())
                if (module_index, offset) in answers.shortened:
                    frame["names_shortened"] = True
        yield frame


def _names(info: FrameInfo) -> list[str]:
    names = [info.function, info.file or ""]
    for inline in info.inlines:
        names += (inline.function, inline.file or "")
    return names


def _shorten(name: str | None, cap: int) -> str | None:
    if name is None or len(name) <= cap:
        return name
    return name[:cap - len(SHORTENED_MARKER)] + SHORTENED_MARKER


def _shortened_info(info: FrameInfo, cap: int) -> FrameInfo:
    return replace(info, function=_shorten(info.function, cap), file=_shorten(info.file, cap),
                   inlines=tuple(InlineFrame(_shorten(i.function, cap), _shorten(i.file, cap), i.line)
                                 for i in info.inlines))


def bound_answers(jobs: Iterable[Job], answers: Iterable[JobAnswers], max_name_bytes: int) -> int | None:
    """Shorten the longest names of a request's answers so that all the names it repeats
    (once per frame that shows them) hold about ``max_name_bytes`` at most.

    Names are what can make an answer huge: a thousand frames in a function with a 64 KiB
    name are 64 MB of JSON.  The cap is the largest length (not below
    :data:`MIN_SHORTENED_NAME`) that fits; names longer than it end in
    :data:`SHORTENED_MARKER` and their frames are listed in ``JobAnswers.shortened``.
    Linear in the frames (the cap is found by bisection over the distinct symbols).
    Returns the cap used, or None when nothing was shortened.
    """
    pairs = list(zip(jobs, answers))
    # The common case first: even if every frame showed the longest symbol, the names fit.
    frames = sum(len(stack) for job, _ in pairs for stack in job.stacks)
    longest = max((max(map(_NAMES_SIZE, filter(None, answer.symbols.values())), default=0)
                   for _, answer in pairs), default=0)
    if frames * longest <= max_name_bytes:
        return None
    uses_per_job = []
    total = 0
    for job, answer in pairs:  # then the exact count
        uses = Counter(frame for stack in job.stacks for frame in stack) if answer.symbols else Counter()
        uses_per_job.append(uses)
        for key, info in answer.symbols.items():
            if info is not None:
                total += uses[key] * info.names_size
    if total <= max_name_bytes:
        return None
    weighted: list[tuple[int, list[int]]] = []  # (frames showing it, its name lengths)
    for (_, answer), uses in zip(pairs, uses_per_job):
        for key, info in answer.symbols.items():
            if info is not None and uses[key]:
                weighted.append((uses[key], [len(name) for name in _names(info)]))

    def size(cap: int) -> int:
        return sum(count * sum(min(length, cap) for length in lengths) for count, lengths in weighted)

    low, high = MIN_SHORTENED_NAME, max(max(lengths) for _, lengths in weighted)
    if size(low) < max_name_bytes:
        while low < high:  # the largest cap whose size fits
            middle = (low + high + 1) // 2
            if size(middle) <= max_name_bytes:
                low = middle
            else:
                high = middle - 1
    cap = low
    for _, answer in pairs:
        for key, info in answer.symbols.items():
            if info is not None and any(len(name) > cap for name in _names(info)):
                answer.symbols[key] = _shortened_info(info, cap)
                answer.shortened.add(key)
    return cap
