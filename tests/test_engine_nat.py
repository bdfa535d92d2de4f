"""NAT detection (RFC 7296 §2.23): a NAT in front of the initiator, the float to 4500; with
MOBIKE, a NAT mapping that changes is found by a liveness check and followed (RFC 4555 §3.8)."""

from __future__ import annotations

from engine_harness import INITIATOR_HOST, RESPONDER_HOST, Network, drain, of_type, pair

from ikecore.constants import ExchangeType
from ikecore.endpoint import Datagram, IkeEndpoint
from ikecore.events import EspPacketReceived, IkeSaMoved, IkeSaRekeyed
from ikecore.exchanges.mobike import nat_mapping_probe
from ikecore.session import IkeSession
from ikecore.states import IkeState

PUBLIC = "203.0.113.5"


class Nat:
    """Rewrites the initiator's source address and port on the way out and back in."""

    def __init__(self) -> None:
        self.ports: dict[int, int] = {}  # inside port -> public port
        self.first_public_port = 40000

    def reboot(self) -> None:
        """Every mapping is forgotten; new ones get other public ports."""
        self.ports.clear()
        self.first_public_port += 10000

    def __call__(self, datagram: Datagram) -> list[Datagram]:
        src, dst = datagram.src, datagram.dst
        if src[0] == INITIATOR_HOST:
            public = self.ports.setdefault(src[1], self.first_public_port + len(self.ports))
            return [Datagram(datagram.data, (PUBLIC, public), dst)]
        if dst[0] == PUBLIC:
            inside = next((port for port, public in self.ports.items() if public == dst[1]), None)
            if inside is None:
                return []  # no mapping (any more): dropped
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


def test_a_changed_nat_mapping_is_found_by_a_liveness_check_and_followed() -> None:
    initiator, responder, peer, net = pair()  # MOBIKE negotiated
    net.hosts[PUBLIC] = initiator
    nat = Nat()
    session = initiator.initiate(peer, 0.0)
    net.run(0.0, nat)
    (peer_session,) = responder.sessions
    (child,) = session.child_sas
    (peer_child,) = peer_session.child_sas
    assert session.sa.local_behind_nat
    first_mapping = peer_session.sa.remote_address
    drain(initiator), drain(responder)
    informational = (ExchangeType.INFORMATIONAL, False)

    # Behind a NAT the liveness check carries NAT detection (RFC 4555 §3.8). Nothing to compare
    # it with yet, so one UPDATE_SA_ADDRESSES follows; it moves nothing (same mapping):
    # HDR(#2), SK {N(NAT_D_SRC), N(NAT_D_DST)}  -->  <--  HDR(#2), SK {N(NAT_D_SRC), N(NAT_D_DST)}
    # HDR(#3), SK {N(UPDATE_SA_ADDRESSES), N(NAT_D_*), N(COOKIE2)}  -->  <--
    session.check_liveness(1.0)
    flow = net.run(1.0, nat)
    assert [(d.exchange, d.response) for d in flow].count(informational) == 2
    assert peer_session.sa.remote_address == first_mapping
    assert of_type(drain(responder), IkeSaMoved) == []
    # Now there is: the next check finds the same mapping and sends no update.
    session.check_liveness(2.0)
    assert len(net.run(2.0, nat)) == 2

    # The NAT reboots: the gateway's ESP goes to a mapping that no longer exists.
    nat.reboot()
    responder.send_esp(peer_child.spi_in, b"\x45" + bytes(19), 4, 3.0)
    net.run(3.0, nat)
    assert of_type(drain(initiator), EspPacketReceived) == []
    # The liveness check comes through the new mapping; the gateway answers it there but does
    # not move (§3.8); its NAT_D_DST tells the client that it is seen elsewhere, so:
    # HDR(#5), SK {N(UPDATE_SA_ADDRESSES), N(NAT_D_*), N(COOKIE2)}  -->  <--
    # and the gateway's return routability check of the new mapping (§3.7)  <--  -->
    session.check_liveness(4.0)
    flow = net.run(4.0, nat)
    assert [(d.exchange, d.response) for d in flow].count(informational) == 3
    (moved,) = of_type(drain(responder), IkeSaMoved)
    assert isinstance(moved, IkeSaMoved) and moved.remote == peer_session.sa.remote_address
    assert peer_session.sa.remote_address == (PUBLIC, nat.first_public_port)
    # ESP from the gateway reaches the client again, and the other way round.
    responder.send_esp(peer_child.spi_in, b"\x45" + bytes(19), 4, 5.0)
    initiator.send_esp(child.spi_in, b"\x45" + bytes(19), 4, 5.0)
    net.run(5.0, nat)
    assert len(of_type(drain(initiator), EspPacketReceived)) == 1
    assert len(of_type(drain(responder), EspPacketReceived)) == 1
    assert session.state == IkeState.ESTABLISHED == peer_session.state


def test_no_nat_detection_in_liveness_checks_without_a_nat() -> None:
    initiator, _responder, peer, net = pair()  # MOBIKE, no NAT on the path
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    assert not session.sa.local_behind_nat
    session.check_liveness(1.0)
    assert len(net.run(1.0)) == 2  # the empty INFORMATIONAL and its answer, no update


