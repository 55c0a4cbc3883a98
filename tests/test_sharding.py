"""Which DiskCache a module goes to: rendezvous order, ~1/N movement, down marks, failover.

The order functions are pure and tested as such.  Failover is tested against real servers:
real DiskCache processes, a port nobody listens on (refused) and a real HTTP server that
answers every request with 503.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
import requests

from harness import REPO, free_port
from symcommon.config import ConfigError, diskcache_addresses, load_config
from symcommon.requests import parse_v5
from symserver.diskcache_client import DiskCacheClient, DiskCacheDown, DiskCacheUnavailable
from symserver.framecache import FrameCache
from symserver.sharding import DiskCacheFleet, rendezvous_order
from symserver.symbolicate import Symbolicator

KEYS = [f"lib{number}.so/{number:032X}0" for number in range(20000)]
SERVERS = [f"10.0.0.{number}:8888" for number in range(1, 5)]


def owners(servers: list[str]) -> dict[str, str]:
    return {key: rendezvous_order(key, servers)[0] for key in KEYS}


def test_order_is_a_permutation_that_does_not_depend_on_the_list_order():
    for key in KEYS[:200]:
        order = rendezvous_order(key, SERVERS)
        assert sorted(order) == sorted(SERVERS)
        assert rendezvous_order(key, list(reversed(SERVERS))) == order
    # different modules get different orders (not one fixed ranking)
    assert len({tuple(rendezvous_order(key, SERVERS)) for key in KEYS[:200]}) > 12


def test_modules_spread_evenly():
    counts = collections.Counter(owners(SERVERS).values())
    for server in SERVERS:
        assert abs(counts[server] / len(KEYS) - 1 / len(SERVERS)) < 0.02, counts


def test_adding_a_server_moves_about_one_nth_and_only_to_it():
    before, after = owners(SERVERS[:3]), owners(SERVERS)
    moved = [key for key in KEYS if before[key] != after[key]]
    assert all(after[key] == SERVERS[3] for key in moved)
    assert 0.22 < len(moved) / len(KEYS) < 0.28  # 1/4 of the modules


def test_removing_a_server_moves_only_its_modules_and_spreads_them():
    before, after = owners(SERVERS), owners(SERVERS[1:])
    moved = [key for key in KEYS if before[key] != after[key]]
    assert set(moved) == {key for key in KEYS if before[key] == SERVERS[0]}
    assert 0.22 < len(moved) / len(KEYS) < 0.28
    # the removed server's modules go to each survivor about equally: its next choice
    share = collections.Counter(after[key] for key in moved)
    assert all(abs(count / len(moved) - 1 / 3) < 0.04 for count in share.values()), share
    for key in moved:
        assert after[key] == rendezvous_order(key, SERVERS)[1]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_server_marked_down_goes_last_until_it_is_up_again():
    clock = Clock()
    fleet = DiskCacheFleet(SERVERS[:3], clock=clock, probe=False)
    key = KEYS[0]
    natural = rendezvous_order(key, SERVERS[:3])
    assert fleet.order(key) == natural
    fleet.mark_down(natural[0], "refused")
    assert fleet.order(key) == natural[1:] + natural[:1]
    assert fleet.states() == {server: "down" if server == natural[0] else "ok" for server in natural}
    fleet.mark_down(natural[1], "refused")
    assert fleet.order(key) == [natural[2], natural[0], natural[1]]  # the down ones still last resorts
    fleet.mark_up(natural[0])
    assert fleet.order(key) == [natural[0], natural[2], natural[1]]


def test_a_down_mark_lasts_the_short_time_when_there_is_no_probe():
    clock = Clock()
    fleet = DiskCacheFleet(SERVERS[:2], clock=clock, probe=False, down_seconds=5)
    fleet.mark_down(SERVERS[0], "refused")
    clock.now += 4.9
    assert not fleet.is_up(SERVERS[0])
    clock.now += 0.2
    assert fleet.is_up(SERVERS[0])


def test_config_takes_a_list_and_keeps_the_single_server_key():
    assert diskcache_addresses(load_config(json_text='{"DiskCache": {"port": 9123}}')["SymServer"]) == [
        "127.0.0.1:9123"]
    single = load_config(json_text='{"SymServer": {"DiskCacheServer": "cache.internal:80"}}')
    assert diskcache_addresses(single["SymServer"]) == ["cache.internal:80"]
    many = load_config(json_text='{"SymServer": {"DiskCacheServer": "a:1", '
                                 '"DiskCacheServers": ["b:2", "[::1]:3", "c.example:8888"]}}')
    assert diskcache_addresses(many["SymServer"]) == ["b:2", "[::1]:3", "c.example:8888"]
    for bad in ('["b"]', '["b:0"]', '["b:70000"]', '[":80"]', '["b:2", "b:2"]', '["b:x"]',
                '["a b:80"]'):
        with pytest.raises(ConfigError, match="DiskCacheServers"):
            load_config(json_text='{"SymServer": {"DiskCacheServers": %s}}' % bad)
    with pytest.raises(ConfigError, match="DiskCacheServer"):
        load_config(json_text='{"SymServer": {"DiskCacheServer": "nohost"}}')


# -- failover against real servers ------------------------------------------------------------


class _Answers503(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    status = 503

    def _unavailable(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b"overloaded\n"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _unavailable

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class _Answers500(_Answers503):
    status = 500


def _serving(handler: type) -> Iterator[str]:
    """A real HTTP server answering with ``handler`` on a free loopback port, for one test."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def server_500() -> Iterator[str]:
    yield from _serving(_Answers500)


