"""Readable stacks for a terminal, with whatever the input or the server says made harmless.

Symbol names, file names and module names come from symbol files anyone can upload, profile
names from web pages: printed raw, an escape sequence in one could clear the screen, retitle
the window or rewrite what was printed before, and a bidi override could make a line read
differently from what it holds. Every line goes out through :func:`terminal_text`.
"""

from __future__ import annotations

import re
from typing import Any, TextIO

from symclient.profiles import Frame, ThreadStacks

# C0 controls, DEL, C1 controls, bidi embeddings/overrides/isolates/marks, line and paragraph
# separators, and lone surrogates (which a JSON string may hold and no terminal can be sent).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_text(value: Any) -> str:
    """``value`` as text that prints as itself: characters a terminal would act on (ESC
    sequences, bell, C1 controls, bidi overrides) written as ``\\x1b``-style escapes."""
    return _UNSAFE.sub(_escaped, str(value))


def _emit(out: TextIO, line: str) -> None:
    print(terminal_text(line), file=out)


def render(answer: dict[str, Any], out: TextIO, labels: list[str] | None = None) -> None:
    """Readable stacks, labelled (crash reports) or numbered when there are several."""
    results = answer.get("results", [])
    for job_number, result in enumerate(results, start=1):
        for stack_number, stack in enumerate(result.get("stacks", []), start=1):
            if labels:
                _emit(out, labels[stack_number - 1].capitalize())
            elif len(results) > 1 or len(result["stacks"]) > 1:
                _emit(out, f"Job {job_number}, stack {stack_number}")
            render_frames(stack, out)
        _render_missing(result, out)


def render_frames(frames: list[dict[str, Any]], out: TextIO) -> None:
    """One stack: innermost first, inlined frames indented above their function. A frame with
    only a ``name`` (a profile's JS or label frame) is printed as that name."""
    for frame in frames:
        label = f"#{frame['frame']}"
        if "module" not in frame:
            _emit(out, f"  {label:<5} {frame.get('name', '?')}")
            continue
        for inline in frame.get("inlines", []):  # deepest first, as a stack reads
            _emit(out, f"  {label:<5} {frame['module']}    {inline['function']} (inlined)"
                       f"{_where(inline)}")
            label = ""
        if "function" in frame:
            symbol = f"{frame['function']} + {frame['function_offset']}"
        else:
            symbol = frame["module_offset"]
        _emit(out, f"  {label:<5} {frame['module']}  {symbol}{_where(frame)}")


def _render_missing(result: dict[str, Any], out: TextIO) -> None:
    missing = [name for name, found in result.get("found_modules", {}).items() if found is False]
    if missing:
        _emit(out, f"  (no symbols found for {', '.join(missing)})")


def _where(frame: dict[str, Any]) -> str:
    return f"  {frame['file']}:{frame.get('line', '?')}" if "file" in frame else ""


def render_profile(answer: dict[str, Any], out: TextIO, threads: list[ThreadStacks]) -> None:
    """Each thread, then its heaviest stacks with their share, the answer's stacks in order."""
    result = (answer.get("results") or [{}])[0]
    answered = iter(result.get("stacks", []))
    for number, thread in enumerate(threads):
        if number:
            _emit(out, "")
        _emit(out, f"Thread {thread.label}: {_samples(thread.total)}")
        for weight, frames in thread.stacks:
            _emit(out, "")
            _emit(out, f"  {_samples(weight)} ({_share(weight, thread.total)}):")
            render_frames(_merge(frames, next(answered, [])), out)
        if thread.hidden_stacks:
            more = "1 more stack" if thread.hidden_stacks == 1 else f"{thread.hidden_stacks} more stacks"
            _emit(out, "")
            _emit(out, f"  ({more}: {_samples(thread.hidden_weight)}, "
                       f"{_share(thread.hidden_weight, thread.total)}; see --top)")
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
