"""Configuration, state tables, SA records and the in-memory store."""

from __future__ import annotations

import json

import pytest

from ikecore import IdType, LocalProtocolError, MalformedMessage, NotifyType, RemoteProtocolError
from ikecore.config import EndpointConfig, Identity, PeerConfig, TrafficSelector
from ikecore.sa import ChildSa, IkeSa, IkeSaKeys
from ikecore.states import (
    CHILD_TRANSITIONS,
    IKE_TRANSITIONS,
    ChildState,
    ChildTrigger,
    IkeState,
    IkeTrigger,
    child_transition,
    ike_transition,
)
from ikecore.store import MemoryStore, SaStore, open_store
from ikecore.suites import EspTransforms, IkeTransforms


def test_identity_parsing() -> None:
    assert Identity.parse("192.0.2.1") == Identity(IdType.IPV4_ADDR, bytes([192, 0, 2, 1]))
    assert Identity.parse("2001:db8::1").type == IdType.IPV6_ADDR
    assert Identity.parse("2001:db8::1").data == bytes.fromhex("20010db8" + "00" * 11 + "01")
    assert Identity.parse("alice@example.org") == Identity(IdType.RFC822_ADDR, b"alice@example.org")
    assert Identity.parse("gw.example.org") == Identity(IdType.FQDN, b"gw.example.org")
    assert Identity.parse("keyid:0a0b") == Identity(IdType.KEY_ID, b"\x0a\x0b")
    assert str(Identity.parse("10.1.2.3")) == "10.1.2.3"
    with pytest.raises(ValueError, match="empty"):
        Identity.parse("")


def test_traffic_selector_narrowing() -> None:
    wide = TrafficSelector.any()
    net = TrafficSelector.from_network("10.1.0.0/16")
    assert wide.intersect(net) == net
    host = TrafficSelector("10.1.2.3", "10.1.2.3", 17, 500, 500)
    assert net.intersect(host) == host
    assert net.intersect(TrafficSelector.from_network("10.2.0.0/16")) is None
    assert net.intersect(TrafficSelector.any(6)) is None
    tcp = TrafficSelector("10.1.0.0", "10.1.255.255", 6)
    assert tcp.intersect(host) is None


def test_peer_and_endpoint_config_validation() -> None:
    peer = PeerConfig(local_id=Identity.parse("a.example"), psk=b"secret")
    assert peer.ike_proposals[0].transforms[0].key_length == 256
    assert peer.clone and peer.mobike
    with pytest.raises(ValueError, match="psk"):
        PeerConfig(local_id=Identity.parse("a.example"), psk=b"")
    with pytest.raises(ValueError, match="esp_proposals"):
        PeerConfig(local_id=Identity.parse("a"), psk=b"k", esp_proposals=peer.ike_proposals)
    with pytest.raises(ValueError, match="window_size"):
        EndpointConfig(window_size=0)
    bob = PeerConfig(local_id=Identity.parse("gw"), psk=b"k", remote_id=Identity.parse("bob"))
    anyone = PeerConfig(local_id=Identity.parse("gw"), psk=b"k2")
    config = EndpointConfig(peers=(anyone, bob))
    assert config.peer_for(Identity.parse("bob")) is bob
    assert config.peer_for(Identity.parse("carol")) is anyone
    assert EndpointConfig(peers=(bob,)).peer_for(Identity.parse("carol")) is None


def test_state_tables() -> None:
    state = IkeState.CONNECTING
    for trigger in (IkeTrigger.INIT_DONE, IkeTrigger.AUTH_DONE, IkeTrigger.REKEY_STARTED):
        state = ike_transition(state, trigger)
    assert state == IkeState.REKEYING
    assert ike_transition(state, IkeTrigger.REKEYED) == IkeState.REKEYED
    assert ike_transition(IkeState.REKEYED, IkeTrigger.DELETE_STARTED) == IkeState.DELETING
    with pytest.raises(LocalProtocolError, match="CONNECTING cannot take REKEY_STARTED"):
        ike_transition(IkeState.CONNECTING, IkeTrigger.REKEY_STARTED)
    with pytest.raises(RemoteProtocolError) as caught:
        ike_transition(IkeState.DELETED, IkeTrigger.DELETE_RECEIVED, remote=True)
    assert caught.value.notify_type == NotifyType.INVALID_SYNTAX
    # DELETED is final: no trigger leaves it.
    assert not [pair for pair in IKE_TRANSITIONS if pair[0] == IkeState.DELETED]
    assert not [pair for pair in CHILD_TRANSITIONS if pair[0] == ChildState.DELETED]
    assert child_transition(ChildState.INSTALLED, ChildTrigger.REKEY_STARTED) == ChildState.REKEYING
    with pytest.raises(LocalProtocolError):
        child_transition(ChildState.DELETING, ChildTrigger.REKEY_STARTED)


