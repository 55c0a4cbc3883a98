"""A fleet on one machine: 2 SymServers behind a real nginx, 3 DiskCaches, 2 memcacheds.

Every program is a real one started through quickstart with its own ports and pid directory
(the machines of README "Running on several machines", all on loopback).  A steady mixed
workload runs while one DiskCache and one memcached are killed and brought back; every
answer is compared with what a single trio answers for the same frames, and the symbol
store counts each module's downloads.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
import requests

from harness import REPO, Trio, deep_update, free_port
from symbol_store import SymbolStore
from symserver.sharding import rendezvous_order

MODULES = 24
OFFSETS_PER_MODULE = 1500
CLIENTS = 3
WORKLOAD_SECONDS = 32
MISSING = ("fleetmissing.pdb", "F1EE70000000000000000000000000FF1")
README = REPO / "README.md"


@dataclass(frozen=True)
class Module:
    debug_file: str
    debug_id: str
    offsets: tuple[int, ...]

    @property
    def key(self) -> str:
        return f"{self.debug_file}/{self.debug_id}"

    @property
    def store_suffix(self) -> str:
        return f"/{self.debug_file}/{self.debug_id}/{self.debug_file[:-4]}.sym"


def generate_modules(root: Path) -> list[Module]:
    """Small seeded modules (bench/gen_symfile.py), and offsets spread over their functions."""
    sys.path.insert(0, str(REPO / "bench"))
    from gen_symfile import generate

    rng = random.Random(13)
    modules = []
    for number in range(MODULES):
        debug_file, debug_id = f"fleet{number}.pdb", f"F1EE7{number:027X}1"
        path = root / debug_file / debug_id / f"fleet{number}.sym"
        path.parent.mkdir(parents=True)
        generate(path, size_mb=0.08, seed=100 + number, debug_file=debug_file, debug_id=debug_id,
                 code_file=f"fleet{number}.dll")
        end = max(int(address, 16) + int(size, 16) for address, size in
                  re.findall(r"^FUNC (?:m )?([0-9a-f]+) ([0-9a-f]+) ", path.read_text(), re.M))
        offsets = tuple(sorted(rng.sample(range(0x1000, end + 0x40), OFFSETS_PER_MODULE)))
        modules.append(Module(debug_file, debug_id, offsets))
    return modules


def quickstart_only(*programs: str) -> dict:
    """quickstart settings for a fleet member that runs only ``programs`` of the three."""
    return {"quickstart": {name: {"start": name in programs, "restart": True}
                           for name in ("memcached", "DiskCache", "SymServer")}}


def reference_answers(trio: Trio, modules: list[Module]) -> dict[tuple[str, int], dict]:
    """Each frame as a single trio answers it (without its ``frame`` number)."""
    answers = {}
    for module in [*modules, Module(*MISSING, (0x1000, 0x2000))]:
        body = {"memoryMap": [[module.debug_file, module.debug_id]],
                "stacks": [[[0, offset] for offset in module.offsets]]}
        response = trio.post(body, path="/symbolicate/v5")
        assert response.status_code == 200, response.text
        result = response.json()["results"][0]
        for offset, frame in zip(module.offsets, result["stacks"][0], strict=True):
            answers[(module.key, offset)] = {k: v for k, v in frame.items() if k != "frame"}
        answers[(module.key, None)] = result["found_modules"][module.key]
        assert answers[(module.key, None)] is (module.debug_file != MISSING[0]), (module.key, trio.logs())
    return answers


@dataclass
class Tally:
    requests: int = 0
    frames: int = 0
    wrong: list[str] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def client(seed: int, urls: list[str], modules: list[Module], expected: dict, stop: threading.Event,
           tally: Tally) -> None:
    """Requests of 3-6 modules (sometimes one no store has) and 8-42 random frames each."""
    rng = random.Random(seed)
    session = requests.Session()
    missing = Module(*MISSING, (0x1000, 0x2000))
    while not stop.is_set():
        chosen = rng.sample(modules, rng.randint(3, 6)) + ([missing] if rng.random() < 0.2 else [])
        indexes = list(range(len(chosen))) + [rng.randrange(len(chosen)) for _ in range(rng.randint(5, 35))]
        rng.shuffle(indexes)  # every module has a frame: found_modules is then true or false
        frames = [(index, rng.choice(chosen[index].offsets)) for index in indexes]
        body = {"memoryMap": [[m.debug_file, m.debug_id] for m in chosen],
                "stacks": [[list(frame) for frame in frames]]}
        url = urls[rng.randrange(len(urls))]
        try:
            response = session.post(url, data=json.dumps(body), timeout=60)
        except requests.RequestException as error:
            with tally.lock:
                tally.errors.append((time.monotonic(), repr(error)))
            continue
        with tally.lock:
            tally.requests += 1
            tally.frames += len(frames)
            if response.status_code != 200:
                tally.errors.append((time.monotonic(), f"{response.status_code} {response.text[:200]}"))
                continue
            result = response.json()["results"][0]
            for number, ((index, offset), frame) in enumerate(zip(frames, result["stacks"][0], strict=True)):
                want = dict(expected[(chosen[index].key, offset)], frame=number)
                if frame != want:
                    tally.wrong.append(f"{chosen[index].key} {offset:#x}: {frame} != {want}")
            for module in chosen:
                if result["found_modules"].get(module.key) != expected[(module.key, None)]:
                    tally.wrong.append(f"{module.key}: found {result['found_modules'].get(module.key)}")
    session.close()


def memcached_stats(port: int) -> dict[str, int]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(b"stats\r\n")
        reply = b""
        while not reply.endswith(b"END\r\n"):
            data = connection.recv(65536)
            if not data:
                break
            reply += data
    stats = {}
    for line in reply.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "STAT" and parts[2].isdigit():
            stats[parts[1]] = int(parts[2])
    return stats


def served_v5(trio: Trio) -> float:
    """The v5 requests a DiskCache answered since it started (its Prometheus counter)."""
    text = requests.get(trio.url("DiskCache", "/metrics"), timeout=10).text
    return sum(float(value) for value in re.findall(
        r'^diskcache_requests_total\{[^}]*route="/symbolicate/v5"[^}]*\} ([0-9.e+]+)$', text, re.M))


# -- nginx, configured with the README's own block ---------------------------------------------


def readme_nginx_block() -> str:
    text = README.read_text()
    match = re.search(r"<!-- fleet-nginx -->\s*```nginx\n(.*?)```\s*<!-- /fleet-nginx -->", text, re.S)
    assert match, "README.md has no nginx block between <!-- fleet-nginx --> markers"
    return match.group(1)


class Nginx:
    """Debian's nginx as root with a config in a tmp dir, in the foreground, on a free port."""

    def __init__(self, workdir: Path, upstream_ports: list[int]) -> None:
        self.binary = shutil.which("nginx") or next(
            (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(path).exists()), None)
        self.workdir = workdir
        self.port = free_port()
        block = readme_nginx_block()
        server_lines = re.findall(r"^\s*server\s+\S+:\d+(.*);$", block, re.M)
        assert server_lines, "the README's upstream lists no servers"
        options = server_lines[0]
        upstream = "\n".join(f"    server 127.0.0.1:{port}{options};" for port in upstream_ports)
        block = re.sub(r"(?:^\s*server\s+\S+:\d+.*;\n)+", upstream + "\n", block, count=1, flags=re.M)
        block, listens = re.subn(r"^(\s*)listen\s+80;", rf"\1listen 127.0.0.1:{self.port};", block, flags=re.M)
        assert listens == 1
        workdir.mkdir(parents=True, exist_ok=True)
        temp = {name: workdir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        self.config = workdir / "nginx.conf"
        self.config.write_text(
            f"user root;\nworker_processes 1;\ndaemon off;\npid {workdir / 'nginx.pid'};\n"
            f"error_log {workdir / 'error.log'} warn;\nevents {{ worker_connections 512; }}\n"
            f"http {{\n    access_log {workdir / 'access.log'};\n"
            + "".join(f"    {name}_temp_path {path};\n" for name, path in
                      [("client_body", temp["body"]), ("proxy", temp["proxy"]), ("fastcgi", temp["fastcgi"]),
                       ("uwsgi", temp["uwsgi"]), ("scgi", temp["scgi"])])
            + block + "}\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> Nginx:
        check = subprocess.run([self.binary, "-t", "-c", str(self.config), "-p", str(self.workdir),
                                "-e", str(self.workdir / "error.log")], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen([self.binary, "-c", str(self.config), "-p", str(self.workdir),
                                         "-e", str(self.workdir / "error.log")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                assert self.process.poll() is None, (self.workdir / "error.log").read_text()
                time.sleep(0.1)
        raise AssertionError("nginx did not listen within 30 s")

    def url(self, path: str = "/symbolicate/v5") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def nginx_found() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


# -- the fleet ---------------------------------------------------------------------------------


@dataclass
class Fleet:
    modules: list[Module]
    store: SymbolStore
    memcacheds: list[Trio]
    diskcaches: list[Trio]
    symservers: list[Trio]
    reference: Trio
    expected: dict
    nginx: Nginx | None

    @property
    def diskcache_addresses(self) -> list[str]:
        return [f"127.0.0.1:{trio.diskcache_port}" for trio in self.diskcaches]

    def urls(self) -> list[str]:
        if self.nginx is not None:
            return [self.nginx.url()]
        return [trio.url("SymServer", "/symbolicate/v5") for trio in self.symservers]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    modules = generate_modules(root / "store")
    store, reference_store = SymbolStore(root / "store").start(), SymbolStore(root / "store").start()
    started: list[Trio] = []
    nginx: Nginx | None = None

    def member(name: str, programs: tuple[str, ...], overrides: dict | None = None) -> Trio:
        """One machine of the fleet: a Trio whose quickstart starts only ``programs``."""
        trio = Trio(root / name, [store.url("plain")], deep_update(quickstart_only(*programs), overrides or {}))
        started.append(trio)
        said = trio.quickstart("-c", str(trio.config_path)).stdout
        if programs == ("SymServer",):  # no local DiskCache: quickstart says which ones it uses
            assert "SymServer uses the DiskCache(s) at " + ", ".join(
                trio.config["SymServer"]["DiskCacheServers"]) in said, said
        return trio

    try:
        memcacheds = [member(f"memcached{n}", ("memcached",)) for n in range(2)]
        diskcaches = [member(f"diskcache{n}", ("DiskCache",)) for n in range(3)]
        pool = {"SymServer": {
            "memcachedServers": [f"127.0.0.1:{m.memcached_port}" for m in memcacheds],
            "DiskCacheServers": [f"127.0.0.1:{d.diskcache_port}" for d in diskcaches]}}
        symservers = [member(f"symserver{n}", ("SymServer",), pool) for n in range(2)]
        reference = Trio(root / "reference", [reference_store.url("plain")], memcached=False)
        started.append(reference)
        reference.start()
        expected = reference_answers(reference, modules)
        if nginx_found():
            nginx = Nginx(root / "nginx", [trio.symserver_port for trio in symservers]).start()
        yield Fleet(modules, store, memcacheds, diskcaches, symservers, reference, expected, nginx)
    finally:
        if nginx is not None:
            nginx.stop()
        for trio in started:
            trio.stop()
        store.stop()
        reference_store.stop()


def heartbeat(fleet: Fleet, trio: Trio) -> dict:
    response = requests.get(trio.url("SymServer", "/__heartbeat__"), timeout=15)
    return {**response.json(), "http": response.status_code}


def test_fleet_keeps_answering_through_a_diskcache_and_a_memcached_kill(fleet: Fleet):
    victim_dc, victim_mc = fleet.diskcaches[0], fleet.memcacheds[0]
    victim_address = f"127.0.0.1:{victim_dc.diskcache_port}"
    owner = {m.key: rendezvous_order(m.key, fleet.diskcache_addresses)[0] for m in fleet.modules}
    victims_modules = [m for m in fleet.modules if owner[m.key] == victim_address]
    assert victims_modules, "the killed DiskCache should hold some of the modules"
    fleet.store.reset()
    tally, stop = Tally(), threading.Event()
    clients = [threading.Thread(target=client, args=(seed, fleet.urls(), fleet.modules, fleet.expected, stop, tally),
                                name=f"fleet-client-{seed}", daemon=True) for seed in range(CLIENTS)]
    started = time.monotonic()
    for thread in clients:
        thread.start()
    events: dict[str, float] = {}
    try:
        time.sleep(6)
        events["diskcache killed"] = time.monotonic() - started
        victim_dc.kill("DiskCache")
        time.sleep(2)
        during = [heartbeat(fleet, trio) for trio in fleet.symservers]
        time.sleep(3)
        victim_dc.restart_dead()
        events["diskcache back"] = time.monotonic() - started
        downloads_while_down = Counter(
            m.key for m in victims_modules for _ in range(fleet.store.count(m.store_suffix)))
        time.sleep(3)
        events["memcached killed"] = time.monotonic() - started
        victim_mc.kill("memcached")
        time.sleep(2)
        during += [heartbeat(fleet, trio) for trio in fleet.symservers]
        time.sleep(3)
        victim_mc.restart_dead()
        events["memcached back"] = time.monotonic() - started
        time.sleep(max(0.0, WORKLOAD_SECONDS - (time.monotonic() - started)))
    finally:
        stop.set()
        for thread in clients:
            thread.join(90)
    elapsed = time.monotonic() - started

    downloads = {m.key: fleet.store.count(m.store_suffix) for m in fleet.modules}
    restarted_served = served_v5(victim_dc)
    revived = memcached_stats(victim_mc.memcached_port)
    other = memcached_stats(fleet.memcacheds[1].memcached_port)
    after = [heartbeat(fleet, trio) for trio in fleet.symservers]
    figures = {
        "seconds": round(elapsed, 1), "requests": tally.requests, "frames": tally.frames,
        "wrong": len(tally.wrong), "errors": len(tally.errors), "events": events,
        "downloads": Counter(downloads.values()),
        "killed DiskCache's modules": {m.key: downloads[m.key] for m in victims_modules},
        "restarted DiskCache answered v5 requests": restarted_served,
        "revived memcached": {k: revived.get(k) for k in ("curr_items", "cmd_get", "cmd_set", "bytes")},
        "other memcached": {k: other.get(k) for k in ("curr_items", "cmd_get", "cmd_set", "bytes")},
    }
    print("fleet figures:", json.dumps(figures, default=str))
    assert tally.wrong == [], tally.wrong[:5]
    assert tally.errors == [], tally.errors[:5]
    assert tally.requests >= 100, figures  # a steady workload, even on a slow machine
    # each module was downloaded once while its DiskCache stayed up ...
    for module in fleet.modules:
        if owner[module.key] != victim_address:
            assert downloads[module.key] == 1, (module.key, figures)
        else:  # ... and the killed one's: once more by its next choice, once more if killed mid-way
            assert 1 <= downloads[module.key] <= 3, (module.key, figures)
    # the misses of the killed DiskCache's modules did go elsewhere meanwhile
    assert sum(downloads_while_down.values()) > len(victims_modules), figures
    # while each was down both SymServers said ok and named it
    for beat in during:
        assert beat["http"] == 200 and beat["status"] == "ok", beat
    for beat in during[:2]:
        assert beat["DiskCacheServers"][victim_address] == "down", beat
        assert set(beat["memcachedServers"].values()) == {"ok"}, beat
    for beat in during[2:]:
        assert beat["memcachedServers"][f"127.0.0.1:{victim_mc.memcached_port}"] == "down", beat
        assert set(beat["DiskCacheServers"].values()) == {"ok"}, beat
    # everything came back and is used again
    assert restarted_served > 0, figures
    assert revived.get("cmd_set", 0) > 0 and revived.get("curr_items", 0) > 0, figures
    for beat in after:
        assert beat["http"] == 200 and beat["status"] == "ok", beat
        assert set(beat["DiskCacheServers"].values()) == {"ok"}, beat
        assert set(beat["memcachedServers"].values()) == {"ok"}, beat


def test_nginx_in_front_spreads_requests_and_routes_around_a_dead_symserver(fleet: Fleet):
    if fleet.nginx is None:
        pytest.skip("nginx not found (apt-get install nginx)")
    nginx = fleet.nginx
    beat = requests.get(nginx.url("/__heartbeat__"), timeout=15)
    assert beat.status_code == 200 and len(beat.json()["DiskCacheServers"]) == 3
    body = {"memoryMap": [["fleet0.pdb", fleet.modules[0].debug_id]],
            "stacks": [[[0, fleet.modules[0].offsets[0]]]]}
    want = dict(fleet.expected[(fleet.modules[0].key, fleet.modules[0].offsets[0])], frame=0)
    session = requests.Session()
    for _ in range(20):
        response = session.post(nginx.url(), json=body, timeout=30)
        assert response.status_code == 200 and response.json()["results"][0]["stacks"][0] == [want]
    # both SymServers took requests through nginx (each logs the requests it answers)
    for trio in fleet.symservers:
        assert "/symbolicate/v5" in (trio.workdir / "SymServer.log").read_text(), trio.workdir
    fleet.symservers[0].kill("SymServer")
    answered = Counter()
    for _ in range(20):
        response = session.post(nginx.url(), json=body, timeout=30)
        answered[response.status_code] += 1
        assert response.json()["results"][0]["stacks"][0] == [want]
    assert answered == Counter({200: 20})
    fleet.symservers[0].restart_dead()
    session.close()
