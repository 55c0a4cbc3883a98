"""The Breakpad .sym text parser: streams a symbol file into a processed table.

Speed comes from not splitting the file into lines.  C-level regex searches jump from one
record keyword to the next: the line records and INLINE records between a FUNC and the next
keyword are kept as one raw block (compressed into the table) and parsed only when a lookup
lands in that function (:func:`parse_func_block`); runs of STACK records are skipped whole.
So the Python-level work is one step per FUNC, PUBLIC, FILE and INLINE_ORIGIN record.

The record syntax and the edge cases (junk lines, duplicates, overlaps) follow the lookup
rule documented in the README; this module and the table reader implement it together.

Both INLINE formats are read, as Breakpad's processor reads them, line by line: after
``INLINE`` an even number of fields is the current format (``depth call_line call_file origin
ranges``), an odd number the older one without the call-site file; an ``INLINE_ORIGIN`` whose
second field is a number (or ``-1``) is the older ``id file name``, whose file is not used.

Limits, so that a hostile or broken file cannot make answers or memory huge: a name (FUNC,
PUBLIC, INLINE_ORIGIN, FILE path, INFO code id and file) longer than :data:`NAME_CAP` bytes
is cut there, on a UTF-8 boundary, and ends with :data:`TRUNCATION_MARKER`; a line longer
than :data:`LONG_LINE` bytes is never held whole: a keyword line is read from its first
LONG_LINE bytes (its name then always carries the marker), any other long line is junk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import islice, repeat
from operator import add, itemgetter, le
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from diskcache import compiled
from diskcache.tablewriter import TableWriter

CHUNK_BYTES = 1024 * 1024
U64_LIMIT = 1 << 64
#: Names longer than this many bytes are cut (README, "Hardening").
NAME_CAP = 64 * 1024
#: What a cut name ends with: U+2026 and "[truncated]", in UTF-8.
TRUNCATION_MARKER = "\u2026[truncated]".encode()
#: Lines longer than this many bytes (a CR before the newline counted) are read from their head.
LONG_LINE = 1024 * 1024

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
    # the older format (a file number or -1 before the name), or a name that cannot be read
    # as a number; anything else goes through record()
    b"INLINE_ORIGIN": (re.compile(rb"\n(?!INLINE_ORIGIN )"),
                       re.compile(rb"^INLINE_ORIGIN ([0-9]{1,19}) (?:(?:-1|[0-9]{1,19}) |(?![-0-9]))([^\r\n]*)\r?$",
                                  re.M), "origins"),
    b"PUBLIC": (re.compile(rb"\n(?!PUBLIC )"),
                re.compile(rb"^PUBLIC (?:m )?([0-9a-fA-F]{1,16}) [0-9a-fA-F]{1,16} ([^\r\n]+)\r?$", re.M),
                "publics"),
}
_HEX = re.compile(rb"[0-9a-fA-F]+")
_DEC = re.compile(rb"[0-9]+")
_LINE_RECORD = re.compile(rb"^([0-9a-fA-F]+) ([0-9a-fA-F]+) ([0-9]+) ([0-9]+)\r?$", re.M)
_INLINE_RECORD = re.compile(rb"^INLINE ([-0-9a-fA-F ]+?)\r?$", re.M)
#: The field after an INLINE_ORIGIN's id that makes it the older format (Breakpad's test).
_ORIGIN_FILE_FIELD = re.compile(rb"-[0-9]*|[0-9]+")


class NotASymbolFile(ValueError):
    """The bytes are not a Breakpad symbol file (no MODULE line first)."""


class ModuleMismatch(ValueError):
    """The symbol file is for another module: its MODULE line names another debug id."""

    def __init__(self, expected: str, found: str) -> None:
        super().__init__(f"its MODULE line names debug id {found[:80]!r}, not the requested {expected!r}")
        self.expected = expected
        self.found = found


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


def _origin(rest: bytes) -> tuple[int, bytes] | None:
    """An INLINE_ORIGIN's id and name, in either format (decided per line, as Breakpad does):
    if the field after the id looks like a number, it is the older format's file number,
    which must be -1 or a decimal and be followed by the name."""
    parsed = _split_numbered_name(rest)
    if parsed is None:
        return None
    number, name = parsed
    field, space, old_name = name.partition(b" ")
    if not _ORIGIN_FILE_FIELD.fullmatch(field):
        return parsed
    if not space or (field != b"-1" and _dec(field) is None):
        return None
    return number, old_name


def cap_name(name: bytes, cut: bool = False) -> bytes:
    """``name`` itself, or, if longer than NAME_CAP bytes (or ``cut``: it was already cut
    short), its first NAME_CAP bytes at most, ending on a UTF-8 boundary, plus the marker."""
    if len(name) <= NAME_CAP and not cut:
        return name
    end = min(len(name), NAME_CAP)
    if end < len(name):
        # step back over continuation bytes (at most three) so no character is split
        back = end
        while back > end - 3 and back > 0 and name[back] & 0xC0 == 0x80:
            back -= 1
        if name[back] & 0xC0 != 0x80:
            end = back
    return name[:end] + TRUNCATION_MARKER


def _strip_m(rest: bytes) -> bytes:
    return rest[2:] if rest.startswith(b"m ") else rest


def _text(field: bytes, cut: bool = False) -> str:
    return cap_name(field, cut).decode("utf-8", "replace")


_KEYWORD_SET = frozenset(KEYWORDS.split(b"|"))


class _Parser:
    """Feeds records of one symbol file into a :class:`TableWriter`."""

    def __init__(self, writer: TableWriter) -> None:
        self.writer = writer
        self.module: dict[str, Any] | None = None
        self.code_id: str | None = None
        self.code_file: str | None = None
        self.junk_lines = 0
        # The open FUNC's block as far as earlier buffers held it (complete lines).
        self.block_parts: list[bytes] = []
        # The FUNC whose block is still open: (address, size, name, where its name starts in
        # the current buffer, or -1 when its line is not followed by the block there).
        self.open_func: tuple[int, int, bytes, int] | None = None

    def close_func(self, block: bytes) -> None:
        address, size, name, _ = self.open_func  # type: ignore[misc]
        self.writer.funcs.add(address, b"".join([name, b"\n", *self.block_parts, block]), size)
        self.block_parts = []
        self.open_func = None

    def record(self, keyword: bytes, line: bytes, cut: bool = False) -> None:
        """Handle one keyword line (without its newline and trailing CR); ``cut``: the line
        is the head of a long line, whose name is then cut short."""
        rest = line[len(keyword) + 1:]
        if keyword == b"FUNC":
            fields = _strip_m(rest).split(b" ", 3)
            if len(fields) == 4 and fields[3]:
                address, size, param = _hex(fields[0]), _hex(fields[1]), _hex(fields[2])
                if address is not None and size is not None and param is not None:
                    self.open_func = (address, size, cap_name(fields[3], cut), -1)
                    return
        elif keyword == b"PUBLIC":
            fields = _strip_m(rest).split(b" ", 2)
            if len(fields) == 3 and fields[2]:
                address, param = _hex(fields[0]), _hex(fields[1])
                if address is not None and param is not None:
                    self.writer.publics.add(address, cap_name(fields[2], cut))
                    return
        elif keyword == b"FILE" or keyword == b"INLINE_ORIGIN":
            parsed = _split_numbered_name(rest) if keyword == b"FILE" else _origin(rest)
            if parsed is not None:
                table = self.writer.files if keyword == b"FILE" else self.writer.origins
                table.add(parsed[0], cap_name(parsed[1], cut))
                return
        elif keyword == b"INFO":
            fields = rest.split(b" ", 2)
            if fields[0] == b"CODE_ID" and len(fields) >= 2 and self.code_id is None:
                self.code_id = _text(fields[1], cut and len(fields) == 2)
                if len(fields) == 3 and fields[2]:
                    self.code_file = _text(fields[2], cut)
            return
        elif keyword == b"MODULE":
            if self.module is None:
                fields = rest.split(b" ", 3)
                if len(fields) == 4:
                    os_name, arch, debug_id, debug_file = (_text(f, cut and i == 3) for i, f in enumerate(fields))
                    self.module = {"os": os_name, "arch": arch, "debug_id": debug_id, "debug_file": debug_file}
            return
        else:  # STACK: unwind data, not needed for symbolication
            return
        self.junk_lines += 1

    def long_line(self, head: bytes) -> None:
        """A line longer than LONG_LINE, of which only ``head`` (its first LONG_LINE bytes)
        was kept: a keyword line is handled from its head, any other line is junk (and, being
        no keyword line, does not end a FUNC's block)."""
        keyword = head.partition(b" ")[0]
        if keyword not in _KEYWORD_SET:
            self.junk_lines += 1
            return
        if self.open_func is not None:
            self.close_func(b"")
        self.record(keyword, head, cut=True)

    def scan(self, buffer: bytes, position: int) -> int:
        """Handle every keyword line in ``buffer[position:]`` (which ends with a newline).

        ``buffer[position]`` is a newline; if a FUNC is open, its block continues at
        ``buffer[1]``.  A block still open at the end is kept in ``block_parts`` (so a long
        block is never copied again with every buffer).  Returns the buffer's last newline.
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
                elif self.block_parts:  # the block began in earlier buffers
                    add_value(b"".join([open_func[2], b"\n", *self.block_parts, buffer[block_start:start + 1]]))
                    self.block_parts = []
                else:
                    add_value(open_func[2] + b"\n" + buffer[block_start:start + 1])
                add_size(open_func[1])
                open_func = None
            address = match[1]
            if address is not None:
                # The usual, well-formed FUNC line, parsed by the search that found it.
                position = match.end() - 1
                name = match[3]
                if len(name) > NAME_CAP:
                    open_func = (int(address, 16), int(match[2], 16), cap_name(name), -1)
                else:
                    open_func = (int(address, 16), int(match[2], 16), name,
                                 match.start(3) if match.end(3) == position else -1)  # -1: a CR follows
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
        if open_func is not None:
            if open_func[3] >= 0:
                open_func = (*open_func[:3], -1)  # the next buffer will not hold its line
            if block_start < len(buffer):
                self.block_parts.append(buffer[block_start:])
        self.open_func = open_func
        self.writer.funcs.add_many(func_keys, func_values, func_sizes)
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
        names = [name for _, name in found]
        if max(map(len, names)) > NAME_CAP:
            return None  # record() cuts it
        table = getattr(self.writer, table_name)
        base = 16 if table_name == "publics" else 10
        table.add_many([int(key, base) for key, _ in found], names)
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


def process_symbol_file(source: BinaryIO, sink: BinaryIO, expected_debug_id: str | None = None,
                        spill_dir: Path | None = None, identity: dict[str, Any] | None = None) -> ProcessStats:
    """Parse the .sym text read from ``source`` and write its table to ``sink``.

    Reads in chunks, so memory stays flat however large the file or its lines; only the
    block of one FUNC (its line records) is ever held whole.  Raises :class:`NotASymbolFile`,
    or :class:`ModuleMismatch` as soon as the MODULE line names another debug id than
    ``expected_debug_id`` (compared case-insensitively).  ``spill_dir``: where the writer's
    temporary index runs go (see :class:`TableWriter`).  ``identity``: the source file's
    path, size and mtime, recorded in the table (a local file's table is reused while they
    are the file's).
    """
    with TableWriter(sink, spill_dir) as writer:
        return _process(source, writer, expected_debug_id, identity)


def _check_module(parser: _Parser, expected_debug_id: str | None) -> None:
    if expected_debug_id is not None and parser.module is not None:
        found = parser.module["debug_id"]
        if found.upper() != expected_debug_id.upper():
            raise ModuleMismatch(expected_debug_id, found)


def _process(source: BinaryIO, writer: TableWriter, expected_debug_id: str | None,
             identity: dict[str, Any] | None = None) -> ProcessStats:
    parser = _Parser(writer)
    read_size = min(CHUNK_BYTES, LONG_LINE)  # so no line within one read can be a long one
    first = source.read(read_size)
    while len(first) < len(b"MODULE ") and (more := source.read(max(1, read_size - len(first)))):
        first += more  # a short read must not decide what the file is
    if not first.startswith(b"MODULE "):
        raise NotASymbolFile("the file does not start with a MODULE record")
    input_bytes = len(first)
    # The text not handled yet is: tail (a newline and the start of an incomplete line, at
    # most one read long) + pieces (reads without a newline).  Every read is looked at a
    # bounded number of times, so the work is linear however long a line is; once the
    # incomplete line is longer than LONG_LINE only its head is kept (long_head).
    tail = b"\n"
    pieces: list[bytes] = []
    pieces_bytes = 0
    long_head: bytes | None = None
    chunk = first
    module_checked = expected_debug_id is None
    while True:
        at_end = not chunk
        if at_end:
            if long_head is not None:  # the file ends in a long line
                parser.long_line(long_head)
                long_head = None
            elif len(tail) > 1 or pieces:
                chunk = b"\n"  # the last line has no newline of its own
            else:
                break
        if long_head is not None:  # skipping the rest of a long line
            newline = chunk.find(b"\n")
            if newline < 0:
                chunk = source.read(read_size)
                input_bytes += len(chunk)
                continue
            parser.long_line(long_head)
            long_head = None
            chunk, tail = chunk[newline:], b""
        if chunk:
            last = chunk.rfind(b"\n")
            if last < 0:  # the incomplete line goes on
                pieces.append(chunk)
                pieces_bytes += len(chunk)
                if len(tail) - 1 + pieces_bytes > LONG_LINE:
                    long_head = b"".join([tail[1:], *pieces])[:LONG_LINE]
                    tail, pieces, pieces_bytes = b"\n", [], 0
                chunk = source.read(read_size)
                input_bytes += len(chunk)
                continue
            newline = chunk.find(b"\n")
            if len(tail) - 1 + pieces_bytes + newline > LONG_LINE:  # this read ends a long line
                parser.long_line(b"".join([tail[1:], *pieces, chunk[:newline]])[:LONG_LINE])
                chunk, last = chunk[newline:], last - newline
                tail, pieces = b"", []
            parser.scan(b"".join([tail, *pieces, chunk[:last + 1]]), 0)
            tail, pieces, pieces_bytes = chunk[last:], [], 0
        if not module_checked:
            _check_module(parser, expected_debug_id)
            module_checked = parser.module is not None
        if at_end:
            break
        chunk = source.read(read_size)
        input_bytes += len(chunk)
    if parser.open_func is not None:
        parser.close_func(b"")
    if parser.module is None:
        raise NotASymbolFile("the MODULE record is malformed")
    _check_module(parser, expected_debug_id)
    module = dict(parser.module, code_id=parser.code_id, code_file=parser.code_file)
    stats = {
        "input_bytes": input_bytes,
        "funcs": writer.funcs.count,
        "publics": writer.publics.count,
        "files": writer.files.count,
        "origins": writer.origins.count,
        "junk_lines": parser.junk_lines,
    }
    output_bytes = writer.finish(module, stats, identity)
    return ProcessStats(output_bytes=output_bytes, **stats)


@dataclass(frozen=True, slots=True)
class InlineRecord:
    depth: int
    call_line: int
    #: the call site's FILE number; -1: none (written as -1); None: the older format, whose
    #: call site is in the file of the line record covering the offset
    call_file: int | None
    origin: int
    ranges: tuple[tuple[int, int], ...]  # (start, end) pairs, end exclusive

    def contains(self, offset: int) -> bool:
        for start, end in self.ranges:  # a loop, not any() of a generator: 3x faster, every lookup
            if start <= offset < end:
                return True
        return False


@dataclass(frozen=True, slots=True)
class FuncBlock:
    """A FUNC's line records (sorted, non-overlapping) and INLINE records (file order)."""

    line_starts: list[int]
    line_records: list[tuple[int, int, int]]  # (end, line, file number), parallel to starts
    inlines: list[InlineRecord]


def parse_inline(fields: list[bytes]) -> InlineRecord | None:
    """An INLINE record from the fields after ``INLINE``, or None for junk.

    As in Breakpad, the count decides the format: even is ``depth call_line call_file
    origin [address size]+`` (call_file may be -1), odd is the older format without
    call_file; either way at least one range."""
    if len(fields) < 5:
        return None
    new_format = len(fields) % 2 == 0
    numbers = [_dec(field) for field in fields[:4 if new_format else 3]]
    bounds = [_hex(field) for field in fields[4 if new_format else 3:]]
    call_file: int | None = None
    if new_format:
        call_file = -1 if fields[2] == b"-1" else numbers[2]
        del numbers[2]
        if call_file is None:
            return None
    if None in numbers or None in bounds:
        return None
    ranges = tuple((bounds[i], bounds[i] + bounds[i + 1]) for i in range(0, len(bounds), 2))  # type: ignore[operator]
    depth, call_line, origin = numbers
    return InlineRecord(depth, call_line, call_file, origin, ranges)  # type: ignore[arg-type]


#: An INLINE record of today's format whose every number is short enough to be below 2**64
#: (the fields after ``INLINE``): read without :func:`parse_inline`'s checks field by field.
#: Whatever it does not match (the older format, junk, longer numbers) goes through them.
_PLAIN_INLINE = re.compile(rb"([0-9]{1,19}) ([0-9]{1,19}) (-1|[0-9]{1,19}) ([0-9]{1,19})"
                           rb"((?: [0-9a-fA-F]{1,16} [0-9a-fA-F]{1,16})+)")


def parse_func_block(block: bytes) -> FuncBlock:
    """Parse the raw records that followed a FUNC line, skipping junk lines.

    Line records are read as columns by C-level calls (one ``findall``, ``int`` mapped over
    each column): a cold lookup parses the block of nearly every function it lands in, and a
    Python step per record was most of its cost.  Records in address order that do not
    overlap (what compilers write) are kept as they are; anything else is sorted and cut
    by the rule, record by record.
    """
    starts: list[int] = []
    kept: list[tuple[int, int, int]] = []
    found = _LINE_RECORD.findall(block)
    if found:
        address_column, size_column, line_column, file_column = zip(*found)
        addresses = list(map(int, address_column, repeat(16)))
        sizes = list(map(int, size_column, repeat(16)))
        lines = list(map(int, line_column))
        files = list(map(int, file_column))
        ends = list(map(add, addresses, sizes))
        if 0 not in sizes and all(map(le, ends, islice(addresses, 1, None))) \
                and max(max(addresses), max(sizes), max(lines), max(files)) < U64_LIMIT:
            starts = addresses
            kept = list(zip(ends, lines, files))
        else:
            records = [record for record in zip(addresses, ends, lines, files, sizes)
                       if record[4] and max(record[0], record[4], record[2], record[3]) < U64_LIMIT]
            records.sort(key=itemgetter(0))  # stable: file order on ties
            end = -1
            for address, record_end, line, file_number, _ in records:
                if address >= end:
                    starts.append(address)
                    kept.append((record_end, line, file_number))
                    end = record_end
    inlines = []
    if b"INLINE " in block:
        plain = _PLAIN_INLINE.fullmatch
        for fields in _INLINE_RECORD.findall(block):
            match = plain(fields)
            if match is None:
                record = parse_inline(fields.split(b" "))
                if record is not None:
                    inlines.append(record)
                continue
            bounds = list(map(int, match[5].split(), repeat(16)))
            ranges = tuple(zip(bounds[::2], map(add, bounds[::2], bounds[1::2])))
            call_file = int(match[3])
            inlines.append(InlineRecord(int(match[1]), int(match[2]), call_file, int(match[4]), ranges))
    return FuncBlock(starts, kept, inlines)


#: The INLINE lines a block starts with (dump_syms writes them right after the FUNC line).
_INLINE_PREFIX = re.compile(rb"(?:INLINE [^\n]*\n)*")
#: One INLINE line of :data:`_PLAIN_INLINE`'s form, as a whole line.
_PLAIN_INLINE_LINE = re.compile(rb"^INLINE ([0-9]{1,19}) ([0-9]{1,19}) (-1|[0-9]{1,19}) ([0-9]{1,19})"
                                rb"((?: [0-9a-fA-F]{1,16} [0-9a-fA-F]{1,16})+)\r?$", re.M)
_LINE_CHARACTERS = b"0123456789abcdefABCDEF \n"


class BlockColumns(NamedTuple):
    """What a lookup needs of a FUNC's block: the line records kept by the rule, as columns
    (``lines`` and ``files`` hold ints or the digits as bytes: read one with ``int()``), and
    the INLINE records in file order.  The same records as :func:`parse_func_block`."""

    starts: list[int]
    ends: list[int]
    lines: list[Any]
    files: list[Any]
    inlines: list[InlineRecord]


def func_block_columns(block: bytes) -> BlockColumns:
    """:func:`parse_func_block`'s records, for a lookup, at a fraction of its cost when the
    block is what compilers write: INLINE lines of today's format first, then line records in
    address order that do not overlap, each line exactly ``address size line file`` with
    newlines only.  Every check is a C-level call over the whole block (a character filter,
    one split in which each newline is a token of its own, so that every fifth token must
    be one, ``int`` mapped over two columns); line and file numbers are converted only for
    the record a lookup lands on.  Any other block goes through :func:`parse_func_block`.
    A cold lookup parses the block of nearly every function it lands in: this was most of
    its cost.  Where the compiled scans are built, their ``block_columns`` reads the plain
    form in one pass (about a tenth of the time) and leaves any other block to this code."""
    symscan = compiled.symscan
    if symscan is not None:
        found = symscan.block_columns(block)
        if found is not None:
            starts, ends, lines, files, inline_fields = found
            return BlockColumns(starts, ends, lines, files, [InlineRecord(*fields) for fields in inline_fields])
    inline_end = _INLINE_PREFIX.match(block).end() if block.startswith(b"INLINE ") else 0  # type: ignore[union-attr]
    body = block[inline_end:] if inline_end else block
    inlines: list[InlineRecord] | None = []
    if inline_end:
        found = _PLAIN_INLINE_LINE.findall(block, 0, inline_end)
        if len(found) == block.count(b"INLINE ", 0, inline_end):  # every line of the prefix
            for depth, call_line, call_file, origin, range_text in found:
                bounds = list(map(int, range_text.split(), repeat(16)))
                ranges = tuple(zip(bounds[::2], map(add, bounds[::2], bounds[1::2])))
                record = InlineRecord(int(depth), int(call_line), int(call_file), int(origin), ranges)
                inlines.append(record)  # type: ignore[union-attr]
        else:
            inlines = None
    count = body.count(b"\n")
    if inlines is not None and count and body[-1] == 10 and body[0] != 32 \
            and not body.translate(None, _LINE_CHARACTERS):
        spaced = body.replace(b"\n", b" \n ")
        tokens = spaced.split(b" ")  # "a s l f \n a s l f \n " -> a s l f \n a s l f \n ""
        if len(tokens) == 5 * count + 1 and tokens.pop() == b"" and tokens[4::5].count(b"\n") == count \
                and b"  " not in spaced:
            # each line is four tokens of hexadecimal digits, one space apart
            lines, files = tokens[2::5], tokens[3::5]
            if (b"".join(lines) + b"".join(files)).isdigit() \
                    and len(max(lines, key=len)) <= 19 and len(max(files, key=len)) <= 19:  # below 2**64
                starts = list(map(int, tokens[0::5], repeat(16)))
                lengths = list(map(int, tokens[1::5], repeat(16)))
                ends = list(map(add, starts, lengths))
                if 0 not in lengths and all(map(le, ends, islice(starts, 1, None))) \
                        and starts[-1] < U64_LIMIT and max(lengths) < U64_LIMIT:
                    return BlockColumns(starts, ends, lines, files, inlines)
    elif inlines is not None and not body:
        return BlockColumns([], [], [], [], inlines)
    parsed = parse_func_block(block)
    records = parsed.line_records
    return BlockColumns(parsed.line_starts, [record[0] for record in records], [record[1] for record in records],
                        [record[2] for record in records], parsed.inlines)
