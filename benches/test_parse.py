"""IKE message parsing and building: ikecore's native parser against a plain pure-Python struct
parser (benches/pure_python_ike.py, impl "peer") and scapy's IKEv2 layer ("peer-scapy").

Full decode means every field of every payload, proposal, transform and selector is read
(lazy decoding cannot skip work): the same ``touch`` function reads ikecore's and the
pure-Python parser's objects, dispatching on the payload type number.
"""
# ruff: noqa: B018  (the bare attribute reads in touch* are the measured work)

from __future__ import annotations

import ipaddress

import pure_python_ike as peer
import pytest

from ikecore import (
    Authentication,
    IDi,
    KeyExchange,
    Nonce,
    Notify,
    NotifyType,
    Proposal,
    SecurityAssociation,
    TrafficSelector,
    Transform,
    TSi,
    TSr,
    encode_message,
    encode_payload_chain,
    parse_message,
    parse_payload_chain,
)
from ikecore._fast import ikemsg

scapy_ikev2 = pytest.importorskip("scapy.contrib.ikev2")

SPI_I = bytes.fromhex("a1b2c3d4e5f60718")

# IKE_SA_INIT request: 2 proposals x 4 transforms, KE x25519, Nonce 32, 3 notifies
SA_INIT_PAYLOADS = [
    SecurityAssociation((
        Proposal(1, 1, b"", (Transform(1, 20, 256), Transform(2, 5), Transform(3, 12),
                             Transform(4, 31))),
        Proposal(2, 1, b"", (Transform(1, 12, 128), Transform(2, 7), Transform(3, 14),
                             Transform(4, 19))),
    )),
    KeyExchange(31, bytes(range(100, 132))),
    Nonce(bytes(range(32))),
    Notify(0, b"", NotifyType.NAT_DETECTION_SOURCE_IP, bytes(range(20))),
    Notify(0, b"", NotifyType.NAT_DETECTION_DESTINATION_IP, bytes(range(20, 40))),
    Notify(0, b"", NotifyType.IKEV2_FRAGMENTATION_SUPPORTED),
]
SA_INIT = encode_message(SPI_I, bytes(8), 34, 0, SA_INIT_PAYLOADS, initiator=True, response=False)

# IKE_AUTH request, decrypted inner chain: IDi, AUTH, SA, TSi, TSr, 4 notifies
AUTH_PAYLOADS = [
    IDi(2, b"client.example"),
    Authentication(2, bytes(range(32))),
    SecurityAssociation((
        Proposal(1, 3, b"\xc0\x01\x00\x01", (Transform(1, 20, 256), Transform(5, 0))),
    )),
    TSi((TrafficSelector.from_range(ipaddress.ip_address("10.1.0.2"),
                                    ipaddress.ip_address("10.1.0.2")),)),
    TSr((TrafficSelector.from_range(ipaddress.ip_address("0.0.0.0"),
                                    ipaddress.ip_address("255.255.255.255")),)),
    Notify(0, b"", NotifyType.INITIAL_CONTACT),
    Notify(0, b"", NotifyType.MOBIKE_SUPPORTED),
    Notify(0, b"", NotifyType.ADDITIONAL_IP4_ADDRESS, bytes((192, 0, 2, 7))),
    Notify(0, b"", NotifyType.CLONE_IKE_SA_SUPPORTED),
]
AUTH_FIRST, AUTH_INNER = encode_payload_chain(AUTH_PAYLOADS)

# the pure-Python builder gets the same messages as (type, body) pairs
PEER_SA_INIT_PROPOSALS = [
    (1, 1, b"", [(1, 20, 256), (2, 5, None), (3, 12, None), (4, 31, None)]),
    (2, 1, b"", [(1, 12, 128), (2, 7, None), (3, 14, None), (4, 19, None)]),
]


def peer_build_sa_init() -> bytes:
    return peer.encode_message(SPI_I, bytes(8), 34, 0x08, 0, [
        (33, peer.encode_sa(PEER_SA_INIT_PROPOSALS)),
        (34, peer.encode_ke(31, bytes(range(100, 132)))),
        (40, bytes(range(32))),
        (41, peer.encode_notify(0, b"", 16388, bytes(range(20)))),
        (41, peer.encode_notify(0, b"", 16389, bytes(range(20, 40)))),
        (41, peer.encode_notify(0, b"", 16430)),
    ])


def touch_header(m) -> None:
    m.spi_i, m.spi_r, m.exchange, m.message_id, m.is_initiator, m.is_response


