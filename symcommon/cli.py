"""The command line both servers share: configuration, ``--pidfile``, ``--quiet``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

from symcommon.config import ConfigError, add_config_arguments, add_section_arguments, config_from_args
from symcommon.logs import setup_logging

Runner = Callable[[dict[str, Any], Path | None], Awaitable[None]]


def server_main(argv: list[str] | None, *, prog: str, section: str, description: str,
                run: Runner) -> int:
    """Parse options (CLI beats file beats defaults), set up logging, run until stopped."""
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
    try:
        asyncio.run(run(config, args.pidfile))
    except OSError as error:
        logging.getLogger(prog).critical("cannot start: %s", error)
        print(f"{prog}: cannot start: {error}", file=sys.stderr)
        return 1
    return 0
