"""IKE fragmentation (RFC 7383): negotiation, sending fragments, reassembly, and every way a
fragment can go wrong on the wire (lost, duplicated, reordered, corrupted, replayed)."""

from __future__ import annotations

import random

import pytest
from engine_harness import Network, drain, of_type, pair, pair_from, peer_configs
from hypothesis import given, settings
from hypothesis import strategies as st

from ikecore.config import EndpointConfig
from ikecore.constants import ExchangeType, NotifyType
from ikecore.endpoint import Datagram
from ikecore.events import ChildSaEstablished, IkeSaCloned, IkeSaEstablished
from ikecore.fragmentation import MAX_REASSEMBLED, Reassembly, build_protected
from ikecore.payloads import EncryptedFragment, Notify, VendorId
from ikecore.states import IkeState
from ikecore.wire import IkeCipher, parse_message

# A small threshold makes the PSK IKE_AUTH (about 300 bytes) go in fragments.
THRESHOLD = 200
SMALL = {"fragment_threshold": THRESHOLD}
KEY = bytes(range(36))


def _ike(datagram: Datagram) -> bytes:
    data = datagram.data
    return data[4:] if data[:4] == bytes(4) else data


def _fragment_of(datagram: Datagram) -> EncryptedFragment | None:
    message = parse_message(_ike(datagram))
    encrypted = message.encrypted
    return encrypted if isinstance(encrypted, EncryptedFragment) else None


def _auth_request_fragments(net: Network, now: float) -> list[Datagram]:
    """Run IKE_SA_INIT, then take (undelivered) the initiator's IKE_AUTH datagrams."""
    net.deliver(net.capture(now), now)  # IKE_SA_INIT -->
    net.deliver(net.capture(now), now)  # <-- IKE_SA_INIT
    return net.capture(now)  # IKE_AUTH fragments, not yet delivered


def test_both_announce_and_a_large_ike_auth_goes_in_fragments() -> None:
    initiator, responder, peer, net = pair(endpoint_options=SMALL)
    session = initiator.initiate(peer, 0.0)
    # IKE_SA_INIT {..., N(IKEV2_FRAGMENTATION_SUPPORTED)} -->
    # <-- IKE_SA_INIT {..., N(IKEV2_FRAGMENTATION_SUPPORTED)}
    # IKE_AUTH SKF(1/n) --> ... SKF(n/n) -->     <-- IKE_AUTH SKF(1/m) ... SKF(m/m)
    flow = net.run(0.0)
    (peer_session,) = responder.sessions
    assert session.state == IkeState.ESTABLISHED == peer_session.state
    assert session.fragmentation_negotiated and peer_session.fragmentation_negotiated
    auth = [d for d in flow if d.exchange == ExchangeType.IKE_AUTH]
    for response in (False, True):
        fragments = [_fragment_of(d.datagram) for d in auth if d.response == response]
        total = len(fragments)
        assert total > 1
        assert [(f.fragment_number, f.total_fragments) for f in fragments if f] == [
            (n, total) for n in range(1, total + 1)
        ]
        # §2.5: the first fragment names the first inner payload, the others carry 0.
        assert fragments[0] is not None and fragments[0].first_payload != 0
        assert all(f is not None and f.first_payload == 0 for f in fragments[1:])
    # §2.5.1: every IP datagram (IP + UDP headers added) within the threshold.
    assert all(len(d.datagram.data) + 28 <= THRESHOLD for d in auth)
    assert [type(e) for e in drain(initiator)] == [IkeSaEstablished, ChildSaEstablished]
    assert [type(e) for e in drain(responder)] == [IkeSaEstablished, ChildSaEstablished]
    (child,) = session.child_sas
    (peer_child,) = peer_session.child_sas
    assert child.key_out == peer_child.key_in and child.key_in == peer_child.key_out


def test_small_messages_are_not_fragmented() -> None:
    initiator, _responder, peer, net = pair()  # default threshold: 576 bytes over IPv4
    session = initiator.initiate(peer, 0.0)
    flow = net.run(0.0)
    assert session.fragmentation_negotiated
    assert all(_fragment_of(d.datagram) is None for d in flow)
    assert [d.exchange for d in flow].count(ExchangeType.IKE_AUTH) == 2


