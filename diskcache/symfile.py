"""The Breakpad .sym text parser: streams a symbol file into a processed table.

Speed comes from not splitting the file into lines.  C-level regex searches jump from one
record keyword to the next: the line records and INLINE records between a FUNC and the next
keyword are kept as one raw block (compressed into the table) and parsed only when a lookup
lands in that function (:func:`parse_func_block`); runs of STACK records are skipped whole.
So the Python-level work is one step per FUNC, PUBLIC, FILE and INLINE_ORIGIN record.

The record syntax and the edge cases (junk lines, duplicates, overlaps) follow the lookup
rule documented in the README; this module and the table reader implement it together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, BinaryIO

from diskcache.tablewriter import TableWriter

CHUNK_BYTES = 1024 * 1024
U64_LIMIT = 1 << 64

#: A line whose first token is one of these ends the current FUNC's block.
KEYWORDS = rb"FUNC|PUBLIC|FILE|INLINE_ORIGIN|INFO|MODULE|STACK"
#: The next record: a well-formed FUNC line with its fields (groups 1-3: address, size, name;
#: numbers short enough to be below 2**64), or else any keyword line (group 4: the keyword).
_NEXT_RECORD = re.compile(
    rb"\n(?:FUNC (?:m )?([0-9a-fA-F]{1,16}) ([0-9a-fA-F]{1,16}) [0-9a-fA-F]{1,16} ([^\r\n]+)\r?\n"
    rb"|(" + KEYWORDS + rb")(?= |\r?\n))")
_NOT_STACK = re.compile(rb"\n(?!STACK(?: |\r?\n))")
#: Runs of same-keyword records: where a run ends, and its lines in the strict form.
_RUNS = {
    b"FILE": (re.compile(rb"\n(?!FILE )"), re.compile(rb"^FILE ([0-9]{1,19}) ([^\r\n]*)\r?$", re.M), "files"),
    b"INLINE_ORIGIN": (re.compile(rb"\n(?!INLINE_ORIGIN )"),
                       re.compile(rb"^INLINE_ORIGIN ([0-9]{1,19}) ([^\r\n]*)\r?$", re.M), "origins"),
    b"PUBLIC": (re.compile(rb"\n(?!PUBLIC )"),
                re.compile(rb"^PUBLIC (?:m )?([0-9a-fA-F]{1,16}) [0-9a-fA-F]{1,16} ([^\r\n]+)\r?$", re.M),
                "publics"),
}
_HEX = re.compile(rb"[0-9a-fA-F]+")
_DEC = re.compile(rb"[0-9]+")
_LINE_RECORD = re.compile(rb"^([0-9a-fA-F]+) ([0-9a-fA-F]+) ([0-9]+) ([0-9]+)\r?$", re.M)
_INLINE_RECORD = re.compile(
    rb"^INLINE ([0-9]+) ([0-9]+) ([0-9]+) ([0-9]+)((?: [0-9a-fA-F]+ [0-9a-fA-F]+)+)\r?$", re.M
)


class NotASymbolFile(ValueError):
    """The bytes are not a Breakpad symbol file (no MODULE line first)."""


def _hex(field: bytes) -> int | None:
    if _HEX.fullmatch(field):
        value = int(field, 16)
        if value < U64_LIMIT:
            return value
    return None


def _dec(field: bytes) -> int | None:
    if _DEC.fullmatch(field):
        value = int(field)
        if value < U64_LIMIT:
            return value
    return None


def _split_numbered_name(rest: bytes) -> tuple[int, bytes] | None:
    """``<n dec> <name>`` as in FILE and INLINE_ORIGIN records."""
    number, _, name = rest.partition(b" ")
    value = _dec(number)
    if value is None or not _:
        return None
    return value, name


def _strip_m(rest: bytes) -> bytes:
    return rest[2:] if rest.startswith(b"m ") else rest


class _Parser:
    """Feeds records of one symbol file into a :class:`TableWriter`."""

    def __init__(self, writer: TableWriter) -> None:
        self.writer = writer
        self.module: dict[str, Any] | None = None
        self.code_id: str | None = None
        self.code_file: str | None = None
        self.junk_lines = 0
        # The FUNC whose block is still open: (address, size, name, where its name starts in
        # the current buffer, or -1 when its line is not followed by the block there).
        self.open_func: tuple[int, int, bytes, int] | None = None

    def close_func(self, block: bytes) -> None:
        address, size, name, _ = self.open_func  # type: ignore[misc]
        self.writer.funcs.add(address, name + b"\n" + block, size)
        self.open_func = None

    def record(self, keyword: bytes, line: bytes) -> None:
        """Handle one keyword line (without its newline and trailing CR)."""
        rest = line[len(keyword) + 1:]
        if keyword == b"FUNC":
            fields = _strip_m(rest).split(b" ", 3)
            if len(fields) == 4 and fields[3]:
                address, size, param = _hex(fields[0]), _hex(fields[1]), _hex(fields[2])
                if address is not None and size is not None and param is not None:
                    self.open_func = (address, size, fields[3], -1)
                    return
        elif keyword == b"PUBLIC":
            fields = _strip_m(rest).split(b" ", 2)
            if len(fields) == 3 and fields[2]:
                address, param = _hex(fields[0]), _hex(fields[1])
                if address is not None and param is not None:
                    self.writer.publics.add(address, fields[2])
                    return
        elif keyword == b"FILE" or keyword == b"INLINE_ORIGIN":
            parsed = _split_numbered_name(rest)
            if parsed is not None:
                table = self.writer.files if keyword == b"FILE" else self.writer.origins
                table.add(parsed[0], parsed[1])
                return
        elif keyword == b"INFO":
            fields = rest.split(b" ", 2)
            if fields[0] == b"CODE_ID" and len(fields) >= 2 and self.code_id is None:
                self.code_id = fields[1].decode("utf-8", "replace")
                if len(fields) == 3 and fields[2]:
                    self.code_file = fields[2].decode("utf-8", "replace")
            return
        elif keyword == b"MODULE":
            if self.module is None:
                fields = rest.split(b" ", 3)
                if len(fields) == 4:
                    os_name, arch, debug_id, debug_file = (f.decode("utf-8", "replace") for f in fields)
                    self.module = {"os": os_name, "arch": arch, "debug_id": debug_id, "debug_file": debug_file}
            return
        else:  # STACK: unwind data, not needed for symbolication
            return
        self.junk_lines += 1

    def scan(self, buffer: bytes, position: int) -> int:
        """Handle every keyword line in ``buffer[position:]`` (which ends with a newline).

        ``buffer[position]`` is a newline; if a FUNC is open, its block starts at
        ``buffer[1]``.  Returns where the unconsumed tail starts: the newline before the
        open FUNC's block if one is open, else the buffer's last newline.
        """
        block_start = 1 if self.open_func else -1
        search = _NEXT_RECORD.search
        # FUNCs are gathered here and added in one batch: no call per FUNC.
        func_keys: list[int] = []
        func_values: list[bytes] = []
        func_sizes: list[int] = []
        add_key, add_value, add_size = func_keys.append, func_values.append, func_sizes.append
        open_func = self.open_func  # a local in the loop; self.open_func around other calls
        while (match := search(buffer, position)) is not None:
            start = match.start()
            if open_func is not None:
                add_key(open_func[0])
                if open_func[3] >= 0:  # name, newline and block lie together in the buffer
                    add_value(buffer[open_func[3]:start + 1])
                else:
                    add_value(open_func[2] + b"\n" + buffer[block_start:start + 1])
                add_size(open_func[1])
                open_func = None
            address = match[1]
            if address is not None:
                # The usual, well-formed FUNC line, parsed by the search that found it.
                position = match.end() - 1
                name_end = match.end(3)
                open_func = (int(address, 16), int(match[2], 16), match[3],
                             match.start(3) if name_end == position else -1)  # -1: a CR follows
                block_start = position + 1
                continue
            keyword = match[4]
            run = _RUNS.get(keyword)
            if run is not None and (after := self.bulk_run(buffer, start, *run)) is not None:
                position = after
                continue
            end = buffer.index(b"\n", match.end())
            line = buffer[start + 1:end]
            if line.endswith(b"\r"):
                line = line[:-1]
            self.open_func = None
            self.record(keyword, line)
            open_func = self.open_func
            if open_func is not None:
                block_start = end + 1
                position = end
            elif keyword == b"STACK":
                position = _NOT_STACK.search(buffer, end).start()
            else:
                position = end
        if open_func is not None and open_func[3] >= 0:
            open_func = (*open_func[:3], -1)  # the next buffer will not hold its line
        self.open_func = open_func
        self.writer.funcs.add_many(func_keys, func_values, func_sizes)
        if self.open_func is not None:
            return block_start - 1
        return len(buffer) - 1

    def bulk_run(self, buffer: bytes, start: int, run_end: re.Pattern[bytes],
                 records: re.Pattern[bytes], table_name: str) -> int | None:
        """Add a run of same-keyword records (FILE, INLINE_ORIGIN, PUBLIC) in one go.

        Real files list these in long runs.  If every line of the run matches the strict
        pattern (which admits only what :meth:`record` would accept, the same way), the whole
        run is added from one C-level ``findall``; otherwise returns None and the records go
        through :meth:`record` one by one.  Returns the newline ending the run.
        """
        end = run_end.search(buffer, start + 1).start()
        found = records.findall(buffer, start + 1, end)
        if len(found) != buffer.count(b"\n", start, end):
            return None
        table = getattr(self.writer, table_name)
        base = 16 if table_name == "publics" else 10
        table.add_many([int(key, base) for key, _ in found], [name for _, name in found])
        return end


@dataclass(frozen=True)
class ProcessStats:
    """What processing one symbol file found, for logs and metrics."""

    input_bytes: int
    output_bytes: int
    funcs: int
    publics: int
    files: int
    origins: int
    junk_lines: int


def process_symbol_file(source: BinaryIO, sink: BinaryIO) -> ProcessStats:
    """Parse the .sym text read from ``source`` and write its table to ``sink``.

    Reads in chunks, so memory stays flat however large the file; only the block of one
    FUNC (its line records) is ever held whole.  Raises :class:`NotASymbolFile`.
    """
    with TableWriter(sink) as writer:
        return _process(source, writer)


def _process(source: BinaryIO, writer: TableWriter) -> ProcessStats:
    parser = _Parser(writer)
    first = source.read(CHUNK_BYTES)
    while len(first) < len(b"MODULE ") and (more := source.read(CHUNK_BYTES)):
        first += more  # a short read must not decide what the file is
    if not first.startswith(b"MODULE "):
        raise NotASymbolFile("the file does not start with a MODULE record")
    input_bytes = len(first)
    pending = b"\n" + first
    scan_from = 0
    at_end = False
    while not at_end:
        chunk = source.read(CHUNK_BYTES)
        input_bytes += len(chunk)
        if chunk:
            pending += chunk
        else:
            at_end = True
            if not pending.endswith(b"\n"):
                pending += b"\n"
        last_newline = pending.rfind(b"\n")
        if last_newline <= scan_from:
            continue  # one very long line: keep reading
        complete = pending[:last_newline + 1]
        keep_from = parser.scan(complete, scan_from)
        # Carry the open FUNC's block and the partial last line into the next round; the
        # block holds no keyword, so the next search starts at the last complete line.
        scan_from = last_newline - keep_from
        pending = pending[keep_from:]
    if parser.open_func is not None:
        parser.close_func(pending[1:] if pending.startswith(b"\n") else pending)
    if parser.module is None:
        raise NotASymbolFile("the MODULE record is malformed")
    module = dict(parser.module, code_id=parser.code_id, code_file=parser.code_file)
    stats = {
        "input_bytes": input_bytes,
        "funcs": len(writer.funcs.keys),
        "publics": len(writer.publics.keys),
        "files": len(writer.files.keys),
        "origins": len(writer.origins.keys),
        "junk_lines": parser.junk_lines,
    }
    output_bytes = writer.finish(module, stats)
    return ProcessStats(output_bytes=output_bytes, **stats)


@dataclass(frozen=True, slots=True)
class InlineRecord:
    depth: int
    call_line: int
    call_file: int
    origin: int
    ranges: tuple[tuple[int, int], ...]  # (start, end) pairs, end exclusive

    def contains(self, offset: int) -> bool:
        return any(start <= offset < end for start, end in self.ranges)


@dataclass(frozen=True, slots=True)
class FuncBlock:
    """A FUNC's line records (sorted, non-overlapping) and INLINE records (file order)."""

    line_starts: list[int]
    line_records: list[tuple[int, int, int]]  # (end, line, file number), parallel to starts
    inlines: list[InlineRecord]


def parse_func_block(block: bytes) -> FuncBlock:
    """Parse the raw records that followed a FUNC line, skipping junk lines."""
    records = []
    for match in _LINE_RECORD.finditer(block):
        address, size = int(match[1], 16), int(match[2], 16)
        line, file_number = int(match[3]), int(match[4])
        if size and max(address, size, line, file_number) < U64_LIMIT:
            records.append((address, address + size, line, file_number))
    records.sort(key=lambda record: record[0])  # stable: file order on ties
    starts: list[int] = []
    kept: list[tuple[int, int, int]] = []
    end = -1
    for address, record_end, line, file_number in records:
        if address >= end:
            starts.append(address)
            kept.append((record_end, line, file_number))
            end = record_end
    inlines = []
    if b"INLINE " in block:
        for match in _INLINE_RECORD.finditer(block):
            numbers = [int(match[i]) for i in range(1, 5)]
            bounds = [int(field, 16) for field in match[5].split()]
            if max(numbers + bounds) >= U64_LIMIT:
                continue
            ranges = tuple(
                (bounds[i], bounds[i] + bounds[i + 1]) for i in range(0, len(bounds), 2)
            )
            inlines.append(InlineRecord(*numbers, ranges))
    return FuncBlock(starts, kept, inlines)
