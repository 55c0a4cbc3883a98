"""The hostile neighbours of ``bench/soak.py --hostile``: what runs beside the normal workload.

- :class:`MemcachedPoisoner` plants values under the keys of frames the clients ask for: a
  pickle that would create a marker file if SymServer unpickled it, a zlib bomb, and JSON of
  the wrong types.  The clients go on checking every answer against the reference rule.
- :class:`IdleConnections` holds a few thousand half-sent requests open to SymServer and opens
  a new one whenever the server closes one (slowloris).
- The trickling store and the gzip bomb are modes of the test symbol store
  (``trickle/<ms>``, ``bomb/<mb>``); :func:`hostile_store_urls` puts them behind the real store.

Everything stays on 127.0.0.1 and stops at the deadline.
"""

from __future__ import annotations

import pickle
import random
import resource
import socket
import threading
import time
import zlib
from pathlib import Path

from symcommon.modules import ModuleId
from symserver.framecache import frame_key

PICKLE_FLAG = 1  # python-memcached's flags
ZLIB_FLAG = 8
#: Modules that only a hostile store has: the first trickles, the second is a gzip bomb.
TRICKLE_MODULE = ["trickle0.pdb", "7000000000000000000000000000000A1"]
BOMB_MODULE = ["bomb0.pdb", "B000000000000000000000000000000B1"]


class _Payload:
    """Unpickling this creates ``marker``: proof that a memcached value ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def hostile_store_urls(plain_url: str, hostile_store) -> list[str]:
    """symbolURLs: the real store first, then a trickling store, then a gzip bomb.

    A normal module is found in the first.  :data:`TRICKLE_MODULE` is only in the hostile
    store's root, so it trickles; :data:`BOMB_MODULE` is in no root, so it reaches the bomb.
    """
    return [plain_url, hostile_store.url("trickle/1000"), hostile_store.url("bomb/256")]


def _raw_set(port: int, key: str, flags: int, value: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
        connection.sendall(f"set {key} {flags} 0 {len(value)}\r\n".encode() + value + b"\r\n")
        connection.recv(64)


class MemcachedPoisoner(threading.Thread):
    """Every ``interval`` seconds, poisons the memcached entries of a few random frames."""

    def __init__(self, port: int, modules: list[dict], marker: Path, deadline: float,
                 interval: float = 1.0, seed: int = 7) -> None:
        super().__init__(daemon=True, name="poisoner")
        self.port, self.modules, self.marker, self.deadline = port, modules, marker, deadline
        self.interval = interval
        self.rng = random.Random(seed)
        self.planted = {"pickle": 0, "zlib": 0, "json": 0}
        self.bomb = zlib.compress(b"\0" * (64 << 20), 9)  # 64 MB when inflated
        self.pickled = pickle.dumps(_Payload(marker))

    def run(self) -> None:
        while time.time() < self.deadline:
            for _ in range(5):
                module = self.rng.choice(self.modules)
                offset = self.rng.choice(list(module["answers"])[:40])  # frames the clients ask for
                key = frame_key(ModuleId(*module["memory_map"]), offset)
                kind = self.rng.choice(list(self.planted))
                try:
                    if kind == "pickle":
                        _raw_set(self.port, key, PICKLE_FLAG, self.pickled)
                    elif kind == "zlib":
                        _raw_set(self.port, key, ZLIB_FLAG, self.bomb)
                    else:
                        _raw_set(self.port, key, 0, b'[7, ["f", "0x10", null, 3, "x", {}]]')
                    self.planted[kind] += 1
                except OSError:
                    pass  # memcached is being restarted
            time.sleep(self.interval)


class IdleConnections(threading.Thread):
    """Keeps ``count`` half-sent requests open to ``port``; replaces the ones the server closes."""

    def __init__(self, port: int, count: int, deadline: float) -> None:
        super().__init__(daemon=True, name="idle-connections")
        self.port, self.count, self.deadline = port, count, deadline
        self.closed_by_server = 0
        self.opened = 0
        self.refused = 0
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < count + 1024:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1024), hard))

    def _open(self) -> socket.socket | None:
        try:
            connection = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            connection.sendall(b"POST /symbolicate/v5 HTTP/1.1\r\nHost: x\r\nContent-Len")
            connection.setblocking(False)
            self.opened += 1
            return connection
        except OSError:
            self.refused += 1
            return None

    def run(self) -> None:
        connections: list[socket.socket] = []
        try:
            while time.time() < self.deadline:
                alive = []
                for connection in connections:
                    try:
                        if connection.recv(1, socket.MSG_PEEK) == b"":
                            raise ConnectionResetError
                        alive.append(connection)  # an answer came: the server will close it
                    except BlockingIOError:
                        alive.append(connection)  # still open and silent
                    except OSError:
                        self.closed_by_server += 1
                        connection.close()
                connections = alive
                while len(connections) < self.count and time.time() < self.deadline:
                    opened = self._open()
                    if opened is None:
                        break
                    connections.append(opened)
                time.sleep(1.0)
        finally:
            for connection in connections:
                connection.close()
