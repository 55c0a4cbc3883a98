"""A test host of our own: a network namespace joined to this one by a veth pair.

Tests that need a peer on another address make one here (root is needed), instead of using
the machine's own interface addresses or anything outside it.  Each side of the pair gets
one address per subnet asked for; :meth:`PeerHost.run` and :meth:`PeerHost.popen` run
commands inside the namespace.  Everything is removed on exit, whatever happens.
"""

from __future__ import annotations

import random
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator


class NoNamespace(Exception):
    """This machine cannot make network namespaces (not root, no iproute2, no netns support)."""


@dataclass
class PeerHost:
    name: str
    #: per subnet: (the address on this side of the pair, the address inside the namespace)
    addresses: list[tuple[str, str]] = field(default_factory=list)


    def command(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout)

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(*args), **kwargs)


@contextmanager
def peer_host(subnets: tuple[str, ...] = ("100.64",)) -> Iterator[PeerHost]:
    """A namespace with one /30 per subnet prefix (two octets, e.g. "100.64" or "10.213").

    Raises :class:`NoNamespace` when the namespace cannot be made.
    """
    tag = uuid.uuid4().hex[:6]
    host = PeerHost(f"symtest{tag}")
    host_side, ns_side = f"vsh{tag}", f"vsn{tag}"
    setup = [["ip", "netns", "add", host.name],
             ["ip", "link", "add", host_side, "type", "veth", "peer", "name", ns_side],
             ["ip", "link", "set", ns_side, "netns", host.name]]
    for prefix in subnets:
        third = random.randint(1, 250)
        ours, theirs = f"{prefix}.{third}.1", f"{prefix}.{third}.2"
        host.addresses.append((ours, theirs))
        setup += [["ip", "addr", "add", f"{ours}/30", "dev", host_side],
                  host.command("ip", "addr", "add", f"{theirs}/30", "dev", ns_side)]
    setup += [["ip", "link", "set", host_side, "up"],
              host.command("ip", "link", "set", ns_side, "up"),
              host.command("ip", "link", "set", "lo", "up")]
    try:
        for command in setup:
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=30)
            except OSError as error:
                raise NoNamespace(f"{' '.join(command)}: {error}") from error
            if done.returncode != 0:
                raise NoNamespace(f"{' '.join(command)}: {done.stderr.strip()}")
        yield host
    finally:
        subprocess.run(["ip", "netns", "del", host.name], capture_output=True)
        subprocess.run(["ip", "link", "del", host_side], capture_output=True)  # gone with the namespace
