"""strongSwan proposal strings, the responder's proposal choice and key lengths."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ikecore import DhGroup, EncrId, PrfId, ProtocolId, TransformType
from ikecore.suites import (
    EspTransforms,
    IkeTransforms,
    ProposalSpec,
    Transform,
    encr_key_length,
    icv_length,
    parse_proposals,
    select_proposal,
)

ENCR, PRF, INTEG, DH, ESN = (
    TransformType.ENCR,
    TransformType.PRF,
    TransformType.INTEG,
    TransformType.DH,
    TransformType.ESN,
)


@dataclass(frozen=True)
class WireProposal:
    """What a parsed SA payload's proposal offers (type, id, key_length per transform)."""

    transforms: tuple[Transform, ...]


def wire(spec: ProposalSpec) -> WireProposal:
    return WireProposal(spec.transforms)


@pytest.mark.parametrize(
    ("text", "encr", "bits", "prf", "dh"),
    [
        ("aes256gcm16-prfsha256-x25519", EncrId.AES_GCM_16, 256, PrfId.HMAC_SHA2_256, 31),
        ("aes128gcm16-prfsha256-ecp256", EncrId.AES_GCM_16, 128, PrfId.HMAC_SHA2_256, 19),
        ("chacha20poly1305-prfsha256-x25519", EncrId.CHACHA20_POLY1305, None, 5, 31),
        ("aes256gcm16-prfsha384-ecp384", EncrId.AES_GCM_16, 256, PrfId.HMAC_SHA2_384, 20),
        ("aes256gcm16-prfsha256-modp2048", EncrId.AES_GCM_16, 256, PrfId.HMAC_SHA2_256, 14),
        ("aes128gcm8-prfsha512-ecp521", EncrId.AES_GCM_8, 128, PrfId.HMAC_SHA2_512, 21),
        ("AES256GCM12-PRFSHA256-CURVE25519", EncrId.AES_GCM_12, 256, 5, 31),
    ],
)
def test_ike_proposal_strings(text: str, encr: int, bits: int | None, prf: int, dh: int) -> None:
    (spec,) = parse_proposals(text)
    assert spec.protocol == ProtocolId.IKE
    assert spec.transforms == (
        Transform(ENCR, encr, bits),
        Transform(PRF, prf),
        Transform(DH, dh),
    )


def test_esp_proposal_strings_and_esn_default() -> None:
    (plain,) = parse_proposals("aes256gcm16", ProtocolId.ESP)
    assert plain.transforms == (Transform(ENCR, 20, 256), Transform(ESN, 0))
    (esn,) = parse_proposals("aes128gcm16-esn", ProtocolId.ESP)
    assert esn.of_type(ESN) == (Transform(ESN, 1),)
    (noesn,) = parse_proposals("aes128gcm16-noesn", ProtocolId.ESP)
    assert noesn.of_type(ESN) == (Transform(ESN, 0),)
    (both,) = parse_proposals("aes128gcm16-esn-noesn", ProtocolId.ESP)
    assert both.of_type(ESN) == (Transform(ESN, 1), Transform(ESN, 0))
    (pfs,) = parse_proposals("aes256gcm16-ecp256", ProtocolId.ESP)
    assert pfs.of_type(DH) == (Transform(DH, 19),)


def test_several_proposals_and_several_algorithms() -> None:
    specs = parse_proposals(
        "aes256gcm16-aes128gcm16-prfsha256-x25519-ecp256, chacha20poly1305-prfsha384-x25519"
    )
    assert len(specs) == 2
    assert [t.key_length for t in specs[0].of_type(ENCR)] == [256, 128]
    assert [t.id for t in specs[0].of_type(DH)] == [31, 19]
    assert specs[1].of_type(PRF) == (Transform(PRF, PrfId.HMAC_SHA2_384),)


