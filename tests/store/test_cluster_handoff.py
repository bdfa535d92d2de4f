"""RFC 7791 §1's cluster use case on a shared store: gateway node A clones a client's IKE SA,
hands the clone to node B (ownership moves in the store), B takes it over with its counters
and makes the client move the clone to B's address with MOBIKE (RFC 4555 §3.5); ESP then
flows through A on the old SA and through B on the clone. Also: fencing of a node that lost
an SA, sequence-number reservation across a restart, loading a Child SA on its first ESP."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest
from cluster_harness import NODE_B_HOST, Cluster, cluster
from engine_harness import (
    INITIATOR_HOST,
    RESPONDER_HOST,
    counter_random,
    describe,
    drain,
    of_type,
    pair,
)
from store_fixtures import SHARED_KINDS, STORE_KEY, StoreFactory

from ikecore.config import EndpointConfig
from ikecore.endpoint import Datagram, IkeEndpoint
from ikecore.errors import LocalProtocolError
from ikecore.events import (
    ChildSaEstablished,
    EspPacketReceived,
    Event,
    IkeSaCloned,
    IkeSaDeleted,
    IkeSaMoved,
)
from ikecore.exchanges.base import nat_detection_hash
from ikecore.sa import IkeSa
from ikecore.session import IkeSession
from ikecore.states import IkeState
from ikecore.store import MemoryStore, SqliteStore, StoreUnavailable, WriteConflict

NAT_T = 4500
PING = b"\x45" + bytes(19)


def esp_seq(datagram: Datagram) -> int:
    """The 32-bit sequence number field of an ESP-in-UDP packet (RFC 4303 §2.2)."""
    return int.from_bytes(datagram.data[4:8], "big")


def received(events: list[Event]) -> list[EspPacketReceived]:
    return [e for e in events if isinstance(e, EspPacketReceived)]


@pytest.mark.parametrize("kind", ["memory", *SHARED_KINDS])
def test_a_clone_handed_to_another_node_moves_there_with_its_counters(
    open_store: StoreFactory,
) -> None:
    c = cluster(open_store, esp_seq_block=16)
    # Node A clones the client's IKE SA (the gateway initiates, RFC 7791 §1):
    # HDR(old), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->  <--  HDR(old), SK {SA, Nr, KEr}
    c.a_sa.request_clone(1.0)
    c.net.run(1.0)
    (a_cloned,) = of_type(drain(c.node_a), IkeSaCloned)
    (client_cloned,) = of_type(drain(c.client), IkeSaCloned)
    assert isinstance(a_cloned, IkeSaCloned) and isinstance(client_cloned, IkeSaCloned)
    a_clone, client_clone = a_cloned.clone, client_cloned.clone
    spis = a_clone.sa.spis
    # A Child SA on the clone, made by the client (on A still), and ESP both ways through A.
    client_clone.create_child_sa(1.5)
    c.net.run(1.5)
    (client_child,) = client_clone.child_sas
    (a_child,) = a_clone.child_sas
    drain(c.client), drain(c.node_a)
    for _ in range(3):
        c.node_a.send_esp(a_child.spi_in, PING, 4, 1.6)
        c.client.send_esp(client_child.spi_in, PING, 4, 1.6)
    captured = c.net.capture(1.6)
    c.net.deliver(captured, 1.6)
    early = [d for d in captured if d.dst[0] == RESPONDER_HOST]
    assert len(received(drain(c.client))) == 3 and len(received(drain(c.node_a))) == 3
    assert a_child.seq_out == 3
    ids = (a_clone.sa.next_request_id, a_clone.sa.next_peer_request_id)
    assert ids == (0, 1)  # none of A's own yet; the client's CREATE_CHILD_SA was #0

    # Hand-off: ownership moves in the store; A forgets the clone without telling anyone.
    c.node_a.hand_off(a_clone, "B")
    assert c.store_a.owner(*spis) == "B" and c.store_b.owner(*spis) == "B"
    assert [s.sa.spis for s in c.node_a.sessions] == [c.a_sa.sa.spis]
    assert a_clone.evicted and c.net.capture(2.0) == [] and drain(c.node_a) == []
    with pytest.raises(LocalProtocolError):
        c.node_b.take_over(c.a_sa.sa.spis)  # still A's

    # B takes it over: message IDs, SK IV counter and ESP counters continue.
    b_clone = c.node_b.take_over(spis)
    assert (b_clone.sa.next_request_id, b_clone.sa.next_peer_request_id) == ids
    assert b_clone.sa.sk_iv == a_clone.sa.sk_iv
    (b_child,) = b_clone.child_sas
    assert b_child.seq_out >= 3 and b_child.replay_highest == 3

    # B makes the client move the clone to B (the gateway-side MOBIKE move, docs/CLONE.md):
    # (198.51.100.2 -> 192.0.2.1) HDR(clone, #0), SK {N(UPDATE_SA_ADDRESSES), N(NAT_D_*),
    # N(COOKIE2)}  -->  <--  HDR(clone, #0), SK {N(NAT_D_*), N(COOKIE2)}
    # and the client's return routability check of node B (RFC 4555 §3.7):
    #   <--  HDR(clone, #1), SK {N(COOKIE2)}  -->
    b_clone.update_addresses((NODE_B_HOST, NAT_T), 2.0)
    flow = c.net.run(2.0)
    assert [str(d) for d in flow] == [
        "INFORMATIONAL --> #0",
        "INFORMATIONAL <-- #0",
        "INFORMATIONAL --> #1",
        "INFORMATIONAL <-- #1",
    ]
    assert flow[0].datagram.src == (NODE_B_HOST, NAT_T)
    assert flow[1].datagram.dst == (NODE_B_HOST, NAT_T)
    assert flow[2].datagram.dst == (NODE_B_HOST, NAT_T)
    assert of_type(drain(c.client), IkeSaMoved) and of_type(drain(c.node_b), IkeSaMoved)
    assert client_clone.sa.remote_address == (NODE_B_HOST, NAT_T)
    assert c.client_sa.sa.remote_address == (RESPONDER_HOST, NAT_T)  # the old SA stays on A

    # ESP: the clone's through B (sequence numbers above A's whole reserved block), the old
    # SA's through A.
    (old_client_child,) = c.client_sa.child_sas
    (old_a_child,) = c.a_sa.child_sas
    c.node_b.send_esp(b_child.spi_in, PING, 4, 3.0)
    c.node_a.send_esp(old_a_child.spi_in, PING, 4, 3.0)
    c.client.send_esp(client_child.spi_in, PING, 4, 3.0)
    c.client.send_esp(old_client_child.spi_in, PING, 4, 3.0)
    flow = c.net.run(3.0)
    assert sorted(d.datagram.src[0] for d in flow) == sorted(
        [NODE_B_HOST, RESPONDER_HOST, INITIATOR_HOST, INITIATOR_HOST]
    )
    from_b = next(d.datagram for d in flow if d.datagram.src[0] == NODE_B_HOST)
    assert esp_seq(from_b) == 17  # A reserved 1..16; B starts above them
    to_b = next(d.datagram for d in flow if d.datagram.dst[0] == NODE_B_HOST)
    assert to_b.data[:4] == b_child.spi_in
    client_got = received(drain(c.client))
    assert {e.child.spi_in for e in client_got} == {client_child.spi_in, old_client_child.spi_in}
    (b_got,) = received(drain(c.node_b))
    assert b_got.session is b_clone and b_got.child is b_child
    (a_got,) = received(drain(c.node_a))
    assert a_got.child is old_a_child
    # B kept the replay window: a packet the client sent to A before the hand-off, replayed
    # to B, is dropped.
    replayed = next(d for d in early if d.data[:4] == b_child.spi_in)
    dropped = c.node_b.esp_dropped
    c.node_b.receive_datagram(replayed.data, replayed.src, (NODE_B_HOST, NAT_T), 3.5)
    assert c.node_b.esp_dropped == dropped + 1 and received(drain(c.node_b)) == []

    # The client goes on using the clone with B: its message IDs continue (#2 after #0 and
    # the check #1).
    client_clone.create_child_sa(4.0)
    flow = c.net.run(4.0)
    assert [str(d) for d in flow] == ["CREATE_CHILD_SA --> #2", "CREATE_CHILD_SA <-- #2"]
    assert flow[0].datagram.dst[0] == NODE_B_HOST
    assert of_type(drain(c.node_b), ChildSaEstablished)
    assert b_clone.sa.next_peer_request_id == 3
    stored = c.store_b.get_ike_sa(*spis)
    assert stored is not None and len(stored.child_sas) == 2
    # Node A still serves the old SA; it never answers for the clone again.
    c.a_sa.check_liveness(5.0)
    assert [str(d) for d in c.net.run(5.0)] == ["INFORMATIONAL --> #1", "INFORMATIONAL <-- #1"]


@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_a_node_that_lost_its_sa_sends_nothing_for_it(open_store: StoreFactory) -> None:
    c = cluster(open_store, esp_seq_block=2)
    spis = c.a_sa.sa.spis
    (a_child,) = c.a_sa.child_sas
    c.node_a.send_esp(a_child.spi_in, PING, 4, 1.0)  # reserves 1..2
    c.net.run(1.0)
    drain(c.client)
    # The SA is given to B behind A's back (an operator, or A's lease ran out).
    assert open_store("ops").transfer(spis, "A", "B")
    assert not open_store("ops").transfer(spis, "A", "B")  # compare-and-set: only once
    # A's next change is refused by the store: A drops the SA and its answer never leaves.
    c.client_sa.check_liveness(2.0)
    flow = c.net.run(2.0)
    assert [str(d) for d in flow] == ["INFORMATIONAL --> #2"]
    (gone,) = of_type(drain(c.node_a), IkeSaDeleted)
    assert isinstance(gone, IkeSaDeleted) and gone.reason == "transferred"
    assert c.node_a.sessions == [] and c.a_sa.evicted
    # Nor does it load the SA again for the retransmission: B owns it.
    c.net.deliver([flow[0].datagram], 2.5)
    assert c.net.capture(2.5) == [] and c.node_a.sessions == []
    # The record is B's, untouched by A (A's answer was never saved either).
    stored = c.store_b.get_ike_sa(*spis)
    assert stored is not None and stored.next_peer_request_id == 2


@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_esp_beyond_the_reserved_block_needs_ownership(open_store: StoreFactory) -> None:
    c = cluster(open_store, esp_seq_block=2)
    (a_child,) = c.a_sa.child_sas
    c.node_a.send_esp(a_child.spi_in, PING, 4, 1.0)
    c.node_a.send_esp(a_child.spi_in, PING, 4, 1.0)
    assert open_store("ops").transfer(c.a_sa.sa.spis, "A", "B")
    # Sequence numbers 1..2 were A's to use; the third needs the store, which says no.
    with pytest.raises(WriteConflict):
        c.node_a.send_esp(a_child.spi_in, PING, 4, 1.0)
    assert c.node_a.sessions == [] and len(c.net.capture(1.0)) == 2
    (gone,) = of_type(drain(c.node_a), IkeSaDeleted)
    assert isinstance(gone, IkeSaDeleted) and gone.reason == "transferred"


@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_sequence_numbers_resume_above_the_reservation_after_a_restart(
    open_store: StoreFactory,
) -> None:
    c = cluster(open_store, esp_seq_block=4)
    (a_child,) = c.a_sa.child_sas
    (client_child,) = c.client_sa.child_sas
    for _ in range(5):
        c.node_a.send_esp(a_child.spi_in, PING, 4, 1.0)
    c.node_a.send_esp_batch(a_child.spi_in, [PING, PING, PING], 4, 1.0)
    flow = c.net.run(1.0)
    assert [esp_seq(d.datagram) for d in flow] == list(range(1, 9))
    assert len(received(drain(c.client))) == 8
    # Reserved in blocks: 1..4, 5..8 (the batch of 3 from 6 fitted in the second block).
    assert c.store_a.reserve_seq(a_child.spi_in, 1) == 9
    # Node A restarts (a new store object, nothing in memory). The client's ESP arrives
    # first: the Child SA is loaded by its inbound SPI.
    restarted = IkeEndpoint(c.node_a.config, open_store("A"), random=counter_random(4))
    c.net.hosts[RESPONDER_HOST] = restarted
    c.client.send_esp(client_child.spi_in, PING, 4, 2.0)
    c.net.run(2.0)
    (got,) = received(drain(restarted))
    assert got.child.spi_in == a_child.spi_in and got.session.sa.spis == c.a_sa.sa.spis
    # Its outbound counter starts above everything ever reserved (9), never reusing an IV.
    restarted.send_esp(a_child.spi_in, PING, 4, 2.0)
    (sent,) = c.net.run(2.0)
    assert esp_seq(sent.datagram) == 10
    assert len(received(drain(c.client))) == 1


@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_unknown_or_foreign_esp_is_dropped_without_loading(open_store: StoreFactory) -> None:
    c = cluster(open_store)
    (client_child,) = c.client_sa.child_sas
    c.client.send_esp(client_child.spi_in, PING, 4, 1.0)
    (packet,) = c.net.capture(1.0)
    # Node B shares the store but does not own the SA: it neither loads nor decrypts it.
    c.node_b.receive_datagram(packet.data, packet.src, (NODE_B_HOST, NAT_T), 1.0)
    assert c.node_b.esp_dropped == 1 and c.node_b.sessions == []
    # An SPI no store knows.
    c.node_b.receive_datagram(
        b"\x00\x00\x99\x99" + packet.data[4:], packet.src, (NODE_B_HOST, NAT_T), 1.0
    )
    assert c.node_b.esp_dropped == 2 and drain(c.node_b) == []


def test_hand_off_refuses_an_sa_with_exchanges_in_flight() -> None:
    store = MemoryStore("A")
    client, gateway, peer, net = pair()
    node_a = IkeEndpoint(EndpointConfig(peers=gateway.config.peers), store)
    net.hosts[RESPONDER_HOST] = node_a
    session = client.initiate(peer, 0.0)
    net.run(0.0)
    (a_sa,) = node_a.sessions
    a_sa.check_liveness(1.0)  # in flight, not delivered
    with pytest.raises(LocalProtocolError):
        node_a.hand_off(a_sa, "B")
    assert store.owner(*a_sa.sa.spis) == "A" and node_a.sessions == [a_sa]
    assert session.sa.spis == a_sa.sa.spis


def test_a_write_the_store_cannot_confirm_is_never_shown_to_the_peer(tmp_path: Path) -> None:
    """StoreUnavailable on a save: the session is dropped and its answer withdrawn; the peer's
    retransmission is served from the durable record once the store answers again."""
    path = tmp_path / "sa.db"
    client, gateway, peer, net = pair()
    store = SqliteStore(path, STORE_KEY, node_id="A", timeout=0.05)
    node_a = IkeEndpoint(gateway.config, store, random=counter_random(2))
    net.hosts[RESPONDER_HOST] = node_a
    session = client.initiate(peer, 0.0)
    net.run(0.0)
    drain(node_a)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock too long
    session.check_liveness(1.0)
    assert [str(d) for d in net.run(1.0)] == ["INFORMATIONAL --> #2"]
    (gone,) = of_type(drain(node_a), IkeSaDeleted)
    assert isinstance(gone, IkeSaDeleted) and gone.reason == "store_unavailable"
    assert node_a.sessions == []
    other.execute("ROLLBACK")
    other.close()
    # The client retransmits (RFC 7296 §2.1); node A loads the record and answers.
    node_a.handle_timer(2.0)
    client.handle_timer(2.0)
    assert [str(d) for d in net.run(2.0)] == ["INFORMATIONAL --> #2", "INFORMATIONAL <-- #2"]
    (loaded,) = node_a.sessions
    assert loaded.sa.next_peer_request_id == 3
    store.close()


@pytest.mark.parametrize("kind", ["sqlite"])
def test_a_clone_the_client_made_can_be_handed_off_too(open_store: StoreFactory) -> None:
    """The client clones (RFC 7791 App. A); the gateway still hands its side to node B, which
    moves the client with UPDATE_SA_ADDRESSES (ikecore accepts it from either end)."""
    c = cluster(open_store)
    c.client_sa.request_clone(1.0)
    c.net.run(1.0)
    (client_cloned,) = of_type(drain(c.client), IkeSaCloned)
    (a_cloned,) = of_type(drain(c.node_a), IkeSaCloned)
    assert isinstance(client_cloned, IkeSaCloned) and isinstance(a_cloned, IkeSaCloned)
    client_clone = client_cloned.clone
    assert client_clone.sa.initiator and not a_cloned.clone.sa.initiator
    c.node_a.hand_off(a_cloned.clone, "B")
    b_clone = c.node_b.take_over(client_clone.sa.spis)
    # UPDATE_SA_ADDRESSES -->  <-- ; the client's return routability check  <--  -->
    b_clone.update_addresses((NODE_B_HOST, NAT_T), 2.0)
    flow = c.net.run(2.0)
    assert [str(d) for d in flow] == [
        "INFORMATIONAL --> #0",
        "INFORMATIONAL <-- #0",
        "INFORMATIONAL --> #0",
        "INFORMATIONAL <-- #0",
    ]
    assert client_clone.sa.remote_address == (NODE_B_HOST, NAT_T)
    client_clone.create_child_sa(3.0)
    flow = c.net.run(3.0)
    assert [d.datagram.dst[0] for d in flow] == [NODE_B_HOST, INITIATOR_HOST]
    assert of_type(drain(c.node_b), ChildSaEstablished)


@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_a_delete_on_a_node_that_lost_the_sa_releases_nothing(open_store: StoreFactory) -> None:
    c = cluster(open_store)
    spis = c.a_sa.sa.spis
    (a_child,) = c.a_sa.child_sas
    assert open_store("ops").transfer(spis, "A", "B")
    # The client deletes the SA; node A, which still holds it, processes the Delete, but the
    # store refuses to remove B's record: A forgets the SA, answers nothing, frees no SPI.
    c.client_sa.delete(1.0)
    assert [str(d) for d in c.net.run(1.0)] == ["INFORMATIONAL --> #2"]
    (gone,) = of_type(drain(c.node_a), IkeSaDeleted)
    assert isinstance(gone, IkeSaDeleted) and gone.reason == "transferred"
    assert c.node_a.sessions == []
    assert c.store_b.get_ike_sa(*spis) is not None
    assert not c.store_b.claim_esp_spi(a_child.spi_in)  # still claimed


def test_esp_waits_for_a_reservation_the_store_cannot_make(tmp_path: Path) -> None:
    """StoreUnavailable from a reservation: nothing is sent, the SA stays; the next send
    reserves again. A batch is reserved whole before anything is sealed."""
    path = tmp_path / "sa.db"
    client, gateway, peer, net = pair(endpoint_options={"esp_seq_block": 2})
    store = SqliteStore(path, STORE_KEY, node_id="A", timeout=0.05)
    node_a = IkeEndpoint(gateway.config, store, random=counter_random(2))
    net.hosts[RESPONDER_HOST] = node_a
    client.initiate(peer, 0.0)
    net.run(0.0)
    (a_sa,) = node_a.sessions
    (a_child,) = a_sa.child_sas
    node_a.send_esp(a_child.spi_in, PING, 4, 1.0)  # reserves 1..2
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    node_a.send_esp(a_child.spi_in, PING, 4, 1.0)  # 2 is reserved already: no store needed
    with pytest.raises(StoreUnavailable):
        node_a.send_esp_batch(a_child.spi_in, [PING, PING], 4, 1.0)
    assert [esp_seq(d) for d in net.capture(1.0)] == [1, 2]
    assert node_a.sessions == [a_sa] and a_child.seq_out == 2
    other.execute("ROLLBACK")
    other.close()
    node_a.send_esp_batch(a_child.spi_in, [PING, PING], 4, 2.0)
    assert [esp_seq(d) for d in net.capture(2.0)] == [3, 4]
    store.close()


@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_an_sa_goes_to_b_and_back_to_a_with_message_ids_continuing(
    open_store: StoreFactory,
) -> None:
    c = cluster(open_store)
    spis = c.a_sa.sa.spis
    c.node_a.hand_off(c.a_sa, "B")
    b_sa = c.node_b.take_over(spis)
    b_sa.update_addresses((NODE_B_HOST, NAT_T), 1.0)
    # The gateway's first request on this SA (#0); the client's IKE_AUTH was #1, its return
    # routability check of node B (RFC 4555 §3.7) is #2.
    assert [str(d) for d in c.net.run(1.0)] == [
        "INFORMATIONAL --> #0",
        "INFORMATIONAL <-- #0",
        "INFORMATIONAL --> #2",
        "INFORMATIONAL <-- #2",
    ]
    c.client_sa.check_liveness(2.0)
    assert [str(d) for d in c.net.run(2.0)] == ["INFORMATIONAL --> #3", "INFORMATIONAL <-- #3"]
    c.node_b.hand_off(b_sa, "A")
    assert c.store_a.owner(*spis) == "A" and c.node_b.sessions == []
    back = c.node_a.take_over(spis)
    assert back is not c.a_sa and (back.sa.next_request_id, back.sa.next_peer_request_id) == (
        1,
        4,
    )
    back.update_addresses((RESPONDER_HOST, NAT_T), 3.0)
    flow = c.net.run(3.0)
    assert [str(d) for d in flow] == [
        "INFORMATIONAL --> #1",
        "INFORMATIONAL <-- #1",
        "INFORMATIONAL --> #4",
        "INFORMATIONAL <-- #4",
    ]
    assert flow[0].datagram.src == (RESPONDER_HOST, NAT_T)
    assert c.client_sa.sa.remote_address == (RESPONDER_HOST, NAT_T)
    # B's old session object is dead: it cannot be handed off again.
    with pytest.raises(LocalProtocolError):
        c.node_b.hand_off(b_sa, "A")


@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_hand_off_of_an_sa_taken_behind_our_back_is_a_write_conflict(
    open_store: StoreFactory,
) -> None:
    c = cluster(open_store)
    assert open_store("ops").transfer(c.a_sa.sa.spis, "A", "B")
    with pytest.raises(WriteConflict):
        c.node_a.hand_off(c.a_sa, "C")
    assert c.node_a.sessions == [] and c.store_b.owner(*c.a_sa.sa.spis) == "B"


def test_store_lookups_for_unknown_esp_are_rate_limited() -> None:
    """Random SPIs cost at most 1000 store lookups a second (then they are dropped unread)."""

    class CountingStore(MemoryStore):
        lookups = 0

        def find_by_esp_spi(self, spi_in: bytes) -> IkeSa | None:
            CountingStore.lookups += 1
            return super().find_by_esp_spi(spi_in)

    endpoint = IkeEndpoint(EndpointConfig(), CountingStore())
    junk = bytes(28)
    for n in range(1500):
        spi = (0x1000 + n).to_bytes(4, "big")
        endpoint.receive_datagram(spi + junk, ("192.0.2.9", NAT_T), ("198.51.100.1", NAT_T), 1.0)
    assert CountingStore.lookups == 1000 and endpoint.esp_dropped == 1500
    # Half a second later, 500 more may be looked up.
    for n in range(600):
        spi = (0x9000 + n).to_bytes(4, "big")
        endpoint.receive_datagram(spi + junk, ("192.0.2.9", NAT_T), ("198.51.100.1", NAT_T), 1.5)
    assert CountingStore.lookups == 1500


@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_a_taken_over_sa_follows_the_peer_policy_of_its_new_node(
    open_store: StoreFactory,
) -> None:
    c = cluster(open_store)
    spis = c.a_sa.sa.spis
    # Node B's policy for this peer (found by the record's peer name) has a hard lifetime.
    peers = tuple(dataclasses.replace(p, ike_lifetime=600.0) for p in c.node_b.config.peers)
    node_b = IkeEndpoint(dataclasses.replace(c.node_b.config, peers=peers), c.store_b)
    c.net.hosts[NODE_B_HOST] = node_b
    c.node_a.hand_off(c.a_sa, "B")
    b_sa = node_b.take_over(spis)
    assert b_sa.peer is not None and b_sa.peer.name == c.a_sa.sa.peer_name
    assert node_b.get_timer() == 600.0  # established at t=0 on node A
    b_sa.update_addresses((NODE_B_HOST, NAT_T), 1.0)  # the client moves the SA to B
    c.net.run(1.0)
    # t=600: HDR(#1), SK {D(IKE)} -->  <-- HDR(#1), SK {}
    node_b.handle_timer(600.0)
    c.net.run(600.0)
    assert b_sa.state == IkeState.DELETED and c.client_sa.state == IkeState.DELETED
    (deleted,) = of_type(drain(node_b), IkeSaDeleted)
    assert isinstance(deleted, IkeSaDeleted) and deleted.reason == "expired"


# -- MOBIKE state across a hand-off and a restart (RFC 4555 §3.4-§3.8, docs/CLUSTER.md) -------

CLIENT_SECOND = "192.0.2.2"
CLIENT_THIRD = "192.0.2.3"


def mobike_state_on_a(c: Cluster) -> Datagram:
    """Gives node A's IKE SA all three parts of the MOBIKE state the record keeps, and returns
    the client's older UPDATE_SA_ADDRESSES, which A never received (still in flight)."""
    c.net.hosts[CLIENT_SECOND] = c.net.hosts[CLIENT_THIRD] = c.client
    # The client's address set (§3.6):
    # HDR(#2), SK {N(ADDITIONAL_IP4_ADDRESS) x2, N(COOKIE2)}  -->  <--  HDR(#2), SK {N(COOKIE2)}
    c.client_sa.announce_addresses([CLIENT_SECOND, CLIENT_THIRD], 1.0)
    assert [str(d) for d in c.net.run(1.0)] == ["INFORMATIONAL --> #2", "INFORMATIONAL <-- #2"]
    # How the client sees node A (§3.8), from the answer to A's own update:
    # HDR(#0), SK {N(UPDATE_SA_ADDRESSES), N(NAT_D_*), N(COOKIE2)}  -->
    #                                          <--  HDR(#0), SK {N(NAT_D_*), N(COOKIE2)}
    c.a_sa.update_addresses((RESPONDER_HOST, NAT_T), 1.5)
    assert [str(d) for d in c.net.run(1.5)] == ["INFORMATIONAL --> #0", "INFORMATIONAL <-- #0"]
    # Two moves of the client in a row (window 2: both requests leave at once), #3 from
    # 192.0.2.2 and #4 from 192.0.2.3; #4 overtakes #3, which is still on its way:
    # HDR(#4), SK {N(UPDATE_SA_ADDRESSES), ...}  -->  <--  (A acts on it, §3.5)
    # and A's return routability check of 192.0.2.3 (§3.7):  <--  HDR(#1), SK {N(COOKIE2)}  -->
    c.client_sa.update_addresses((CLIENT_SECOND, NAT_T), 2.0)
    c.client_sa.update_addresses((CLIENT_THIRD, NAT_T), 2.0)
    older, newer = c.net.capture(2.0)
    assert (describe(older).message_id, describe(newer).message_id) == (3, 4)
    assert older.src == (CLIENT_SECOND, NAT_T) and newer.src == (CLIENT_THIRD, NAT_T)
    c.net.deliver([newer], 2.0)
    flow = c.net.run(2.0)
    assert [str(d) for d in flow] == [
        "INFORMATIONAL <-- #4",
        "INFORMATIONAL --> #1",
        "INFORMATIONAL <-- #1",
    ]
    assert of_type(drain(c.node_a), IkeSaMoved)
    drain(c.client)
    assert c.a_sa.sa.remote_address == (CLIENT_THIRD, NAT_T)
    return older


