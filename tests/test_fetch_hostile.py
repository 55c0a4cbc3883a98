"""Symbol stores that attack the DiskCache: trickles, decompression bombs, redirects anywhere.

Every test runs the real trio against real HTTP servers: the test store (``symbol_store.py``)
on loopback, and for redirects to other hosts, a web server inside a network namespace of
its own joined by a veth pair.
"""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import psutil
import pytest
import requests

from harness import SAMPLE_RESPONSE, sample_request
from netns import NoNamespace, peer_host
from symbol_store import SymbolStore

XUL = ["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"]
XUL_PATH = "xul.pdb/44E4EC8C2F41492B9369D6B9A059577C2/xul.sym"
NTDLL = ["wntdll.pdb", "D74F79EB1F8D4A45ABCD2F476CCABACC2"]


def write_module(root: Path, name: str, function: str, seed: int, publics: int = 40) -> list[str]:
    """A small module whose every address resolves to ``function`` (the first PUBLIC)."""
    rng = random.Random(seed)
    debug_id = f"{rng.getrandbits(128):032X}0"
    lines = [f"MODULE Linux x86_64 {debug_id} {name}", f"PUBLIC 1000 0 {function}"]
    lines += [f"PUBLIC {0x100000 + 16 * i:x} 0 filler_{rng.getrandbits(64):016x}" for i in range(publics)]
    path = root / name / debug_id / f"{name}.sym"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return [name, debug_id]


def ask(trio, modules: list[list[str]], server: str = "DiskCache", timeout: float = 120) -> tuple[dict, float]:
    """One v4 request with a frame at 0x1000 in each module; the answer and its seconds."""
    body = {"stacks": [[[i, 0x1000] for i in range(len(modules))]], "memoryMap": modules, "version": 4}
    started = time.monotonic()
    response = trio.session.post(trio.url(server, "/"), json=body, timeout=timeout)
    assert response.status_code == 200, response.text
    return response.json(), time.monotonic() - started


def in_background(function, *args) -> threading.Thread:
    thread = threading.Thread(target=lambda: _ignore_errors(function, *args), daemon=True)
    thread.start()
    return thread


def _ignore_errors(function, *args) -> None:
    try:
        function(*args)
    except Exception:  # noqa: BLE001 - the test looks at the server, not at this client
        pass


@pytest.fixture
def trickle_store(tmp_path: Path) -> Iterator[tuple[SymbolStore, list[list[str]]]]:
    """A second store whose ten modules (3 KB each) are only ever trickled, 1 byte a second."""
    root = tmp_path / "trickled"
    modules = [write_module(root, f"trickled{i}.so", "TrickledFunction", seed=500 + i) for i in range(10)]
    with SymbolStore(root) as store:
        yield store, modules


# -- 1. trickling stores --------------------------------------------------------------------------


def test_a_trickled_module_is_unknown_within_the_download_timeout(make_trio, symbol_store, trickle_store):
    store, modules = trickle_store
    trio = make_trio([store.url("trickle/1000")], {"DiskCache": {"retries": 0, "downloadTimeoutSeconds": 3}})
    answer, seconds = ask(trio, modules[:1], timeout=60)
    assert answer["knownModules"] == [False]
    assert seconds < 3 + 7, f"answered after {seconds:.1f}s"
    print(f"trickled module answered unknown after {seconds:.2f}s (downloadTimeoutSeconds 3)")
    assert list((trio.cache_dir / ".tmp").iterdir()) == []