def test_no_fragments_unless_both_peers_announced_them() -> None:
    initiator_peer, responder_peer = peer_configs()
    initiator, responder, net = pair_from(
        initiator_peer,
        responder_peer,
        initiator_options=SMALL,
        responder_options={**SMALL, "fragmentation": False},
    )
    session = initiator.initiate(initiator_peer, 0.0)
    # IKE_SA_INIT {.., N(IKEV2_FRAGMENTATION_SUPPORTED)} -->   <-- IKE_SA_INIT {no such N}
    flow = net.run(0.0)
    response = parse_message(_ike(flow[1].datagram))
    assert NotifyType.IKEV2_FRAGMENTATION_SUPPORTED not in [
        p.notify_type for p in response.payloads if isinstance(p, Notify)
    ]
    (peer_session,) = responder.sessions
    assert session.state == IkeState.ESTABLISHED == peer_session.state
    assert not session.fragmentation_negotiated and not peer_session.fragmentation_negotiated
    # IKE_AUTH --> <-- IKE_AUTH, whole (bigger than the threshold, sent as they are).
    auth = [d for d in flow if d.exchange == ExchangeType.IKE_AUTH]
    assert len(auth) == 2 and all(_fragment_of(d.datagram) is None for d in auth)
    assert all(len(d.datagram.data) + 28 > THRESHOLD for d in auth)


def test_lost_fragment_the_whole_message_is_retransmitted() -> None:
    initiator, responder, peer, net = pair(endpoint_options=SMALL)
    session = initiator.initiate(peer, 0.0)
    fragments = _auth_request_fragments(net, 0.0)
    assert len(fragments) >= 2
    # IKE_AUTH SKF(1/n) -->  SKF(2/n) (lost)  ...  SKF(n/n) -->    (nothing to answer yet)
    net.deliver(fragments[:1] + fragments[2:], 0.0)
    (peer_session,) = responder.sessions
    assert peer_session.state == IkeState.AUTHENTICATING
    assert net.capture(0.0) == []
    # t=1: every fragment again (same bytes, §2.6); the ones already held are replays.
    initiator.handle_timer(1.0)
    again = net.capture(1.0)
    assert [d.data for d in again] == [d.data for d in fragments]
    net.deliver(again, 1.0)
    net.run(1.0)
    assert session.retransmissions == 1
    assert session.state == IkeState.ESTABLISHED == peer_session.state
    assert len(peer_session.child_sas) == 1


def test_reordered_and_duplicated_fragments_reassemble_once() -> None:
    initiator, responder, peer, net = pair(endpoint_options=SMALL)
    session = initiator.initiate(peer, 0.0)
    fragments = _auth_request_fragments(net, 0.0)
    shuffled = list(reversed(fragments)) + fragments[:2]
    # IKE_AUTH SKF(n/n) --> ... SKF(1/n) -->  SKF(1/n) SKF(2/n) (duplicates)
    net.deliver(shuffled, 0.0)
    (peer_session,) = responder.sessions
    assert peer_session.state == IkeState.ESTABLISHED
    # The duplicate of fragment 1 after the answer re-sent the cached response (§2.6.1);
    # the duplicate of fragment 2 did not.
    assert peer_session.cached_answers == 1
    net.run(0.0)
    assert session.state == IkeState.ESTABLISHED
    assert len(of_type(drain(responder), ChildSaEstablished)) == 1


def test_corrupted_fragment_is_dropped_and_counted() -> None:
    initiator, responder, peer, net = pair(endpoint_options=SMALL)
    session = initiator.initiate(peer, 0.0)
    fragments = _auth_request_fragments(net, 0.0)
    bad = bytearray(fragments[1].data)
    bad[-3] ^= 0x01  # inside the ICV
    corrupted = Datagram(bytes(bad), fragments[1].src, fragments[1].dst)
    # IKE_AUTH SKF(1/n) --> SKF(2/n, bad ICV) --> ... SKF(n/n) -->   (silently discarded)
    net.deliver([fragments[0], corrupted, *fragments[2:]], 0.0)
    (peer_session,) = responder.sessions
    assert peer_session.integrity_failures == 1
    assert peer_session.state == IkeState.AUTHENTICATING and net.capture(0.0) == []
    # t=1: the retransmission brings the good fragment 2.
    initiator.handle_timer(1.0)
    net.run(1.0)
    assert session.state == IkeState.ESTABLISHED == peer_session.state


