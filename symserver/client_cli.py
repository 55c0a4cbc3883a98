"""``symbolicate``: symbolicate stacks from the command line, for people.

    symbolicate request.json              # a v4 or v5 request
    symbolicate crash.json                # minidump-stackwalk JSON or a crash ping's stackTraces
    symbolicate frames.txt                # lines of "debug_file debug_id offset"
    echo "xul.pdb 44E4EC8C2F41492B9369D6B9A059577C2 0xb2e3f7" | symbolicate
    symbolicate --json --server http://symbols.example:8080 request.json

Prints readable stacks (frame number, module, function + offset, file:line, inlined frames
indented above their function), or the v5 answer with ``--json``. When the server takes
more than a second (a large module being fetched), a progress line runs on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

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


def to_request(text: str) -> tuple[dict[str, Any], list[str] | None]:
    """A v5 request (and stack labels, for crash reports) from a v4/v5 request, a crash
    report, or module/offset lines."""
    if not text.lstrip().startswith(("{", "[")):
        return parse_lines(text), None
    try:
        body = json.loads(text)
    except ValueError as error:
        raise InputError(f"not valid JSON: {error}") from None
    if isinstance(body, dict) and isinstance(body.get("jobs"), list):
        return {"jobs": body["jobs"]}, None
    if isinstance(body, dict) and "memoryMap" in body and "stacks" in body:
        return {"jobs": [{"memoryMap": body["memoryMap"], "stacks": body["stacks"]}]}, None
    if isinstance(body, dict) and any(key in body for key in ("stackTraces", "json_dump", "modules")):
        return parse_crash_report(body)
    raise InputError("JSON input must be a v4 or v5 symbolication request "
                     "(with \"jobs\", or \"memoryMap\" and \"stacks\") or a crash report "
                     "(\"modules\" and \"threads\")")


def render(answer: dict[str, Any], out: TextIO, labels: list[str] | None = None) -> None:
    """Readable stacks: innermost first, inlined frames indented above their function."""
    results = answer.get("results", [])
    for job_number, result in enumerate(results, start=1):
        for stack_number, stack in enumerate(result.get("stacks", []), start=1):
            if labels:
                print(labels[stack_number - 1].capitalize(), file=out)
            elif len(results) > 1 or len(result["stacks"]) > 1:
                print(f"Job {job_number}, stack {stack_number}", file=out)
            for frame in stack:
                label = f"#{frame['frame']}"
                for inline in frame.get("inlines", []):  # deepest first, as a stack reads
                    print(f"  {label:<5} {frame['module']}    {inline['function']} (inlined)"
                          f"{_where(inline)}", file=out)
                    label = ""
                if "function" in frame:
                    symbol = f"{frame['function']} + {frame['function_offset']}"
                else:
                    symbol = frame["module_offset"]
                print(f"  {label:<5} {frame['module']}  {symbol}{_where(frame)}", file=out)
        missing = [name for name, found in result.get("found_modules", {}).items() if found is False]
        if missing:
            print(f"  (no symbols found for {', '.join(missing)})", file=out)


def _where(frame: dict[str, Any]) -> str:
    return f"  {frame['file']}:{frame.get('line', '?')}" if "file" in frame else ""


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


def main(argv: list[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(prog="symbolicate", description=__doc__.split("\n\n")[0])
    parser.add_argument("input", nargs="?", default="-",
                        help="a v4/v5 request (JSON) or lines of 'debug_file debug_id offset'; - for stdin")
    parser.add_argument("--server", default=DEFAULT_SERVER, help=f"SymServer's URL (default {DEFAULT_SERVER})")
    parser.add_argument("--json", action="store_true", help="print the v5 answer as JSON")
    parser.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                        help="progress on stderr for slow answers (auto: when stderr is a terminal)")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.input == "-" else Path(args.input).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        print(f"symbolicate: cannot read {args.input}: {getattr(error, 'strerror', None) or error}", file=err)
        return 2
    try:
        body, labels = to_request(text)
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
        render(answer, out, labels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
