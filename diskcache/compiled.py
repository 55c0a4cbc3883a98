"""The compiled scans of .sym text (``diskcache/_symscan.c``), or None where they were not built.

setup.py builds them where a C compiler is; without one the install goes on, and every
caller takes its pure-Python path, which gives the same answers (the tests run both).
Callers read ``compiled.symscan`` when they use it, so a test can set it to None.
"""

from __future__ import annotations

from types import ModuleType

symscan: ModuleType | None
try:
    from diskcache import _symscan as symscan
except ImportError:  # pragma: no cover - a machine without a C compiler
    symscan = None

__all__ = ["symscan"]