def _child(spi_in: bytes) -> ChildSa:
    return ChildSa(
        spi_in=spi_in,
        spi_out=b"\xc0\x02\x00\x01",
        initiator=True,
        transforms=EspTransforms(20, 256, esn=True),
        key_in=bytes(range(36)),
        key_out=bytes(range(36, 72)),
        local_ts=(TrafficSelector.from_network("10.0.0.0/24"),),
        remote_ts=(TrafficSelector.any(),),
        seq_out=41,
    )


def _ike_sa(spi_i: bytes = b"\xa1" * 8, spi_r: bytes = b"\x81" * 8) -> IkeSa:
    sa = IkeSa(
        spi_i=spi_i,
        spi_r=spi_r,
        initiator=True,
        local_address=("192.0.2.1", 4500),
        remote_address=("198.51.100.7", 4500),
        state=IkeState.ESTABLISHED,
        transforms=IkeTransforms(20, 256, 5, 31),
        keys=IkeSaKeys(*(bytes([n]) * 32 for n in range(7))),
        local_id=Identity.parse("client.example"),
        remote_id=Identity.parse("gateway.example"),
        next_request_id=3,
        peer_clone_supported=True,
        local_clone_supported=True,
        parent=(b"\x01" * 8, b"\x02" * 8),
        family="a1a1",
    )
    child = _child(b"\xc0\x01\x00\x01")
    sa.child_sas[child.spi_in] = child
    return sa


def test_records_round_trip_through_json() -> None:
    sa = _ike_sa()
    data = json.loads(json.dumps(sa.to_dict()))
    assert set(data["keys"]) == {"sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"}
    assert set(data["child_sas"][0]["keys"]) == {"key_in", "key_out"}
    again = IkeSa.from_dict(data)
    assert again == sa
    assert again.clone_negotiated and again.local_spi == b"\xa1" * 8
    # The MOBIKE state (RFC 4555 §3.4-§3.8), defaulted and set.
    assert (again.peer_addresses, again.mobike_update_id, again.nat_seen_as) == ((), -1, b"")
    sa.peer_addresses = ("198.51.100.7", "2001:db8::7")
    sa.mobike_update_id = 5
    sa.nat_seen_as = bytes(range(20))
    sa.mobike_initiator = not sa.initiator  # the other end rekeyed the SA (RFC 4555 §1.3)
    assert IkeSa.from_dict(json.loads(json.dumps(sa.to_dict()))) == sa
    # The response cache (RFC 7296 §2.1): none, then a response and a fragmented one.
    assert again.responses is None and data["responses"] is None
    sa.responses = {4: (b"\x01request", (b"\x02response",)), 5: (b"\x03", (b"\x04", b"\x05"))}
    data = json.loads(json.dumps(sa.to_dict()))
    assert data["responses"] == [
        [4, b"\x01request".hex(), [b"\x02response".hex()]],
        [5, "03", ["04", "05"]],
    ]
    assert IkeSa.from_dict(data) == sa
    # A dict written before the cache was kept reads as none.
    del data["responses"]
    assert IkeSa.from_dict(data).responses is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("spi_i"),
        lambda d: d.update(state="FLYING"),
        lambda d: d.update(spi_r="zz"),
        lambda d: d["child_sas"][0].update(transforms={"encr": 20}),
        lambda d: d.update(local_id=[99, "00"]),
        lambda d: d.update(nat_seen_as="not hex"),
        lambda d: d.pop("mobike_update_id"),
        lambda d: d.pop("mobike_initiator"),
        lambda d: d.update(responses=[[1, "zz", []]]),
        lambda d: d.update(responses=[[1, "00"]]),
        lambda d: d.update(responses=[["one", "00", ["00"]]]),
    ],
)
def test_unreadable_records_raise_malformed(damage: object) -> None:
    data = _ike_sa().to_dict()
    assert callable(damage)
    damage(data)
    with pytest.raises(MalformedMessage, match="unreadable"):
        IkeSa.from_dict(data)


