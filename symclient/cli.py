"""``symbolicate``: symbolicate stacks from the command line, for people.

    symbolicate request.json              # a v4 or v5 request
    symbolicate crash.json                # minidump-stackwalk JSON or a crash ping's stackTraces
    symbolicate profile.json              # a Firefox profile (Gecko or processed; .json.gz too)
    symbolicate --top 10 profile.json.gz  # each thread's 10 heaviest stacks (default 5)
    symbolicate frames.txt                # lines of "debug_file debug_id offset"
    echo "xul.pdb 44E4EC8C2F41492B9369D6B9A059577C2 0xb2e3f7" | symbolicate
    symbolicate --json --server http://symbols.example:8080 request.json

Prints readable stacks (frame number, module, function + offset, file:line, inlined frames
indented above their function), or the v5 answer with ``--json``. For a profile, each thread
with samples is printed with its heaviest distinct stacks, their sample counts and shares;
only those stacks are sent to the server, and the profile's JS and label frames are printed
with their names between the symbolicated native ones. When the server takes more than a
second (a large module being fetched), a progress line runs on stderr. Printed text is made
safe for a terminal (see :mod:`symclient.render`); ``--json`` prints the answer as data.

The client lives apart from the servers: :mod:`symclient.lines` (requests and module/offset
lines), :mod:`symclient.crash`, :mod:`symclient.profiles` read the inputs,
:mod:`symclient.render` prints the answers, and this module is the command.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable, TextIO

import requests

from symclient.crash import looks_like_crash_report, parse_crash_report
from symclient.lines import InputError, parse_lines, parse_request
from symclient.profiles import DEFAULT_TOP, looks_like_profile, parse_profile
from symclient.render import render, render_profile, terminal_text

DEFAULT_SERVER = "http://127.0.0.1:8080"
PROGRESS_AFTER_SECONDS = 1.0

Printer = Callable[[dict[str, Any], TextIO], None]


def to_request(text: str, top: int = DEFAULT_TOP) -> tuple[dict[str, Any], Printer]:
    """A v5 request from a v4/v5 request, a crash report, a Firefox profile or module/offset
    lines, and how to print its answer (profiles and crash reports label their stacks)."""
    if not text.lstrip().startswith(("{", "[")):
        return parse_lines(text), render
    try:
        body = json.loads(text)
    except ValueError as error:
        raise InputError(f"not valid JSON: {error}") from None
    if isinstance(body, dict):
        request = parse_request(body)
        if request is not None:
            return request, render
        if looks_like_crash_report(body):
            request, labels = parse_crash_report(body)
            return request, functools.partial(render, labels=labels)
        if looks_like_profile(body):
            request, threads = parse_profile(body, top)
            return request, functools.partial(render_profile, threads=threads)
    raise InputError("JSON input must be a v4 or v5 symbolication request "
                     "(with \"jobs\", or \"memoryMap\" and \"stacks\"), a crash report "
                     "(\"modules\" and \"threads\") or a Firefox profile (\"meta\", \"libs\" and \"threads\")")


def _say(err: TextIO, message: str) -> None:
    """An error for the user's terminal: it may quote the input or the server, so escaped."""
    print(terminal_text(f"symbolicate: {message}"), file=err)


def post_with_progress(url: str, body: dict[str, Any], progress: bool, err: TextIO) -> requests.Response:
    """POST, showing a progress line on ``err`` while the answer takes over a second."""
    done = threading.Event()
    started = time.monotonic()

    def report() -> None:
        if done.wait(PROGRESS_AFTER_SECONDS):
            return
        spinner = "|/-\\"
        turn = 0
        while not done.wait(0.2):
            err.write(f"\rsymbolicating {spinner[turn % 4]} {time.monotonic() - started:5.1f} s "
                      "(the server may be fetching symbols)")
            err.flush()
            turn += 1
        err.write("\r" + " " * 70 + "\r")
        err.flush()

    reporter = threading.Thread(target=report, daemon=True) if progress else None
    if reporter:
        reporter.start()
    try:
        return requests.post(url, json=body, timeout=(10, 900))
    finally:
        done.set()
        if reporter:
            reporter.join()


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def read_input(name: str) -> str:
    """The input's text; gzipped input (a profile saved by profiler.firefox.com) is unpacked."""
    if name == "-":
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    else:
        data = Path(name).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("utf-8")


def main(argv: list[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The ``symbolicate`` command: 0 when answered, 1 when the server could not answer, 2 for bad input."""
    parser = argparse.ArgumentParser(prog="symbolicate",
                                     description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    parser.add_argument("input", nargs="?", default="-",
                        help="a v4/v5 request, a crash report or a Firefox profile (JSON, may be gzipped), "
                             "or lines of 'debug_file debug_id offset'; - for stdin")
    parser.add_argument("--server", default=DEFAULT_SERVER, help=f"SymServer's URL (default {DEFAULT_SERVER})")
    parser.add_argument("--json", action="store_true", help="print the v5 answer as JSON")
    parser.add_argument("--top", type=_positive, default=DEFAULT_TOP, metavar="N",
                        help=f"for a profile: how many of each thread's heaviest stacks to symbolicate "
                             f"and print (default {DEFAULT_TOP})")
    parser.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                        help="progress on stderr for slow answers (auto: when stderr is a terminal)")
    args = parser.parse_args(argv)
    try:
        text = read_input(args.input)
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as error:  # EOFError, zlib.error: bad gzip
        _say(err, f"cannot read {args.input}: {getattr(error, 'strerror', None) or error}")
        return 2
    try:
        body, printer = to_request(text, args.top)
    except InputError as error:
        _say(err, f"{args.input}: {error}")
        return 2
    progress = args.progress == "always" or (args.progress == "auto" and err.isatty())
    url = args.server.rstrip("/") + "/symbolicate/v5"
    try:
        response = post_with_progress(url, body, progress, err)
    except requests.RequestException as error:
        _say(err, f"cannot reach {args.server}: {error}")
        return 1
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    if response.status_code != 200:
        _say(err, f"the server answered {response.status_code}: {answer.get('error', response.text[:200])}")
        return 1
    if args.json:
        json.dump(answer, out, indent=2)
        out.write("\n")
    else:
        printer(answer, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
