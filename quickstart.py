#!/usr/bin/env python3
"""Start or stop memcached, the DiskCache and SymServer together, tracked by pidfiles.

``python quickstart.py -c CONFIG`` starts each program whose ``quickstart.<name>.start`` is
true (restarting it if ``restart`` is true), waits until each one really answers, and exits
0; if one does not come up in time it says which and where its log is, and exits 1.
``python quickstart.py --stop`` stops all three.  Pidfiles live in ``pids/`` beside this
script.  A pidfile counts only if its process is the one that wrote it (its command line
names that pidfile), so a stale pidfile never gets an unrelated process killed.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from symcommon.config import ConfigError, add_config_arguments, connect_host, diskcache_addresses, load_config

HERE = Path(__file__).resolve().parent
DEFAULT_PID_DIR = HERE / "pids"
STOP_GRACE_SECONDS = 25.0  # servers drain requests in flight for up to 20 s


@dataclass(frozen=True)
class Program:
    name: str  # as in the config's quickstart section
    module: str | None  # python -m <module>; None for memcached

    def pidfile(self, pid_dir: Path) -> Path:
        return pid_dir / f"{self.name}.pid"


MEMCACHED = Program("memcached", None)
DISKCACHE = Program("DiskCache", "diskcache")
SYMSERVER = Program("SymServer", "symserver")
PROGRAMS = (MEMCACHED, DISKCACHE, SYMSERVER)


def say(message: str) -> None:
    print(f"quickstart: {message}", flush=True)


class StartError(Exception):
    """A program did not come up; the message says which and where to look."""


def running_process(program: Program, pid_dir: Path) -> psutil.Process | None:
    """The live process behind the pidfile, or None (removing a stale pidfile)."""
    pidfile = program.pidfile(pid_dir)
    try:
        pid = int(pidfile.read_text().split()[0])
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            raise psutil.NoSuchProcess(pid)
        command_line = process.cmdline()
    except FileNotFoundError:
        return None
    except (OSError, ValueError, IndexError, psutil.Error):
        say(f"removing stale pidfile {pidfile}")
        pidfile.unlink(missing_ok=True)
        return None
    if str(pidfile) not in command_line:
        say(f"removing stale pidfile {pidfile} (pid {pid} is now another program)")
        pidfile.unlink(missing_ok=True)
        return None
    return process


def stop(program: Program, pid_dir: Path) -> None:
    process = running_process(program, pid_dir)
    if process is None:
        return
    say(f"stopping {program.name} (pid {process.pid})")
    try:
        process.terminate()
        if not wait_gone(process, STOP_GRACE_SECONDS):
            say(f"{program.name} did not stop in {STOP_GRACE_SECONDS:.0f}s; killing it")
            process.kill()
            wait_gone(process, 5)
    except psutil.NoSuchProcess:
        pass
    program.pidfile(pid_dir).unlink(missing_ok=True)


def wait_gone(process: psutil.Process, timeout: float) -> bool:
    """Wait until the process has exited. A zombie has: our servers are not our children
    once an earlier quickstart has exited, and their reaper may take its time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def memcached_user() -> str | None:
    """memcached refuses to run as root without ``-u``: use its Debian user, else nobody."""
    if os.geteuid() != 0:
        return None
    for user in ("memcache", "nobody"):
        try:
            pwd.getpwnam(user)
            return user
        except KeyError:
            continue
    raise StartError("running as root, but there is no 'memcache' or 'nobody' user for memcached")


def start_memcached(settings: dict, pid_dir: Path) -> None:
    binary = shutil.which(settings["binary"])
    if binary is None:
        raise StartError(f"memcached binary {settings['binary']!r} not found; install it "
                         "(e.g. apt-get install memcached) or set quickstart.memcached.binary")
    pidfile = MEMCACHED.pidfile(pid_dir)
    command = [binary, "-d", "-U", "0", "-l", settings["listenAddress"],
               "-m", settings["maxMemoryMB"], "-p", str(settings["port"]), "-P", str(pidfile)]
    user = memcached_user()
    if user is not None:
        command += ["-u", user]
        shutil.chown(pid_dir, user=user)  # memcached writes its pidfile after dropping root
    finished = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if finished.returncode != 0:
        raise StartError(f"memcached exited with {finished.returncode}: "
                         f"{finished.stderr.strip() or finished.stdout.strip()}")


