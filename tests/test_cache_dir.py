"""The DiskCache's directory with the real trio: symlinks planted in it are never followed
(their targets are neither read nor deleted), and full or read-only disks leave neither
stray files nor an index that disagrees with what is on disk."""

from __future__ import annotations

import subprocess

from harness import SAMPLE_RESPONSE, sample_request

XUL = ["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"]
XUL_BODY = {"version": 4, "memoryMap": [XUL], "stacks": [[[0, 11723767]]]}
XUL_ANSWER = [["XREMain::XRE_mainRun() (in xul.pdb)"]]
XUL_TABLE = "44E4EC8C2F41492B9369D6B9A059577C2.xul.pdb.symtab"


def outside_files(tmp_path, name: str = "precious") -> list:
    """A directory outside the cache with files that must survive."""
    directory = tmp_path / name
    directory.mkdir()
    files = [directory / f"file{i}.txt" for i in range(3)]
    for i, path in enumerate(files):
        path.write_text(f"keep me {i}\n")
    return files


def assert_untouched(files: list) -> None:
    for i, path in enumerate(files):
        assert path.read_text() == f"keep me {i}\n", f"{path} was changed or deleted"


def xul_table(trio):
    table = trio.cache_dir / XUL_TABLE
    assert table.is_file(), sorted(p.name for p in trio.cache_dir.iterdir())
    return table


def test_symlinked_tmp_is_replaced_and_its_target_left_alone(make_trio, symbol_store, tmp_path):
    files = outside_files(tmp_path)
    trio = make_trio([symbol_store.url("plain")], run=False)
    trio.cache_dir.mkdir(parents=True)
    (trio.cache_dir / ".tmp").symlink_to(files[0].parent, target_is_directory=True)
    trio.start()
    assert_untouched(files)
    tmp = trio.cache_dir / ".tmp"
    assert tmp.is_dir() and not tmp.is_symlink()
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE  # tables are written in the real .tmp
    assert_untouched(files)
    assert sorted(p.name for p in files[0].parent.iterdir()) == ["file0.txt", "file1.txt", "file2.txt"]


def test_tmp_replaced_by_a_symlink_while_running_is_not_written_through(make_trio, symbol_store, tmp_path):
    trio = make_trio([symbol_store.url("plain")])
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    before = outside.stat().st_mtime_ns
    tmp = trio.cache_dir / ".tmp"
    tmp.rmdir()
    tmp.symlink_to(outside, target_is_directory=True)
    assert trio.post(XUL_BODY, server="DiskCache").json()["symbolicatedStacks"] == XUL_ANSWER
    assert trio.wait_for_file(XUL_TABLE)  # (built after the answer, through .tmp too)
    assert outside.stat().st_mtime_ns == before, "a file was created in the directory .tmp pointed to"
    assert tmp.is_dir() and not tmp.is_symlink()


def test_symlinked_subdirectory_is_removed_not_its_target(make_trio, symbol_store, tmp_path):
    files = outside_files(tmp_path)
    trio = make_trio([symbol_store.url("plain")], run=False)
    trio.cache_dir.mkdir(parents=True)
    link = trio.cache_dir / "xul.pdb"
    link.symlink_to(files[0].parent, target_is_directory=True)
    trio.start()
    assert_untouched(files)
    assert not link.is_symlink() and not link.exists()  # the link went, not what it points to
    assert trio.post(XUL_BODY, server="DiskCache").json()["symbolicatedStacks"] == XUL_ANSWER


def test_table_symlinked_before_start_is_removed_not_its_target(make_trio, symbol_store, tmp_path):
    trio = make_trio([symbol_store.url("plain")])
    assert trio.post(XUL_BODY, server="DiskCache").json()["symbolicatedStacks"] == XUL_ANSWER
    assert trio.wait_for_file(XUL_TABLE)  # (built after the answer)
    trio.quickstart("--stop")
    table = xul_table(trio)
    outside = tmp_path / "outside.symtab"
    outside.write_bytes(table.read_bytes())
    table.unlink()
    table.symlink_to(outside)
    trio.start()
    assert outside.read_bytes()[:4] and outside.exists()  # not deleted through the link
    assert not table.is_symlink()
    assert trio.post(XUL_BODY, server="DiskCache").json()["symbolicatedStacks"] == XUL_ANSWER


