"""ESP through the endpoint: each Child SA's native ESP objects, inbound routed by SPI."""

from __future__ import annotations

import pytest
from engine_harness import Network, drain, of_type, pair

from ikecore import LocalProtocolError
from ikecore.endpoint import IkeEndpoint
from ikecore.events import ChildSaEstablished, EspPacketReceived, IkeSaRekeyed
from ikecore.session import IkeSession

IPV4 = 4
PACKET = bytes.fromhex("4500001c00010000400166db0a0100020a02000108004c31abcd0001")


def established(
    esp: str = "aes256gcm16",
) -> tuple[IkeEndpoint, IkeEndpoint, IkeSession, Network]:
    initiator, responder, peer, net = pair(esp=esp)
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    drain(initiator), drain(responder)
    return initiator, responder, session, net


@pytest.mark.parametrize("esp", ["aes256gcm16", "aes128gcm8-esn", "chacha20poly1305"])
def test_esp_both_ways(esp: str) -> None:
    initiator, responder, session, _net = established(esp)
    (child,) = session.child_sas
    (peer_session,) = responder.sessions
    (peer_child,) = peer_session.child_sas
    # ESP(SPI_r, seq 1) -->   on the NAT-T port, no non-ESP marker
    initiator.send_esp(child.spi_in, PACKET, IPV4, 1.0)
    (datagram,) = initiator.datagrams_to_send(1.0)
    assert datagram.data[:4] == child.spi_out and datagram.dst == ("198.51.100.1", 4500)
    responder.receive_datagram(datagram.data, datagram.src, datagram.dst, 1.0)
    (received,) = drain(responder)
    assert isinstance(received, EspPacketReceived)
    assert received.data == PACKET and received.next_header == IPV4
    assert received.child is peer_child
    # <-- ESP(SPI_i, seq 1)
    responder.send_esp(peer_child.spi_in, PACKET[::-1], IPV4, 1.0)
    (back,) = responder.datagrams_to_send(1.0)
    initiator.receive_datagram(back.data, back.src, back.dst, 1.0)
    (echo,) = drain(initiator)
    assert isinstance(echo, EspPacketReceived) and echo.data == PACKET[::-1]
    assert child.seq_out == 1 and peer_child.seq_out == 1


def test_replayed_corrupted_and_unknown_esp_dropped() -> None:
    initiator, responder, session, _net = established()
    (child,) = session.child_sas
    initiator.send_esp(child.spi_in, PACKET, IPV4, 1.0)
    (datagram,) = initiator.datagrams_to_send(1.0)
    responder.receive_datagram(datagram.data, datagram.src, datagram.dst, 1.0)
    assert len(drain(responder)) == 1
    # The same packet again: replay. A flipped bit: integrity. An unknown SPI: no route.
    flipped = bytearray(datagram.data)
    flipped[20] ^= 1
    for data in (datagram.data, bytes(flipped), b"\x00\x00\x12\x34" + datagram.data[4:]):
        responder.receive_datagram(data, datagram.src, datagram.dst, 1.0)
    assert drain(responder) == [] and responder.esp_dropped == 3
    # The failed packets moved nothing: the next real packet still arrives.
    initiator.send_esp(child.spi_in, PACKET, IPV4, 1.0)
    (next_one,) = initiator.datagrams_to_send(1.0)
    responder.receive_datagram(next_one.data, next_one.src, next_one.dst, 1.0)
    assert len(of_type(drain(responder), EspPacketReceived)) == 1


def test_esp_continues_across_ike_rekey_and_follows_child_rekey() -> None:
    initiator, responder, session, net = established()
    (child,) = session.child_sas
    for _ in range(3):
        initiator.send_esp(child.spi_in, PACKET, IPV4, 1.0)
    net.deliver(initiator.datagrams_to_send(1.0), 1.0)
    session.rekey(2.0)
    net.run(2.0)
    (rekeyed,) = of_type(drain(initiator), IkeSaRekeyed)
    new = rekeyed.new
    # Same Child SA, same ESP state: the sequence number continues at 4.
    initiator.send_esp(child.spi_in, PACKET, IPV4, 3.0)
    (datagram,) = initiator.datagrams_to_send(3.0)
    assert int.from_bytes(datagram.data[4:8], "big") == 4
    drain(responder)
    responder.receive_datagram(datagram.data, datagram.src, datagram.dst, 3.0)
    (received,) = drain(responder)
    assert isinstance(received, EspPacketReceived) and received.session.sa.spis == new.sa.spis
    # A Child SA rekey gives new SPIs; the old SPI is gone.
    new.rekey_child_sa(child.spi_in, 4.0)
    net.run(4.0)
    (replacement,) = new.child_sas
    with pytest.raises(LocalProtocolError, match="no Child SA"):
        initiator.send_esp(child.spi_in, PACKET, IPV4, 5.0)
    initiator.send_esp(replacement.spi_in, PACKET, IPV4, 5.0)
    (fresh,) = initiator.datagrams_to_send(5.0)
    assert int.from_bytes(fresh.data[4:8], "big") == 1
    drain(responder)
    responder.receive_datagram(fresh.data, fresh.src, fresh.dst, 5.0)
    assert len(of_type(drain(responder), EspPacketReceived)) == 1


def test_child_sa_established_event_carries_what_esp_needs() -> None:
    initiator, _responder, peer, net = pair()
    initiator.initiate(peer, 0.0)
    net.run(0.0)
    (event,) = of_type(drain(initiator), ChildSaEstablished)
    assert isinstance(event, ChildSaEstablished)
    state = initiator.esp(event.child.spi_in)
    assert state.outbound.spi == int.from_bytes(event.child.spi_out, "big")
    assert state.child is event.child and state.outbound.seq == 0