@pytest.fixture
def server_503() -> Iterator[str]:
    yield from _serving(_Answers503)


@pytest.fixture
def server_dropping() -> Iterator[str]:
    """A real server that reads each request, then closes the connection without answering
    (as a DiskCache killed mid-request does)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(2)
                try:
                    connection.recv(65536)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    listener.close()


@pytest.fixture
def start_diskcache(tmp_path: Path) -> Iterator:
    """Real DiskCache processes (python -m diskcache), stopped afterwards."""
    processes: list[subprocess.Popen] = []

    def start(symbol_url: str) -> str:
        port = free_port()
        name = f"dc{len(processes)}"
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "diskcache", "--port", str(port), "--cachePath", str(tmp_path / name),
             "--symbolURLs", symbol_url, "--localSymbolDirs", "--quiet",
             "--logPath", str(tmp_path / f"{name}.log")], cwd=REPO))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/__lbheartbeat__", timeout=1).status_code == 200:
                    return f"127.0.0.1:{port}"
            except requests.ConnectionError:
                pass
            assert processes[-1].poll() is None, "the DiskCache exited while starting"
            time.sleep(0.1)
        raise AssertionError("the DiskCache did not answer within 60 s")

    yield start
    for process in processes:
        process.kill()
        process.wait()


MODULES = [["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"], ["wntdll.pdb", "D74F79EB1F8D4A45ABCD2F476CCABACC2"],
           ["public_only.pdb", "ED6E000CC0FFEE00C0FFEE00C0FFEE001"],
           ["line_records.so", "ED6E0009C0FFEE00C0FFEE00C0FFEE001"],
           ["inline_chains.so", "ED6E000AC0FFEE00C0FFEE00C0FFEE001"],
           ["m_flags.so", "ED6E0004C0FFEE00C0FFEE00C0FFEE001"],
           ["junk_lines.so", "ED6E0005C0FFEE00C0FFEE00C0FFEE001"],
           ["block_endings.so", "ED6E0006C0FFEE00C0FFEE00C0FFEE001"]]
OFFSETS = [11723767, 65802, 0x1010, 0xc010, 0x1100, 0x1000, 0x2000, 0x1004]


def request_body() -> dict:
    return {"memoryMap": MODULES, "stacks": [[[index, offset] for index, offset in enumerate(OFFSETS)]]}


def symbolicate(addresses: list[str], **fleet_options) -> tuple[dict, DiskCacheFleet, float]:
    """One request through a Symbolicator with no memcached: every frame goes to the DiskCaches."""
    jobs = parse_v5(request_body())

    async def run() -> tuple[dict, DiskCacheFleet, float]:
        fleet = DiskCacheFleet(addresses, **fleet_options)
        symbolicator = Symbolicator(FrameCache([]), fleet)
        started = time.monotonic()
        outcome = await symbolicator.symbolicate(jobs, "test", debug=True)
        elapsed = time.monotonic() - started
        fleet.close()
        answers = outcome.answers[0]
        known = {index: answer.found for index, answer in answers.modules.items()}
        symbols = {frame: info.function if info is not None else None
                   for frame, info in answers.symbols.items()}
        return {"known": known, "symbols": symbols, "debug": outcome.debug()}, fleet, elapsed

    return asyncio.run(run())


def test_misses_fail_over_past_refusing_dropping_and_503_servers(start_diskcache, symbol_store, server_503,
                                                                 server_dropping):
    reference, _, _ = symbolicate([start_diskcache(symbol_store.url("plain"))])
    assert reference["known"] == {index: True for index in range(len(MODULES))}
    assert reference["symbols"][(0, OFFSETS[0])] == "XREMain::XRE_mainRun()"
    live = start_diskcache(symbol_store.url("plain"))
    refused = f"127.0.0.1:{free_port()}"
    servers = [refused, server_503, server_dropping, live]
    answer, fleet, _ = symbolicate(servers, probe=False)
    assert answer["known"] == reference["known"] and answer["symbols"] == reference["symbols"]
    # a dead server ranked above the live one for some module was tried, failed and is down
    orders = [rendezvous_order(f"{m[0]}/{m[1]}", servers) for m in MODULES]
    tried = {server for order in orders for server in order[:order.index(live)]}
    assert tried, "no module ranked a dead server first (8 modules, 4 servers: odds 1/65536)"
    assert fleet.states() == {server: "down" if server in tried else "ok" for server in servers}
    assert answer["debug"]["diskcache"]["round_trips"] >= 2


def test_refusing_dropping_and_503_mean_down_but_500_does_not(server_503, server_dropping, server_500):
    """Only a server that is gone or says so is failed over; a 500 is a fault to report."""
    async def outcome(address: str) -> type[Exception]:
        try:
            await DiskCacheClient(address).symbolicate(request_body(), "test")
        except DiskCacheUnavailable as error:
            return type(error)
        raise AssertionError(f"{address} answered")

    for address in (f"127.0.0.1:{free_port()}", server_503, server_dropping):
        assert asyncio.run(outcome(address)) is DiskCacheDown, address
    assert asyncio.run(outcome(server_500)) is DiskCacheUnavailable


def test_no_server_up_is_an_error(server_503):
    with pytest.raises(DiskCacheUnavailable, match="no DiskCache"):
        symbolicate([f"127.0.0.1:{free_port()}", server_503], probe=False)


def test_a_requests_misses_go_to_their_diskcaches_concurrently(start_diskcache, symbol_store):
    """Each module's download takes 2.5 s; asked one after the other, two DiskCaches take 5 s."""
    slow = symbol_store.url("slow/2500")
    addresses = [start_diskcache(slow), start_diskcache(slow)]
    owners_of = {rendezvous_order(f"{m[0]}/{m[1]}", addresses)[0] for m in MODULES}
    assert owners_of == set(addresses)  # both are asked (8 modules: all on one has odds 1/128)
    answer, _, elapsed = symbolicate(addresses)
    assert answer["debug"]["diskcache"]["round_trips"] == 2
    assert all(answer["known"].values())
    assert 2.5 <= elapsed < 4.5, elapsed


def test_a_probe_brings_a_server_back(start_diskcache, symbol_store):
    port = free_port()
    address = f"127.0.0.1:{port}"

    async def run() -> list[str]:
        fleet = DiskCacheFleet([address], probe_seconds=0.2, down_seconds=0.2)
        fleet.mark_down(address, "refused")
        seen = [fleet.states()[address]]
        await asyncio.sleep(1.0)  # the probe finds nothing listening: still down
        seen.append(fleet.states()[address])
        process = await asyncio.to_thread(start_on_port, port)
        try:
            for _ in range(100):
                if fleet.is_up(address):
                    break
                await asyncio.sleep(0.1)
            seen.append(fleet.states()[address])
        finally:
            process.kill()
            process.wait()
            fleet.close()
        return seen

    def start_on_port(port: int) -> subprocess.Popen:
        server = subprocess.Popen([sys.executable, "-c", (
            "import http.server as h\n"
            "class H(h.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        self.send_response(200); self.send_header('Content-Length', '0'); self.end_headers()\n"
            "    def log_message(self, *a): pass\n"
            f"h.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n")])
        return server

    assert asyncio.run(run()) == ["down", "down", "ok"]
