"""memcached is unauthenticated: whatever is stored under a frame's key must be harmless.

Values are planted with a raw socket (any flags, any bytes) in the real memcached of a real
trio, under the key SymServer uses for a frame; the frame is then asked for.  SymServer must
not run pickles, inflate zlib, trust JSON of the wrong shape or keep reading an absurd value:
each is a miss, the answer is the right one, and the fresh answer replaces the bad value.
Also: a request of many frames is cached in bounded chunks, and warm answers come from memcached.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import time
import zlib
from pathlib import Path
from typing import Iterable

import psutil
import pytest

from harness import wait_for
from symcommon.modules import ModuleId
from symserver.framecache import decode, encode, frame_key
from symcommon.frames import FrameInfo, InlineFrame

DEBUG_ID = "5A1E5A1E5A1E5A1E5A1E5A1E5A1E5A1E1"
MODULE = ModuleId("libvalues.so", DEBUG_ID)
SYM = f"""MODULE Linux x86_64 {DEBUG_ID} libvalues.so
INFO CODE_ID 5A1E5A1E libvalues.so.1
FILE 0 src/values.c
FUNC 1000 100000 0 covered
1000 100000 12 0
"""


def good_v5(offset: int) -> dict:
    return {"module": "libvalues.so.1", "module_offset": hex(offset), "function": "covered",
            "function_offset": hex(offset - 0x1000), "function_size": "0x100000",
            "file": "src/values.c", "line": 12}


@pytest.fixture
def trio(make_trio, symbol_store, tmp_path):
    """A trio reading libvalues.so from a local directory; no in-process frame cache, so every
    request reads memcached."""
    symbols = tmp_path / "symbols"
    path = symbols / "libvalues.so" / DEBUG_ID / "libvalues.so.sym"
    path.parent.mkdir(parents=True)
    path.write_text(SYM)
    return make_trio([symbol_store.url("plain")],
                     {"DiskCache": {"localSymbolDirs": [str(symbols)]},
                      "SymServer": {"frameCacheEntries": 0},
                      "quickstart": {"memcached": {"maxMemoryMB": "64"}}})


# -- raw memcached access ---------------------------------------------------------------------


def _read_line(connection: socket.socket, buffer: bytearray) -> bytes:
    while b"\r\n" not in buffer:
        data = connection.recv(65536)
        assert data, "memcached closed the connection"
        buffer += data
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line


def raw_set(port: int, key: str, flags: int, value: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(f"set {key} {flags} 0 {len(value)}\r\n".encode() + value + b"\r\n")
        assert _read_line(connection, bytearray()) == b"STORED"


def raw_get(port: int, key: str) -> tuple[int, bytes] | None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(f"get {key}\r\n".encode())
        buffer = bytearray()
        line = _read_line(connection, buffer)
        if line == b"END":
            return None
        _, _, flags, length = line.split()
        while len(buffer) < int(length) + 2:
            buffer += connection.recv(65536)
        return int(flags), bytes(buffer[:int(length)])


def peak_rss_mb(pid: int) -> float:
    """The high-water mark of resident memory of SymServer and its children (VmHWM)."""
    total = 0
    for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return total / 1024


# -- the values planted ------------------------------------------------------------------------

FLAG_PICKLE, FLAG_INTEGER, FLAG_COMPRESSED, FLAG_TEXT = 1, 2, 8, 16


class RunsACommand:
    """Unpickling this runs a shell command: what an attacker with memcached access stores."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def lying_value(offset: int) -> bytes:
    """A well-formed value for ``offset`` that names the wrong function."""
    compact = ["not_the_function", offset - 0x1000, 0x100000, "src/values.c", 12, []]
    return json.dumps(["libvalues.so.1", compact]).encode()


