"""Which DiskCache holds a module: rendezvous hashing over SymServer's list, with failover.

Every SymServer computes a module's order of DiskCaches from the configured list alone
(highest random weight first, the weight a stable hash of module and server), so a fleet
needs no coordinator and every SymServer sends a module to the same DiskCache: the module is
downloaded and processed once per fleet.  Adding or removing one of N DiskCaches changes the
first choice only of the modules that the new server wins or the old one held, about 1/N.

A DiskCache that refuses connections or answers 503 is marked down: requests skip it for the
next one in each module's order (it stays a last resort), and a background probe of its
``/__lbheartbeat__`` lifts the mark when it answers again.  Without a probe (no event loop),
the mark simply expires after ``down_seconds`` and the next request tries it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Callable, Iterable

from symserver.diskcache_client import DiskCacheClient

log = logging.getLogger("symserver.sharding")

DOWN_SECONDS = 2.0  # the least time a server that failed is skipped
PROBE_SECONDS = 1.0  # how often a down server is probed after that


def weight(module_key: str, address: str) -> int:
    """The stable random weight of a server for a module (the same in every process)."""
    digest = hashlib.blake2b(f"{address}\n{module_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous_order(module_key: str, addresses: Iterable[str]) -> list[str]:
    """The servers from most to least preferred for a module; ties (never seen) by address."""
    return sorted(addresses, key=lambda address: (-weight(module_key, address), address))


class DiskCacheFleet:
    """SymServer's DiskCaches: one client each, the module order, and which ones are down."""

    def __init__(self, addresses: list[str], down_seconds: float = DOWN_SECONDS,
                 probe_seconds: float = PROBE_SECONDS, probe: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not addresses:
            raise ValueError("a SymServer needs at least one DiskCache")
        if len(set(addresses)) != len(addresses):
            raise ValueError(f"DiskCache addresses listed twice: {addresses}")
        self.addresses = list(addresses)
        self.clients = {address: DiskCacheClient(address) for address in self.addresses}
        self._down_seconds = down_seconds
        self._probe_seconds = probe_seconds
        self._probe = probe
        self._clock = clock
        self._down_until: dict[str, float] = {}  # with a probe: until the probe lifts it
        self._probes: dict[str, asyncio.Task] = {}

    def is_up(self, address: str) -> bool:
        until = self._down_until.get(address)
        if until is None:
            return True
        if address not in self._probes and self._clock() >= until:
            del self._down_until[address]  # no probe: the short time is over, try it again
            return True
        return False

    def order(self, module_key: str) -> list[str]:
        """Up servers in the module's order, then the down ones (a last resort, same order)."""
        ranked = rendezvous_order(module_key, self.addresses)
        up = [address for address in ranked if self.is_up(address)]
        return up + [address for address in ranked if address not in up]

    def states(self) -> dict[str, str]:
        return {address: "ok" if self.is_up(address) else "down" for address in self.addresses}

    def up_count(self) -> int:
        return sum(1 for address in self.addresses if self.is_up(address))

    def mark_down(self, address: str, reason: str) -> None:
        if self.is_up(address):
            log.warning("DiskCache %s marked down: %s", address, reason)
        self._down_until[address] = self._clock() + self._down_seconds
        if self._probe and address not in self._probes:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop to probe from: the mark expires by itself
            self._probes[address] = loop.create_task(self._probe_until_up(address))

    def mark_up(self, address: str) -> None:
        if self._down_until.pop(address, None) is not None:
            log.info("DiskCache %s is answering again", address)
        probe = self._probes.pop(address, None)
        if probe is not None and probe is not asyncio.current_task():
            probe.cancel()

    async def _probe_until_up(self, address: str) -> None:
        try:
            await asyncio.sleep(self._down_seconds)
            while not await self.clients[address].ping():
                await asyncio.sleep(self._probe_seconds)
            self.mark_up(address)
        finally:
            if self._probes.get(address) is asyncio.current_task():
                del self._probes[address]

    async def ping_all(self) -> dict[str, bool]:
        """Ask every DiskCache now (for the heartbeat).  One that answers is marked up (a
        probe like any other); one that does not is only reported: a heartbeat slow under
        load is no refusal, and marking it down would send its modules to be downloaded
        again elsewhere."""
        results = await asyncio.gather(*(self.clients[address].ping() for address in self.addresses))
        answers = dict(zip(self.addresses, results))
        for address, answered in answers.items():
            if answered:
                self.mark_up(address)
        return answers

    def close(self) -> None:
        for probe in self._probes.values():
            probe.cancel()
        self._probes.clear()
