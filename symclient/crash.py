"""Crash reports: minidump-stackwalk's JSON, and the ``stackTraces`` of a Firefox crash ping."""

from __future__ import annotations

from typing import Any

from symclient.lines import InputError, parse_number

CRASH_REPORT_KEYS = ("stackTraces", "json_dump", "modules")


def looks_like_crash_report(body: dict[str, Any]) -> bool:
    """Keys only crash reports have (among the inputs ``symbolicate`` reads)."""
    return any(key in body for key in CRASH_REPORT_KEYS)


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
                    offset = parse_number(frame["ip"]) - parse_number(modules[module_index]["base_addr"])
                elif frame.get("module") in by_file and "module_offset" in frame:
                    module_index = by_file[frame["module"]]
                    offset = parse_number(frame["module_offset"])
                else:
                    module_index, offset = -1, parse_number(frame.get("ip", frame.get("offset", 0)))
            except (ValueError, KeyError, IndexError, TypeError) as error:
                raise InputError(f"threads[{thread_index}].frames[{number}]: {error}") from None
            frames.append([module_index, offset])
        stacks.append(frames)
        labels.append(f"thread {thread_index}" + (" (crashing)" if thread_index == crashing else ""))
    return {"jobs": [{"memoryMap": memory_map, "stacks": stacks}]}, labels