def touch(payloads) -> None:
    """Read every field (ikecore and pure-Python objects share the field names)."""
    for p in payloads:
        kind = p.type
        p.critical
        if kind == 33:
            for proposal in p.proposals:
                proposal.number, proposal.protocol_id, proposal.spi
                for t in proposal.transforms:
                    t.type, t.id, t.key_length, t.attributes
        elif kind == 41:
            p.protocol_id, p.spi, p.notify_type, p.data
        elif kind == 34:
            p.group, p.data
        elif kind == 40:
            p.data
        elif kind == 35 or kind == 36:
            p.id_type, p.data
        elif kind == 39:
            p.method, p.data
        elif kind == 44 or kind == 45:
            for s in p.selectors:
                s.ts_type, s.ip_protocol, s.start_port, s.end_port, s.start_address, s.end_address


def touch_scapy(layer) -> None:
    """The same reads on scapy's dissection (it decodes eagerly on construction)."""
    while layer is not None and layer.__class__.__name__ not in ("NoPayload", "Raw"):
        layer.next_payload, layer.flags, layer.length
        name = layer.__class__.__name__
        if name == "IKEv2_SA":
            proposal = layer.prop
            while proposal is not None and proposal.__class__.__name__ == "IKEv2_Proposal":
                proposal.proposal, proposal.proto, proposal.SPI
                t = proposal.trans
                while t is not None and t.__class__.__name__ == "IKEv2_Transform":
                    t.transform_type, t.transform_id, t.key_length
                    t = t.payload
                proposal = proposal.payload
        elif name == "IKEv2_Notify":
            layer.proto, layer.SPI, layer.type, layer.notify
        elif name == "IKEv2_KE":
            layer.group, layer.ke
        elif name == "IKEv2_Nonce":
            layer.nonce
        elif name in ("IKEv2_IDi", "IKEv2_IDr"):
            layer.IDtype, layer.ID
        elif name == "IKEv2_AUTH":
            layer.auth_type, layer.load
        elif name in ("IKEv2_TSi", "IKEv2_TSr"):
            for s in layer.traffic_selector:
                s.TS_type, s.IP_protocol_ID, s.start_port, s.end_port
                s.starting_address_v4, s.ending_address_v4
        layer = layer.payload


def _tag(benchmark, group: str, impl: str) -> None:
    benchmark.group = group
    benchmark.extra_info["impl"] = impl


# --- full decode -----------------------------------------------------------------------------


def test_decode_sa_init_ikecore(benchmark):
    _tag(benchmark, "decode IKE_SA_INIT full", "ikecore")

    def run() -> None:
        m = parse_message(SA_INIT)
        touch_header(m)
        touch(m.payloads)

    benchmark(run)


def test_decode_sa_init_peer(benchmark):
    _tag(benchmark, "decode IKE_SA_INIT full", "peer")

    def run() -> None:
        m = peer.parse_message(SA_INIT)
        touch_header(m)
        touch(m.payloads)

    benchmark(run)


def test_decode_sa_init_scapy(benchmark):
    _tag(benchmark, "decode IKE_SA_INIT full", "peer-scapy")

    def run() -> None:
        m = scapy_ikev2.IKEv2(SA_INIT)
        m.init_SPI, m.resp_SPI, m.exch_type, m.id, m.flags
        touch_scapy(m.payload)

    benchmark(run)


def test_decode_auth_inner_ikecore(benchmark):
    _tag(benchmark, "decode IKE_AUTH inner chain full", "ikecore")
    benchmark(lambda: touch(parse_payload_chain(AUTH_FIRST, AUTH_INNER).payloads))


def test_decode_auth_inner_peer(benchmark):
    _tag(benchmark, "decode IKE_AUTH inner chain full", "peer")
    end = len(AUTH_INNER)
    benchmark(lambda: touch(peer.parse_chain(AUTH_FIRST, AUTH_INNER, 0, end)))


def test_decode_auth_inner_scapy(benchmark):
    _tag(benchmark, "decode IKE_AUTH inner chain full", "peer-scapy")
    benchmark(lambda: touch_scapy(scapy_ikev2.IKEv2_IDi(AUTH_INNER)))


# --- the two halves of the full decode ------------------------------------------------------
# Decoding alone (every payload object built, no field read) and reading every field of objects
# already decoded: the reads cost the same for both parsers (plain slot reads), so they bound the
# full-decode ratio from above.