def test_memory_store_lookups_and_spi_claims() -> None:
    store = open_store("memory:")
    assert isinstance(store, MemoryStore) and isinstance(store, SaStore)
    assert store.claim_ike_spi(b"\xa1" * 8)
    assert not store.claim_ike_spi(b"\xa1" * 8)
    assert store.claim_esp_spi(b"\xc0\x01\x00\x01")
    assert not store.claim_esp_spi(b"\xc0\x01\x00\x01")
    sa = _ike_sa()
    store.put_ike_sa(sa)
    assert store.get_ike_sa(sa.spi_i, sa.spi_r) is sa
    assert store.get_ike_sa(sa.spi_r, sa.spi_i) is None
    assert store.find_by_esp_spi(b"\xc0\x01\x00\x01") is sa
    assert store.find_by_identity(Identity.parse("gateway.example")) == [sa]
    # A Child SA removed from the record disappears from the SPI index on the next put.
    new_child = _child(b"\xc0\x01\x00\x02")
    sa.child_sas = {new_child.spi_in: new_child}
    store.put_ike_sa(sa)
    assert store.find_by_esp_spi(b"\xc0\x01\x00\x01") is None
    assert store.find_by_esp_spi(b"\xc0\x01\x00\x02") is sa
    other = _ike_sa(b"\xb1" * 8, b"\x91" * 8)
    store.put_ike_sa(other)
    assert len(store.find_by_identity(Identity.parse("gateway.example"))) == 2
    store.delete_ike_sa(sa.spi_i, sa.spi_r)
    assert store.get_ike_sa(sa.spi_i, sa.spi_r) is None
    assert store.find_by_esp_spi(b"\xc0\x01\x00\x02") is None
    assert store.find_by_identity(Identity.parse("gateway.example")) == [other]
    assert store.claim_ike_spi(b"\xa1" * 8)  # released with the SA
    assert store.ike_sas() == [other]
    store.delete_ike_sa(b"\x00" * 8, b"\x00" * 8)  # absent: no error
    with pytest.raises(ValueError, match="8 bytes"):
        store.claim_ike_spi(b"\x01")
    with pytest.raises(ValueError, match="unsupported store URL"):
        open_store("ftp://x")


def test_memory_store_child_sa_moving_to_a_new_ike_sa() -> None:
    # IKE SA rekey: the successor is stored with the Child SA first, then the old SA without.
    store = MemoryStore()
    old, new = _ike_sa(), _ike_sa(b"\xb1" * 8, b"\x91" * 8)
    (spi,) = old.child_sas
    assert store.claim_esp_spi(spi)
    store.put_ike_sa(old)
    new.child_sas, old.child_sas = old.child_sas, {}
    store.put_ike_sa(new)
    store.put_ike_sa(old)
    assert store.find_by_esp_spi(spi) is new
    store.delete_ike_sa(old.spi_i, old.spi_r)
    assert store.find_by_esp_spi(spi) is new
    assert not store.claim_esp_spi(spi)  # still in use by the new SA


def test_reprs_never_show_keys() -> None:
    sa = _ike_sa()
    text = repr(sa)
    assert sa.keys is not None
    for key in (sa.keys.sk_d, sa.keys.sk_ei, *(c.key_in for c in sa.child_sas.values())):
        assert key.hex() not in text and repr(key) not in text
    assert "sk_ei=<32 bytes>" in repr(sa.keys)
    peer = PeerConfig(local_id=Identity.parse("a.example"), psk=b"top-secret-psk")
    assert "top-secret-psk" not in repr(peer)
