"""Strict JSON in, compact JSON out: one place to decide how request bodies are decoded."""

from __future__ import annotations

import json
from typing import Any


class JsonError(ValueError):
    """The body is not the JSON we accept."""


def _refuse_constant(name: str) -> Any:
    raise JsonError(f"{name} is not valid JSON")


def loads(body: bytes | str) -> Any:
    """Decode a request body; NaN, Infinity, bad UTF-8 and absurd nesting are errors."""
    try:
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        return json.loads(body, parse_constant=_refuse_constant)
    except UnicodeDecodeError as error:
        raise JsonError(f"body is not UTF-8 ({error.reason} at byte {error.start})") from error
    except RecursionError as error:
        raise JsonError("body is nested too deeply") from error
    except JsonError:
        raise
    except ValueError as error:
        raise JsonError(f"body is not valid JSON: {error}") from error


def dumps(value: Any, compact: bool = True) -> bytes:
    """Encode a response; ``compact=False`` gives the original server's spacing."""
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps(value, separators=separators, ensure_ascii=False).encode("utf-8", "replace")
