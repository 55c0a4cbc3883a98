"""The on-disk layout of a processed symbol table, shared by its writer and its reader.

A table file is::

    header   64 bytes: magic, format version, header size, file length,
             directory offset and length (all little-endian)
    pages    zlib-compressed pages of values, written as the .sym file streams past
    index    per table: sorted u64 keys, optional u64 aux values, (page, start, length) refs
    spans    per table: the start and end file offsets (u64) of each of its pages
    dir      JSON: module info and where each table's arrays are
    trailer  8 bytes of magic, so a file cut short anywhere is recognised

There are four tables, each a sorted map from a u64 key to a byte string:
``funcs`` (address -> name + the raw line/INLINE records of the FUNC; aux = size),
``publics`` (address -> name), ``files`` (FILE number -> path) and ``origins``
(INLINE_ORIGIN number -> name).  Lookups bisect the keys in place in the memory map
and decompress only the one small page that holds the value.
"""

from __future__ import annotations

import struct
import sys

MAGIC = b"BPSYMTAB"
TRAILER = b"BPSYMEND"
FORMAT_VERSION = 1
HEADER = struct.Struct("<8sIIQQQ24x")
HEADER_SIZE = HEADER.size  # 64
REF = struct.Struct("<III")  # page index, start in the page, length

TABLE_NAMES = ("funcs", "publics", "files", "origins")

#: Values are grouped into pages of about this many uncompressed bytes.  Small pages keep
#: a cold lookup cheap (one ~16 KiB inflate); large enough for zlib to find repetition.
PAGE_TARGET_BYTES = 16 * 1024
ZLIB_LEVEL = 1

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
