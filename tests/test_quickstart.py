"""quickstart and the configuration, with the real programs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import requests

from harness import REPO, free_port, sample_request
from symcommon.config import ConfigError, load_config


def alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_start_answers_and_stop_cleans_up(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")])
    pids = {name: trio.pid(name) for name in ("memcached", "DiskCache", "SymServer")}
    assert all(pid and alive(pid) for pid in pids.values())
    with socket.create_connection(("127.0.0.1", trio.memcached_port), timeout=2) as connection:
        connection.sendall(b"version\r\n")
        assert connection.recv(100).startswith(b"VERSION")
    for server in ("SymServer", "DiskCache"):
        assert requests.get(trio.url(server, "/__lbheartbeat__"), timeout=5).status_code == 200
    result = trio.quickstart("--stop")  # no -c needed
    assert result.returncode == 0
    assert not any(alive(pid) for pid in pids.values())
    assert list(trio.pid_dir.glob("*.pid")) == []
    assert trio.quickstart("--stop").returncode == 0  # stopping nothing is fine


def test_restart_false_leaves_a_running_program_and_true_replaces_it(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")])
    before = {name: trio.pid(name) for name in ("memcached", "DiskCache", "SymServer")}
    trio.reconfigure({"quickstart": {"memcached": {"restart": False}, "DiskCache": {"restart": False},
                                     "SymServer": {"restart": True}}})
    output = trio.quickstart("-c", str(trio.config_path)).stdout
    assert "already running" in output
    assert trio.pid("memcached") == before["memcached"] and trio.pid("DiskCache") == before["DiskCache"]
    assert trio.pid("SymServer") != before["SymServer"] and not alive(before["SymServer"])


def test_start_false_skips_a_program(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")], {"quickstart": {"DiskCache": {"start": False}}},
                     run=False)
    result = trio.quickstart("-c", str(trio.config_path))
    assert "DiskCache: not started" in result.stdout
    assert trio.pid("DiskCache") is None and trio.pid("SymServer") is not None
    response = trio.post({"version": 4, "memoryMap": [["a.pdb", "AB"]], "stacks": [[[0, 1]]]})
    assert response.status_code == 503


@pytest.mark.parametrize("content", ["unrelated", "dead", "garbage"])
def test_stale_pidfiles_never_kill_strangers_or_block_starting(make_trio, symbol_store, content):
    trio = make_trio([symbol_store.url("plain")], run=False)
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        trio.pid_dir.mkdir(parents=True, exist_ok=True)
        if content == "unrelated":
            pid_text = str(stranger.pid)
        elif content == "dead":
            finished = subprocess.Popen(["true"])
            finished.wait()
            pid_text = str(finished.pid)
        else:
            pid_text = "not a pid"
        for name in ("memcached", "DiskCache", "SymServer"):
            (trio.pid_dir / f"{name}.pid").write_text(pid_text)
        trio.start()
        assert stranger.poll() is None
        assert all(trio.pid(name) != stranger.pid for name in ("memcached", "DiskCache", "SymServer"))
        assert requests.get(trio.url("SymServer", "/__lbheartbeat__"), timeout=5).status_code == 200
        ours = [trio.pid(name) for name in ("memcached", "DiskCache", "SymServer")]
        trio.quickstart("--stop")
        assert not any(alive(pid) for pid in ours)
        for name in ("memcached", "DiskCache", "SymServer"):
            (trio.pid_dir / f"{name}.pid").write_text(str(stranger.pid))
        trio.quickstart("--stop")
        assert stranger.poll() is None  # --stop did not touch it either
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.parametrize("server", ["DiskCache", "SymServer"])
def test_a_server_that_cannot_start_is_named_with_its_log(make_trio, symbol_store, server):
    trio = make_trio([symbol_store.url("plain")], run=False)
    port = trio.diskcache_port if server == "DiskCache" else trio.symserver_port
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("0.0.0.0", port))
        squatter.listen()
        started = time.monotonic()
        result = trio.quickstart("-c", str(trio.config_path), "--timeout", "10", check=False)
    assert result.returncode == 1
    assert time.monotonic() - started < 15
    assert server in result.stdout
    assert str(trio.workdir / f"{server}.log") in result.stdout
    # what did start (memcached, and the DiskCache before SymServer) is still running: say how to stop it
    stop_lines = [line for line in result.stdout.splitlines() if "--stop" in line]
    assert stop_lines and all(f"--pidDir {trio.pid_dir}" in line for line in stop_lines)


def quickstart(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "quickstart.py"), *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


@pytest.mark.parametrize("config,key", [
    ({"DiskCache": {"cachPath": "x"}}, "DiskCache.cachPath"),
    ({"DiskCache": {"port": "8888"}}, "DiskCache.port"),
    ({"quickstart": {"memcached": {"start": 1}}}, "quickstart.memcached.start"),
    ({"SymServer": {"memcachedServers": ["a", 5]}}, "SymServer.memcachedServers"),
    ({"SymServer": {"log": {"level": "INFO"}}}, "SymServer.log.level"),
    ({"SymServer": {"port": 70000}}, "SymServer.port"),
    ({"Nonsense": {}}, "Nonsense"),
])
def test_config_errors_name_the_key(tmp_path, config, key):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    result = quickstart("-c", str(path), "--pidDir", str(tmp_path / "pids"))
    assert result.returncode == 2
    assert key in result.stdout
    for module in ("diskcache", "symserver"):
        server = subprocess.run([sys.executable, "-m", module, "-c", str(path)], capture_output=True,
                                text=True, timeout=60, cwd=REPO)
        assert server.returncode == 2
        assert key in server.stderr


def test_unreadable_and_non_object_configs(tmp_path):
    missing = quickstart("-c", str(tmp_path / "nope.json"), "--pidDir", str(tmp_path / "pids"))
    assert missing.returncode == 2 and "cannot read" in missing.stdout
    (tmp_path / "list.json").write_text("[1, 2]")
    listed = quickstart("-c", str(tmp_path / "list.json"), "--pidDir", str(tmp_path / "pids"))
    assert listed.returncode == 2 and "JSON object" in listed.stdout
    (tmp_path / "broken.json").write_text("{")
    broken = quickstart("-c", str(tmp_path / "broken.json"), "--pidDir", str(tmp_path / "pids"))
    assert broken.returncode == 2 and "not valid JSON" in broken.stdout


def test_command_line_beats_file_beats_defaults(tmp_path):
    file_port, cli_port = free_port(), free_port()
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"DiskCache": {"port": file_port, "cachePath": "cache", "symbolURLs": [],
                                              "log": {"path": "dc.log"}}}))
    pidfile = tmp_path / "dc.pid"
    process = subprocess.Popen([sys.executable, "-m", "diskcache", "-c", str(path), "--port", str(cli_port),
                                "--pidfile", str(pidfile), "--quiet"], cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                assert requests.get(f"http://127.0.0.1:{cli_port}/__lbheartbeat__", timeout=1).status_code == 200
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail("the DiskCache never listened on the command-line port")
        assert int(pidfile.read_text()) == process.pid
        assert (tmp_path / "cache").is_dir() and (tmp_path / "dc.log").exists()  # relative to the file
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{file_port}/__lbheartbeat__", timeout=1)
    finally:
        process.terminate()
        assert process.wait(20) == 0  # SIGTERM: graceful exit 0
    assert not pidfile.exists()


@pytest.mark.parametrize("program,options", [
    ("quickstart", ["--stop", "--pidDir", "--timeout", "-c", "--configJSON", "--port", "--diskcachePort"]),
    ("diskcache", ["--port", "--cachePath", "--maxSizeMB", "--symbolURLs", "--localSymbolDirs",
                   "--logLevel", "--logPath", "--pidfile", "--retries", "--listenAddress"]),
    ("symserver", ["--port", "--memcachedServers", "--DiskCacheServer", "--logLevel", "--pidfile", "--listenAddress"]),
])
def test_help_lists_the_options(program, options):
    command = [sys.executable, str(REPO / "quickstart.py")] if program == "quickstart" else \
        [sys.executable, "-m", program]
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0
    for option in options:
        assert option in result.stdout


def test_relative_paths_resolve_against_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "c.json"
    path.write_text(json.dumps({"DiskCache": {"cachePath": "data/cache", "localSymbolDirs": ["syms"],
                                              "log": {"level": 10}}}))
    monkeypatch.chdir(tmp_path)
    config = load_config(path=path)
    assert config["DiskCache"]["cachePath"] == str(tmp_path / "conf" / "data" / "cache")
    assert config["DiskCache"]["localSymbolDirs"] == [str(tmp_path / "conf" / "syms")]
    assert config["DiskCache"]["log"] == {"path": str(tmp_path / "DiskCache.log"), "level": 10,
                                          "maxFiles": 5, "maxFileSizeMB": 50}  # log.path kept its default
    overridden = load_config(path=path, overrides={"DiskCache": {"port": 1234, "cachePath": "x"}})
    assert overridden["DiskCache"]["port"] == 1234
    assert overridden["DiskCache"]["cachePath"] == str(tmp_path / "x")  # CLI paths: the current dir
    assert overridden["DiskCache"]["localSymbolDirs"] == [str(tmp_path / "conf" / "syms")]


@pytest.mark.parametrize("value,ok", [("64", True), (64, True), ("x", False), (0, False), ("0", False),
                                      (True, False)])
def test_max_memory_accepts_the_original_string_or_a_number(value, ok):
    given = {"quickstart": {"memcached": {"maxMemoryMB": value}}}
    if ok:
        assert load_config(json_text=json.dumps(given))["quickstart"]["memcached"]["maxMemoryMB"] == "64"
    else:
        with pytest.raises(ConfigError, match="maxMemoryMB"):
            load_config(json_text=json.dumps(given))


def test_serving_a_local_build_needs_no_config_file(tmp_path):
    symbols = tmp_path / "dist" / "crashreporter-symbols"
    sym = symbols / "libxul.so" / "0123456789ABCDEF0123456789ABCDEF0" / "libxul.so.sym"
    sym.parent.mkdir(parents=True)
    sym.write_text("MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 libxul.so\nFUNC 1000 100 0 before_rebuild\n")
    port = free_port()
    placement = json.dumps({"DiskCache": {"port": free_port(), "cachePath": str(tmp_path / "cache"),
                                          "log": {"path": str(tmp_path / "dc.log")}},
                            "SymServer": {"log": {"path": str(tmp_path / "ss.log")}}})
    pid_dir = str(tmp_path / "pids")
    result = quickstart("--symbols", str(symbols), "--port", str(port), "--configJSON", placement,
                        "--pidDir", pid_dir)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "memcached: not started" in result.stdout
        assert f"?symbolServer=http%3A%2F%2F127.0.0.1%3A{port}" in result.stdout
        body = {"memoryMap": [["libxul.so", "0123456789ABCDEF0123456789ABCDEF0"]], "stacks": [[[0, 0x1010]]]}
        url = f"http://127.0.0.1:{port}/symbolicate/v5"
        assert requests.post(url, json=body, timeout=30).json()["results"][0]["stacks"][0][0]["function"] == \
            "before_rebuild"
        time.sleep(0.01)
        sym.write_text("MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 libxul.so\n"
                       "FUNC 1000 100 0 after_rebuild\n")
        assert requests.post(url, json=body, timeout=30).json()["results"][0]["stacks"][0][0]["function"] == \
            "after_rebuild"  # a rebuilt directory shows at once: no memcached in between
    finally:
        assert quickstart("--stop", "--pidDir", pid_dir).returncode == 0
    missing = quickstart("--symbols", str(tmp_path / "nope"), "--pidDir", pid_dir)
    assert missing.returncode == 2 and "not a directory" in missing.stdout


def test_diskcache_server_follows_the_diskcache_port_unless_given():
    assert load_config(json_text='{"DiskCache": {"port": 9123}}')["SymServer"]["DiskCacheServer"] == "127.0.0.1:9123"
    given = load_config(json_text='{"DiskCache": {"port": 9123}, "SymServer": {"DiskCacheServer": "cache.internal:80"}}')
    assert given["SymServer"]["DiskCacheServer"] == "cache.internal:80"
    assert load_config()["SymServer"]["DiskCacheServer"] == "127.0.0.1:8888"
    for listen, reached in (("", "127.0.0.1:8888"), ("0.0.0.0", "127.0.0.1:8888"), ("10.1.2.3", "10.1.2.3:8888"),
                            ("::", "[::1]:8888"), ("::1", "[::1]:8888")):
        given = load_config(json_text=json.dumps({"DiskCache": {"listenAddress": listen}}))
        assert given["SymServer"]["DiskCacheServer"] == reached
    assert load_config()["SymServer"]["listenAddress"] == ""  # public, as the original
    assert load_config()["DiskCache"]["listenAddress"] == "127.0.0.1"  # private


def test_memcached_port_taken_by_another_program_is_explained(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")], run=False)
    other = subprocess.Popen(["memcached", "-U", "0", "-l", "127.0.0.1", "-p", str(trio.memcached_port),
                              "-u", "memcache"] if os.geteuid() == 0 else
                             ["memcached", "-U", "0", "-l", "127.0.0.1", "-p", str(trio.memcached_port)])
    try:
        deadline = time.monotonic() + 20  # on a busy machine memcached takes a while to listen
        while True:
            try:
                socket.create_connection(("127.0.0.1", trio.memcached_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the other memcached never listened"
                time.sleep(0.05)
        result = trio.quickstart("-c", str(trio.config_path), "--timeout", "5", check=False)
        assert result.returncode == 1
        assert f"127.0.0.1:{trio.memcached_port}" in result.stdout and "free?" in result.stdout
        assert other.poll() is None  # the other program was left alone
    finally:
        other.kill()
        other.wait()


def listening_addresses(pid: int, port: int) -> set[str]:
    """The addresses a process (and its server children) listens on at ``port``, read from
    the kernel's socket table: nothing is sent to any interface."""
    import psutil

    process = psutil.Process(pid)
    addresses = set()
    for member in [process, *process.children(recursive=True)]:
        for connection in member.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
                addresses.add(connection.laddr.ip)
    return addresses


