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
    inlines: list[tuple[int, int, int, int, list[tuple[int, int]]]] = field(default_factory=list)


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
        text = data.decode("utf-8", "replace")
        lines = text.split("\n")
        if not lines[0].startswith("MODULE "):
            raise ValueError("not a symbol file")
        module = cls()
        current: Func | None = None
        first = True
        for raw in lines:
            line = raw[:-1] if raw.endswith("\r") else raw
            keyword = line.split(" ", 1)[0]
            if keyword in ENDS_BLOCK:
                current = None
                if keyword == "MODULE" and first:
                    parts = line.split(" ", 4)
                    if len(parts) != 5:
                        raise ValueError("bad MODULE line")
                    module.info.update(os=parts[1], arch=parts[2], debug_id=parts[3], debug_file=parts[4])
                elif keyword == "INFO":
                    parts = line.split(" ", 3)
                    if len(parts) >= 3 and parts[1] == "CODE_ID" and module.info["code_id"] is None:
                        module.info["code_id"] = parts[2]
                        if len(parts) == 4 and parts[3]:
                            module.info["code_file"] = parts[3]
                elif keyword in ("FILE", "INLINE_ORIGIN"):
                    parts = line.split(" ", 2)
                    if len(parts) == 3 and dec_field(parts[1]) is not None:
                        table = module.files if keyword == "FILE" else module.origins
                        table.setdefault(int(parts[1]), parts[2])
                elif keyword == "FUNC":
                    rest = line[5:]
                    if rest.startswith("m "):
                        rest = rest[2:]
                    parts = rest.split(" ", 3)
                    if len(parts) == 4 and parts[3] and all(hex_field(p) is not None for p in parts[:3]):
                        current = Func(int(parts[0], 16), int(parts[1], 16), parts[3], len(module.funcs))
                        module.funcs.append(current)
                elif keyword == "PUBLIC":
                    rest = line[7:]
                    if rest.startswith("m "):
                        rest = rest[2:]
                    parts = rest.split(" ", 2)
                    if len(parts) == 3 and parts[2] and all(hex_field(p) is not None for p in parts[:2]):
                        module.publics.append((int(parts[0], 16), parts[2]))
            elif current is not None:
                module._block_line(current, line)
            first = False
        return module

    @staticmethod
    def _block_line(func: Func, line: str) -> None:
        parts = line.split(" ")
        if parts[0] == "INLINE":
            numbers = parts[1:5]
            bounds = parts[5:]
            if (len(numbers) == 4 and all(dec_field(p) is not None for p in numbers)
                    and bounds and len(bounds) % 2 == 0 and all(hex_field(p) is not None for p in bounds)):
                ranges = [(int(bounds[i], 16), int(bounds[i], 16) + int(bounds[i + 1], 16))
                          for i in range(0, len(bounds), 2)]
                func.inlines.append((int(numbers[0]), int(numbers[1]), int(numbers[2]), int(numbers[3]), ranges))
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
        for _, call_line, call_file, origin, _ in reversed(chain):
            inlines.append({"function": self.origins[origin], "file": file, "line": line})
            file = self.files.get(call_file)
            line = call_line if file is not None else None
        return {"function": func.name, "function_offset": offset - func.address,
                "function_size": func.size, "file": file, "line": line, "inlines": inlines}