def planted_values(marker: Path) -> list[tuple[str, int, bytes]]:
    bad_compact = [
        ["covered", True, 0x100000, "src/values.c", 12, []],           # bool as int
        [5, 0, 0x100000, "src/values.c", 12, []],                      # function not a str
        ["covered", "0x10", 0x100000, "src/values.c", 12, []],         # offset as a string
        ["covered", -5, 0x100000, "src/values.c", 12, []],             # negative offset
        ["covered", 0, 1 << 70, "src/values.c", 12, []],               # absurd size
        ["covered", 0, 0x100000, "src/values.c", 12],                  # too short
        ["covered", 0, 0x100000, "src/values.c", 12, [], "extra"],     # too long
        ["covered", 0, 0x100000, "src/values.c", 12, [["f", None]]],   # inline too short
        ["covered", 0, 0x100000, "src/values.c", 12, [[None, None, 3]]],  # inline without function
        ["covered", 0, 0x100000, "src/values.c", 12.0, []],            # line a float
        ["covered", 0, 0x100000, 7, 12, []],                           # file not a str
    ]
    values = [
        ("pickle running a command", FLAG_PICKLE, pickle.dumps(RunsACommand(f"touch {marker}"), protocol=2)),
        ("pickle protocol 0", FLAG_PICKLE, pickle.dumps(RunsACommand(f"touch {marker}"), protocol=0)),
        ("zlib-compressed pickle", FLAG_PICKLE | FLAG_COMPRESSED,
         zlib.compress(pickle.dumps(RunsACommand(f"touch {marker}")))),
        ("compressed JSON", FLAG_COMPRESSED, zlib.compress(lying_value(0x1000))),
        ("text flag", FLAG_TEXT, lying_value(0x1000)),
        ("integer flag", FLAG_INTEGER, b"12345"),
        ("unknown flag", 1 << 10, b"[]"),
        ("truncated JSON", 0, lying_value(0x1000)[:25]),
        ("not JSON", 0, b"\x80\x04\x95 binary"),
        ("JSON not a pair", 0, b'{"a": 1}'),
        ("code file not a str", 0, json.dumps([5, None]).encode()),
        ("huge value", 0, json.dumps(["libvalues.so.1", ["x" * 1_000_000, 0, 1, None, None, []]]).encode()),
        ("deep nesting", 0, b"[" * 100_000),
    ]
    values += [(f"wrong types {i}", 0, json.dumps(["libvalues.so.1", c]).encode())
               for i, c in enumerate(bad_compact)]
    return values


def wait_until_stored(port: int, offsets: Iterable[int]) -> None:
    """Fresh frames are stored while the answer goes out: before a test plants values over
    them or counts memcached's hits, the stores of the request before must be done.  Each
    chunk of CHUNK_KEYS frames is one set_multi, in order: its last key tells."""
    from symserver.framecache import CHUNK_KEYS

    offsets = list(offsets)
    last_of_chunks = offsets[CHUNK_KEYS - 1::CHUNK_KEYS] + offsets[-1:]
    assert wait_for(lambda: all(raw_get(port, frame_key(MODULE, offset)) is not None for offset in last_of_chunks),
                    timeout=30, step=0.02), "the fresh answers were not stored"


def assert_good_value_stored(port: int, offset: int) -> None:
    """The fresh answer replaced the planted value (stored just after the answer was sent)."""
    key = frame_key(MODULE, offset)

    def good_value() -> bool:
        stored = raw_get(port, key)
        return stored is not None and stored[0] == 0 and decode(stored[1]) is not None

    assert wait_for(good_value, timeout=10, step=0.01), "the fresh answer was not stored"
    stored = raw_get(port, key)
    flags, value = stored
    assert flags == 0
    code_file, info = decode(value)
    assert code_file == "libvalues.so.1" and info.function == "covered"
    assert info.function_offset == offset - 0x1000


def test_planted_values_are_misses_and_are_replaced(trio, tmp_path):
    marker = tmp_path / "pwned"
    values = planted_values(marker)
    offsets = {name: 0x2000 + 0x10 * i for i, (name, _, _) in enumerate(values)}
    port = trio.memcached_port
    for name, flags, value in values:
        offset = offsets[name]
        key = frame_key(MODULE, offset)
        raw_set(port, key, flags, value)
        response = trio.post({"stacks": [[[0, offset]]], "memoryMap": [["libvalues.so", DEBUG_ID]], "version": 4})
        assert response.status_code == 200, (name, response.text)
        assert response.json() == {"symbolicatedStacks": [["covered (in libvalues.so)"]],
                                   "knownModules": [True]}, name
        assert_good_value_stored(port, offset)
        raw_set(port, key, flags, value)  # again, for v5
        response = trio.post({"jobs": [{"memoryMap": [["libvalues.so", DEBUG_ID]], "stacks": [[[0, offset]]]}]},
                             path="/symbolicate/v5")
        assert response.status_code == 200, (name, response.text)
        assert response.json()["results"][0]["stacks"][0] == [dict(good_v5(offset), frame=0)], name
        assert_good_value_stored(port, offset)
        assert not marker.exists(), f"{name}: SymServer ran the pickled command"
    assert trio.pid("SymServer") is not None and psutil.pid_exists(trio.pid("SymServer"))