def test_trickles_in_flight_starve_neither_lookups_nor_heartbeats(make_trio, symbol_store, trickle_store):
    store, modules = trickle_store
    trio = make_trio([symbol_store.url("plain"), store.url("trickle/1000")],
                     {"DiskCache": {"retries": 0, "downloadTimeoutSeconds": 60}})
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE  # xul and ntdll are now cached
    for module in modules:  # ten modules trickle, each in its own request
        in_background(ask, trio, [module], "DiskCache", 90)
    time.sleep(2)  # let them all reach the store
    assert sum(1 for path in store.requests if "/trickle/" in path) >= 8
    client = requests.Session()
    started = time.monotonic()
    cached = client.post(trio.url("DiskCache", "/"), json=sample_request(), timeout=10)
    assert cached.text == SAMPLE_RESPONSE
    assert time.monotonic() - started < 5
    fresh = write_module(Path(symbol_store.root), "freshplain.so", "FreshFunction", seed=901)
    answer, seconds = ask(trio, [fresh], timeout=30)
    assert answer["knownModules"] == [True] and answer["symbolicatedStacks"] == [["FreshFunction (in freshplain.so)"]]
    assert seconds < 15
    for server in ("DiskCache", "SymServer"):
        started = time.monotonic()
        heartbeat = client.get(trio.url(server, "/__heartbeat__"), timeout=10)
        assert heartbeat.status_code == 200, heartbeat.text
        assert time.monotonic() - started < 5
    print(f"with 10 trickles in flight: a new module in {seconds:.2f}s")


def test_sigterm_with_trickles_in_flight_ends_the_diskcache(make_trio, symbol_store, trickle_store):
    store, modules = trickle_store
    trio = make_trio([store.url("trickle/1000")], {"DiskCache": {"retries": 0, "downloadTimeoutSeconds": 600}})
    answers: list[dict] = []
    askers = [in_background(lambda m: answers.append(ask(trio, [m], "DiskCache", 120)[0]), module)
              for module in modules]
    deadline = time.monotonic() + 20
    while sum(1 for path in store.requests if "/trickle/" in path) < 8 and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = trio.pid("DiskCache")
    assert pid is not None
    started = time.monotonic()
    trio.kill("DiskCache", signal.SIGTERM)
    assert _gone(pid, 20 + 10), "the DiskCache still runs 30 s after SIGTERM"
    print(f"DiskCache gone {time.monotonic() - started:.1f}s after SIGTERM")
    for asker in askers:
        asker.join(10)
    # the downloads were ended before the drain did: the requests waiting for them were answered
    assert len(answers) == len(modules) and all(a["knownModules"] == [False] for a in answers)


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


# -- 2. decompression bombs -----------------------------------------------------------------------


def test_a_decompression_bomb_is_abandoned_at_max_symbol_file_mb(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain"), symbol_store.url("bomb/150")],
                     {"DiskCache": {"retries": 0, "maxSymbolFileMB": 5}})
    symbol_store.bomb_body(150)  # made before the clock starts
    tmp = trio.cache_dir / ".tmp"
    biggest = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for path in list(tmp.iterdir()) if tmp.exists() else []:
                try:
                    biggest[0] = max(biggest[0], path.stat().st_size)
                except OSError:
                    pass
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    bomb = ["bomb.so", "0123456789ABCDEF0123456789ABCDEF0"]
    try:
        answer, _ = ask(trio, [bomb, XUL], timeout=120)
    finally:
        stop.set()
        watcher.join()
    assert answer["knownModules"] == [False, True]
    assert biggest[0] <= 5 * 1024 * 1024 + 256 * 1024, f"a {biggest[0]} byte file appeared in .tmp"
    assert trio.wait_for_file(f"{XUL[1]}.xul.pdb.symtab")  # (xul's table is built after the answer)
    assert list(tmp.iterdir()) == []
    assert not any("bomb" in name for name in trio.cache_files())
    assert "maxSymbolFileMB" in (trio.workdir / "DiskCache.log").read_text()
    before = symbol_store.count("/bomb/150/bomb.so/0123456789ABCDEF0123456789ABCDEF0/bomb.sym")
    assert ask(trio, [bomb], timeout=30)[0]["knownModules"] == [False]
    assert symbol_store.count("/bomb/150/bomb.so/0123456789ABCDEF0123456789ABCDEF0/bomb.sym") == before  # remembered


def test_the_new_download_settings_are_checked():
    from symcommon.config import ConfigError, load_config

    config = load_config(json_text='{"DiskCache": {"maxSymbolFileMB": 5, "downloadsPerStore": 2}}')
    assert (config["DiskCache"]["maxSymbolFileMB"], config["DiskCache"]["downloadsPerStore"]) == (5, 2)
    assert load_config()["DiskCache"]["maxSymbolFileMB"] == 4096
    for bad in ('{"maxSymbolFileMB": 0}', '{"downloadsPerStore": 0}', '{"downloadTimeoutSeconds": 0}',
                '{"symbolURLs": ["file:///srv/symbols"]}', '{"symbolURLs": ["ftp://example.com/"]}'):
        with pytest.raises(ConfigError):
            load_config(json_text=f'{{"DiskCache": {bad}}}')


