"""RFC 7791 §5.1/§5.3: every refusal of a clone, the initiator's retry rules, and
CLONE_IKE_SA where it does not belong (ignored)."""

from __future__ import annotations

import dataclasses

import pytest
from clone_harness import Pair, clone_on_both_sides, cloned, established
from engine_harness import of_type

from ikecore import CloneRefused, ExchangeType, NotifyType, ProtocolId
from ikecore.events import (
    ChildSaEstablished,
    CloneFailed,
    CloneRequestRefused,
    Event,
    IkeSaCloned,
    IkeSaDeleted,
)
from ikecore.exchanges.clone_ike import CLONE_RETRY_DELAY
from ikecore.exchanges.create_child import CreateChildInitiator
from ikecore.session import IkeSession
from ikecore.states import IkeState
from ikecore.suites import parse_proposals
from ikecore.wire import IkeMessage, Notify, Payload


def failed(events: list[Event]) -> CloneFailed:
    (event,) = of_type(events, CloneFailed)
    assert isinstance(event, CloneFailed)
    return event


def set_gateway_policy(p: Pair, **changes: object) -> None:
    """Change the gateway's configuration for this peer (what a reload would do)."""
    peer = p.gateway_sa.peer
    assert peer is not None
    p.gateway_sa.peer = dataclasses.replace(peer, **changes)  # type: ignore[arg-type]


def test_no_additional_sas_when_the_family_is_full_until_an_sa_goes() -> None:
    p = established(gateway_max_clones=1)
    clone, _ = clone_on_both_sides(p, p.client_sa, 1.0)
    # HDR(old), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->  <--  HDR(old), SK {N(NO_ADDITIONAL_SAS)}
    p.client_sa.request_clone(2.0)
    assert p.run(2.0) == ["CREATE_CHILD_SA --> #3", "CREATE_CHILD_SA <-- #3"]
    client_events, gateway_events = p.events()
    assert failed(client_events).reason == "NO_ADDITIONAL_SAS"
    assert failed(client_events).session is p.client_sa
    assert not of_type(gateway_events, IkeSaCloned) and len(p.gateway.sessions) == 2
    assert gateway_events == [CloneRequestRefused(p.gateway_sa, "NO_ADDITIONAL_SAS")]
    # The whole family counts: the clone may not be cloned either. And the refusal is
    # permanent: nothing is sent until one of our SAs with this peer is gone (§5.3).
    for session in (p.client_sa, clone):
        with pytest.raises(CloneRefused) as refused:
            session.request_clone(3.0)
        assert refused.value.reason == "NO_ADDITIONAL_SAS"
    assert p.net.capture(3.0) == []
    # HDR(clone), SK {D(IKE)}  -->  <--  HDR(clone), SK {}
    clone.delete(4.0)
    p.run(4.0)
    p.events()
    # Now there is room again: HDR(old), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->  <--
    again, _ = clone_on_both_sides(p, p.client_sa, 5.0)
    assert again.state == IkeState.ESTABLISHED and len(p.gateway.sessions) == 2


def test_max_clones_zero_refuses_every_clone_and_counts_on_our_side_too() -> None:
    p = established(gateway_max_clones=0, client_max_clones=0)
    # Our own policy: nothing is sent.
    with pytest.raises(CloneRefused) as refused:
        p.client_sa.request_clone(1.0)
    assert refused.value.reason == "NO_ADDITIONAL_SAS" and p.net.capture(1.0) == []
    # The gateway's policy, asked by the gateway itself: the same.
    with pytest.raises(CloneRefused):
        p.gateway_sa.request_clone(1.0)


def test_temporary_failure_while_resources_are_short_and_no_immediate_retry() -> None:
    p = established()
    config = p.gateway.config
    # The gateway is short of resources: as many SAs half open as make it demand COOKIEs.
    p.gateway.config = dataclasses.replace(config, cookie_threshold=0)
    # HDR(old), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->  <--  HDR(old), SK {N(TEMPORARY_FAILURE)}
    p.client_sa.request_clone(1.0)
    assert p.run(1.0) == ["CREATE_CHILD_SA --> #2", "CREATE_CHILD_SA <-- #2"]
    client_events, _ = p.events()
    assert failed(client_events).reason == "TEMPORARY_FAILURE"
    assert p.client_sa.state == IkeState.ESTABLISHED and len(p.client.sessions) == 1
    p.gateway.config = config
    # RFC 7296 §2.25: not at once, and not before the retry delay.
    for now in (1.0, 1.0 + CLONE_RETRY_DELAY - 0.5):
        with pytest.raises(CloneRefused) as refused:
            p.client_sa.request_clone(now)
        assert refused.value.reason == "TEMPORARY_FAILURE"
    assert p.net.capture(2.0) == []
    clone, _ = clone_on_both_sides(p, p.client_sa, 1.0 + CLONE_RETRY_DELAY)
    assert clone.state == IkeState.ESTABLISHED


def test_temporary_failure_while_the_gateway_deletes_the_sa() -> None:
    p = established()
    # HDR(old), SK {D(IKE)}  <--  (gateway, not yet delivered)
    p.gateway_sa.delete(1.0)
    delete = p.net.capture(1.0)
    # HDR(old), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->  <--  HDR(old), SK {N(TEMPORARY_FAILURE)}
    p.client_sa.request_clone(1.0)
    p.net.deliver(p.net.capture(1.0), 1.0)
    p.net.deliver(p.net.capture(1.0), 1.0)
    client_events, _ = p.events()
    assert failed(client_events).reason == "TEMPORARY_FAILURE"
    # Then the Delete: the SA goes on both sides, no clone anywhere.
    p.net.deliver(delete, 1.0)
    p.run(1.0)
    client_events, _ = p.events()
    assert of_type(client_events, IkeSaDeleted) and not p.client.sessions
    assert not p.gateway.sessions


