#!/usr/bin/env python3
"""The floors for the HTTP benchmarks: bare Tornado apps, one process, one event loop.

    python bench/echo_server.py --port 9000                      # stdlib JSON echo
    python bench/echo_server.py --port 9000 --answers DIR        # the HTTP floor

Echo: any POST (any path) answers ``json.dumps(json.loads(body))`` with ``Content-Type:
application/json``: no validation, no lookups, only HTTP and JSON in Python.

HTTP floor (``--answers DIR``): a POST to ``/<name>`` reads the body and answers the bytes of
``DIR/<name>.json`` (read once at start), so with SymServer's own answer in that file it
sends the same bytes SymServer would, without decoding or encoding anything: all that is
left is Tornado's HTTP work.  ``bench/warm.py`` puts both under the same ``wrk`` as
SymServer, so the ratios say how much of the time is the service's own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

import tornado.web


class EchoHandler(tornado.web.RequestHandler):
    def post(self, *_: str) -> None:
        data = json.loads(self.request.body)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(data))


class ConstantHandler(tornado.web.RequestHandler):
    def initialize(self, answers: dict[str, bytes]) -> None:
        self.answers = answers

    def post(self, name: str) -> None:
        answer = self.answers.get(name)
        if answer is None or not self.request.body:
            self.set_status(404)
            return
        self.set_header("Content-Type", "application/json")
        self.write(answer)


def make_app(answers: dict[str, bytes] | None = None) -> tornado.web.Application:
    if answers is not None:
        return tornado.web.Application([(r"/([^/]+)", ConstantHandler, {"answers": answers})],
                                       log_function=lambda handler: None)
    return tornado.web.Application([(r"/.*", EchoHandler)], log_function=lambda handler: None)


async def serve(port: int, address: str, answers: dict[str, bytes] | None = None) -> None:
    server = make_app(answers).listen(port, address=address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--answers", type=Path, help="the HTTP floor: answer POST /<name> with DIR/<name>.json")
    args = parser.parse_args()
    answers = {path.stem: path.read_bytes() for path in args.answers.glob("*.json")} if args.answers else None
    asyncio.run(serve(args.port, args.address, answers))


if __name__ == "__main__":
    main()