# -- 3. redirects ---------------------------------------------------------------------------------


def test_a_redirect_to_another_loopback_service_is_refused(make_trio, symbol_store, tmp_path):
    other_root = tmp_path / "other"
    (other_root / XUL_PATH).parent.mkdir(parents=True)
    (other_root / XUL_PATH).write_text(f"MODULE windows x86_64 {XUL[1]} xul.pdb\nPUBLIC 0 0 OtherServiceText\n")
    with SymbolStore(other_root) as other:
        trio = make_trio([symbol_store.redirect_url(other.url("plain"))], {"DiskCache": {"retries": 0}})
        answer, _ = ask(trio, [XUL])
        assert answer["knownModules"] == [False]
        assert other.requests == []  # not even asked
    assert "redirect" in (trio.workdir / "DiskCache.log").read_text()


def test_a_redirect_within_the_same_store_is_followed(make_trio, symbol_store):
    symbol_store.reset()
    trio = make_trio([symbol_store.redirect_url(symbol_store.url("plain"))])
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE
    assert symbol_store.count("/plain/" + XUL_PATH) == 1
    log = (trio.workdir / "DiskCache.log").read_text()
    assert f"{symbol_store.url('plain')}/{XUL_PATH}" in log  # the final URL is logged


def test_redirects_are_followed_at_most_five_in_a_row(make_trio, symbol_store):
    def chain(hops: int) -> str:
        url = symbol_store.url("plain")
        for _ in range(hops):
            url = symbol_store.redirect_url(url)
        return url

    trio = make_trio([chain(7), chain(5)], {"DiskCache": {"retries": 0}})
    symbol_store.reset()
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE  # through the second store
    assert symbol_store.count("/plain/" + XUL_PATH) == 1
    assert "more than 5 redirects" in (trio.workdir / "DiskCache.log").read_text()


def test_a_redirect_to_another_scheme_is_refused(make_trio, symbol_store, store_root):
    trio = make_trio([symbol_store.redirect_url(f"file://{store_root}")], {"DiskCache": {"retries": 0}})
    assert ask(trio, [XUL])[0]["knownModules"] == [False]


