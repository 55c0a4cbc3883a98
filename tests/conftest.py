"""Fixtures: a symbol store the tests serve themselves, and real trios started by quickstart."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent))

from harness import REPO, Trio  # noqa: E402
from symbol_store import SymbolStore  # noqa: E402

EDGE_CASES = TESTS / "fixtures" / "edge_cases"
DEMO_SYMBOLS = REPO / "demo_symbols"


@pytest.fixture(scope="session")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store's files: the demo symbols and the edge-case fixtures, in store layout."""
    root = tmp_path_factory.mktemp("store")
    for source in (DEMO_SYMBOLS, EDGE_CASES):
        if not source.exists():
            continue
        shutil.copytree(source, root, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.md", "*.json"))
    return root


@pytest.fixture(scope="session")
def symbol_store(store_root: Path) -> Iterator[SymbolStore]:
    store = SymbolStore(store_root)
    store.start()
    yield store
    store.stop()


@pytest.fixture
def make_trio(tmp_path: Path) -> Iterator[Callable[..., Trio]]:
    """Start trios for one test; all are stopped afterwards, whatever happens."""
    started: list[Trio] = []

    def start(symbol_urls: list[str], overrides: dict | None = None, memcached: bool = True,
              name: str = "trio", run: bool = True) -> Trio:
        trio = Trio(tmp_path / f"{name}{len(started)}", symbol_urls, overrides, memcached)
        started.append(trio)
        return trio.start() if run else trio

    yield start
    for trio in started:
        trio.stop()


@pytest.fixture
def small_filesystem(tmp_path):
    """A 4 MB tmpfs for the cache (needs root and mount; skipped where that is impossible)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory, symbol_store: SymbolStore) -> Iterator[Trio]:
    """A trio shared by a test module, fetching from the plain store."""
    shared = Trio(tmp_path_factory.mktemp("trio"), [symbol_store.url("plain")])
    shared.start()
    yield shared
    shared.stop()


@pytest.fixture(scope="session", autouse=True)
def no_leaked_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every program a test starts must be stopped by it: at the end, none may be left."""
    yield
    import psutil

    base = str(tmp_path_factory.getbasetemp())
    leaked = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if process.info["pid"] != os.getpid() and any(base in arg for arg in process.info["cmdline"] or []):
            leaked.append(" ".join(process.info["cmdline"])[:160])
            process.kill()
    assert not leaked, "processes left running by the tests:\n" + "\n".join(leaked)


@pytest.fixture(params=["compiled", "python"])
def scans(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test twice: with the compiled scans of .sym text (``diskcache/_symscan.c``) and
    with the pure-Python readings they stand in for, which must give the same answers."""
    from diskcache import compiled

    if request.param == "python":
        monkeypatch.setattr(compiled, "symscan", None)
    elif compiled.symscan is None:
        pytest.skip("the compiled scans are not built here (tests/test_symscan.py says why)")
    return request.param
