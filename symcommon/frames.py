"""What is known about one module offset, in one shape shared by both servers.

The DiskCache produces :class:`FrameInfo` from its tables, sends it to SymServer as a
v5 frame, SymServer keeps it in memcached in the compact form of :meth:`FrameInfo.to_compact`
and renders it as a v4 string or a v5 frame.  Keeping one shape means one memcached entry
serves both API versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Offsets, sizes and line numbers are read from Breakpad text as unsigned 64-bit numbers.
MAX_NUMBER = (1 << 64) - 1


def _number(value: Any, what: str) -> int:
    """A non-negative int below 2**64; a bool is not a number here, though Python says so."""
    if type(value) is not int or not 0 <= value <= MAX_NUMBER:
        raise ValueError(f"{what} must be a whole number from 0 to 2**64-1, got {value!r:.40}")
    return value


def _optional_number(value: Any, what: str) -> int | None:
    return None if value is None else _number(value, what)


def _text(value: Any, what: str) -> str:
    if type(value) is not str:
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    return value


def _optional_text(value: Any, what: str) -> str | None:
    return None if value is None else _text(value, what)


def _items(value: Any, length: int, what: str) -> list[Any]:
    if type(value) is not list or len(value) != length:
        raise ValueError(f"{what} must be a list of {length} items")
    return value


@dataclass(frozen=True, slots=True)
class InlineFrame:
    """A function inlined into the symbolicated one, with the source position inside it."""

    function: str
    file: str | None = None
    line: int | None = None

    def to_v5(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"function": self.function}
        if self.file is not None:
            answer["file"] = self.file
            if self.line:  # line 0 means "no line" in Breakpad; Mozilla's service leaves it out
                answer["line"] = self.line
        return answer


@dataclass(frozen=True, slots=True)
class FrameInfo:
    """The symbol found for an offset: a FUNC (with size) or a PUBLIC (size None)."""

    function: str
    function_offset: int
    function_size: int | None = None
    file: str | None = None
    line: int | None = None
    inlines: tuple[InlineFrame, ...] = field(default_factory=tuple)
    #: The characters of the names this frame shows (its function's and file's, its inlines'),
    #: counted once here: bounding an answer's size would otherwise count them per request.
    names_size: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        size = len(self.function) + len(self.file or "")
        for inline in self.inlines:
            size += len(inline.function) + len(inline.file or "")
        object.__setattr__(self, "names_size", size)

    def as_dict(self) -> dict[str, Any]:
        """The plain shape used by the reference rule in the tests."""
        return {
            "function": self.function,
            "function_offset": self.function_offset,
            "function_size": self.function_size,
            "file": self.file,
            "line": self.line,
            "inlines": [
                {"function": i.function, "file": i.file, "line": i.line} for i in self.inlines
            ],
        }

    def to_v5_fields(self) -> dict[str, Any]:
        """The optional v5 frame fields this symbol provides."""
        answer: dict[str, Any] = {
            "function": self.function,
            "function_offset": hex(self.function_offset),
        }
        if self.function_size is not None:
            answer["function_size"] = hex(self.function_size)
        if self.file is not None:
            answer["file"] = self.file  # exactly as the FILE record wrote it: "..", "./", "\\" kept
            if self.line:  # line 0 means "no line" in Breakpad; Mozilla's service leaves it out
                answer["line"] = self.line
        if self.inlines:
            answer["inlines"] = [inline.to_v5() for inline in self.inlines]
        return answer

    @classmethod
    def from_v5_fields(cls, frame: dict[str, Any]) -> FrameInfo | None:
        """Read back what :meth:`to_v5_fields` wrote (None when no function is known)."""
        function = frame.get("function")
        if not isinstance(function, str):
            return None
        size = frame.get("function_size")
        return cls(
            function=function,
            function_offset=int(frame.get("function_offset", "0x0"), 16),
            function_size=int(size, 16) if isinstance(size, str) else None,
            file=frame.get("file"),
            line=frame.get("line"),
            inlines=tuple(
                InlineFrame(i["function"], i.get("file"), i.get("line"))
                for i in frame.get("inlines", ())
            ),
        )

    def to_compact(self) -> list[Any]:
        """A short JSON-able list for memcached: [function, offset, size, file, line, inlines]."""
        return [
            self.function,
            self.function_offset,
            self.function_size,
            self.file,
            self.line,
            [[i.function, i.file, i.line] for i in self.inlines],
        ]

    @classmethod
    def from_compact(cls, data: Any) -> FrameInfo:
        """Read back :meth:`to_compact`, checking every field: the data comes from memcached,
        which anyone who can reach it may write.  Raises ValueError for anything else.

        Written as flat checks because a warm request of many frames decodes every one.
        """
        if type(data) is not list or len(data) != 6:
            raise ValueError("a frame must be a list of 6 items")
        function, offset, size, file, line, inlines = data
        if not (type(function) is str and type(offset) is int and 0 <= offset <= MAX_NUMBER
                and (size is None or type(size) is int and 0 <= size <= MAX_NUMBER)
                and (file is None or type(file) is str)
                and (line is None or type(line) is int and 0 <= line <= MAX_NUMBER)
                and type(inlines) is list):
            raise ValueError("a frame field has the wrong type or is out of range")
        return cls(function, offset, size, file, line, tuple(
            InlineFrame(_text(name, "inline function"), _optional_text(inline_file, "inline file"),
                        _optional_number(inline_line, "inline line"))
            for name, inline_file, inline_line in (_items(i, 3, "an inline") for i in inlines)))