@pytest.fixture
def storage_host(tmp_path: Path, symbol_store: SymbolStore) -> Iterator[dict[str, str]]:
    """A "storage host" in a network namespace of its own, joined to this one by a veth pair.

    It has a shared-address-space address (100.64.0.0/10: neither private nor loopback for
    Python's ``ipaddress``, so the redirect rule admits it like a public S3 host) and a
    private one (10.x, which the rule refuses); a plain web server there serves the store's
    files on both.
    """
    try:
        with peer_host(("100.64", "10.213")) as host:
            (_, public), (_, private) = host.addresses
            server = host.popen(sys.executable, "-m", "http.server", "8000", "--bind", "0.0.0.0",
                                "--directory", str(symbol_store.root),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 20
                while True:
                    try:
                        socket.create_connection((public, 8000), timeout=1).close()
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            pytest.fail("the storage host's web server did not start")
                        time.sleep(0.1)
                yield {"public": f"http://{public}:8000", "private": f"http://{private}:8000"}
            finally:
                server.kill()
                server.wait()
    except NoNamespace as error:
        pytest.skip(f"cannot make a network namespace here: {error}")


def test_a_redirect_to_a_public_storage_host_is_followed(make_trio, symbol_store, storage_host):
    trio = make_trio([symbol_store.redirect_url(storage_host["public"])])
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE
    assert f"{storage_host['public']}/{XUL_PATH}" in (trio.workdir / "DiskCache.log").read_text()


def test_a_redirect_to_a_private_address_is_refused(make_trio, symbol_store, storage_host):
    trio = make_trio([symbol_store.redirect_url(storage_host["private"])], {"DiskCache": {"retries": 0}})
    assert ask(trio, [XUL, NTDLL])[0]["knownModules"] == [False, False]


# -- TLS --------------------------------------------------------------------------------------------


def test_an_https_store_is_verified_and_its_redirects_guarded(tmp_path):
    """The fetcher's own TLS path, against a real TLS server on loopback with a certificate
    made here: refused while the certificate is not trusted, then decoded, and a redirect to
    another loopback port refused even over TLS."""
    import gzip
    import shutil
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from diskcache.fetcher import SymbolFetcher
    from symcommon.modules import ModuleId

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    text = b"MODULE Linux x86_64 ABC0 tls.so\nPUBLIC 1000 0 TlsFunction\n"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib's name
            if self.path.startswith("/away/"):
                self.send_response(302)
                self.send_header("Location", f"https://127.0.0.1:{other.server_address[1]}/x")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = gzip.compress(text)
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    servers = []
    for _ in range(2):
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    store, other = servers
    base = f"https://127.0.0.1:{store.server_address[1]}"
    module, destination = ModuleId("tls.so", "ABC0"), tmp_path / "out.sym"
    try:
        untrusted = SymbolFetcher([base + "/plain"], 0, 10, 10, 1 << 20).fetch(module, destination)
        assert not untrusted.found and "CERTIFICATE_VERIFY_FAILED" in " ".join(untrusted.errors)
        trusted = ssl.create_default_context(cafile=str(cert))
        found = SymbolFetcher([base + "/plain"], 0, 10, 10, 1 << 20, tls=trusted).fetch(module, destination)
        assert found.found and destination.read_bytes() == text
        away = SymbolFetcher([base + "/away"], 0, 10, 10, 1 << 20, tls=trusted).fetch(module, destination)
        assert not away.found and away.failure_reasons == ["refused"]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_identity_bodies_go_from_socket_to_file_in_the_kernel(symbol_store, store_root, tmp_path):
    """A body sent as it is (no Content-Encoding) with a declared length is moved socket ->
    pipe -> file by the kernel (``os.splice``): the DiskCache's Python never holds its bytes.
    The file is the same as with Python copying it, and every guard still holds: a body cut
    short is retried, a trickle ends at the watchdog, a dripping body arrives whole."""
    from diskcache.fetcher import SymbolFetcher
    from symcommon.modules import ModuleId

    name, debug_id = write_module(store_root, "zerocopy.so", "ZeroCopyFunction", seed=41, publics=60_000)
    original = (store_root / name / debug_id / f"{name}.sym").read_bytes()
    assert len(original) > 2_000_000  # far bigger than any buffer on the way
    module, destination = ModuleId(name, debug_id), tmp_path / "out.sym"

    def fetch(mode: str, retries: int = 0, timeout: float = 60) -> object:
        destination.unlink(missing_ok=True)
        return SymbolFetcher([symbol_store.url(mode)], retries, 10, timeout, 64 << 20).fetch(module, destination)

    plain = fetch("plain")
    assert plain.found and plain.zero_copy and plain.bytes == len(original)
    assert destination.read_bytes() == original
    packed = fetch("gzip")  # decoded in Python: there is no other way
    assert packed.found and not packed.zero_copy and destination.read_bytes() == original
    restarted = fetch("cutoff/1", retries=1)  # half a body (upper-cased), then the whole one
    assert restarted.found and restarted.zero_copy and restarted.failure_reasons == ["truncated"]
    assert destination.read_bytes() == original
    truncated = fetch("truncated")
    assert not truncated.found and truncated.failure_reasons == ["truncated"]
    small_name, small_id = write_module(store_root, "zerodrip.so", "DripFunction", seed=42, publics=300)
    small = (store_root / small_name / small_id / f"{small_name}.sym").read_bytes()
    module = ModuleId(small_name, small_id)
    dripped = fetch("drip/1")  # about 60 pieces of 256 bytes, each one splice
    assert dripped.found and dripped.zero_copy and destination.read_bytes() == small
    started = time.monotonic()
    trickled = fetch("trickle/200", timeout=1.5)
    assert not trickled.found and trickled.failure_reasons == ["timeout"]
    assert time.monotonic() - started < 5
