"""NAT detection (RFC 7296 §2.23): a NAT in front of the initiator, the float to 4500."""

from __future__ import annotations

from engine_harness import INITIATOR_HOST, RESPONDER_HOST, drain, of_type, pair

from ikecore.endpoint import Datagram
from ikecore.events import EspPacketReceived
from ikecore.states import IkeState

PUBLIC = "203.0.113.5"


class Nat:
    """Rewrites the initiator's source address and port on the way out and back in."""

    def __init__(self) -> None:
        self.ports: dict[int, int] = {}  # inside port -> public port

    def __call__(self, datagram: Datagram) -> list[Datagram]:
        src, dst = datagram.src, datagram.dst
        if src[0] == INITIATOR_HOST:
            public = self.ports.setdefault(src[1], 40000 + len(self.ports))
            return [Datagram(datagram.data, (PUBLIC, public), dst)]
        if dst[0] == PUBLIC:
            inside = next(port for port, public in self.ports.items() if public == dst[1])
            return [Datagram(datagram.data, src, (INITIATOR_HOST, inside))]
        return [datagram]


def test_nat_in_front_of_the_initiator() -> None:
    initiator, responder, peer, net = pair(mobike=False)
    net.hosts[PUBLIC] = initiator  # the NAT's public address leads back to the initiator
    nat = Nat()
    session = initiator.initiate(peer, 0.0)
    # IKE_SA_INIT {.., N(NAT_D_SRC)=hash(192.0.2.1:500)} --NAT--> responder sees 203.0.113.5
    # <-- IKE_SA_INIT {.., N(NAT_D_DST)=hash(203.0.113.5:40000)}: both sides detect the NAT
    # IKE_AUTH on port 4500 from the initiator (§2.23), through the NAT again
    flow = net.run(0.0, nat)
    assert session.state == IkeState.ESTABLISHED
    (peer_session,) = responder.sessions
    assert session.sa.local_behind_nat and not session.sa.remote_behind_nat
    assert peer_session.sa.remote_behind_nat and not peer_session.sa.local_behind_nat
    auth = [d for d in flow if d.exchange == 35]
    assert all(4500 in (d.datagram.src[1], d.datagram.dst[1]) for d in auth)
    # The responder answers the NAT's public mapping of port 4500.
    assert peer_session.sa.remote_address == (PUBLIC, 40001)
    assert session.sa.remote_address == (RESPONDER_HOST, 4500)
    drain(initiator), drain(responder)
    # ESP-in-UDP both ways through the NAT.
    (child,) = session.child_sas
    (peer_child,) = peer_session.child_sas
    initiator.send_esp(child.spi_in, b"\x45" + bytes(19), 4, 1.0)
    net.run(1.0, nat)
    assert of_type(drain(responder), EspPacketReceived)
    responder.send_esp(peer_child.spi_in, b"\x45" + bytes(19), 4, 1.0)
    net.run(1.0, nat)
    assert of_type(drain(initiator), EspPacketReceived)


def test_no_nat_no_float_without_mobike() -> None:
    initiator, _responder, peer, net = pair(mobike=False)
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    assert not session.sa.local_behind_nat and not session.sa.remote_behind_nat
    assert session.sa.remote_address == (RESPONDER_HOST, 500)