def test_a_local_build_on_chosen_ports_says_how_to_stop_it(tmp_path):
    symbols = tmp_path / "symbols"
    sym = symbols / "libxul.so" / "0123456789ABCDEF0123456789ABCDEF0" / "libxul.so.sym"
    sym.parent.mkdir(parents=True)
    sym.write_text("MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 libxul.so\nFUNC 1000 100 0 chosen\n")
    port, diskcache_port = free_port(), free_port()
    pid_dir = tmp_path / "my pids"
    result = quickstart("--symbols", str(symbols), "--port", str(port), "--diskcachePort", str(diskcache_port),
                        "--pidDir", str(pid_dir), cwd=tmp_path)  # no config: logs and cache land in cwd
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        for server_port in (port, diskcache_port):
            assert requests.get(f"http://127.0.0.1:{server_port}/__lbheartbeat__", timeout=10).status_code == 200
        body = {"memoryMap": [["libxul.so", "0123456789ABCDEF0123456789ABCDEF0"]], "stacks": [[[0, 0x1010]]]}
        answer = requests.post(f"http://127.0.0.1:{port}/symbolicate/v5", json=body, timeout=30).json()
        assert answer["results"][0]["stacks"][0][0]["function"] == "chosen"
        stop_lines = [line for line in result.stdout.splitlines() if "--stop" in line]
        assert stop_lines and all("--pidDir" in line and str(pid_dir) in line for line in stop_lines)
        pids = {name: int((pid_dir / f"{name}.pid").read_text()) for name in ("DiskCache", "SymServer")}
        # The DiskCache is private by default; SymServer listens on every address, as the original.
        assert listening_addresses(pids["DiskCache"], diskcache_port) == {"127.0.0.1"}
        assert "0.0.0.0" in listening_addresses(pids["SymServer"], port)
        assert "127.0.0.1" not in listening_addresses(pids["SymServer"], port)
    finally:
        stop_command = quickstart("--stop", "--pidDir", str(pid_dir))
    assert stop_command.returncode == 0
    assert not list(pid_dir.glob("*.pid"))


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("address,processes", [("127.0.0.1", 1), ("127.0.0.1", 2), ("::1", 2)])
def test_symserver_listens_where_listen_address_says(make_trio, symbol_store, address, processes):
    if ":" in address and not ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    trio = make_trio([symbol_store.url("plain")], {"SymServer": {"listenAddress": address,
                                                                 "processes": processes}})
    host = f"[{address}]" if ":" in address else address
    reply = requests.post(f"http://{host}:{trio.symserver_port}/symbolicate/v4", json=sample_request(), timeout=30)
    assert reply.json()["symbolicatedStacks"][0][0] == "XREMain::XRE_mainRun() (in xul.pdb)"
    assert listening_addresses(trio.pid("SymServer"), trio.symserver_port) == {address}  # every process
    assert listening_addresses(trio.pid("DiskCache"), trio.diskcache_port) == {"127.0.0.1"}


@pytest.mark.parametrize("address", ["not an address", "127.0.0.1:8080", "999.1.1.1", "http://127.0.0.1"])
def test_a_bad_listen_address_is_a_config_error(tmp_path, address):
    for section, module in (("SymServer", "symserver"), ("DiskCache", "diskcache")):
        given = json.dumps({section: {"listenAddress": address}})
        result = quickstart("--configJSON", given, "--pidDir", str(tmp_path / "pids"))
        assert result.returncode == 2
        assert f"{section}.listenAddress" in result.stdout and "IP address" in result.stdout
        server = subprocess.run([sys.executable, "-m", module, "--listenAddress", address], capture_output=True,
                                text=True, timeout=60, cwd=tmp_path)
        assert server.returncode == 2
        assert f"{section}.listenAddress" in server.stderr
