"""Naming a module: validation of debug file names and ids, and every name derived from them.

Client input reaches the filesystem and symbol-store URLs only through :class:`ModuleId`,
whose constructor refuses anything that could act as a path (separators, ``..``, NUL) and
whose derived names are percent-encoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

_DEBUG_ID = re.compile(r"[0-9A-Fa-f]{1,64}")
MAX_DEBUG_FILE_LENGTH = 200  # after percent-encoding, so a cache file name stays < 255 bytes


class InvalidModule(ValueError):
    """The debug file name or debug id cannot name a module."""


def check_debug_file(debug_file: object) -> str:
    if not isinstance(debug_file, str):
        raise InvalidModule(f"debug file name must be a string, got {type(debug_file).__name__}")
    if not debug_file or debug_file in (".", ".."):
        raise InvalidModule(f"invalid debug file name {debug_file!r}")
    if "/" in debug_file or "\\" in debug_file or not debug_file.isprintable():
        raise InvalidModule(f"invalid debug file name {debug_file!r}: no path separators or control characters")
    if len(quote(debug_file, safe="")) > MAX_DEBUG_FILE_LENGTH:
        raise InvalidModule(f"debug file name too long ({len(debug_file)} characters)")
    return debug_file


def check_debug_id(debug_id: object) -> str:
    if not isinstance(debug_id, str):
        raise InvalidModule(f"debug id must be a string, got {type(debug_id).__name__}")
    if not _DEBUG_ID.fullmatch(debug_id):
        raise InvalidModule(f"invalid debug id {debug_id[:80]!r}: expected 1 to 64 hex digits")
    return debug_id


@dataclass(frozen=True, slots=True)
class ModuleId:
    """A module as the symbol stores know it: debug file and (upper-case) debug id."""

    debug_file: str
    debug_id: str

    @classmethod
    def parse(cls, debug_file: object, debug_id: object) -> ModuleId:
        """Validate client input; raises :class:`InvalidModule`."""
        return cls(check_debug_file(debug_file), check_debug_id(debug_id).upper())

    @property
    def sym_file_name(self) -> str:
        """``xul.pdb`` -> ``xul.sym``; ``libxul.so`` -> ``libxul.so.sym``."""
        if self.debug_file.lower().endswith(".pdb"):
            return self.debug_file[:-4] + ".sym"
        return self.debug_file + ".sym"

    @property
    def store_path(self) -> str:
        """The URL path below a symbol store's base URL."""
        return "/".join(quote(part, safe="") for part in
                        (self.debug_file, self.debug_id, self.sym_file_name))

    @property
    def cache_stem(self) -> str:
        """A file name safe in any directory: the id first, so it can never be ``.`` or ``..``."""
        return f"{self.debug_id}.{quote(self.debug_file, safe='')}"

    @classmethod
    def from_cache_stem(cls, stem: str) -> ModuleId:
        debug_id, _, encoded = stem.partition(".")
        return cls.parse(unquote(encoded), debug_id)

    def __str__(self) -> str:
        return f"{self.debug_file}/{self.debug_id}"