def test_no_proposal_chosen_and_invalid_ke_payload() -> None:
    p = established(ike="aes256gcm16-prfsha256-x25519-ecp256")
    # The gateway now accepts only a suite the client does not offer: NO_PROPOSAL_CHOSEN.
    set_gateway_policy(p, ike_proposals=parse_proposals("aes128gcm16-prfsha384-ecp384"))
    # HDR, SK {N(CLONE_IKE_SA), SA, Ni, KEi(31)}  -->  <--  HDR, SK {N(NO_PROPOSAL_CHOSEN)}
    p.client_sa.request_clone(1.0)
    p.run(1.0)
    assert failed(p.events()[0]).reason == "NO_PROPOSAL_CHOSEN"
    # The gateway wants group 19 while the client's KEi is 31 (the SA's group):
    # HDR, SK {N(CLONE_IKE_SA), SA, Ni, KEi(31)}  -->  <--  HDR, SK {N(INVALID_KE_PAYLOAD, 19)}
    # HDR, SK {N(CLONE_IKE_SA), SA, Ni, KEi(19)}  -->  <--  HDR, SK {SA, Nr, KEr(19)}
    set_gateway_policy(p, ike_proposals=parse_proposals("aes256gcm16-prfsha256-ecp256"))
    p.client_sa.request_clone(2.0)
    assert p.run(2.0) == [
        "CREATE_CHILD_SA --> #3",
        "CREATE_CHILD_SA <-- #3",
        "CREATE_CHILD_SA --> #4",
        "CREATE_CHILD_SA <-- #4",
    ]
    client_events, gateway_events = p.events()
    clone = cloned(client_events).clone
    assert not of_type(client_events, CloneFailed)
    assert clone.sa.transforms is not None and clone.sa.transforms.dh == 19
    assert p.client_sa.sa.transforms is not None and p.client_sa.sa.transforms.dh == 31
    assert cloned(gateway_events).clone.sa.keys == clone.sa.keys


def test_a_clone_request_on_an_sa_without_clone_support_is_refused_not_rekeyed() -> None:
    """A peer that ignores §5.1 (we never do: `test_clone_needs_both_announcements`): the SA
    "MUST NOT be cloned", and a plain rekey would move the Child SAs the peer keeps."""
    p = established()
    p.gateway_sa.sa.peer_clone_supported = False  # as if the client had not announced it
    # HDR, SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->  <--  HDR, SK {N(NO_ADDITIONAL_SAS)}
    p.client_sa.request_clone(1.0)
    p.run(1.0)
    client_events, gateway_events = p.events()
    assert failed(client_events).reason == "NO_ADDITIONAL_SAS"
    assert gateway_events == [CloneRequestRefused(p.gateway_sa, "NO_ADDITIONAL_SAS")]
    assert p.gateway_sa.state == IkeState.ESTABLISHED and len(p.gateway_sa.child_sas) == 1
    assert len(p.gateway.sessions) == 1


class _ChildWithCloneNotify(CreateChildInitiator):
    """A Child SA request that also carries N(CLONE_IKE_SA) (RFC 7791 §5.2: ignored there)."""

    def build_request(self, session: IkeSession, now: float) -> list[Payload]:
        return [Notify.status(NotifyType.CLONE_IKE_SA), *super().build_request(session, now)]


class _InformationalWithCloneNotify:
    exchange_type = ExchangeType.INFORMATIONAL

    def __init__(self) -> None:
        self.answer: list[Payload] | None = None

    def build_request(self, session: IkeSession, now: float) -> list[Payload]:
        return [Notify.status(NotifyType.CLONE_IKE_SA)]

    def process_response(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> None:
        self.answer = payloads

    def abort(self, session: IkeSession, reason: str, now: float) -> None:
        raise AssertionError(reason)


def test_clone_ike_sa_anywhere_else_is_ignored() -> None:
    p = established()
    peer = p.client_sa.peer
    assert peer is not None
    # HDR, SK {N(CLONE_IKE_SA), SA(ESP), Ni, TSi, TSr}  -->  <--  HDR, SK {SA, Nr, TSi, TSr}
    p.client_sa.start(
        _ChildWithCloneNotify(
            parse_proposals("aes256gcm16", ProtocolId.ESP), peer.local_ts, peer.remote_ts
        ),
        1.0,
    )
    p.run(1.0)
    client_events, gateway_events = p.events()
    assert of_type(client_events, ChildSaEstablished) and of_type(
        gateway_events, ChildSaEstablished
    )
    assert not of_type(client_events + gateway_events, IkeSaCloned)
    assert len(p.gateway.sessions) == 1 and len(p.gateway_sa.child_sas) == 2
    # HDR, SK {N(CLONE_IKE_SA)}  -->  <--  HDR, SK {}   (INFORMATIONAL)
    informational = _InformationalWithCloneNotify()
    p.client_sa.start(informational, 2.0)
    p.run(2.0)
    assert informational.answer == [] and len(p.gateway.sessions) == 1
    assert p.events() == ([], [])
