"""Response shapes: v3/v4 strings and v5 frames, rendered from what was found for a job.

Both servers find symbols their own way (memcached + DiskCache, or tables on disk) into a
:class:`JobAnswers`, then render it here, so the two can never answer differently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from symcommon.frames import FrameInfo
from symcommon.requests import Job

UNKNOWN_MODULE = "<unknown>"


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
    stacks = []
    for stack in job.stacks:
        frames = []
        for number, (module_index, offset) in enumerate(stack):
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
            frames.append(frame)
        stacks.append(frames)
    found: dict[str, bool | None] = {}
    for index, entry in enumerate(job.memory_map):
        module = answers.modules.get(index)
        found[entry.label] = None if module is None else module.found
    return {"stacks": stacks, "found_modules": found}