def test_decode_only_sa_init_ikecore(benchmark):
    _tag(benchmark, "decode IKE_SA_INIT, no field reads", "ikecore")
    benchmark(lambda: parse_message(SA_INIT).payloads)


def test_decode_only_sa_init_peer(benchmark):
    _tag(benchmark, "decode IKE_SA_INIT, no field reads", "peer")
    benchmark(peer.parse_message, SA_INIT)


def test_decode_only_auth_inner_ikecore(benchmark):
    _tag(benchmark, "decode IKE_AUTH inner chain, no field reads", "ikecore")
    benchmark(lambda: parse_payload_chain(AUTH_FIRST, AUTH_INNER).payloads)


def test_decode_only_auth_inner_peer(benchmark):
    _tag(benchmark, "decode IKE_AUTH inner chain, no field reads", "peer")
    benchmark(peer.parse_chain, AUTH_FIRST, AUTH_INNER, 0, len(AUTH_INNER))


def _read_all(message) -> None:
    touch_header(message)
    touch(message.payloads)


def test_read_fields_sa_init_ikecore(benchmark):
    _tag(benchmark, "read every field IKE_SA_INIT (decoded)", "ikecore")
    message = parse_message(SA_INIT)
    benchmark(_read_all, message)


def test_read_fields_sa_init_peer(benchmark):
    _tag(benchmark, "read every field IKE_SA_INIT (decoded)", "peer")
    benchmark(_read_all, peer.parse_message(SA_INIT))


def test_read_fields_auth_inner_ikecore(benchmark):
    _tag(benchmark, "read every field IKE_AUTH inner (decoded)", "ikecore")
    benchmark(touch, parse_payload_chain(AUTH_FIRST, AUTH_INNER).payloads)


def test_read_fields_auth_inner_peer(benchmark):
    _tag(benchmark, "read every field IKE_AUTH inner (decoded)", "peer")
    benchmark(touch, peer.parse_chain(AUTH_FIRST, AUTH_INNER, 0, len(AUTH_INNER)))


# --- index-only walk -------------------------------------------------------------------------


def test_index_sa_init_ikecore(benchmark):
    _tag(benchmark, "index walk IKE_SA_INIT", "ikecore")
    benchmark(ikemsg.index_message, SA_INIT, False)


def test_index_sa_init_ikecore_checked(benchmark):
    _tag(benchmark, "index walk IKE_SA_INIT", "ikecore + body checks")
    benchmark(ikemsg.index_message, SA_INIT)


def test_index_sa_init_peer(benchmark):
    _tag(benchmark, "index walk IKE_SA_INIT", "peer")
    benchmark(peer.index_message, SA_INIT)


# --- building --------------------------------------------------------------------------------


def test_build_sa_init_ikecore(benchmark):
    _tag(benchmark, "build IKE_SA_INIT", "ikecore")
    result = benchmark(lambda: encode_message(SPI_I, bytes(8), 34, 0, SA_INIT_PAYLOADS,
                                              initiator=True, response=False))
    assert result == SA_INIT


def test_build_sa_init_peer(benchmark):
    _tag(benchmark, "build IKE_SA_INIT", "peer")
    assert benchmark(peer_build_sa_init) == SA_INIT


def test_build_auth_inner_ikecore(benchmark):
    _tag(benchmark, "build IKE_AUTH inner chain", "ikecore")
    assert benchmark(encode_payload_chain, AUTH_PAYLOADS) == (AUTH_FIRST, AUTH_INNER)


def test_build_auth_inner_peer(benchmark):
    _tag(benchmark, "build IKE_AUTH inner chain", "peer")
    any_v4 = (7, 0, 0, 65535)

    def run() -> bytes:
        return peer.encode_chain([
            (35, peer.encode_id(2, b"client.example")),
            (39, peer.encode_id(2, bytes(range(32)))),
            (33, peer.encode_sa([(1, 3, b"\xc0\x01\x00\x01", [(1, 20, 256), (5, 0, None)])])),
            (44, peer.encode_ts([(*any_v4, b"\x0a\x01\x00\x02", b"\x0a\x01\x00\x02")])),
            (45, peer.encode_ts([(*any_v4, b"\x00\x00\x00\x00", b"\xff\xff\xff\xff")])),
            (41, peer.encode_notify(0, b"", 16384)),
            (41, peer.encode_notify(0, b"", 16396)),
            (41, peer.encode_notify(0, b"", 16397, bytes((192, 0, 2, 7)))),
            (41, peer.encode_notify(0, b"", 16432)),
        ])

    assert benchmark(run) == AUTH_INNER
