"""Plain input: v4/v5 requests, and lines of ``debug_file debug_id offset``.

Also the :class:`InputError` every reader raises, and the address parsing they share.
"""

from __future__ import annotations

from typing import Any


class InputError(ValueError):
    """The input cannot be turned into a request; the message says where."""


def parse_number(value: Any) -> int:
    """An address or offset as inputs write them: an integer, or decimal or ``0x`` hex text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return int(value, 16) if value.lower().startswith("0x") else int(value)
    raise ValueError(f"{value!r} is not an address")


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
            offset = parse_number(parts[2])
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


def parse_request(body: dict[str, Any]) -> dict[str, Any] | None:
    """A v5 request from a v5 (``jobs``) or v3/v4 (``memoryMap`` and ``stacks``) one; None
    when ``body`` is neither. The server checks the rest and says what is wrong."""
    if isinstance(body.get("jobs"), list):
        return {"jobs": body["jobs"]}
    if "memoryMap" in body and "stacks" in body:
        return {"jobs": [{"memoryMap": body["memoryMap"], "stacks": body["stacks"]}]}
    return None
