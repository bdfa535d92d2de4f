"""The response cache travels with the stored record (RFC 7296 §2.1, §2.2; record format 5):
a request whose response was lost is answered with the same bytes by whichever node serves
the SA next (the cluster node that took it over, or this node after a restart), and the
exchange never runs twice. With a window > 1, the requests answered ahead of a lower one
survive too, so the window moves past them instead of stalling."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from cluster_harness import NODE_B_HOST, cluster
from engine_harness import RESPONDER_HOST, counter_random, describe, drain, of_type, pair
from store_fixtures import SHARED_KINDS, STORE_KEY, RedisServer, StoreFactory

from ikecore.endpoint import Datagram, IkeEndpoint
from ikecore.events import (
    ChildSaEstablished,
    IkeSaCloned,
    IkeSaDeleted,
    IkeSaMoved,
    LivenessChecked,
)
from ikecore.states import IkeState
from ikecore.store import RedisStore, SqliteStore

NAT_T = 4500


def flow_of(datagrams: list[Datagram]) -> list[str]:
    return [str(describe(d)) for d in datagrams]


@pytest.mark.parametrize("kind", ["memory", *SHARED_KINDS])
def test_a_response_lost_before_a_hand_off_is_sent_again_by_the_new_node(
    open_store: StoreFactory,
) -> None:
    """client                       node A                 node B (shares A's store)
    HDR(#2) SK {SA, Ni, TSi, TSr}  -->
                         X  <--  HDR(#2) SK {SA, Nr, TSi, TSr}   (lost; the Child SA is made)
                                 hand_off(B)  ------------>  take_over
    <--  HDR(B #0) SK {N(UPDATE_SA_ADDRESSES), ...}  (B moves the client to it, RFC 4555)
    HDR(B #0) SK {N(NAT_D_*), N(COOKIE2)}  -->
    HDR(#2) (retransmission, now to B)  ------------------------->
                                   <--  the same bytes A sent, from the record's cache
    HDR(#3) SK {N(COOKIE2)} (the client's check of B's address, RFC 4555 §3.7)  -->  <--
    """
    c = cluster(open_store)
    client, node_a, node_b, store_b, net = c.client, c.node_a, c.node_b, c.store_b, c.net
    client_sa, a_sa = c.client_sa, c.a_sa

    client_sa.create_child_sa(1.0)
    (request,) = net.capture(1.0)
    net.deliver([request], 1.0)
    (lost,) = net.capture(1.0)
    assert flow_of([request, lost]) == ["CREATE_CHILD_SA --> #2", "CREATE_CHILD_SA <-- #2"]
    (made,) = of_type(drain(node_a), ChildSaEstablished)
    assert isinstance(made, ChildSaEstablished)
    assert len(a_sa.child_sas) == 2

    spis = a_sa.sa.spis
    node_a.hand_off(a_sa, "B")
    b_sa = node_b.take_over(spis)
    # Node B holds nothing of A's session in memory: the cache is the record's.
    assert b_sa.sa.next_peer_request_id == 3
    assert b_sa.sa.responses is not None and list(b_sa.sa.responses) == [2]
    b_sa.update_addresses((NODE_B_HOST, NAT_T), 1.5)
    assert flow_of([d.datagram for d in net.run(1.5)]) == [
        "INFORMATIONAL --> #0",
        "INFORMATIONAL <-- #0",
    ]

    # The client retransmits (RFC 7296 §2.1), now to B: B answers from the cache, with the
    # bytes A's lost response had, and only then the client's queued check of B goes out.
    assert client.get_timer() == 2.0
    client.handle_timer(2.0)
    flow = net.run(2.0)
    assert flow_of([d.datagram for d in flow]) == [
        "CREATE_CHILD_SA --> #2",
        "CREATE_CHILD_SA <-- #2",
        "INFORMATIONAL --> #3",
        "INFORMATIONAL <-- #3",
    ]
    assert flow[1].datagram.data == lost.data
    assert flow[1].datagram.src == (NODE_B_HOST, NAT_T)
    assert b_sa.cached_answers == 1
    # The exchange did not run again on B: no second Child SA, nothing new in the record.
    assert [type(e) for e in drain(node_b)] == [IkeSaMoved]
    assert len(b_sa.child_sas) == 2
    stored = store_b.get_ike_sa(*spis)
    assert stored is not None and set(stored.child_sas) == set(a_sa.sa.child_sas)
    # The client has the Child SA A made (its outbound SPI is A's inbound one).
    (established,) = of_type(drain(client), ChildSaEstablished)
    assert isinstance(established, ChildSaEstablished)
    assert established.child.spi_out == made.child.spi_in

    # The next new request is processed as usual.
    client_sa.create_child_sa(3.0)
    assert flow_of([d.datagram for d in net.run(3.0)]) == [
        "CREATE_CHILD_SA --> #4",
        "CREATE_CHILD_SA <-- #4",
    ]
    assert of_type(drain(node_b), ChildSaEstablished) and len(b_sa.child_sas) == 3
    assert b_sa.sa.next_peer_request_id == 5


def test_a_clone_response_lost_before_a_restart_is_sent_again_without_a_second_clone(
    tmp_path: Path,
) -> None:
    """client                                    node A (SQLite store)
    HDR(#2) SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->
                                       X  <--  HDR(#2) SK {SA, Nr, KEr}  (lost; clone saved)
                                               node A restarts: nothing in memory
    HDR(#2) (retransmission)  -->              the SA loaded by its SPIs, #2 in its cache
                                          <--  the same bytes
    HDR(clone #0) SK {}  -->  <--  HDR(clone #0) SK {}   (the clone, loaded from the store)
    """
    path = tmp_path / "sa.db"
    client, gateway, peer, net = pair()
    node_a = IkeEndpoint(
        gateway.config, SqliteStore(path, STORE_KEY, node_id="A"), random=counter_random(2)
    )
    net.hosts[RESPONDER_HOST] = node_a
    client_sa = client.initiate(peer, 0.0)
    net.run(0.0)
    drain(client), drain(node_a)

    # RFC 7791 §5: the client clones its IKE SA; the gateway's answer is lost.
    client_sa.request_clone(1.0)
    (request,) = net.capture(1.0)
    net.deliver([request], 1.0)
    (lost,) = net.capture(1.0)
    assert flow_of([request, lost]) == ["CREATE_CHILD_SA --> #2", "CREATE_CHILD_SA <-- #2"]
    assert of_type(drain(node_a), IkeSaCloned)
    assert len(node_a.store.ike_sas()) == 2

    # Node A restarts on the same file; the client retransmits its clone request.
    restarted_store = SqliteStore(path, STORE_KEY, node_id="A")
    restarted = IkeEndpoint(gateway.config, restarted_store, random=counter_random(4))
    net.hosts[RESPONDER_HOST] = restarted
    assert client.get_timer() == 2.0
    client.handle_timer(2.0)
    flow = net.run(2.0)
    assert flow_of([d.datagram for d in flow]) == [
        "CREATE_CHILD_SA --> #2",
        "CREATE_CHILD_SA <-- #2",
    ]
    assert flow[1].datagram.data == lost.data
    (loaded,) = restarted.sessions
    assert loaded.sa.spis == client_sa.sa.spis and loaded.cached_answers == 1
    # No second clone: no event, no new record, the clone the client now has is the stored one.
    assert drain(restarted) == []
    assert len(restarted_store.ike_sas()) == 2
    (cloned,) = of_type(drain(client), IkeSaCloned)
    assert isinstance(cloned, IkeSaCloned)
    client_clone = cloned.clone
    assert restarted_store.get_ike_sa(*client_clone.sa.spis) is not None

    # The next new request, on the clone: the restarted node loads it and answers.
    client_clone.check_liveness(3.0)
    assert flow_of([d.datagram for d in net.run(3.0)]) == [
        "INFORMATIONAL --> #0",
        "INFORMATIONAL <-- #0",
    ]
    assert of_type(drain(client), LivenessChecked)
    assert {s.sa.spis for s in restarted.sessions} == {client_sa.sa.spis, client_clone.sa.spis}
    # And on the first SA: its next request ID is #3.
    client_sa.check_liveness(4.0)
    assert flow_of([d.datagram for d in net.run(4.0)]) == [
        "INFORMATIONAL --> #3",
        "INFORMATIONAL <-- #3",
    ]
    restarted_store.close()
    node_a.store.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_a_request_answered_ahead_survives_a_restart_and_the_window_moves_past_it(
    open_store: StoreFactory,
) -> None:
    """Window 2 (RFC 7296 §2.3): the client's #2 and #3 leave together; #3 arrives first and
    is answered ahead of #2, its response lost; node A restarts before #2 arrives.

    client                                   node A, then A restarted
    HDR(#2) ...  (delayed)
    HDR(#3) SK {SA, Ni, TSi, TSr}  -->       answered ahead: next expected stays #2
                             X  <--  HDR(#3)  (lost)
                                             restart
    HDR(#2), HDR(#3) (retransmissions)  -->  #2 runs; #3 from the cache (the same bytes);
                                     <--     the next expected is #4, not #3
    HDR(#4), HDR(#5)  -->  <--               both inside the window: processed
    """
    client, gateway, peer, net = pair(endpoint_options={"window_size": 2})
    node_a = IkeEndpoint(gateway.config, open_store("A"), random=counter_random(2))
    net.hosts[RESPONDER_HOST] = node_a
    client_sa = client.initiate(peer, 0.0)
    net.run(0.0)
    (a_sa,) = node_a.sessions
    drain(client), drain(node_a)

    client_sa.create_child_sa(1.0)
    client_sa.create_child_sa(1.0)
    second, third = net.capture(1.0)
    assert flow_of([second, third]) == ["CREATE_CHILD_SA --> #2", "CREATE_CHILD_SA --> #3"]
    net.deliver([third], 1.0)
    (lost,) = net.capture(1.0)
    assert str(describe(lost)) == "CREATE_CHILD_SA <-- #3"
    assert a_sa.sa.next_peer_request_id == 2 and len(a_sa.child_sas) == 2
    # One window back from #2 (the IKE_SA_INIT and IKE_AUTH responses), and #3 ahead.
    assert a_sa.sa.responses is not None and sorted(a_sa.sa.responses) == [0, 1, 3]

    restarted_store = open_store("A")
    restarted = IkeEndpoint(gateway.config, restarted_store, random=counter_random(4))
    net.hosts[RESPONDER_HOST] = restarted
    assert client.get_timer() == 2.0
    client.handle_timer(2.0)
    retransmitted = net.capture(2.0)
    assert sorted(flow_of(retransmitted)) == ["CREATE_CHILD_SA --> #2", "CREATE_CHILD_SA --> #3"]
    net.deliver(retransmitted, 2.0)
    answers = net.capture(2.0)
    assert sorted(flow_of(answers)) == ["CREATE_CHILD_SA <-- #2", "CREATE_CHILD_SA <-- #3"]
    assert next(d for d in answers if describe(d).message_id == 3).data == lost.data
    (loaded,) = restarted.sessions
    assert loaded.cached_answers == 1
    # #2 ran (one more Child SA), #3 did not run again; the window moved past both.
    assert len(of_type(drain(restarted), ChildSaEstablished)) == 1
    assert len(loaded.child_sas) == 3
    assert loaded.sa.next_peer_request_id == 4
    net.deliver(answers, 2.0)
    assert len(of_type(drain(client), ChildSaEstablished)) == 2

    # The next two requests, #4 and #5, are both inside the window [4, 6): processed.
    client_sa.create_child_sa(3.0)
    client_sa.create_child_sa(3.0)
    assert flow_of([d.datagram for d in net.run(3.0)]) == [
        "CREATE_CHILD_SA --> #4",
        "CREATE_CHILD_SA --> #5",
        "CREATE_CHILD_SA <-- #4",
        "CREATE_CHILD_SA <-- #5",
    ]
    assert len(of_type(drain(restarted), ChildSaEstablished)) == 2
    assert loaded.sa.next_peer_request_id == 6
    stored = restarted_store.get_ike_sa(*loaded.sa.spis)
    assert stored is not None and len(stored.child_sas) == 5
    # The record keeps one window back from #6: the responses to #4 and #5.
    assert stored.responses is not None and sorted(stored.responses) == [4, 5]


def test_a_write_made_but_not_confirmed_is_answered_from_the_durable_record(
    tmp_path: Path,
) -> None:
    """StoreUnavailable on a save whose write was in fact made (docs/CLUSTER.md, "When the
    store does not answer"): here the Redis primary took it but its replica, stopped, never
    confirmed it (``replicas=1``: WAIT). The session is dropped and its answer withdrawn; the
    peer's retransmission loads the durable record, which has the request answered, and is
    answered from its cache instead of being dropped below the window until the peer gives
    the SA up.

    client                                   node A (Redis primary; its replica stopped)
    HDR(#2) SK {}  -->                       answered, saved on the primary, not confirmed:
                                             dropped from memory, the answer withdrawn
    HDR(#2) (retransmission)  -->            the record loaded (next expected #3, #2 cached)
                                      <--    HDR(#2) SK {}
    """
    no_delay = ("--repl-diskless-sync-delay", "0")
    primary = RedisServer(tmp_path / "primary", *no_delay)
    replica = RedisServer(
        tmp_path / "replica", *no_delay, "--replicaof", "127.0.0.1", str(primary.port)
    )
    store = RedisStore(primary.url, "A", STORE_KEY, replicas=1, replica_timeout=1.0)
    try:
        deadline = time.monotonic() + 15
        while replica.client.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica did not link to its primary"
            time.sleep(0.02)
        # Its first acknowledgement can take longer than a write may wait: have it now.
        primary.client.set("linked", 1)
        assert primary.client.wait(1, 10_000) == 1
        client, gateway, peer, net = pair()
        node_a = IkeEndpoint(gateway.config, store, random=counter_random(2))
        net.hosts[RESPONDER_HOST] = node_a
        client_sa = client.initiate(peer, 0.0)
        net.run(0.0)
        drain(client), drain(node_a)
        spis = client_sa.sa.spis

        os.kill(replica.process.pid, signal.SIGSTOP)
        try:
            client_sa.check_liveness(1.0)
            assert [str(d) for d in net.run(1.0)] == ["INFORMATIONAL --> #2"]
        finally:
            os.kill(replica.process.pid, signal.SIGCONT)
        (gone,) = of_type(drain(node_a), IkeSaDeleted)
        assert isinstance(gone, IkeSaDeleted) and gone.reason == "store_unavailable"
        assert node_a.sessions == []
        durable = store.get_ike_sa(*spis)
        assert durable is not None and durable.next_peer_request_id == 3
        assert durable.responses is not None and 2 in durable.responses

        client.handle_timer(2.0)
        assert [str(d) for d in net.run(2.0)] == [
            "INFORMATIONAL --> #2",
            "INFORMATIONAL <-- #2",
        ]
        assert of_type(drain(client), LivenessChecked)
        (loaded,) = node_a.sessions
        assert loaded.cached_answers == 1
        client_sa.check_liveness(3.0)
        assert [str(d) for d in net.run(3.0)] == [
            "INFORMATIONAL --> #3",
            "INFORMATIONAL <-- #3",
        ]
        assert loaded.sa.next_peer_request_id == 4
    finally:
        store.close()
        replica.stop()
        primary.stop()


def test_a_lost_fragmented_ike_auth_response_is_sent_again_whole_after_a_restart(
    tmp_path: Path,
) -> None:
    """The responder's answer to IKE_AUTH, in Encrypted Fragment messages (RFC 7383), is lost
    and the responder restarts: the record of the SA it just established holds every
    fragment. Of the retransmitted request's fragments only fragment 1 asks for them again
    (RFC 7383 §2.6.1).

    client                              gateway (SQLite store)
    HDR(#1) SKF(1/n) ... SKF(n/n)  -->  established and saved
                            X  <--      HDR(#1) SKF(1/m) ... SKF(m/m)  (all lost)
                                        restart
    HDR(#1) SKF(1/n) ... SKF(n/n)  -->  SKF(1/n): the SA loaded, the m fragments again;
                                        the other fragments: nothing
                               <--      HDR(#1) SKF(1/m) ... SKF(m/m)  (the same bytes)
    """
    path = tmp_path / "sa.db"
    small = {"fragment_threshold": 200}  # the PSK IKE_AUTH (about 300 bytes) in fragments
    client, gateway, peer, net = pair(endpoint_options=small)
    node = IkeEndpoint(
        gateway.config, SqliteStore(path, STORE_KEY, node_id="A"), random=counter_random(2)
    )
    net.hosts[RESPONDER_HOST] = node
    client_sa = client.initiate(peer, 0.0)
    net.deliver(net.capture(0.0), 0.0)  # IKE_SA_INIT -->
    net.deliver(net.capture(0.0), 0.0)  # <-- IKE_SA_INIT
    request = net.capture(0.0)
    net.deliver(request, 0.0)
    lost = net.capture(0.0)
    assert len(request) > 1 and len(lost) > 1
    assert {str(describe(d)) for d in lost} == {"IKE_AUTH <-- #1"}
    (established,) = node.sessions
    assert established.sa.responses is not None
    assert established.sa.responses[1][1] == tuple(d.data[4:] for d in lost)  # non-ESP marker
    node.store.close()  # type: ignore[attr-defined]

    restarted_store = SqliteStore(path, STORE_KEY, node_id="A")
    restarted = IkeEndpoint(gateway.config, restarted_store, random=counter_random(4))
    net.hosts[RESPONDER_HOST] = restarted
    client.handle_timer(1.0)
    again = net.capture(1.0)
    assert [d.data for d in again] == [d.data for d in request]
    net.deliver(again[1:], 1.0)  # fragments 2..n: the SA is loaded, nothing is sent
    assert net.capture(1.0) == []
    net.deliver(again[:1], 1.0)  # fragment 1: the whole response again, byte for byte
    answer = net.capture(1.0)
    assert [d.data for d in answer] == [d.data for d in lost]
    (loaded,) = restarted.sessions
    assert loaded.cached_answers == 1 and drain(restarted) == []
    net.deliver(answer, 1.0)
    assert client_sa.state == IkeState.ESTABLISHED
    assert len(client_sa.child_sas) == 1 and len(loaded.child_sas) == 1
    assert client_sa.child_sas[0].spi_out == loaded.child_sas[0].spi_in
    restarted_store.close()
