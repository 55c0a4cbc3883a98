"""The on-disk layout of a processed symbol table, shared by its writer and its reader.

A table file is::

    header   64 bytes: magic, format version, header size, file length,
             directory offset and length (all little-endian)
    pages    zstd-compressed pages of values, written as the .sym file streams past
    index    per table, each array in compressed chunks of ARRAY_CHUNK values, each chunk
             in the narrowest integer type that fits: sorted keys (delta-coded), optional
             aux values, and the page, start and length of each value
    spans    per table: the start and end file offsets (u64) of each of its pages
    dir      JSON: module info and where each table's arrays are
    trailer  8 bytes of magic, so a file cut short anywhere is recognised

There are four tables, each a sorted map from a u64 key to a byte string:
``funcs`` (address -> name + the raw line/INLINE records of the FUNC; aux = size),
``publics`` (address -> name), ``files`` (FILE number -> path) and ``origins``
(INLINE_ORIGIN number -> name).  Opening a table inflates its index (a few bytes per
record); a lookup bisects the keys and decompresses only the one page that holds the value.

Why chunked index arrays (format 4): the writer encodes and writes them a chunk at a time
as it merges the records it spilled to a temporary file, so writing a table holds a few
chunks, not the whole index (which grew with the record count: 143 MB of peak RSS for a
1 GB module).  A directory entry of an array is ``[memory typecode, [[offset, length,
stored typecode, count], ...]]``; delta-coded keys continue from chunk to chunk.

Why zstd and a compressed index: on a 74 MB xul-class file, zlib level 1 pages plus a raw
index made the table 33% of the .sym; zstd level 1 in 64 KiB pages plus the compressed
index makes it about 23%, and compresses three times faster than zlib level 1.
"""

from __future__ import annotations

import struct
import sys
import threading
from array import array
from itertools import accumulate, chain, compress as select, repeat
from operator import add, eq, mul, ne, sub, xor

import zstandard

MAGIC = b"BPSYMTAB"
TRAILER = b"BPSYMEND"
FORMAT_VERSION = 4
HEADER = struct.Struct("<8sIIQQQ24x")
HEADER_SIZE = HEADER.size  # 64
REF = struct.Struct("<III")  # page index, start in the page, length

TABLE_NAMES = ("funcs", "publics", "files", "origins")

#: Values are grouped into pages of about this many uncompressed bytes: small enough that a
#: cold lookup inflates little (about 40 microseconds), large enough for zstd to find the
#: repetition in C++ names and line records.
PAGE_TARGET_BYTES = 64 * 1024
ZSTD_LEVEL = 1
#: Values per compressed chunk of an index array.
ARRAY_CHUNK = 1 << 16
#: No page or index array inflates to more than this (a corrupt size field cannot make a
#: reader allocate gigabytes).
MAX_INFLATED_BYTES = 1 << 31

if sys.byteorder != "little":  # pragma: no cover - every platform we run on is little-endian
    raise ImportError("the symbol table format is read in place and assumes a little-endian CPU")


class TableFormatError(ValueError):
    """The file is not a complete table of the current format: delete it and rebuild."""


def check_header(buffer: memoryview | bytes, actual_length: int) -> tuple[int, int]:
    """Validate header and trailer; return (directory offset, directory length)."""
    if actual_length < HEADER_SIZE + len(TRAILER):
        raise TableFormatError("too short to be a symbol table")
    magic, version, header_size, length, dir_offset, dir_length = HEADER.unpack_from(buffer, 0)
    if magic != MAGIC:
        raise TableFormatError("not a symbol table (bad magic)")
    if version != FORMAT_VERSION:
        raise TableFormatError(f"format version {version}, expected {FORMAT_VERSION}")
    if header_size != HEADER_SIZE or length != actual_length:
        raise TableFormatError(f"truncated or padded: header says {length} bytes, file has {actual_length}")
    if bytes(buffer[length - len(TRAILER):length]) != TRAILER:
        raise TableFormatError("missing trailer")
    if not HEADER_SIZE <= dir_offset <= dir_offset + dir_length <= length - len(TRAILER):
        raise TableFormatError("directory out of bounds")
    return dir_offset, dir_length


_local = threading.local()


def compress(data: bytes) -> bytes:
    """One zstd frame (with its content size, which :func:`decompress` relies on)."""
    compressor = getattr(_local, "compressor", None)
    if compressor is None:
        compressor = _local.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return compressor.compress(data)


