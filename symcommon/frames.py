"""What is known about one module offset, in one shape shared by both servers.

The DiskCache produces :class:`FrameInfo` from its tables, sends it to SymServer as a
v5 frame, SymServer keeps it in memcached in the compact form of :meth:`FrameInfo.to_compact`
and renders it as a v4 string or a v5 frame.  Keeping one shape means one memcached entry
serves both API versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
            if self.line is not None:
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
            answer["file"] = self.file
            if self.line is not None:
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
    def from_compact(cls, data: list[Any]) -> FrameInfo:
        function, offset, size, file, line, inlines = data
        return cls(
            function, offset, size, file, line, tuple(InlineFrame(*i) for i in inlines)
        )
