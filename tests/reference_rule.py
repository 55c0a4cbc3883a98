"""A deliberately plain implementation of the lookup rule, to check the real tables against.

It shares no code with the DiskCache: it splits the text into lines, parses every record into
plain Python objects, and answers by linear scans.  Slow on purpose; obviously right is the
point.  The rule and its edge cases are in the README ("The lookup rule").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

HEX = re.compile(r"[0-9a-fA-F]+")
DEC = re.compile(r"[0-9]+")
LIMIT = 1 << 64
ENDS_BLOCK = {"FUNC", "PUBLIC", "FILE", "INLINE_ORIGIN", "INFO", "MODULE", "STACK"}
NAME_CAP = 64 * 1024  # bytes (README, "Hardening")
MARKER = "\u2026[truncated]"
LONG_LINE = 1024 * 1024  # bytes, a CR before the newline counted


def capped(name: bytes, cut: bool) -> str:
    """A name of at most NAME_CAP bytes, decoded; a longer (or already cut) one is cut on a
    UTF-8 boundary and gets the marker."""
    if len(name) <= NAME_CAP and not cut:
        return name.decode("utf-8", "replace")
    keep = min(len(name), NAME_CAP)
    if keep < len(name):
        # the first byte left out must not be the middle of a character (at most 3 bytes back)
        for back in range(4):
            if keep - back >= 0 and name[keep - back] & 0xC0 != 0x80:
                keep -= back
                break
    return name[:keep].decode("utf-8", "replace") + MARKER


def hex_field(text: str) -> int | None:
    return int(text, 16) if HEX.fullmatch(text) and int(text, 16) < LIMIT else None


def dec_field(text: str) -> int | None:
    return int(text) if DEC.fullmatch(text) and int(text) < LIMIT else None


@dataclass
class Func:
    address: int
    size: int
    name: str
    order: int
    lines: list[tuple[int, int, int, int]] = field(default_factory=list)  # addr, size, line, file
    # depth, call line, call file (None: the older format), origin, ranges
    inlines: list[tuple[int, int, int | None, int, list[tuple[int, int]]]] = field(default_factory=list)


class ReferenceModule:
    def __init__(self) -> None:
        self.info = {"os": None, "arch": None, "debug_id": None, "debug_file": None,
                     "code_id": None, "code_file": None}
        self.files: dict[int, str] = {}
        self.origins: dict[int, str] = {}
        self.funcs: list[Func] = []
        self.publics: list[tuple[int, str]] = []

    @classmethod
    def from_bytes(cls, data: bytes) -> ReferenceModule:
        raw_lines = data.split(b"\n")
        if not raw_lines[0].startswith(b"MODULE "):
            raise ValueError("not a symbol file")
        module = cls()
        current: Func | None = None
        first = True
        for raw in raw_lines:
            cut = len(raw) > LONG_LINE
            if cut:
                raw = raw[:LONG_LINE]  # only a keyword line's head is read; any other is junk
            elif raw.endswith(b"\r"):
                raw = raw[:-1]
            keyword = raw.split(b" ", 1)[0].decode("utf-8", "replace")
            if keyword in ENDS_BLOCK:
                current = None
                module._keyword_line(keyword, raw, cut, first)
                if keyword == "FUNC" and module.funcs and module.funcs[-1].order == -1:
                    current = module.funcs[-1]
                    current.order = len(module.funcs) - 1
            elif current is not None and not cut:
                module._block_line(current, raw.decode("utf-8", "replace"))
            first = False
        return module

    def _keyword_line(self, keyword: str, raw: bytes, cut: bool, first: bool) -> None:
        fields = raw.split(b" ")
        text = [f.decode("utf-8", "replace") for f in fields]
        if keyword == "MODULE" and first:
            if len(fields) < 5:
                raise ValueError("bad MODULE line")
            self.info.update(os=text[1], arch=text[2], debug_id=text[3],
                             debug_file=capped(b" ".join(fields[4:]), cut))
        elif keyword == "INFO":
            if len(fields) >= 3 and fields[1] == b"CODE_ID" and self.info["code_id"] is None:
                self.info["code_id"] = capped(fields[2], cut and len(fields) == 3)
                if len(fields) >= 4 and b" ".join(fields[3:]):
                    self.info["code_file"] = capped(b" ".join(fields[3:]), cut)
        elif keyword == "FILE":
            if len(fields) >= 3 and dec_field(text[1]) is not None:
                self.files.setdefault(int(text[1]), capped(b" ".join(fields[2:]), cut))
        elif keyword == "INLINE_ORIGIN":
            if len(fields) >= 3 and dec_field(text[1]) is not None:
                second = text[2]
                # Breakpad: a second field made of digits (or starting with '-') is the older
                # format's file number, which must be -1 or a number and precede the name
                if second and all(c.isdigit() and c.isascii() or (i == 0 and c == "-")
                                  for i, c in enumerate(second)):
                    if len(fields) >= 4 and (second == "-1" or dec_field(second) is not None):
                        self.origins.setdefault(int(text[1]), capped(b" ".join(fields[3:]), cut))
                else:
                    self.origins.setdefault(int(text[1]), capped(b" ".join(fields[2:]), cut))
        elif keyword == "FUNC":
            if len(fields) > 1 and fields[1] == b"m":
                fields, text = fields[1:], text[1:]
            if len(fields) >= 5 and b" ".join(fields[4:]) and all(hex_field(p) is not None for p in text[1:4]):
                self.funcs.append(Func(int(text[1], 16), int(text[2], 16),
                                       capped(b" ".join(fields[4:]), cut), -1))
        elif keyword == "PUBLIC":
            if len(fields) > 1 and fields[1] == b"m":
                fields, text = fields[1:], text[1:]
            if len(fields) >= 4 and b" ".join(fields[3:]) and all(hex_field(p) is not None for p in text[1:3]):
                self.publics.append((int(text[1], 16), capped(b" ".join(fields[3:]), cut)))

    @staticmethod
    def _block_line(func: Func, line: str) -> None:
        parts = line.split(" ")
        if parts[0] == "INLINE":
            fields = parts[1:]
            # Breakpad tells the formats apart by the count: even = with the call-site file
            if len(fields) < 5:
                return
            if len(fields) % 2 == 0:
                depth, call_line, call_file, origin, *bounds = fields
                if call_file != "-1" and dec_field(call_file) is None:
                    return
                file_number: int | None = int(call_file)
            else:
                depth, call_line, origin, *bounds = fields
                file_number = None  # the older format: the call site keeps the line record's file
            if (all(dec_field(p) is not None for p in (depth, call_line, origin))
                    and all(hex_field(p) is not None for p in bounds)):
                ranges = [(int(bounds[i], 16), int(bounds[i], 16) + int(bounds[i + 1], 16))
                          for i in range(0, len(bounds), 2)]
                func.inlines.append((int(depth), int(call_line), file_number, int(origin), ranges))
        elif (len(parts) == 4 and hex_field(parts[0]) is not None and hex_field(parts[1]) is not None
              and dec_field(parts[2]) is not None and dec_field(parts[3]) is not None):
            func.lines.append((int(parts[0], 16), int(parts[1], 16), int(parts[2]), int(parts[3])))

    @cached_property
    def kept_funcs(self) -> list[Func]:
        kept: list[Func] = []
        for func in sorted(self.funcs, key=lambda f: (f.address, f.order)):
            if func.size == 0:
                continue
            if kept and func.address < kept[-1].address + kept[-1].size:
                continue
            kept.append(func)
        return kept

    @cached_property
    def kept_publics(self) -> list[tuple[int, str]]:
        first: dict[int, str] = {}
        for address, name in self.publics:
            first.setdefault(address, name)
        return sorted(first.items())

    @staticmethod
    def kept_lines(func: Func) -> list[tuple[int, int, int, int]]:
        kept: list[tuple[int, int, int, int]] = []
        for record in sorted((r for r in func.lines if r[1] > 0), key=lambda r: r[0]):
            if kept and record[0] < kept[-1][0] + kept[-1][1]:
                continue
            kept.append(record)
        return kept

    def lookup(self, offset: int) -> dict | None:
        funcs = self.kept_funcs
        covering = [f for f in funcs if f.address <= offset < f.address + f.size]
        if covering:
            return self._in_func(covering[0], offset)
        below = [f.address for f in funcs if f.address <= offset]
        nearest = max(below) if below else None
        publics = [(a, n) for a, n in self.kept_publics if a <= offset]
        if publics:
            address, name = publics[-1]
            if nearest is None or address > nearest:
                return {"function": name, "function_offset": offset - address, "function_size": None,
                        "file": None, "line": None, "inlines": []}
        return None

    def _in_func(self, func: Func, offset: int) -> dict:
        file = line = None
        for address, size, line_number, file_number in self.kept_lines(func):
            if address <= offset < address + size:
                file = self.files.get(file_number)
                line = line_number if file is not None else None
        chain = []
        depth = 0
        while True:
            records = [r for r in func.inlines
                       if r[0] == depth and any(s <= offset < e for s, e in r[4])]
            if not records or records[0][3] not in self.origins:
                break
            chain.append(records[0])
            depth += 1
        inlines = []
        line_record_file = file
        for _, call_line, call_file, origin, _ in reversed(chain):
            inlines.append({"function": self.origins[origin], "file": file, "line": line})
            file = line_record_file if call_file is None else self.files.get(call_file)
            line = call_line if file is not None else None
        return {"function": func.name, "function_offset": offset - func.address,
                "function_size": func.size, "file": file, "line": line, "inlines": inlines}