def adopt_pid(program: Program, pid_dir: Path) -> bool:
    """Write the pidfile for a daemon that could not (memcached after dropping root cannot
    write into a directory its user cannot reach); it is found by its command line."""
    pidfile = program.pidfile(pid_dir)
    for _ in range(20):
        for process in psutil.process_iter(["pid", "cmdline"]):
            if str(pidfile) in (process.info["cmdline"] or []):
                pidfile.write_text(f"{process.info['pid']}\n")
                return True
        time.sleep(0.05)
    return False


def memcached_answers(host: str, port: int) -> bool:
    """A real set and get round trip."""
    try:
        with socket.create_connection((host, port), timeout=1) as connection:
            connection.sendall(b"set quickstart:probe 0 10 2\r\nok\r\nget quickstart:probe\r\n")
            reply = b""
            while not reply.endswith(b"END\r\n"):
                data = connection.recv(4096)
                if not data:
                    return False
                reply += data
            return b"VALUE quickstart:probe 0 2\r\nok\r\n" in reply
    except OSError:
        return False


def start_server(program: Program, config: dict, pid_dir: Path) -> subprocess.Popen:
    log_path = Path(config[program.name]["log"]["path"])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    stderr_path = log_path.with_name(log_path.name + ".stderr")
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(HERE), environment.get("PYTHONPATH")]))
    with open(stderr_path, "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", program.module, "--configJSON", json.dumps(config),
             "--pidfile", str(program.pidfile(pid_dir)), "--quiet"],
            stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, cwd=HERE,
            env=environment, start_new_session=True)