def test_table_replaced_by_symlink_while_running_is_not_read(make_trio, symbol_store, tmp_path):
    """A table indexed at start, then replaced by a link to another module's table: the link is
    not opened (else xul's frames would be answered from that table); the module is fetched
    again, and the file the link pointed to is still there."""
    trio = make_trio([symbol_store.url("plain")])
    assert trio.post(sample_request(), server="DiskCache").text == SAMPLE_RESPONSE
    for name in (XUL_TABLE, "D74F79EB1F8D4A45ABCD2F476CCABACC2.wntdll.pdb.symtab"):
        assert trio.wait_for_file(name)  # (built after the answer)
    trio.quickstart("--stop")
    trio.start()  # the tables are indexed, none is open yet
    table = xul_table(trio)
    [other] = [p for p in trio.cache_dir.iterdir() if p.name.endswith(".wntdll.pdb.symtab")]
    outside = tmp_path / "foreign.symtab"
    outside.write_bytes(other.read_bytes())
    fetched = symbol_store.count("xul.pdb/44E4EC8C2F41492B9369D6B9A059577C2/xul.sym")
    table.unlink()
    table.symlink_to(outside)
    assert trio.post(XUL_BODY, server="DiskCache").json()["symbolicatedStacks"] == XUL_ANSWER
    assert symbol_store.count("xul.pdb/44E4EC8C2F41492B9369D6B9A059577C2/xul.sym") == fetched + 1
    assert outside.read_bytes() == other.read_bytes()
    assert not table.is_symlink()  # the link was dropped and a real table written in its place


def test_heartbeat_on_a_full_disk_leaves_no_probe_file(make_trio, symbol_store, small_filesystem):
    trio = make_trio([symbol_store.url("plain")],
                     {"DiskCache": {"cachePath": str(small_filesystem / "cache")}})
    trio.cache_dir = small_filesystem / "cache"
    heartbeat = trio.url("DiskCache", "/__heartbeat__")
    assert trio.session.get(heartbeat, timeout=30).status_code == 200
    filler = small_filesystem / "filler"
    with open(filler, "wb", buffering=0) as file:  # fill the disk to the last block
        try:
            while True:
                file.write(b"\0" * 4096)
                file.flush()
        except OSError:
            pass
    for _ in range(5):
        response = trio.session.get(heartbeat, timeout=30)
        assert response.status_code == 503, response.text
        assert "No space left on device" in response.json()["error"]
    assert list((trio.cache_dir / ".tmp").iterdir()) == []


def _evict(trio) -> dict:
    body = {"debug": True, "action": "cacheEvict", "libName": XUL[0], "breakpadId": XUL[1]}
    return trio.post(body, server="DiskCache", headers={"Content-Type": "application/json"}).json()


def _accounting(trio) -> tuple[int, int]:
    cache = trio.session.get(trio.url("DiskCache", "/__heartbeat__"), timeout=30).json()["cache"]
    return cache["files"], cache["bytes"]


def _on_disk(trio) -> tuple[int, int]:
    files = [p for p in trio.cache_dir.iterdir() if p.name != ".tmp"]
    return len(files), sum(p.stat().st_size for p in files)


def test_cache_evict_on_a_read_only_cache_says_it_failed(make_trio, symbol_store, small_filesystem):
    trio = make_trio([symbol_store.url("plain")],
                     {"DiskCache": {"cachePath": str(small_filesystem / "cache")}})
    trio.cache_dir = small_filesystem / "cache"
    assert trio.post(XUL_BODY, server="DiskCache").json()["symbolicatedStacks"] == XUL_ANSWER
    assert trio.wait_for_file(XUL_TABLE)
    table = xul_table(trio)
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    try:
        assert _evict(trio) == {"success": False}
        assert table.exists()
        assert _accounting(trio) == _on_disk(trio) == (1, table.stat().st_size)
        # still served from the table that is still there
        assert trio.post(XUL_BODY, server="DiskCache").json()["symbolicatedStacks"] == XUL_ANSWER
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_filesystem)], check=True)
    assert _evict(trio) == {"success": True}
    assert not table.exists()
    assert _accounting(trio) == _on_disk(trio) == (0, 0)
