"""A symbol file for another module is not that module (README, "The lookup rule").

A .sym at the right path whose MODULE line names another debug id is answered as not found,
is not cached, and is logged once with both ids: from a symbol store and from a local dir.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ASKED = "0123456789ABCDEF0123456789ABCDEF7"
NAMED = "FEDCBA9876543210FEDCBA9876543210A"


def write_sym(root: Path, debug_file: str, module_line: str) -> None:
    sym_name = debug_file[:-4] + ".sym" if debug_file.endswith(".pdb") else debug_file + ".sym"
    path = root / debug_file / ASKED / sym_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{module_line}\nFUNC 1000 100 0 function_of_{debug_file.replace('.', '_')}\n")


def ask_v4(trio, debug_file: str, server: str = "SymServer") -> dict:
    body = {"stacks": [[[0, 0x1010]]], "memoryMap": [[debug_file, ASKED]], "version": 4}
    response = trio.post(body, server=server)
    assert response.status_code == 200, trio.logs()
    return response.json()


def ask_v5(trio, debug_file: str) -> dict:
    body = {"memoryMap": [[debug_file, ASKED]], "stacks": [[[0, 0x1010]]]}
    response = trio.post(body, path="/symbolicate/v5")
    assert response.status_code == 200, trio.logs()
    return response.json()["results"][0]


def files_under(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def mismatch_log_lines(trio) -> list[str]:
    log = (trio.workdir / "DiskCache.log").read_text()
    return [line for line in log.splitlines() if NAMED in line and ASKED in line]


@pytest.mark.parametrize("where", ["store", "local dir"])
def test_a_file_naming_another_debug_id_is_not_that_module(where, make_trio, symbol_store, store_root,
                                                             tmp_path):
    root = store_root if where == "store" else tmp_path / "symbols"
    prefix = "store" if where == "store" else "local"
    wrong, lower, renamed = f"{prefix}_wrong.so", f"{prefix}_lower.so", f"{prefix}_renamed.pdb"
    write_sym(root, wrong, f"MODULE Linux x86_64 {NAMED} {wrong}")
    # the same id in lower case, and another spelling of the debug file: still this module
    write_sym(root, lower, f"MODULE Linux x86_64 {ASKED.lower()} {lower}")
    write_sym(root, renamed, f"MODULE windows x86_64 {ASKED} {prefix.upper()}_RENAMED.PDB")
    if where == "store":
        trio = make_trio([symbol_store.url("plain")])
    else:
        trio = make_trio([], {"DiskCache": {"localSymbolDirs": [str(root)]}})

    answer = ask_v4(trio, wrong)
    assert answer == {"symbolicatedStacks": [[f"0x1010 (in {wrong})"]], "knownModules": [False]}
    assert ask_v5(trio, wrong)["found_modules"] == {f"{wrong}/{ASKED}": False}
    for _ in range(3):  # again, straight to the DiskCache: not fetched, processed or logged again
        assert ask_v4(trio, wrong, server="DiskCache")["knownModules"] == [False]
    assert files_under(trio.cache_dir) == []
    assert trio.wait_for_log("DiskCache.log", NAMED, timeout=10), trio.logs()
    lines = mismatch_log_lines(trio)
    assert len(lines) == 1, lines
    if where == "store":
        assert symbol_store.count(f"{wrong}/{ASKED}/{wrong}.sym") == 1

    assert ask_v4(trio, lower)["symbolicatedStacks"] == [[f"function_of_{prefix}_lower_so (in {lower})"]]
    assert ask_v4(trio, renamed)["symbolicatedStacks"] == [[f"function_of_{prefix}_renamed_pdb (in {renamed})"]]
    assert len(mismatch_log_lines(trio)) == 1
