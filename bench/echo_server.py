#!/usr/bin/env python3
"""The floor for the HTTP benchmarks: a bare Tornado app that parses a JSON body and sends it back.

    python bench/echo_server.py --port 9000

One process, one event loop, no validation, no lookups: any POST (any path) answers
``json.dumps(json.loads(body))`` with ``Content-Type: application/json``. ``bench/run.py``
puts it under the same wrk load as SymServer, so the ratio of the two says how much of
the time is the service's own work rather than HTTP and JSON in Python.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

import tornado.web


class EchoHandler(tornado.web.RequestHandler):
    def post(self, *_: str) -> None:
        data = json.loads(self.request.body)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(data))


def make_app() -> tornado.web.Application:
    return tornado.web.Application([(r"/.*", EchoHandler)], log_function=lambda handler: None)


async def serve(port: int, address: str) -> None:
    server = make_app().listen(port, address=address)
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
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.address))


if __name__ == "__main__":
    main()