def _behind_nat(**options: object) -> tuple[IkeEndpoint, IkeEndpoint, Network, Nat]:
    """A client behind a NAT with an IKE SA and its Child SA up, events drained."""
    initiator, responder, peer, net = pair(**options)
    net.hosts[PUBLIC] = initiator
    nat = Nat()
    initiator.initiate(peer, 0.0)
    net.run(0.0, nat)
    drain(initiator), drain(responder)
    return initiator, responder, net, nat


def _rekeyed_by_the_gateway(
    initiator: IkeEndpoint, responder: IkeEndpoint, net: Network, nat: Nat
) -> tuple[IkeSession, IkeSession]:
    """(the client's new SA, the gateway's) after the gateway rekeyed the IKE SA."""
    (peer_session,) = responder.sessions
    # HDR(old), SK {SA, Ni, KEi}  <--  -->  HDR(old), SK {SA, Nr, KEr}   (the gateway rekeys)
    # HDR(old), SK {D(IKE)}       <--  -->  HDR(old), SK {}
    peer_session.rekey(1.0)
    net.run(1.0, nat)
    (rekeyed,) = of_type(drain(initiator), IkeSaRekeyed)
    (peer_rekeyed,) = of_type(drain(responder), IkeSaRekeyed)
    assert isinstance(rekeyed, IkeSaRekeyed) and isinstance(peer_rekeyed, IkeSaRekeyed)
    return rekeyed.new, peer_rekeyed.new


def test_a_rekey_by_the_gateway_keeps_the_nat_state_and_the_clients_mapping_checks() -> None:
    """RFC 4555 across an IKE SA rekey by the responder: the new SA starts on the old SA's
    path with its NAT-T state; the client, still MOBIKE's initiator (§1.3), goes on checking
    its NAT mapping (§3.8), the gateway never does; the value to compare with starts afresh
    (a hash over the new SPIs), so the first check sends one update more, "harmless"."""
    initiator, responder, net, nat = _behind_nat()  # MOBIKE negotiated
    (session,) = initiator.sessions
    assert session.sa.local_behind_nat and session.sa.mobike_initiator
    new, peer_new = _rekeyed_by_the_gateway(initiator, responder, net, nat)
    assert peer_new.sa.initiator and not new.sa.initiator  # the I flag: the rekey's initiator
    assert new.sa.mobike_initiator and not peer_new.sa.mobike_initiator
    assert new.sa.local_behind_nat and not new.sa.remote_behind_nat
    assert peer_new.sa.remote_behind_nat and peer_new.sa.remote_address == (PUBLIC, 40001)
    informational = (ExchangeType.INFORMATIONAL, False)
    # HDR(new, #0), SK {N(NAT_D_SRC), N(NAT_D_DST)}  -->  <--  (nothing to compare with yet)
    # HDR(new, #1), SK {N(UPDATE_SA_ADDRESSES), N(NAT_D_*), N(COOKIE2)}  -->  <--
    new.check_liveness(2.0)
    flow = net.run(2.0, nat)
    assert [(d.exchange, d.response) for d in flow].count(informational) == 2
    assert of_type(drain(responder), IkeSaMoved) == []  # the same mapping
    new.check_liveness(3.0)
    assert len(net.run(3.0, nat)) == 2
    # The gateway is not MOBIKE's initiator: even if it thought itself behind a NAT, its
    # liveness checks carry no NAT detection and never lead to an update (§3.8).
    peer_new.sa.local_behind_nat = True
    assert nat_mapping_probe(peer_new) == []
    peer_new.check_liveness(4.0)
    assert len(net.run(4.0, nat)) == 2


def test_without_mobike_the_gateway_follows_a_nat_rebinding_after_it_rekeyed() -> None:
    """RFC 7296 §2.23: the host not behind a NAT follows the peer's NAT mapping from
    authenticated requests. That is the gateway, also on an IKE SA it rekeyed itself, where it
    holds the I flag (§2.18)."""
    initiator, responder, net, nat = _behind_nat(mobike=False)
    (session,) = initiator.sessions
    new, peer_new = _rekeyed_by_the_gateway(initiator, responder, net, nat)
    assert peer_new.sa.initiator and peer_new.sa.remote_behind_nat
    assert new.sa.local_behind_nat and session.state == IkeState.DELETED
    # The NAT reboots; the client's next request comes from a new public port:
    # (203.0.113.5:50000 -> 198.51.100.1:4500)  HDR(new, #0), SK {}  -->  <--
    nat.reboot()
    new.check_liveness(2.0)
    net.run(2.0, nat)
    assert peer_new.sa.remote_address == (PUBLIC, 50000)
    # ESP from the gateway reaches the client through the new mapping.
    (peer_child,) = peer_new.child_sas
    responder.send_esp(peer_child.spi_in, b"\x45" + bytes(19), 4, 3.0)
    net.run(3.0, nat)
    assert of_type(drain(initiator), EspPacketReceived)