def test_a_bad_value_does_not_cost_the_good_ones(trio, tmp_path):
    """Values after a refused one in the same get are still read (the stream stays in step)."""
    marker = tmp_path / "pwned"
    offsets = [0x3000 + i for i in range(12)]
    body = {"jobs": [{"memoryMap": [["libvalues.so", DEBUG_ID]], "stacks": [[[0, o] for o in offsets]]}]}
    cold = trio.post(body, path="/symbolicate/v5", headers={"Debug": "true"}).json()
    assert cold["debug"]["memcached"]["misses"] == 12
    port = trio.memcached_port
    wait_until_stored(port, offsets)
    for offset, (flags, value) in zip(offsets[::3], [
            (1 << 10, b"[]"), (FLAG_PICKLE, pickle.dumps(RunsACommand(f"touch {marker}"))),
            (0, b"x" * 1_000_000), (FLAG_COMPRESSED, zlib.compress(b"[" * 100_000))]):
        raw_set(port, frame_key(MODULE, offset), flags, value)
    warm = trio.post(body, path="/symbolicate/v5", headers={"Debug": "true"}).json()
    assert warm["results"] == cold["results"]
    assert warm["debug"]["memcached"] == dict(warm["debug"]["memcached"], hits=8, misses=4)
    again = trio.post(body, path="/symbolicate/v5", headers={"Debug": "true"}).json()
    assert again["results"] == cold["results"]
    assert again["debug"]["memcached"] == dict(again["debug"]["memcached"], hits=12, misses=0)
    assert not marker.exists()


def zlib_bomb(inflated_mb: int) -> bytes:
    compressor = zlib.compressobj(9)
    zeros = bytes(1 << 20)
    return b"".join([compressor.compress(zeros) for _ in range(inflated_mb)] + [compressor.flush()])


def test_zlib_bombs_are_not_inflated(trio):
    bomb = zlib_bomb(300)
    assert len(bomb) < 400_000
    offsets = [0x4000, 0x4001, 0x4002]
    body = {"stacks": [[[0, o] for o in offsets]], "memoryMap": [["libvalues.so", DEBUG_ID]], "version": 4}
    trio.post(body)  # warm up: SymServer's own memory for a request
    pid = trio.pid("SymServer")
    before = peak_rss_mb(pid)
    for offset in offsets:
        raw_set(trio.memcached_port, frame_key(MODULE, offset), FLAG_COMPRESSED, bomb)
    response = trio.post(body)
    assert response.status_code == 200
    assert response.json()["symbolicatedStacks"] == [["covered (in libvalues.so)"] * 3]
    after = peak_rss_mb(pid)
    print(f"SymServer peak RSS {before:.0f} MB before, {after:.0f} MB after the bombs")
    assert after - before < 50, f"SymServer's peak memory grew from {before:.0f} MB to {after:.0f} MB"
    for offset in offsets:
        assert_good_value_stored(trio.memcached_port, offset)


def test_values_written_are_plain_bytes(trio):
    response = trio.post({"stacks": [[[0, 0x5000]]], "memoryMap": [["libvalues.so", DEBUG_ID]], "version": 4})
    assert response.status_code == 200
    assert_good_value_stored(trio.memcached_port, 0x5000)


# -- the value check on its own ----------------------------------------------------------------


