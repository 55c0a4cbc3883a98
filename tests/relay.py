"""A byte-for-byte TCP relay that records what went each way, so a test can show the real
HTTP exchange between two parties (a browser and SymServer, SymServer and the DiskCache)
without changing a byte of it."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class Exchange:
    """One request and its answer, as they were on the wire."""

    request_head: str
    request_body: bytes
    response_head: str
    response_body: bytes

    def request_header(self, name: str) -> str | None:
        return header(self.request_head, name)

    def response_header(self, name: str) -> str | None:
        return header(self.response_head, name)

    @property
    def method(self) -> str:
        return self.request_head.split(" ", 1)[0]

    @property
    def status(self) -> int:
        return int(self.response_head.split()[1])

    def text(self) -> str:
        return f"{self.request_head}\n\n{self.response_head}"


class Relay:
    """Listens on ``host`` (127.0.0.1 unless told; ``port``) and passes every connection on to
    ``target_port`` on 127.0.0.1."""

    def __init__(self, target_port: int, host: str = "127.0.0.1",
                 hold: Callable[[bytes], float] | None = None) -> None:
        """``hold(data)``: seconds to hold what a client sends before passing it on."""
        self.target_port = target_port
        self._hold = hold
        self._connections: list[tuple[bytearray, bytearray]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((host, 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="relay").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed by stop()
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=30)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            sent, received = bytearray(), bytearray()
            with self._lock:
                self._connections.append((sent, received))
            threading.Thread(target=self._pump, args=(client, upstream, sent, self._hold), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, received), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, record: bytearray,
              hold: Callable[[bytes], float] | None = None) -> None:
        try:
            while data := source.recv(65536):
                record.extend(data)
                if hold is not None:
                    time.sleep(hold(data))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def exchanges(self) -> list[Exchange]:
        """The requests and answers so far, in order on each connection."""
        found = []
        with self._lock:
            connections = [(bytes(sent), bytes(received)) for sent, received in self._connections]
        for sent, received in connections:
            for (request, request_body), (response, response_body) in zip(messages(sent), messages(received)):
                found.append(Exchange(request, request_body, response, response_body))
        return found

    def stop(self) -> None:
        self._listener.close()


def messages(stream: bytes) -> list[tuple[str, bytes]]:
    """The HTTP messages in one direction of a connection, as (head, body). Bodies are
    delimited by Content-Length: the parties recorded here send no chunked bodies."""
    found = []
    while stream:
        end = stream.find(b"\r\n\r\n")
        if end < 0:
            break
        head = stream[:end].decode("latin-1")
        length = int(header(head, "Content-Length") or 0)
        found.append((head, stream[end + 4:end + 4 + length]))
        stream = stream[end + 4 + length:]
    return found


def header(head: str, name: str) -> str | None:
    """A header's value in a message head (the first, if it is repeated)."""
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None