def decompress(data: bytes | memoryview) -> bytes:
    """Inflate one frame; raises :class:`TableFormatError` if it is corrupt."""
    decompressor = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    try:
        return decompressor.decompress(data, max_output_size=MAX_INFLATED_BYTES)
    except zstandard.ZstdError as error:
        raise TableFormatError(f"corrupt compressed data: {error}") from error


#: Integer arrays are stored and held in the narrowest of these that fits their values.
TYPECODES = ("B", "H", "I", "Q")


def narrowest(maximum: int) -> str:
    for typecode in TYPECODES:
        if maximum < 1 << (8 * array(typecode).itemsize):
            return typecode
    raise ValueError(f"{maximum} does not fit in 64 bits")


def encode_chunk(values: array, previous: int | None = None) -> tuple[bytes, str]:
    """Compress one chunk of an index array in the narrowest typecode that fits what is stored.

    ``previous``: delta coding (for sorted keys), each value stored as its difference from
    the one before it, the first from ``previous`` (the last value of the chunk before, or 0).
    Returns the bytes and their typecode.
    """
    stored_values: array | map = values
    if previous is not None:
        stored_values = array("Q", map(sub, values, chain((previous,), values)))
    stored = narrowest(max(stored_values, default=0))
    return compress(array(stored, stored_values).tobytes()), stored


def decode_chunk(data: bytes | memoryview, stored: str, count: int) -> array:
    """The values of one chunk as stored (:func:`encode_chunk`); checks typecode and count."""
    if stored not in TYPECODES:
        raise TableFormatError(f"unknown array typecode {stored!r}")
    values = array(stored)
    raw = decompress(data)
    if len(raw) % values.itemsize:
        raise TableFormatError("index array is not a whole number of values")
    values.frombytes(raw)
    if len(values) != count:
        raise TableFormatError(f"index chunk holds {len(values)} values, expected {count}")
    return values


#: Where a value starts in its page is stored coded: XOR the end of the record before it when
#: both are in the same page, else XOR 0.  Values are appended to pages in record order, so
#: nearly every coded start is 0 and the column compresses to almost nothing (it was 2.3% of
#: a 1 GB module's table).  A chunk of starts is stored coded only when that makes it all
#: zeros (its directory entry then has a fifth field, 1), else as the starts themselves, so a
#: reader decodes only chunks that cost nothing to store.  A table whose records all came in
#: key order with every chunk coded is marked ``"contiguous"``: the reader then derives a
#: start from the lengths before it in its page and keeps no per-record page or start.


def code_starts(pages: array, starts: array, lengths: array, carry: tuple[int, int]) -> tuple[array, tuple[int, int]]:
    """Code the starts of consecutive records; ``carry``: (page, end) of the record before
    them, (-1, 0) for the first.  Returns the coded column and the carry for the next."""
    if not starts:
        return array(starts.typecode), carry
    before = map(mul, chain((carry[1],), map(add, starts, lengths)), map(eq, pages, chain((carry[0],), pages)))
    coded = array(starts.typecode, map(xor, starts, before))
    return coded, (pages[-1], starts[-1] + lengths[-1])


def decode_starts(coded: array, pages: array, lengths: array, carry: tuple[int, int],
                  typecode: str) -> tuple[array, tuple[int, int]]:
    """The inverse of :func:`code_starts` for one chunk (``pages`` and ``lengths`` of the
    same records).  Decoded at C speed a stretch at a time: a stretch ends where the page
    changes or a start was coded non-zero, and within it each value follows the one before."""
    starts = array(typecode)
    count = len(coded)
    if not count:
        return starts, carry
    before = list(accumulate(lengths, initial=0))  # before[i]: bytes of lengths[:i]
    cuts = set(select(range(1, count), map(ne, pages[1:], pages[:-1])))
    if any(coded):
        cuts.update(select(range(1, count), coded[1:]))
    bounds = [0, *sorted(cuts), count]
    page, end = carry
    for first, stop in zip(bounds, bounds[1:]):
        start = coded[first] ^ (end if pages[first] == page else 0)
        starts.extend(map(add, before[first:stop], repeat(start - before[first], stop - first)))
        page, end = pages[stop - 1], starts[-1] + lengths[stop - 1]
    return starts, (page, end)
