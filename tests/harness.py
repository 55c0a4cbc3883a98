"""Starting the real trio for a test: free ports, temporary directories, quickstart.

Every trio gets its own pid directory, so tests never touch a service already running on
the machine, and its own ports, so trios can run side by side.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import requests

REPO = Path(__file__).resolve().parent.parent
TEST_CONFIG = REPO / "tests" / "config.json"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def deep_update(target: dict, changes: dict) -> dict:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_update(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def base_config() -> dict:
    """The configuration given to ``runTests.py -c``, if any."""
    if TEST_CONFIG.exists():
        return json.loads(TEST_CONFIG.read_text())
    return {}


class Trio:
    """memcached + DiskCache + SymServer started through quickstart in ``workdir``."""

    def __init__(self, workdir: Path, symbol_urls: list[str], overrides: dict | None = None,
                 memcached: bool = True) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.pid_dir = workdir / "pids"
        self.cache_dir = workdir / "cache"
        ports = [free_port() for _ in range(3)]
        self.diskcache_port, self.symserver_port, self.memcached_port = ports
        config = deep_update(base_config(), {
            "DiskCache": {"cachePath": str(self.cache_dir), "port": self.diskcache_port,
                          "localSymbolDirs": [], "symbolURLs": symbol_urls,
                          "retryDelayMs": 10,
                          "log": {"path": str(workdir / "DiskCache.log")}},
            # one SymServer process unless a test asks (the default is one per core)
            "SymServer": {"port": self.symserver_port, "processes": 1,
                          "DiskCacheServer": f"127.0.0.1:{self.diskcache_port}",
                          "memcachedServers": [f"127.0.0.1:{self.memcached_port}"] if memcached else [],
                          "log": {"path": str(workdir / "SymServer.log")}},
            "quickstart": {
                "memcached": {"start": memcached, "restart": True, "port": self.memcached_port,
                              "listenAddress": "127.0.0.1", "maxMemoryMB": "16"},
                "DiskCache": {"start": True, "restart": True},
                "SymServer": {"start": True, "restart": True},
            },
        })
        self.config = deep_update(config, overrides or {})
        self.config_path = workdir / "config.json"
        self.config_path.write_text(json.dumps(self.config, indent=2))
        self.session = requests.Session()

    def quickstart(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = run_quickstart(self.pid_dir, *args, cwd=self.workdir)
        if check and result.returncode != 0:
            raise AssertionError(f"quickstart {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}\n{self.logs()}")
        return result

    def start(self) -> Trio:
        """Start (or restart) through quickstart; if that fails, stop whatever did start."""
        try:
            self.quickstart("-c", str(self.config_path))
        except AssertionError:
            self.quickstart("--stop", check=False)
            raise
        return self

    def kill(self, name: str, signum: int = signal.SIGKILL) -> None:
        os.kill(self.pid(name), signum)

    def restart_dead(self) -> None:
        """Start again whatever is not running (quickstart sees the dead pid), and only that."""
        self.reconfigure({"quickstart": {name: {"restart": False} for name in ("memcached", "DiskCache", "SymServer")}})
        self.start()

    def reconfigure(self, changes: dict) -> None:
        """Change the config file (e.g. which programs the next start restarts)."""
        deep_update(self.config, changes)
        self.config_path.write_text(json.dumps(self.config, indent=2))

    def stop(self) -> None:
        self.quickstart("--stop", check=False)
        self.session.close()

    def pid(self, name: str) -> int | None:
        try:
            return int((self.pid_dir / f"{name}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def logs(self) -> str:
        parts = []
        for name in ("DiskCache.log", "SymServer.log", "DiskCache.log.stderr", "SymServer.log.stderr"):
            path = self.workdir / name
            if path.exists():
                parts.append(f"--- {name} (last lines)\n" + "\n".join(path.read_text().splitlines()[-30:]))
        return "\n".join(parts)

    def wait_for_log(self, name: str, text: str, timeout: float = 5.0) -> bool:
        """Whether ``text`` shows up in a log (request lines are written just after the answer)."""
        path = self.workdir / name
        return wait_for(lambda: path.exists() and text in path.read_text(), timeout)

    def url(self, server: str = "SymServer", path: str = "/") -> str:
        port = self.symserver_port if server == "SymServer" else self.diskcache_port
        return f"http://127.0.0.1:{port}{path}"

    def post(self, body: Any, path: str = "/", server: str = "SymServer",
             raw: bytes | None = None, **kwargs: Any) -> requests.Response:
        data = raw if raw is not None else json.dumps(body).encode()
        if raw is None:  # JSON, said so (the debug protocol accepts nothing else)
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
        return self.session.post(self.url(server, path), data=data, timeout=60, **kwargs)

    def wait_for_file(self, name: str, timeout: float = 60.0) -> bool:
        """Whether the cache directory has ``name`` within ``timeout``: a cold module is
        answered from its .sym first, and its table built a moment later, in the background."""
        return wait_for((self.cache_dir / name).is_file, timeout)

    def cache_files(self) -> list[str]:
        if not self.cache_dir.exists():
            return []
        return sorted(p.name for p in self.cache_dir.iterdir() if p.name != ".tmp")


def wait_for(condition: Callable[[], Any], timeout: float = 120.0, step: float = 0.05) -> bool:
    """Whether ``condition()`` comes true within ``timeout`` seconds, asked every ``step``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


def parsing_workers(pid: int) -> list:
    """The DiskCache's parsing workers (psutil processes), not one that is exiting (a zombie
    not yet reaped)."""
    import psutil

    found = []
    for child in psutil.Process(pid).children():
        try:
            command = child.cmdline()
        except psutil.Error:
            continue
        if "diskcache.worker" in command:
            found.append(child)
    return found


def run_quickstart(pid_dir: Path, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """quickstart.py with its own pid directory, output captured: how tests and benches drive
    their trios without touching one that is already running."""
    return subprocess.run([sys.executable, str(REPO / "quickstart.py"), "--pidDir", str(pid_dir), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def local_module_trio(workdir: Path, symbol_urls: list[str], debug_file: str, debug_id: str, text: str,
                      sym_name: str | None = None) -> Trio:
    """A started trio whose DiskCache has one local symbol directory holding ``text`` as the
    symbols of (``debug_file``, ``debug_id``): a module written for one test."""
    symbols = workdir / "symbols"
    path = symbols / debug_file / debug_id / (sym_name or debug_file + ".sym")
    path.parent.mkdir(parents=True)
    path.write_text(text)
    trio = Trio(workdir / "trio", symbol_urls, {"DiskCache": {"localSymbolDirs": [str(symbols)]}})
    return trio.start()


def sample_request(version: int = 4) -> dict:
    return {"stacks": [[[0, 11723767], [1, 65802]]],
            "memoryMap": [["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"],
                          ["wntdll.pdb", "D74F79EB1F8D4A45ABCD2F476CCABACC2"]],
            "version": version}


SAMPLE_RESPONSE = ('{"symbolicatedStacks": [["XREMain::XRE_mainRun() (in xul.pdb)", '
                   '"KiUserCallbackDispatcher (in wntdll.pdb)"]], "knownModules": [true, true]}')
