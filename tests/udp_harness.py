"""A client and a gateway `UdpDriver` on loopback, for the tests over real UDP (test_aio.py,
test_clone_udp.py): free unprivileged ports, the two drivers started and closed, and a wait
for an event of a given kind."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Sequence

from ikecore.aio import UdpDriver
from ikecore.config import EndpointConfig, PeerConfig
from ikecore.endpoint import IkeEndpoint
from ikecore.events import Event

CLIENT, GATEWAY, SECOND = "127.0.0.1", "127.0.0.2", "127.0.0.3"


def ikecore_command(*args: str) -> list[str]:
    """The installed `ikecore` command. Run it with cwd away from the source tree: `python -m`
    puts the working directory first on sys.path, and the source ikecore/ has no compiled _fast
    (DESIGN.md, import rule)."""
    return [sys.executable, "-I", "-m", "ikecore", *args]


def free_port_pair() -> tuple[int, int]:
    """Two UDP ports free on the loopback addresses used here (unprivileged: no root)."""
    while True:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
        ):
            a.bind((CLIENT, 0))
            b.bind((CLIENT, 0))
            ports = (a.getsockname()[1], b.getsockname()[1])
        try:
            for host in (CLIENT, GATEWAY, SECOND):
                for port in ports:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                        probe.bind((host, port))
        except OSError:
            continue
        return ports


async def expect(driver: UdpDriver, kind: type) -> Event:
    """The next event of ``kind`` (others are skipped); TimeoutError after 5 s without one."""
    while True:
        event = await driver.next_event(timeout=5.0)
        if isinstance(event, kind):
            return event


@contextlib.asynccontextmanager
async def udp_pair(
    client_peer: PeerConfig,
    gateway_peer: PeerConfig,
    ports: tuple[int, int],
    client_hosts: Sequence[str] = (CLIENT,),
    *,
    keepalive_interval: float = 20.0,
) -> AsyncIterator[tuple[UdpDriver, UdpDriver]]:
    """(client, gateway) drivers, started: the client on ``client_hosts``, the gateway on
    GATEWAY, both with IKE on ``ports[0]`` and NAT-T on ``ports[1]``; closed on exit."""
    ike_port, nat_port = ports
    client = UdpDriver(
        IkeEndpoint(EndpointConfig(peers=(client_peer,), nat_port=nat_port)),
        list(client_hosts),
        ike_port=ike_port,
        keepalive_interval=keepalive_interval,
    )
    gateway = UdpDriver(
        IkeEndpoint(
            EndpointConfig(
                peers=(gateway_peer,),
                ike_proposals=gateway_peer.ike_proposals,
                nat_port=nat_port,
            )
        ),
        [GATEWAY],
        ike_port=ike_port,
    )
    try:
        await client.start()
        await gateway.start()
        yield client, gateway
    finally:
        client.close()
        gateway.close()