def test_decode_accepts_what_encode_writes():
    info = FrameInfo("f", 3, None, None, None, (InlineFrame("g", None, None), InlineFrame("h", "a.c", 0)))
    assert decode(encode("a.dll", info)) == ("a.dll", info)
    assert decode(encode(None, None)) == (None, None)
    full = FrameInfo("f", 0, 0, "a.c", 0, ())
    assert decode(encode(None, full)) == (None, full)


@pytest.mark.parametrize("value", [
    None, 5, "text", b"", b"null", b"[]", b"[null]", b"[null, null, null]", b"[true, null]",
    b'[null, ["f", 0, null, null, null, [], 1]]',
    b'[null, ["f", false, null, null, null, []]]',
    b'[null, ["f", 0, true, null, null, []]]',
    b'[null, ["f", 0, null, null, true, []]]',
    b'[null, ["f", 0, null, null, -1, []]]',
    b'[null, ["f", 0, -1, null, null, []]]',
    b'[null, ["f", 18446744073709551616, null, null, null, []]]',
    b'[null, ["f", 0, null, null, 1e3, []]]',
    b'[null, ["f", 0, null, null, null, {}]]',
    b'[null, ["f", 0, null, null, null, [["g", null]]]]',
    b'[null, ["f", 0, null, null, null, [["g", null, null, null]]]]',
    b'[null, ["f", 0, null, null, null, [["g", 5, null]]]]',
    b'[null, ["f", 0, null, null, null, [["g", null, false]]]]',
    b'[null, ["f", 0, null, null, null, [[1, null, null]]]]',
    b'[null, ["f", 0, null, null, null, "abc"]]',
    b'[null, [null, 0, null, null, null, []]]',
    b'[null, ["f", 0, null, null, null, [], NaN]]',
    b'\xff\xfe',
])
def test_decode_refuses_values_of_the_wrong_shape(value):
    assert decode(value) is None


# -- big requests ------------------------------------------------------------------------------


def test_a_big_request_is_cached_and_answered_from_memcached(trio):
    """50,000 distinct frames: stored in chunks, and the second time every one is a memcached hit."""
    offsets = range(0x10000, 0x10000 + 50_000)
    body = {"jobs": [{"memoryMap": [["libvalues.so", DEBUG_ID]], "stacks": [[[0, o] for o in offsets]]}]}
    cold = trio.post(body, path="/symbolicate/v5", headers={"Debug": "true"})
    assert cold.status_code == 200, cold.text[:300]
    cold = cold.json()
    assert cold["debug"]["memcached"]["misses"] == 50_000
    wait_until_stored(trio.memcached_port, offsets)
    warm = trio.post(body, path="/symbolicate/v5", headers={"Debug": "true"}).json()
    assert warm["debug"]["memcached"]["hits"] == 50_000 and warm["debug"]["memcached"]["misses"] == 0
    assert warm["debug"]["diskcache"]["round_trips"] == 0
    assert warm["results"] == cold["results"]
    assert warm["results"][0]["stacks"][0][49_999] == dict(good_v5(0x10000 + 49_999), frame=49_999)
    for offset in (offsets[0], offsets[25_000], offsets[-1]):
        assert_good_value_stored(trio.memcached_port, offset)

    # memcached hung (stopped, not dead): the request skips it, after a bounded wait
    trio.kill("memcached", signal.SIGSTOP)
    try:
        started = time.monotonic()
        hung = trio.post(body, path="/symbolicate/v5", headers={"Debug": "true"})
        elapsed = time.monotonic() - started
    finally:
        trio.kill("memcached", signal.SIGCONT)
    assert hung.status_code == 200
    assert hung.json()["results"] == cold["results"] and hung.json()["debug"]["memcached"]["hits"] == 0
    assert elapsed < 30


def _trio_with_held_stores(make_trio, symbol_store, tmp_path, stores_sent: list[float]):
    """A trio whose SymServer reaches memcached through a relay holding each store 0.2 s
    (the client's socket timeout is 0.25 s); ``stores_sent``: when each store reached it."""
    from relay import Relay

    symbols = tmp_path / "symbols"
    path = symbols / "libvalues.so" / DEBUG_ID / "libvalues.so.sym"
    path.parent.mkdir(parents=True)
    path.write_text(SYM)
    trio = make_trio([symbol_store.url("plain")], {"DiskCache": {"localSymbolDirs": [str(symbols)]}}, run=False)

    def hold(data: bytes) -> float:
        if b"set " not in data:
            return 0.0
        stores_sent.append(time.monotonic())
        return 0.2

    relay = Relay(trio.memcached_port, hold=hold)
    trio.reconfigure({"SymServer": {"memcachedServers": [f"127.0.0.1:{relay.port}"]}})
    trio.start()
    return trio, relay