def test_replayed_fragments_only_fragment_one_gets_the_cached_response() -> None:
    initiator, responder, peer, net = pair(endpoint_options=SMALL)
    initiator.initiate(peer, 0.0)
    fragments = _auth_request_fragments(net, 0.0)
    net.deliver(fragments, 0.0)
    response = net.capture(0.0)  # <-- IKE_AUTH, in fragments
    assert len(response) > 1
    (peer_session,) = responder.sessions
    # A late copy of fragment 2 of the answered request: ignored (RFC 7383 §2.6.1).
    net.deliver([fragments[1]], 1.0)
    assert net.capture(1.0) == [] and peer_session.cached_answers == 0
    # A late copy of fragment 1: the whole cached response again, byte for byte.
    net.deliver([fragments[0]], 1.0)
    assert [d.data for d in net.capture(1.0)] == [d.data for d in response]
    assert peer_session.cached_answers == 1


def test_fragments_when_not_negotiated_are_dropped() -> None:
    initiator, responder, peer, net = pair(endpoint_options={"fragmentation": False})
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    drain(responder)
    (peer_session,) = responder.sessions
    keys = session.sa.keys
    assert keys is not None
    cipher = IkeCipher(keys.sk_ei, 16, iv_counter=1000)
    sa = session.sa
    crafted = build_protected(
        cipher,
        sa.spi_i,
        sa.spi_r,
        ExchangeType.INFORMATIONAL,
        initiator=True,
        response=False,
        message_id=sa.next_request_id,
        payloads=[VendorId(bytes(300))],
        max_length=150,
    )
    assert len(crafted) > 1
    before = peer_session.sa.to_dict()
    for raw in crafted:
        responder.receive_datagram(b"\x00" * 4 + raw, sa.local_address, sa.remote_address, 1.0)
    assert net.capture(1.0) == [] and drain(responder) == []
    assert peer_session.sa.to_dict() == before


def test_a_clone_inherits_fragmentation_and_its_large_exchange_is_fragmented() -> None:
    # MODP 2048: 256-byte KE payloads make the clone exchange larger than the threshold.
    initiator, responder, peer, net = pair(
        "aes256gcm16-prfsha256-modp2048", endpoint_options={"fragment_threshold": 400}
    )
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    drain(initiator), drain(responder)
    # CREATE_CHILD_SA {N(CLONE_IKE_SA), SA, Ni, KEi} --> (fragments)  <-- {SA, Nr, KEr}
    session.request_clone(1.0)
    flow = net.run(1.0)
    clone_exchange = [d for d in flow if d.exchange == ExchangeType.CREATE_CHILD_SA]
    assert len(clone_exchange) > 2
    assert all(_fragment_of(d.datagram) is not None for d in clone_exchange)
    (cloned,) = of_type(drain(initiator), IkeSaCloned)
    assert isinstance(cloned, IkeSaCloned)
    assert cloned.clone.fragmentation_negotiated
    assert cloned.clone.state == IkeState.ESTABLISHED


# --- Reassembly on its own: §2.6's checks in order --------------------------------------------


def _fragments(
    payloads: list[VendorId], max_length: int, message_id: int = 1, iv: int = 0
) -> list[bytes]:
    return list(
        build_protected(
            IkeCipher(KEY, 16, iv_counter=iv),
            b"\x01" * 8,
            b"\x02" * 8,
            ExchangeType.INFORMATIONAL,
            initiator=True,
            response=False,
            message_id=message_id,
            payloads=payloads,
            max_length=max_length,
        )
    )


def _add(reassembly: Reassembly, raw: bytes, now: float = 0.0) -> list[object] | None:
    result = reassembly.add(IkeCipher(KEY, 16), parse_message(raw), now)
    return None if result is None else list(result)