@pytest.mark.parametrize(
    ("text", "protocol", "message"),
    [
        ("aes256gcm16-prfsha256", ProtocolId.IKE, "no key exchange group"),
        ("aes256gcm16-x25519", ProtocolId.IKE, "no PRF"),
        ("prfsha256-x25519", ProtocolId.IKE, "no encryption"),
        ("aes256cbc-prfsha256-x25519", ProtocolId.IKE, "'aes256cbc'"),
        ("aes256gcm16-esn-prfsha256-x25519", ProtocolId.IKE, "'esn'"),
        ("aes256gcm16-prfsha256", ProtocolId.ESP, "'prfsha256'"),
        ("", ProtocolId.IKE, "empty"),
    ],
)
def test_bad_proposal_strings(text: str, protocol: ProtocolId, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_proposals(text, protocol)


def test_responder_takes_the_first_acceptable_offer() -> None:
    ours = parse_proposals("aes128gcm16-prfsha256-ecp256,aes256gcm16-prfsha256-x25519")
    offered = [
        wire(p)
        for p in parse_proposals(
            "chacha20poly1305-prfsha512-x25519,aes256gcm16-prfsha256-x25519,aes128gcm16-prfsha256-ecp256"
        )
    ]
    chosen = select_proposal(offered, ours)
    assert chosen is not None and chosen.index == 1
    assert chosen.ike == IkeTransforms(EncrId.AES_GCM_16, 256, PrfId.HMAC_SHA2_256, 31)


def test_one_transform_per_type_and_ke_group_preferred() -> None:
    ours = parse_proposals("aes256gcm16-aes128gcm16-prfsha256-ecp256-x25519")
    offered = [wire(p) for p in parse_proposals("aes128gcm16-aes256gcm16-prfsha256-x25519-ecp256")]
    plain = select_proposal(offered, ours)
    assert plain is not None and plain.ike is not None
    # Initiator's order decides among acceptable transforms.
    assert (plain.ike.key_bits, plain.ike.dh) == (128, 31)
    with_ke = select_proposal(offered, ours, prefer_dh=19)
    assert with_ke is not None and with_ke.ike is not None and with_ke.ike.dh == 19
    # A preferred group the responder does not accept is not chosen.
    other = select_proposal(offered, parse_proposals("aes128gcm16-prfsha256-x25519"), prefer_dh=19)
    assert other is not None and other.ike is not None and other.ike.dh == 31


def test_no_acceptable_proposal() -> None:
    ours = parse_proposals("aes256gcm16-prfsha256-x25519")
    assert (
        select_proposal([wire(p) for p in parse_proposals("aes128gcm16-prfsha256-x25519")], ours)
        is None
    )
    # Same cipher id but another key length is another transform (RFC 7296 §3.3.5).
    assert (
        select_proposal([wire(p) for p in parse_proposals("aes256gcm8-prfsha256-x25519")], ours)
        is None
    )
    assert select_proposal([], ours) is None


def test_unknown_transform_type_rejects_the_whole_proposal() -> None:
    (spec,) = parse_proposals("aes256gcm16-prfsha256-x25519")
    strange = WireProposal((*spec.transforms, Transform(6, 1)))
    assert select_proposal([strange], (spec,)) is None
    assert select_proposal([strange, wire(spec)], (spec,)) is not None


def test_integ_offered_next_to_aead_is_not_selected() -> None:
    (spec,) = parse_proposals("aes256gcm16-prfsha256-x25519")
    offer = WireProposal((*spec.transforms, Transform(INTEG, 12)))
    chosen = select_proposal([offer], (spec,))
    assert chosen is not None and chosen.ike is not None
    assert all(t.type != INTEG for t in chosen.ike.transforms())


def test_esp_selection_esn_and_pfs() -> None:
    ours = parse_proposals("aes256gcm16-esn-noesn", ProtocolId.ESP)
    offered = [wire(p) for p in parse_proposals("aes256gcm16-esn", ProtocolId.ESP)]
    chosen = select_proposal(offered, ours)
    assert chosen is not None and chosen.esp == EspTransforms(EncrId.AES_GCM_16, 256, True, 0)
    # Missing ESN transform is read as "no ESN".
    no_esn_transform = WireProposal((Transform(ENCR, 20, 256),))
    chosen = select_proposal([no_esn_transform], ours)
    assert chosen is not None and chosen.esp is not None and not chosen.esp.esn
    assert (
        select_proposal([no_esn_transform], parse_proposals("aes256gcm16-esn", ProtocolId.ESP))
        is None
    )
    # PFS: a KE payload needs an acceptable group; an offer demanding PFS without KE fails.
    pfs_ours = parse_proposals("aes256gcm16-x25519", ProtocolId.ESP)
    pfs_offer = [wire(p) for p in pfs_ours]
    with_ke = select_proposal(pfs_offer, pfs_ours, with_dh=True)
    assert with_ke is not None and with_ke.esp is not None and with_ke.esp.dh == 31
    assert select_proposal(pfs_offer, pfs_ours, with_dh=False) is None
    # In IKE_AUTH D-H transforms are ignored (RFC 7296 §1.2).
    in_auth = select_proposal(pfs_offer, pfs_ours)
    assert in_auth is not None and in_auth.esp is not None and in_auth.esp.dh == DhGroup.NONE
    assert select_proposal(pfs_offer, pfs_ours, with_dh=True, prefer_dh=19) is not None


def test_key_lengths() -> None:
    assert encr_key_length(EncrId.AES_GCM_16, 256) == 36
    assert encr_key_length(EncrId.AES_GCM_8, 128) == 20
    assert encr_key_length(EncrId.AES_GCM_12, 192) == 28
    assert encr_key_length(EncrId.CHACHA20_POLY1305, None) == 36
    assert [icv_length(e) for e in (18, 19, 20, 28)] == [8, 12, 16, 16]
    assert IkeTransforms(EncrId.AES_GCM_16, 128, 5, 31).encr_key_length == 20
    assert EspTransforms(EncrId.AES_GCM_8, 256, False).icv_length == 8
    with pytest.raises(ValueError, match="Key Length"):
        encr_key_length(EncrId.AES_GCM_16, 64)
    with pytest.raises(ValueError, match="no Key Length"):
        encr_key_length(EncrId.CHACHA20_POLY1305, 256)
    with pytest.raises(ValueError, match="unsupported"):
        icv_length(EncrId.AES_CBC)


def test_negotiated_sets_list_their_transforms() -> None:
    esp = EspTransforms(EncrId.AES_GCM_16, 256, esn=True, dh=31)
    assert esp.transforms() == (Transform(ENCR, 20, 256), Transform(DH, 31), Transform(ESN, 1))
    ike = IkeTransforms(EncrId.CHACHA20_POLY1305, None, 5, 19)
    assert ike.transforms() == (Transform(ENCR, 28), Transform(PRF, 5), Transform(DH, 19))
