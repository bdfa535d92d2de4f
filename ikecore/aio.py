"""asyncio UDP driver for the sans-IO `IkeEndpoint` (one of the two modules allowed I/O).

`UdpDriver` binds the IKE port (500) and the NAT-T port (4500) on every local address it is
given, feeds what arrives into the endpoint with ``loop.time()`` as ``now``, sends what the
endpoint queues from the socket that matches the datagram's source address, runs the
endpoint's timer, and hands events out through an `asyncio.Queue`. NAT keepalives (RFC 3948
§2.3) go out every ``keepalive_interval`` seconds for SAs whose local side is behind a NAT.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ikecore.config import Address
from ikecore.endpoint import Datagram, IkeEndpoint
from ikecore.events import Event

__all__ = ["UdpDriver"]

_KEEPALIVE = b"\xff"


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, driver: UdpDriver, local: Address) -> None:
        self._driver = driver
        self._local = local

    def datagram_received(self, data: bytes, addr: tuple[str | Any, ...]) -> None:
        self._driver.received(data, (str(addr[0]), int(addr[1])), self._local)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors (port unreachable) are not IKE's business: retransmission copes."""


class UdpDriver:
    """Runs an `IkeEndpoint` over real UDP sockets.

    ``addresses`` are local IP addresses; each gets ``ike_port`` and the endpoint's NAT-T port
    (``config.nat_port``). Port 0 asks the OS for a free port (tests): `bound` tells which.
    """

    def __init__(
        self,
        endpoint: IkeEndpoint,
        addresses: Sequence[str],
        *,
        ike_port: int = 500,
        keepalive_interval: float = 20.0,
    ) -> None:
        self.endpoint = endpoint
        self._addresses = list(addresses)
        self._ike_port = ike_port
        self._keepalive_interval = keepalive_interval
        self._transports: dict[Address, asyncio.DatagramTransport] = {}
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._timer: asyncio.TimerHandle | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent = 0
        self.received_count = 0

    @property
    def bound(self) -> list[Address]:
        """The local (host, port) pairs actually bound."""
        return list(self._transports)

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        nat_port = self.endpoint.config.nat_port
        for host in self._addresses:
            for port in dict.fromkeys((self._ike_port, nat_port)):
                transport, _ = await self._loop.create_datagram_endpoint(
                    lambda h=host, p=port: _Protocol(self, (h, p)),  # type: ignore[misc]
                    local_addr=(host, port),
                )
                bound = transport.get_extra_info("sockname")
                self._transports[(host, int(bound[1]))] = transport
        self._keepalive = self._loop.call_later(self._keepalive_interval, self._send_keepalives)

    def close(self) -> None:
        for handle in (self._timer, self._keepalive):
            if handle is not None:
                handle.cancel()
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()

    async def next_event(self, timeout: float | None = None) -> Event:
        """The next endpoint event; TimeoutError after ``timeout`` seconds."""
        return await asyncio.wait_for(self._events.get(), timeout)

    def pump(self) -> None:
        """Send what the endpoint queued, publish its events, re-arm its timer. Call after
        using the endpoint or a session directly (initiate, create_child_sa, delete, ...)."""
        now = self.now()
        for datagram in self.endpoint.datagrams_to_send(now):
            self._send(datagram)
        while (event := self.endpoint.next_event()) is not None:
            self._events.put_nowait(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.endpoint.get_timer()
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def received(self, data: bytes, src: Address, dst: Address) -> None:
        self.received_count += 1
        self.endpoint.receive_datagram(data, src, dst, self.now())
        self.pump()

    def _on_timer(self) -> None:
        self._timer = None
        self.endpoint.handle_timer(self.now())
        self.pump()

    def _transport_for(self, src: Address) -> asyncio.DatagramTransport | None:
        transport = self._transports.get(src)
        if transport is None:
            # An SA made before we knew our exact address ("0.0.0.0"): any socket on that port.
            transport = next((t for (_, p), t in self._transports.items() if p == src[1]), None)
        return transport

    def _send(self, datagram: Datagram) -> None:
        transport = self._transport_for(datagram.src)
        if transport is None:
            return
        transport.sendto(datagram.data, datagram.dst)
        self.sent += 1

    def _send_keepalives(self) -> None:
        for session in self.endpoint.sessions:
            sa = session.sa
            if sa.local_behind_nat:
                transport = self._transport_for(sa.local_address)
                if transport is not None:
                    transport.sendto(_KEEPALIVE, sa.remote_address)
        assert self._loop is not None
        self._keepalive = self._loop.call_later(self._keepalive_interval, self._send_keepalives)