def test_a_larger_total_restarts_reassembly_and_a_smaller_one_is_dropped() -> None:
    three = _fragments([VendorId(bytes(200))], 150)
    four = _fragments([VendorId(bytes(330))], 150, iv=10)
    assert (len(three), len(four)) == (3, 4)
    reassembly = Reassembly(30.0)
    assert _add(reassembly, three[0]) is None and len(reassembly) == 1
    assert _add(reassembly, four[1]) is None  # Total 4 > 3: start over with this one
    assert _add(reassembly, three[1]) is None and reassembly.discarded == 1  # 3 < 4
    assert _add(reassembly, four[0]) is None
    assert _add(reassembly, four[1]) is None and reassembly.discarded == 2  # replay
    assert _add(reassembly, four[2]) is None
    assert _add(reassembly, four[3]) == [VendorId(bytes(330))]
    assert len(reassembly) == 0


def test_invalid_fragment_numbers_are_discarded_before_decryption() -> None:
    cipher = IkeCipher(KEY, 16)
    reassembly = Reassembly(30.0)
    good = _fragments([VendorId(b"x" * 300)], 150)[1]
    for number, total in ((0, 1), (2, 1), (0, 0), (5, 4)):
        # The SKF header's Fragment Number and Total Fragments rewritten (RFC 7383 §2.5).
        raw = bytearray(good)
        raw[32:36] = number.to_bytes(2, "big") + total.to_bytes(2, "big")
        assert reassembly.add(cipher, parse_message(bytes(raw)), 0.0) is None
    # Discarded on the numbers alone: no ICV was checked, nothing was queued.
    assert reassembly.discarded == 4 and len(reassembly) == 0


def test_stale_queue_is_dropped_after_the_timeout() -> None:
    fragments = _fragments([VendorId(bytes(300))], 150)
    reassembly = Reassembly(10.0)
    assert _add(reassembly, fragments[0], now=0.0) is None
    # 11 s later the old fragment 1 is gone: the rest alone cannot complete the message.
    for raw in fragments[1:]:
        assert _add(reassembly, raw, now=11.0) is None
    assert len(reassembly) == 1
    assert _add(reassembly, fragments[0], now=12.0) == [VendorId(bytes(300))]


def test_reassembly_is_bounded_in_memory() -> None:
    more = _fragments([VendorId(bytes(40_000)), VendorId(bytes(40_000))], 41_000, iv=20)
    reassembly = Reassembly(30.0)
    assert _add(reassembly, more[0]) is None
    assert _add(reassembly, more[1]) is None  # 80,000 bytes > MAX_REASSEMBLED: dropped
    assert reassembly.discarded == 1 and len(reassembly) == 0
    assert 40_000 * 2 > MAX_REASSEMBLED


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 700), min_size=1, max_size=6),
    max_length=st.integers(120, 1500),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_message_survives_fragmenting_and_shuffled_reassembly(
    sizes: list[int], max_length: int, seed: int
) -> None:
    rng = random.Random(seed)
    payloads = [VendorId(rng.randbytes(size)) for size in sizes]
    fragments = _fragments(payloads, max_length)
    assert all(len(raw) <= max_length for raw in fragments)
    if len(fragments) == 1:
        assert parse_message(fragments[0]).encrypted is not None
        assert not isinstance(parse_message(fragments[0]).encrypted, EncryptedFragment)
        return
    order = list(fragments) + rng.sample(fragments, k=min(2, len(fragments)))
    rng.shuffle(order)
    reassembly = Reassembly(30.0)
    # The first complete set gives the message (later copies are the session's to drop: by
    # then the Message ID is answered or no longer expected).
    results = [r for r in (_add(reassembly, raw) for raw in order) if r is not None]
    assert results[0] == payloads


def test_a_threshold_too_small_for_any_fragment_is_refused() -> None:
    with pytest.raises(ValueError, match="fragment_threshold"):
        EndpointConfig(fragment_threshold=100)
    assert EndpointConfig(fragment_threshold=150).fragment_threshold == 150
