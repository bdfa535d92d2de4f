"""Helpers for the RFC 7791 clone and MOBIKE scenario tests (two endpoints in memory)."""

from __future__ import annotations

import dataclasses

from engine_harness import INITIATOR_HOST, Delivery, Network, drain, of_type, pair

from ikecore.endpoint import IkeEndpoint
from ikecore.events import Event, IkeSaCloned
from ikecore.session import IkeSession

SECOND_HOST = "192.0.2.2"  # the initiator's second interface


def flow_line(delivery: Delivery) -> str:
    if delivery.datagram.data[:4] != bytes(4) and delivery.datagram.dst[1] == 4500:
        return "ESP"  # RFC 3948 §2.2: a non-zero SPI where IKE has its marker
    return str(delivery)


@dataclasses.dataclass
class Pair:
    """An established IKE SA between a client (initiator) and a gateway (responder)."""

    client: IkeEndpoint
    gateway: IkeEndpoint
    client_sa: IkeSession
    gateway_sa: IkeSession
    net: Network

    def run(self, now: float) -> list[str]:
        """Deliver until quiet; the flow as 'EXCHANGE --> #id' strings ('ESP' for ESP)."""
        return [flow_line(d) for d in self.net.run(now)]

    def events(self) -> tuple[list[Event], list[Event]]:
        return drain(self.client), drain(self.gateway)


def established(
    *,
    client_max_clones: int | None = None,
    gateway_max_clones: int | None = None,
    **options: object,
) -> Pair:
    """IKE_SA_INIT + IKE_AUTH done (with CLONE_IKE_SA_SUPPORTED and MOBIKE_SUPPORTED unless
    ``clone=False`` / ``mobike=False``), events drained. The client also answers on
    SECOND_HOST."""
    client, gateway, peer, net = pair(**options)  # type: ignore[arg-type]
    peer = dataclasses.replace(peer, max_clones=client_max_clones)
    if gateway_max_clones is not None:
        (gateway_peer,) = gateway.config.peers
        gateway.config = dataclasses.replace(
            gateway.config,
            peers=(dataclasses.replace(gateway_peer, max_clones=gateway_max_clones),),
        )
    session = client.initiate(peer, 0.0)
    net.run(0.0)
    net.hosts[SECOND_HOST] = client
    assert net.hosts[INITIATOR_HOST] is client
    (gateway_session,) = gateway.sessions
    drain(client), drain(gateway)
    return Pair(client, gateway, session, gateway_session, net)


def cloned(events: list[Event]) -> IkeSaCloned:
    (event,) = of_type(events, IkeSaCloned)
    assert isinstance(event, IkeSaCloned)
    return event


def clone_on_both_sides(p: Pair, source: IkeSession, now: float) -> tuple[IkeSession, IkeSession]:
    """Run ``source.request_clone`` to the end: (the client's clone, the gateway's clone)."""
    source.request_clone(now)
    p.run(now)
    client_events, gateway_events = p.events()
    mine, theirs = cloned(client_events).clone, cloned(gateway_events).clone
    assert mine.sa.spis == theirs.sa.spis
    return mine, theirs
