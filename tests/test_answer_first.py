"""Answering a cold module from its .sym before its table is built (issue 12, goals 2 and 3).

The answerer (:mod:`diskcache.rawlookup`) must give the table's answers byte for byte: it is
compared with :meth:`SymbolTable.lookup` and the plain reference rule on every fixture,
generated modules, chaotic random modules and record soups, at every edge.  Then through a
real trio: a cold module is answered from its RAW file, its table replaces it in the
background, answers equal the warm ones, one download serves concurrent requests, a worker
killed while answering is replaced, and garbage is answered unknown.
"""

from __future__ import annotations

import io
import os
import random
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diskcache.rawlookup import NeedsTable, answer_from_sym
from diskcache.symfile import LONG_LINE, ModuleMismatch, NotASymbolFile, process_symbol_file
from diskcache.tablereader import SymbolTable
from harness import parsing_workers, wait_for
from reference_rule import ReferenceModule
from test_properties import record_lines
from test_table import random_module

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures" / "edge_cases"
sys.path.insert(0, str(TESTS.parent / "bench"))


def table_of(text: bytes) -> SymbolTable:
    sink = io.BytesIO()
    process_symbol_file(io.BytesIO(text), sink)
    return SymbolTable(sink.getvalue())


def edge_offsets(reference: ReferenceModule) -> list[int]:
    """Every FUNC (kept or not), line record, inline range and PUBLIC start, end - 1 and end,
    a point between, below the first and above the last, and the ends of the number range."""
    offsets = {0, 1, 0x1000, (1 << 64) - 1}
    for func in reference.funcs:
        for start, size in [(func.address, func.size), *((a, s) for a, s, _, _ in func.lines),
                            *((s, e - s) for *_, ranges in func.inlines for s, e in ranges)]:
            offsets.update((start - 1, start, start + size // 2, start + size - 1, start + size, start + size + 1))
    for address, _ in reference.publics:
        offsets.update((address - 1, address, address + 1))
    return sorted(offset for offset in offsets if 0 <= offset < 1 << 64)


def agree(text: bytes, path: Path, offsets: list[int] | None = None) -> int:
    """Answers from the .sym == the table's == the reference's, module info included."""
    path.write_bytes(text)
    table, reference = table_of(text), ReferenceModule.from_bytes(text)
    offsets = edge_offsets(reference) if offsets is None else offsets
    module, answers, stats = answer_from_sym(path, offsets)
    assert module == table.module == reference.info
    assert stats.offsets == len(offsets)
    for offset in offsets:
        expected = table.lookup(offset)
        assert answers[offset] == expected, hex(offset)
        assert (expected.as_dict() if expected else None) == reference.lookup(offset), hex(offset)
    return len(offsets)


# -- the answerer against the table and the reference ------------------------------------------


@pytest.mark.usefixtures("scans")
@pytest.mark.parametrize("fixture", sorted(FIXTURES.rglob("*.sym")), ids=lambda path: path.parent.parent.name)
@pytest.mark.parametrize("targeted,chunk", [(0, 1 << 22), (64, 37)], ids=["names_by_parser", "names_by_id_small_reads"])
def test_every_fixture_is_answered_as_its_table_answers(fixture, tmp_path, targeted, chunk, monkeypatch):
    from diskcache import rawlookup

    monkeypatch.setattr(rawlookup, "TARGETED_IDS", targeted)  # both ways of reading the names
    monkeypatch.setattr(rawlookup, "CHUNK_BYTES", chunk)  # reads ending anywhere (from the
    monkeypatch.setattr(rawlookup, "FIRST_CHUNK_BYTES", min(chunk, rawlookup.FIRST_CHUNK_BYTES))  # first on), and
    monkeypatch.setattr(rawlookup, "MATCH_WINDOW", chunk // 2)  # windows of a line or two
    monkeypatch.setattr(rawlookup, "NAMES_CHUNK_BYTES", chunk)
    text = fixture.read_bytes()
    assert agree(text, tmp_path / "fixture.sym") >= 4
    assert agree(text.replace(b"\n", b"\r\n"), tmp_path / "crlf.sym") >= 4
    assert agree(text.rstrip(b"\n"), tmp_path / "no_final_newline.sym") >= 4


@pytest.mark.usefixtures("scans")
@pytest.mark.parametrize("chaos", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_random_modules_with_overlaps_unsorted_blocks_and_duplicates(seed, chaos, tmp_path, monkeypatch):
    from diskcache.rawlookup import _RawPublics

    # PUBLICs out of address order are looked up by passes, then in sorted runs: tiny runs here
    monkeypatch.setattr(_RawPublics, "RUN_RECORDS", 3 + seed)
    monkeypatch.setattr(_RawPublics, "UNSORTED_LOOKUPS", 2 * seed)
    monkeypatch.setattr("diskcache.rawlookup.TARGETED_IDS", 64 if seed % 2 else 0)
    monkeypatch.setattr("diskcache.rawlookup.CHUNK_BYTES", 1000 + 777 * seed)
    monkeypatch.setattr("diskcache.rawlookup.FIRST_CHUNK_BYTES", 1000 + 777 * seed)
    monkeypatch.setattr("diskcache.rawlookup.MATCH_WINDOW", 100 * seed + 1)
    text = random_module(seed=200 + seed, funcs=150, chaos=chaos)
    rng = random.Random(seed)
    reference = ReferenceModule.from_bytes(text)
    offsets = edge_offsets(reference) + [rng.randrange(0xF00, 0x1000 + 150 * 0x240) for _ in range(300)]
    assert agree(text, tmp_path / "random.sym", sorted(set(offsets))) > 1000


@pytest.mark.usefixtures("scans")
@pytest.mark.parametrize("crlf,junk", [(False, False), (True, True)])
def test_generated_modules(tmp_path, crlf, junk):
    from gen_symfile import generate

    path = tmp_path / "generated.sym"
    generate(path, size_mb=1.2, seed=5, crlf=crlf, junk=junk)
    text = path.read_bytes()
    table = table_of(text)
    rng = random.Random(3)
    funcs = [(int(address, 16), int(size, 16)) for address, size in
             re.findall(rb"\nFUNC (?:m )?([0-9a-f]+) ([0-9a-f]+) ", text)]
    offsets = {0, (1 << 64) - 1}
    for address, size in rng.sample(funcs, 300) + funcs[:5] + funcs[-5:]:
        offsets.update((address - 1, address, address + size - 1, address + size))
    offsets.update(rng.randrange(0, funcs[-1][0] + 0x1000) for _ in range(500))
    module, answers, _ = answer_from_sym(path, sorted(offsets))
    assert module == table.module
    assert all(answers[offset] == table.lookup(offset) for offset in offsets)
    assert sum(answers[offset] is not None for offset in offsets) > 500
    reference = ReferenceModule.from_bytes(text)
    for offset in sorted(offsets)[::7]:  # the plain rule is slow: a sample
        assert (answers[offset].as_dict() if answers[offset] else None) == reference.lookup(offset)


@pytest.mark.usefixtures("scans")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.lists(record_lines, max_size=40), st.sampled_from(["\n", "\r\n"]),
       st.lists(st.integers(0, 0x3400), min_size=1, max_size=25))
def test_any_record_soup_is_answered_as_its_table_answers(tmp_path, lines, ending, offsets):
    text = ending.join(["MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 soup.so", *lines]).encode()
    path = tmp_path / "soup.sym"
    path.write_bytes(text)
    table = table_of(text)
    module, answers, _ = answer_from_sym(path, offsets)
    assert module == table.module
    for offset in offsets:
        assert answers[offset] == table.lookup(offset)


@pytest.mark.usefixtures("scans")
def test_names_longer_than_the_cap_and_odd_numbers(tmp_path):
    long_name = "n" * (70 * 1024)
    text = "\n".join([
        "MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 odd.so",
        "INFO CODE_ID ABCDEF odd.so.1", "INFO CODE_ID 0123 ignored.so",
        f"FILE 0 {long_name}", "FILE 0 second_file_0_loses", "FILE 000000000000000000001 leading_zeros",
        f"INLINE_ORIGIN 0 {long_name}", "INLINE_ORIGIN 1 -1 old_format_origin", "INLINE_ORIGIN 2 42",
        f"FUNC 00000000000000001000 10 0 {long_name}",  # more than 16 digits: not the fast path's form
        "INLINE 0 7 1 0 1000 8", "INLINE 1 8 1 1000 4",  # today's format, then the older one
        "1000 8 11 0", "1008 8 12 1",
        "FUNC m 2000 10 0 with\rcarriage return", "2000 10 3 1",
        "FUNC 3000 0 0 size_zero", "FUNC 3000 8 0 after_size_zero", "FUNC 3004 8 0 inside_the_last",
        "PUBLIC m 4000 0 public_m", "PUBLIC 4000 0 duplicate_loses", f"PUBLIC 5000 0 {long_name}",
        "PUBLIC 00000000000000006000 0 long_digits",
    ]).encode()
    assert agree(text, tmp_path / "odd.sym") > 20


@pytest.mark.usefixtures("scans")
def test_an_address_in_an_inline_with_no_line_record(tmp_path):
    """Its frame names the inlined function and no FILE: the names read are INLINE_ORIGINs
    only (the regex of wanted ids had no FILE group then, and the worker failed with an
    IndexError on its "is it a FILE line" test)."""
    text = b"\n".join([b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 x.so", b"FILE 0 a.cpp",
                       b"INLINE_ORIGIN 0 inlined()", b"FUNC 1000 100 0 f", b"INLINE 0 5 -1 0 1000 10",
                       b"1040 10 7 0"])
    path = tmp_path / "x.sym"
    assert agree(text, path, [0x1004]) == 1
    frame = answer_from_sym(path, [0x1004])[1][0x1004]
    assert (frame.function, frame.file, [inline.function for inline in frame.inlines]) == ("f", None, ["inlined()"])


@pytest.mark.usefixtures("scans")
def test_module_checks_and_a_long_line(tmp_path):
    path = tmp_path / "x.sym"
    path.write_bytes(b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 x.so\nFUNC 10 10 0 f\n")
    with pytest.raises(ModuleMismatch):
        answer_from_sym(path, [0x10], "FEDCBA98765432100123456789ABCDEF0")
    assert answer_from_sym(path, [0x10], "0123456789abcdef0123456789abcdef0")[1][0x10].function == "f"
    for garbage in (b"", b"<html>not found</html>", b"\x1f\x8b\x08binary", b"MODULE x\nFUNC 10 10 0 f\n"):
        path.write_bytes(garbage)
        with pytest.raises(NotASymbolFile):
            answer_from_sym(path, [0x10])
    path.write_bytes(b"MODULE a b c d\nFUNC 10 10 0 " + b"x" * LONG_LINE + b"\n")
    with pytest.raises(NeedsTable):  # read by its head by the parser: answered from the table
        answer_from_sym(path, [0x10])


def test_memory_is_the_index_not_the_file(tmp_path):
    """A 40 MB module: the answering process grows by far less than the file."""
    import subprocess

    from gen_symfile import generate

    path = tmp_path / "big.sym"
    generate(path, size_mb=40, seed=9)
    script = ("import resource, sys; from diskcache.rawlookup import answer_from_sym;"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
              "m, a, s = answer_from_sym(sys.argv[1], range(0x1000, 0x200000, 0x1000));"
              "print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, s.funcs)")
    output = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                            cwd=TESTS.parent, check=True, timeout=300).stdout.split()
    before, after, funcs = (int(value) for value in output)
    assert funcs > 40_000
    assert (after - before) * 1024 < 25 * 1024 * 1024, (before, after)


# -- through a real trio ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    """A store holding a generated 24 MB module (its table takes a while to build) and the
    edge-case fixtures."""
    from gen_symfile import generate

    from symbol_store import SymbolStore

    root = tmp_path_factory.mktemp("answer_first_store")
    debug_id = "5E1B0A4C2D3E4F5061728394A5B6C7D81"
    path = root / "big.pdb" / debug_id / "big.sym"
    path.parent.mkdir(parents=True)
    generate(path, size_mb=24, seed=21, debug_file="big.pdb", debug_id=debug_id, code_file="big.dll")
    other = root / "big.pdb" / WRONG_ID / "big.sym"  # the same file where another module's should be
    other.parent.mkdir()
    os.link(path, other)
    store = SymbolStore(root)
    store.start()
    yield store, ["big.pdb", debug_id], path
    store.stop()


WRONG_ID = "0123456789ABCDEF0123456789ABCDEF1"


def v5(module: list[str], offsets: list[int]) -> dict:
    return {"jobs": [{"memoryMap": [module], "stacks": [[[0, offset] for offset in offsets]]}]}


def some_offsets(path: Path, count: int = 40) -> list[int]:
    funcs = [int(address, 16) for address in re.findall(rb"\nFUNC (?:m )?([0-9a-f]+) ", path.read_bytes())]
    return [address + 3 for address in random.Random(4).sample(funcs, count)] + [0x10, funcs[-1] + 0x100000]


def kinds(trio) -> list[str]:
    return sorted(Path(name).suffix for name in trio.cache_files())


ANSWER_FIRST = {"DiskCache": {"answerBeforeTable": True, "answerBeforeTableMB": 0, "processWorkers": 2}}


def test_a_cold_module_is_answered_from_its_sym_then_its_table_replaces_it(make_trio, big_store):
    store, module, path = big_store
    trio = make_trio([store.url("plain")], ANSWER_FIRST)
    offsets = some_offsets(path)
    response = trio.post(v5(module, offsets), path="/symbolicate/v5", server="DiskCache",
                         headers={"Debug": "true"})
    assert response.status_code == 200
    cold = response.json()
    assert kinds(trio) == [".sym"]  # answered before the table exists: the RAW file is there
    [processed] = cold["debug"]["modules_processed"]
    assert processed["answered_from"] == "sym" and processed["offsets"] == len(offsets)
    assert wait_for(lambda: kinds(trio) == [".symtab"])  # built in the background, RAW gone
    warm = trio.post(v5(module, offsets), path="/symbolicate/v5", server="DiskCache").json()
    assert cold["results"] == warm["results"]
    frames = warm["results"][0]["stacks"][0]
    assert all("function" in frame for frame in frames[:-2])  # (the last two are outside every FUNC)
    assert warm["results"][0]["found_modules"] == {"big.pdb/" + module[1]: True}


def idle_workers(trio) -> list[int]:
    """The pids of the DiskCache's workers running at SCHED_IDLE (building a table)."""
    found = []
    for worker in parsing_workers(trio.pid("DiskCache")):
        try:
            if os.sched_getscheduler(worker.pid) == os.SCHED_IDLE:
                found.append(worker.pid)
        except OSError:  # gone meanwhile
            pass
    return found


def test_a_background_build_runs_at_idle_priority_in_a_regular_worker(make_trio, big_store):
    """The table built after the answer takes only CPU nobody else wants (SCHED_IDLE), in
    one of the ``processWorkers`` workers (no process more to hold memory), which is back at
    normal priority afterwards."""
    store, module, path = big_store
    trio = make_trio([store.url("plain")], ANSWER_FIRST)
    assert wait_for(lambda: len(parsing_workers(trio.pid("DiskCache"))) == 2)
    workers = {worker.pid for worker in parsing_workers(trio.pid("DiskCache"))}
    trio.post(v5(module, some_offsets(path, 10)), path="/symbolicate/v5", server="DiskCache")
    assert wait_for(lambda: idle_workers(trio))  # the 24 MB table takes a while to build
    assert set(idle_workers(trio)) <= workers
    assert wait_for(lambda: kinds(trio) == [".symtab"])
    assert wait_for(lambda: not idle_workers(trio), 30)
    assert len(parsing_workers(trio.pid("DiskCache"))) == 2


@pytest.fixture
def slow_second_store(tmp_path):
    """A second store whose every answer waits 20 s: a module only it has keeps a download
    in flight that long."""
    from gen_symfile import generate

    from symbol_store import SymbolStore

    debug_id = "51074D0E5510E5510E5510E5510E55101"
    path = tmp_path / "slow.pdb" / debug_id / "slow.sym"
    path.parent.mkdir(parents=True)
    generate(path, size_mb=0.5, seed=5, debug_file="slow.pdb", debug_id=debug_id, code_file="slow.dll")
    store = SymbolStore(tmp_path)
    store.start()
    yield store, ["slow.pdb", debug_id]
    store.stop()


def test_tables_wait_while_other_modules_are_fetched_but_not_forever(make_trio, big_store, slow_second_store):
    """A table is not built while another module is still being fetched (a burst of cold
    requests is answered first), but cold work that does not end does not stop it: after
    BUILD_DEFER_SECONDS (10 s) it is built anyway."""
    from diskcache.provider import BUILD_DEFER_SECONDS

    store, module, path = big_store
    slow_store, slow_module = slow_second_store
    trio = make_trio([store.url("plain"), slow_store.url("slow/20000")], ANSWER_FIRST)
    slow_answer: list = []
    fetching = threading.Thread(target=lambda: slow_answer.append(requests.post(
        trio.url("DiskCache", "/symbolicate/v5"), json=v5(slow_module, [0x1000]), timeout=120)))
    fetching.start()
    try:
        assert wait_for(lambda: slow_store.count("/slow/20000/slow.pdb/" + slow_module[1] + "/slow.sym") == 1, 30)
        began = time.monotonic()
        cold = trio.post(v5(module, some_offsets(path, 10)), path="/symbolicate/v5", server="DiskCache").json()
        assert cold["results"][0]["found_modules"] == {"big.pdb/" + module[1]: True}
        time.sleep(3)
        assert kinds(trio) == [".sym"] and not slow_answer  # deferred: the slow download is in flight
        assert wait_for(lambda: ".symtab" in kinds(trio), 60)
        assert time.monotonic() - began >= BUILD_DEFER_SECONDS - 1
        assert not slow_answer  # built while the other download was still in flight
    finally:
        fetching.join(120)
    assert slow_answer and slow_answer[0].status_code == 200
    assert slow_answer[0].json()["results"][0]["found_modules"] == {"slow.pdb/" + slow_module[1]: True}


def test_concurrent_requests_for_a_cold_module_download_it_once(make_trio, big_store):
    store, module, path = big_store
    store.reset()
    trio = make_trio([store.url("plain")], ANSWER_FIRST)
    offsets = some_offsets(path, 10)
    results: list = []

    def ask(part: int) -> None:
        body = v5(module, offsets[part::4])
        results.append(trio.post(body, path="/symbolicate/v5", server="DiskCache").json())

    threads = [threading.Thread(target=ask, args=(part,)) for part in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert len(results) == 4 and all(r["results"][0]["found_modules"] for r in results)
    assert store.count("/plain/big.pdb/" + module[1] + "/big.sym") == 1
    assert wait_for(lambda: kinds(trio) == [".symtab"])


def test_a_worker_killed_while_answering_is_replaced_and_the_module_answered(make_trio, big_store):
    import psutil

    store, module, path = big_store
    trio = make_trio([store.url("plain")], ANSWER_FIRST)
    offsets = some_offsets(path, 20)
    diskcache = psutil.Process(trio.pid("DiskCache"))
    assert wait_for(lambda: len(parsing_workers(diskcache.pid)) == 2)
    workers = parsing_workers(diskcache.pid)
    for worker in workers:  # they take the request but cannot answer it; then they die
        worker.send_signal(signal.SIGSTOP)
    results: list = []
    asking = threading.Thread(target=lambda: results.append(
        trio.post(v5(module, offsets), path="/symbolicate/v5", server="DiskCache")))
    asking.start()
    time.sleep(1.5)  # downloaded, and the request is waiting on a stopped worker
    for worker in workers:
        worker.kill()
    asking.join(300)
    [response] = results
    assert response.status_code == 200
    frames = response.json()["results"][0]["stacks"][0]
    assert all("function" in frame for frame in frames[:-2])  # (the last two are outside every FUNC)
    assert "asking another worker" in trio.logs()  # (the worker answering while it arrived, or after)


@pytest.mark.parametrize("variant", ["html", "truncated", "badgzip"])
def test_a_garbage_or_cut_download_is_answered_unknown(make_trio, symbol_store, variant):
    trio = make_trio([symbol_store.url(variant)], dict(ANSWER_FIRST, DiskCache=dict(
        ANSWER_FIRST["DiskCache"], retries=1)))
    xul = ["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"]
    response = trio.post(v5(xul, [0x1000]), path="/symbolicate/v5", server="DiskCache")
    assert response.status_code == 200
    assert response.json()["results"][0]["found_modules"] == {"xul.pdb/" + xul[1]: False}
    assert wait_for(lambda: trio.cache_files() == [], 30)  # nothing kept: no RAW, no table


def test_a_local_file_is_answered_from_and_its_local_table_built(make_trio, big_store, tmp_path):
    store, module, path = big_store
    local = tmp_path / "symbols" / "big.pdb" / module[1]
    local.mkdir(parents=True)
    os.link(path, local / "big.sym")
    trio = make_trio([store.url("nowhere")], dict(ANSWER_FIRST, DiskCache=dict(
        ANSWER_FIRST["DiskCache"], localSymbolDirs=[str(tmp_path / "symbols")])))
    offsets = some_offsets(path, 10)
    cold = trio.post(v5(module, offsets), path="/symbolicate/v5", server="DiskCache",
                     headers={"Debug": "true"}).json()
    assert cold["debug"]["modules_processed"][0]["answered_from"] == "sym"
    assert kinds(trio) == []  # the .localtab is still being built
    assert wait_for(lambda: kinds(trio) == [".localtab"])
    warm = trio.post(v5(module, offsets), path="/symbolicate/v5", server="DiskCache").json()
    assert cold["results"] == warm["results"]


def test_a_download_is_answered_from_while_it_arrives(make_trio, big_store):
    """Dripping in (256-byte writes): the worker scans it as it comes, and answers at its end."""
    store, module, path = big_store
    trio = make_trio([store.url("drip/0")], ANSWER_FIRST)
    offsets = some_offsets(path, 20)
    cold = trio.post(v5(module, offsets), path="/symbolicate/v5", server="DiskCache",
                     headers={"Debug": "true"}).json()
    [processed] = cold["debug"]["modules_processed"]
    assert processed["answered_from"] == "sym" and processed.get("while_downloading") is True
    assert "while it arrived" in trio.logs()
    assert wait_for(lambda: kinds(trio) == [".symtab"])
    warm = trio.post(v5(module, offsets), path="/symbolicate/v5", server="DiskCache").json()
    assert cold["results"] == warm["results"]


def test_sigterm_does_not_wait_for_a_background_build(make_trio, big_store):
    """The table being built after an answer (its worker stopped here, so it never ends) does
    not hold the exit; after a restart the RAW file is answered from and built again."""
    import psutil

    store, module, path = big_store
    trio = make_trio([store.url("plain")], ANSWER_FIRST)
    offsets = some_offsets(path, 10)
    cold = trio.post(v5(module, offsets), path="/symbolicate/v5", server="DiskCache").json()
    diskcache = psutil.Process(trio.pid("DiskCache"))
    assert wait_for(lambda: idle_workers(trio)) and kinds(trio) == [".sym"]  # the build is in flight
    for builder in idle_workers(trio):
        os.kill(builder, signal.SIGSTOP)
    family = [diskcache, *diskcache.children(recursive=True)]
    began = time.monotonic()
    trio.kill("DiskCache", signal.SIGTERM)
    gone, alive = psutil.wait_procs(family, timeout=20)
    assert not alive, alive
    assert time.monotonic() - began < 15
    assert kinds(trio) == [".sym"]  # no table added by a killed build; the RAW file stays
    trio.restart_dead()
    again = trio.post(v5(module, offsets), path="/symbolicate/v5", server="DiskCache").json()
    assert again["results"] == cold["results"]
    assert wait_for(lambda: kinds(trio) == [".symtab"])


def test_a_job_of_very_many_offsets_waits_for_the_table(make_trio, big_store):
    """More offsets than RAW_ANSWER_MAX_OFFSETS (here 25,000; the limit is 20,000): answered
    from the table, built first, not from the .sym."""
    store, module, path = big_store
    trio = make_trio([store.url("plain")], ANSWER_FIRST)
    offsets = list(range(0x1000, 0x1000 + 25_000 * 8, 8))
    cold = trio.post(v5(module, offsets), path="/symbolicate/v5", server="DiskCache",
                     headers={"Debug": "true"}).json()
    assert [entry["answered_from"] for entry in cold["debug"]["modules_processed"]] == ["table"]
    assert kinds(trio) == [".symtab"]
    warm = trio.post(v5(module, offsets), path="/symbolicate/v5", server="DiskCache").json()
    assert cold["results"] == warm["results"]


def test_another_modules_symbols_are_answered_unknown_and_not_kept(make_trio, big_store):
    store, module, path = big_store
    trio = make_trio([store.url("plain")], ANSWER_FIRST)
    wrong = ["big.pdb", WRONG_ID]
    answer = trio.post(v5(wrong, some_offsets(path, 5)), path="/symbolicate/v5", server="DiskCache").json()
    assert answer["results"][0]["found_modules"] == {"big.pdb/" + WRONG_ID: False}
    assert wait_for(lambda: kinds(trio) == [], 30)  # neither the RAW file nor a table
    assert "another module's" in trio.logs()
    again = trio.post(v5(wrong, [0x1000]), path="/symbolicate/v5", server="DiskCache").json()
    assert again["results"][0]["found_modules"] == {"big.pdb/" + WRONG_ID: False}
    assert store.count("/plain/big.pdb/" + WRONG_ID + "/big.sym") == 1  # remembered as missing


def test_max_size_counts_the_raw_file_while_it_exists(make_trio, big_store):
    store, module, path = big_store
    trio = make_trio([store.url("plain")],
                     dict(ANSWER_FIRST, DiskCache=dict(ANSWER_FIRST["DiskCache"], maxSizeMB=64)))

    def cache_bytes() -> int:
        return trio.session.get(trio.url("DiskCache", "/__heartbeat__"), timeout=10).json()["cache"]["bytes"]

    trio.post(v5(module, some_offsets(path, 5)), path="/symbolicate/v5", server="DiskCache")
    assert kinds(trio) == [".sym"] and cache_bytes() == path.stat().st_size  # the RAW file, counted
    assert wait_for(lambda: kinds(trio) == [".symtab"])
    table = next(p for p in trio.cache_dir.iterdir() if p.suffix == ".symtab")
    assert cache_bytes() == table.stat().st_size < path.stat().st_size // 3