def assert_mobike_state_kept(session: IkeSession) -> None:
    assert session.peer_addresses == (INITIATOR_HOST, CLIENT_SECOND, CLIENT_THIRD)
    assert session.sa.mobike_update_id == 4
    spi_i, spi_r = session.sa.spis
    assert session.sa.nat_seen_as == nat_detection_hash(spi_i, spi_r, (RESPONDER_HOST, NAT_T))


def assert_older_update_ignored(node: IkeEndpoint, session: IkeSession, older: Datagram) -> None:
    """§3.5: the older UPDATE_SA_ADDRESSES is answered (where it came from) and changes
    nothing: no move back to 192.0.2.2, no return routability check of it."""
    node.receive_datagram(older.data, older.src, older.dst, 3.0)
    (answer,) = node.datagrams_to_send(3.0)
    assert str(describe(answer)) == "INFORMATIONAL <-- #3" and answer.dst == older.src
    assert session.sa.remote_address == (CLIENT_THIRD, NAT_T)
    assert session.sa.mobike_update_id == 4
    assert of_type(drain(node), IkeSaMoved) == []
    assert session.mobike.pending_check is None


@pytest.mark.parametrize("kind", ["memory", *SHARED_KINDS])
def test_the_mobike_state_moves_with_a_handed_off_sa(open_store: StoreFactory) -> None:
    c = cluster(open_store, window_size=2)
    older = mobike_state_on_a(c)
    spis = c.a_sa.sa.spis
    c.node_a.hand_off(c.a_sa, "B")
    # Node B has nothing of it in memory: all of it comes from the stored record (for SQLite
    # and Redis, a record read back from its bytes).
    assert c.store_b.get_ike_sa(*spis) == c.a_sa.sa
    b_sa = c.node_b.take_over(spis)
    assert_mobike_state_kept(b_sa)
    # The client's older update reaches the cluster only now: B ignores it as A would have.
    assert_older_update_ignored(c.node_b, b_sa, older)


@pytest.mark.parametrize("kind", ["sqlite"])
def test_the_mobike_state_survives_a_restart(open_store: StoreFactory) -> None:
    c = cluster(open_store, window_size=2)
    older = mobike_state_on_a(c)
    # Node A restarts on the same SQLite file (a new store object, nothing in memory); the
    # older update loads the SA from the store.
    restarted = IkeEndpoint(c.node_a.config, open_store("A"), random=counter_random(4))
    c.net.hosts[RESPONDER_HOST] = restarted
    assert restarted.sessions == []
    restarted.receive_datagram(older.data, older.src, older.dst, 3.0)
    (loaded,) = restarted.sessions
    assert_mobike_state_kept(loaded)
    (answer,) = restarted.datagrams_to_send(3.0)
    assert str(describe(answer)) == "INFORMATIONAL <-- #3"
    assert loaded.sa.remote_address == (CLIENT_THIRD, NAT_T)
    assert of_type(drain(restarted), IkeSaMoved) == []
