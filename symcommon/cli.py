"""The command line both servers share: configuration, ``--pidfile``, ``--quiet``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

from symcommon.config import ConfigError, add_config_arguments, add_section_arguments, config_from_args, per_core
from symcommon.logs import setup_logging
from symcommon.prefork import SharedState, run_processes
from symcommon.web import write_pidfile

Runner = Callable[..., Awaitable[None]]  # run(config, pidfile, shared, sockets=None)


def server_main(argv: list[str] | None, *, prog: str, section: str, description: str,
                run: Runner) -> int:
    """Parse options (CLI beats file beats defaults), set up logging, run until stopped.

    With ``processes`` above 1 in the section, that many forked processes serve the port
    (see :mod:`symcommon.prefork`); ``run`` then gets the listening sockets.  ``run`` always
    gets a :class:`SharedState` that all the processes see.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_config_arguments(parser)
    parser.add_argument("--pidfile", type=Path, help="write the process id here while running")
    parser.add_argument("--quiet", action="store_true",
                        help="log to the log file only, not to stderr (quickstart uses this)")
    add_section_arguments(parser, section)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args, section)
    except ConfigError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    setup_logging(config[section]["log"], to_stderr=not args.quiet)
    processes = per_core(config[section].get("processes", 1))
    shared = SharedState()
    try:
        if processes > 1:
            return run_processes(processes, config[section]["port"],
                                 lambda sockets: _serve_child(run, config, shared, sockets), args.pidfile,
                                 write_pidfile, address=config[section]["listenAddress"])
        asyncio.run(run(config, args.pidfile, shared))
    except OSError as error:
        logging.getLogger(prog).critical("cannot start: %s", error)
        print(f"{prog}: cannot start: {error}", file=sys.stderr)
        return 1
    return 0


def _serve_child(run: Runner, config: dict[str, Any], shared: SharedState, sockets: list) -> int:
    asyncio.run(run(config, None, shared, sockets=sockets))
    return 0
