"""Response shapes: v3/v4 strings and v5 frames, rendered from what was found for a job.

Both servers find symbols their own way (memcached + DiskCache, or tables on disk) into a
:class:`JobAnswers`, then render it here, so the two can never answer differently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
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


def v4_frame(job: Job, answers: JobAnswers, module_index: int, offset: int) -> str:
    if module_index < 0:
        return hex(offset)
    debug_file = job.memory_map[module_index].module.debug_file
    info = answers.symbols.get((module_index, offset))
    if info is None:
        return f"{hex(offset)} (in {debug_file})"
    return f"{info.function} (in {debug_file})"


def v4_response(job: Job, answers: JobAnswers, version: int,
                cache_hits: list[list[bool]] | None = None) -> Any:
    """The original protocol: version 3 answers only the list of symbolicated stacks."""
    stacks = [[v4_frame(job, answers, index, offset) for index, offset in stack]
              for stack in job.stacks]
    if version == 3:
        return stacks
    known = [bool(answers.modules.get(i) and answers.modules[i].found)
             for i in range(len(job.memory_map))]
    body: dict[str, Any] = {"symbolicatedStacks": stacks, "knownModules": known}
    if cache_hits is not None:
        body["cacheHits"] = cache_hits
    return body


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


def v5_body(jobs: list[Job], answers: list[JobAnswers], extra: dict[str, Any] | None = None) -> bytes:
    """A v5 answer as compact JSON (the same bytes as encoding ``{"results": [v5_result...]}``),
    built a few thousand frames at a time.

    For a big answer this runs in a thread: one ``json.dumps`` of a whole answer keeps the
    GIL (and so the event loop) for seconds, while many short calls let the loop run between
    them; and only one chunk of frame dicts exists at a time.
    """
    parts = [b'{"results":[']
    for number, (job, answer) in enumerate(zip(jobs, answers)):
        parts.append(b'{"stacks":[' if number == 0 else b',{"stacks":[')
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


def _names_size(info: FrameInfo) -> int:
    """The characters of the names a frame shows: its function's and file's, and its inlines'."""
    size = len(info.function) + len(info.file or "")
    if info.inlines:
        size += sum(len(i.function) + len(i.file or "") for i in info.inlines)
    return size


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
    longest = max((_names_size(info) for _, answer in pairs for info in answer.symbols.values()
                   if info is not None), default=0)
    if frames * longest <= max_name_bytes:
        return None
    uses_per_job = []
    total = 0
    for job, answer in pairs:  # then the exact count
        uses = Counter(frame for stack in job.stacks for frame in stack) if answer.symbols else Counter()
        uses_per_job.append(uses)
        for key, info in answer.symbols.items():
            if info is not None:
                total += uses[key] * _names_size(info)
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