def server_answers(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/__lbheartbeat__", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def wait_until(check, process: subprocess.Popen | None, program: Program,
               pid_dir: Path, timeout: float, where: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check() and (program.module is None or running_process(program, pid_dir)):
            return
        if process is not None and process.poll() is not None:
            raise StartError(f"{program.name} exited with status {process.returncode} while "
                             f"starting; see {where}")
        time.sleep(0.1)
    raise StartError(f"{program.name} did not answer within {timeout:.0f}s; see {where}")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_all(config: dict, pid_dir: Path, timeout: float) -> None:
    options = config["quickstart"]
    for program in PROGRAMS:
        settings = options[program.name]
        if not settings["start"]:
            say(f"{program.name}: not started (quickstart.{program.name}.start is false)")
            continue
        if running_process(program, pid_dir) is not None:
            if not settings["restart"]:
                say(f"{program.name} is already running; leaving it "
                    f"(quickstart.{program.name}.restart is false)")
                continue
            stop(program, pid_dir)
        if program is MEMCACHED:
            host = settings["listenAddress"]
            host = "127.0.0.1" if host in ("0.0.0.0", "") else host
            start_memcached(settings, pid_dir)
            hint = (f"is {host}:{settings['port']} free? (as a daemon, memcached reports "
                    f"nothing; run '{settings['binary']} -vv -p {settings['port']}' to see why)")
            wait_until(lambda: memcached_answers(host, settings["port"]), None, program,
                       pid_dir, timeout, hint)
            if running_process(program, pid_dir) is None and not adopt_pid(program, pid_dir):
                raise StartError(f"something answers on {host}:{settings['port']}, but not the "
                                 f"memcached just started; {hint}")
            say(f"memcached answers on {host}:{settings['port']} "
                f"(pid {running_process(program, pid_dir).pid})")
        else:
            section = config[program.name]
            base_url = f"http://{connect_host(section['listenAddress'])}:{section['port']}"
            log_path = Path(section["log"]["path"])
            process = start_server(program, config, pid_dir)
            where = f"{log_path} and {log_path}.stderr"
            try:
                wait_until(lambda: server_answers(base_url), process, program, pid_dir, timeout, where)
            except StartError:
                details = tail(Path(f"{log_path}.stderr")) or tail(log_path)
                if details:
                    print(details, file=sys.stderr)
                raise
            say(f"{program.name} answers at {base_url}/ (pid {process.pid}, log {log_path})")
            if program is SYMSERVER and (not options["DiskCache"]["start"]
                                         or len(diskcache_addresses(section)) > 1):
                say(f"SymServer uses the DiskCache(s) at {', '.join(diskcache_addresses(section))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_config_arguments(parser)
    parser.add_argument("--stop", action="store_true", help="stop all three programs and exit")
    parser.add_argument("--pidDir", type=Path, default=DEFAULT_PID_DIR,
                        help=f"where the pidfiles live (default {DEFAULT_PID_DIR})")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for each program to answer (default 30)")
    parser.add_argument("--symbols", metavar="DIR", type=Path, action="append",
                        help="serve this symbols directory (e.g. the output of ./mach buildsymbols) "
                             "with no download URLs and no memcached, so rebuilt symbols show at "
                             "once; no config file needed; may be repeated")
    parser.add_argument("--port", type=int, help="SymServer's port (overrides SymServer.port, default 8080)")
    parser.add_argument("--diskcachePort", type=int, metavar="PORT",
                        help="the DiskCache's port (overrides DiskCache.port, default 8888; SymServer "
                             "follows it unless SymServer.DiskCacheServer is given)")
    args = parser.parse_args(argv)
    pid_dir = args.pidDir.resolve()
    pid_dir.mkdir(parents=True, exist_ok=True)
    if args.stop:
        for program in reversed(PROGRAMS):
            stop(program, pid_dir)
        say("stopped")
        return 0
    if args.config is None and args.configJSON is None and not args.symbols:
        parser.error("give a configuration with -c FILE or --configJSON JSON, or a directory "
                     "with --symbols DIR (or use --stop)")
    overrides: dict = {}
    for directory in args.symbols or []:
        if not directory.is_dir():
            say(f"--symbols {directory}: not a directory")
            return 2
    if args.symbols:
        overrides = {"DiskCache": {"localSymbolDirs": [str(d.resolve()) for d in args.symbols],
                                   "symbolURLs": []},
                     "SymServer": {"memcachedServers": []},
                     "quickstart": {"memcached": {"start": False}}}
    if args.port is not None:
        overrides.setdefault("SymServer", {})["port"] = args.port
    if args.diskcachePort is not None:
        overrides.setdefault("DiskCache", {})["port"] = args.diskcachePort
    try:
        config = load_config(path=args.config, json_text=args.configJSON, overrides=overrides)
    except ConfigError as error:
        say(f"configuration error: {error}")
        return 2
    try:
        start_all(config, pid_dir, args.timeout)
    except StartError as error:
        say(f"error: {error}")
        if any(running_process(program, pid_dir) for program in PROGRAMS):
            say(f"the programs that did start are still running; stop them with: {stop_command(pid_dir)}")
        return 1
    if args.symbols:
        print(profiler_instructions(config["SymServer"], args.symbols, pid_dir), flush=True)
    else:
        say(f"stop with: {stop_command(pid_dir)}")
    return 0


def stop_command(pid_dir: Path) -> str:
    """The command that stops what this run started: it must name the same pid directory,
    or it would look for (and stop) the programs of the default one."""
    script = Path(__file__).resolve()
    try:
        shown = script.relative_to(Path.cwd())
    except ValueError:
        shown = script
    words = ["python", str(shown)]
    if pid_dir != DEFAULT_PID_DIR.resolve():
        words += ["--pidDir", str(pid_dir)]
    return shlex.join([*words, "--stop"])


def profiler_instructions(section: dict, directories: list[Path], pid_dir: Path) -> str:
    """What to tell the Firefox Profiler, which calls <symbolServer>/symbolicate/v5."""
    server = f"http://{connect_host(section['listenAddress'])}:{section['port']}"
    encoded = urllib.parse.quote(server, safe="")
    serving = ", ".join(str(d.resolve()) for d in directories)
    return (f"\nServing symbols from {serving}\n"
            f"Symbol server URL for the Firefox Profiler: {server}\n"
            f"Add it to the profiler's URL as ?symbolServer={encoded}, e.g.\n"
            f"  https://profiler.firefox.com/from-url/<encoded profile URL>/?symbolServer={encoded}\n"
            f"Stop with: {stop_command(pid_dir)}")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(main())