def test_the_answer_does_not_wait_for_memcached_to_store_it(make_trio, symbol_store, tmp_path):
    """Fresh frames are stored while the answer goes out: the answer arrives while the relay
    still holds the store, and the frames are stored."""
    stores_sent: list[float] = []
    trio, relay = _trio_with_held_stores(make_trio, symbol_store, tmp_path, stores_sent)
    try:
        offsets = [0x3000 + 0x10 * i for i in range(50)]
        response = trio.post({"stacks": [[[0, offset] for offset in offsets]],
                              "memoryMap": [["libvalues.so", DEBUG_ID]], "version": 4})
        answered = time.monotonic()
        assert response.status_code == 200
        assert response.json()["symbolicatedStacks"] == [["covered (in libvalues.so)"] * 50]
        for offset in offsets:
            assert_good_value_stored(trio.memcached_port, offset)
    finally:
        relay.stop()
    assert stores_sent and answered < stores_sent[0] + 0.2, "the answer waited for memcached's reply to the store"


def test_an_eviction_is_not_undone_by_a_store_still_on_its_way(make_trio, symbol_store, tmp_path):
    """cacheEvict right after an answer: the store of that answer's frames, still held on its
    way to memcached, lands first, and the eviction after it."""
    trio, relay = _trio_with_held_stores(make_trio, symbol_store, tmp_path, [])
    try:
        body = {"stacks": [[[0, 0x3100]]], "memoryMap": [["libvalues.so", DEBUG_ID]], "version": 4}
        assert trio.post(body).json()["symbolicatedStacks"] == [["covered (in libvalues.so)"]]
        evicted = trio.post({"debug": True, "action": "cacheEvict", "libName": "libvalues.so",
                             "breakpadId": DEBUG_ID, "offset": 0x3100})
        assert evicted.json() == {"success": True}
        time.sleep(0.5)  # long past the held store
        assert raw_get(trio.memcached_port, frame_key(MODULE, 0x3100)) is None
    finally:
        relay.stop()


def test_one_server_client_stores_and_reads_like_the_general_path(trio):
    """With one memcached server, keys are mapped to it at once (not hashed key by key); what
    is stored, read, refused and missed is the same as with python-memcached's mapping, which
    two servers still use; a server down stores nothing and reads nothing."""
    import memcache

    from harness import free_port
    from symserver.framecache import PlainBytesClient

    server = f"127.0.0.1:{trio.memcached_port}"
    module = ModuleId("libmapped.so", "0123456789ABCDEF0123456789ABCDEF0")
    keys = [frame_key(module, offset) for offset in range(0, 3000, 7)]
    values = {key: f"value {index}".encode() for index, key in enumerate(keys)}
    raw_set(trio.memcached_port, keys[0], 1, b"pickled, says its flag")  # overwritten below

    one = PlainBytesClient([server])
    assert one.set_multi(values) == []
    raw_set(trio.memcached_port, keys[1], 1, b"pickled, says its flag")  # refused on reading
    absent = frame_key(module, 99999)
    expected = {**values, keys[1]: None}  # (a value refused reads as None: FrameCache's miss)
    assert one.get_multi(keys + [absent]) == expected

    down = f"127.0.0.1:{free_port()}"
    general = PlainBytesClient([server, down], dead_retry=30)
    general_read = general.get_multi(keys + [absent])
    assert general_read == expected  # every key went to the server that answers
    assert general._map_and_prefix_keys(keys, "")[1] == one._map_and_prefix_keys(keys, "")[1]

    nobody = PlainBytesClient([down], dead_retry=30)
    assert nobody.get_multi(keys) == {}
    assert sorted(nobody.set_multi(values)) == sorted(keys)
    assert memcache.Client([down]).get_multi(keys) == {}  # as python-memcached's own
