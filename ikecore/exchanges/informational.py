"""INFORMATIONAL (RFC 7296 §1.4): Delete of IKE and Child SAs, liveness checks.

    HDR, SK {D(IKE)}                -->     <--  HDR, SK {}
    HDR, SK {D(ESP, SPI...)}        -->     <--  HDR, SK {D(ESP, SPI...)}
    HDR, SK {}                      -->     <--  HDR, SK {}            (liveness)

A Delete names the SPIs the *sender* receives on (§3.11): for us, a Child SA's outbound SPI.
The response to a Child SA Delete deletes the other direction; when both ends deleted the same
Child SA at once, each answers with an empty Delete for it (§1.4.1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikecore.constants import ExchangeType, NotifyType, ProtocolId
from ikecore.events import LivenessChecked
from ikecore.sa import ChildSa
from ikecore.states import ChildState, ChildTrigger, IkeState, IkeTrigger
from ikecore.wire import Delete, IkeMessage, Notify, Payload

if TYPE_CHECKING:
    from ikecore.session import IkeSession

__all__ = [
    "DeleteChildInitiator",
    "DeleteIkeInitiator",
    "FatalNotifyInitiator",
    "InformationalResponder",
    "LivenessInitiator",
]


_FATAL: dict[int, str] = {
    NotifyType.AUTHENTICATION_FAILED: "authentication_failed",
    NotifyType.INVALID_SYNTAX: "invalid_syntax",
}


class DeleteIkeInitiator:
    exchange_type = ExchangeType.INFORMATIONAL

    def __init__(self, reason: str = "deleted_locally") -> None:
        self._reason = reason

    def build_request(self, session: IkeSession, now: float) -> list[Payload]:
        return [Delete(ProtocolId.IKE, 0, ())]

    def process_response(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> None:
        session.terminate(IkeTrigger.DELETE_DONE, self._reason, now)

    def abort(self, session: IkeSession, reason: str, now: float) -> None:
        """An unanswered Delete still ends the SA (the session's timeout does it)."""


class DeleteChildInitiator:
    exchange_type = ExchangeType.INFORMATIONAL

    def __init__(self, child: ChildSa, reason: str = "deleted_locally") -> None:
        self._child = child
        self._reason = reason

    def build_request(self, session: IkeSession, now: float) -> list[Payload]:
        return [Delete(ProtocolId.ESP, 4, (self._child.spi_in,))]

    def process_response(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> None:
        # Whatever the peer answers, our inbound side is gone and it was told so (on the
        # successor if an IKE SA rekey moved the Child SA meanwhile, §2.8).
        session.holder_of_outbound_spi(self._child.spi_out).remove_child(self._child, self._reason)

    def abort(self, session: IkeSession, reason: str, now: float) -> None:
        session.holder_of_outbound_spi(self._child.spi_out).remove_child(self._child, reason)


class FatalNotifyInitiator:
    """INFORMATIONAL {N(error)} that ends the IKE SA on both sides (RFC 7296 §2.21.2: the
    initiator could not authenticate the responder, which already thinks the SA is up)."""

    exchange_type = ExchangeType.INFORMATIONAL

    def __init__(self, notify_type: int, reason: str) -> None:
        self._notify_type = notify_type
        self._reason = reason

    def build_request(self, session: IkeSession, now: float) -> list[Payload]:
        return [Notify.status(self._notify_type)]

    def process_response(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> None:
        session.terminate(IkeTrigger.FAILED, self._reason, now, self._notify_type)

    def abort(self, session: IkeSession, reason: str, now: float) -> None:
        """Unanswered, the SA still ends (the session's timeout)."""


class LivenessInitiator:
    """INFORMATIONAL {} (§1.4), or {N(NAT_DETECTION_*)} behind a NAT with MOBIKE, where the
    answer also tells whether the NAT's mapping of our address changed (RFC 4555 §3.8)."""

    exchange_type = ExchangeType.INFORMATIONAL

    def __init__(self) -> None:
        self._probed_nat = False

    def build_request(self, session: IkeSession, now: float) -> list[Payload]:
        from ikecore.exchanges.mobike import nat_mapping_probe

        probe = nat_mapping_probe(session)
        self._probed_nat = bool(probe)
        return probe

    def process_response(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> None:
        session.emit(LivenessChecked(session))
        if self._probed_nat:
            from ikecore.exchanges.mobike import notice_nat_mapping

            notice_nat_mapping(session, payloads, now)

    def abort(self, session: IkeSession, reason: str, now: float) -> None:
        """Unanswered liveness checks end the SA through the session's timeout."""


class InformationalResponder:
    def process_request(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> list[Payload]:
        for notify in payloads:
            if isinstance(notify, Notify) and notify.notify_type in _FATAL:
                # §2.21: the peer gives up on this IKE SA (e.g. it could not authenticate us).
                session.close_after_response(
                    IkeTrigger.FAILED, _FATAL[notify.notify_type], notify.notify_type
                )
                return []
        deletes = [p for p in payloads if isinstance(p, Delete)]
        if any(d.protocol_id == ProtocolId.IKE for d in deletes):
            from ikecore.exchanges.rekey_ike import yield_to_peer_rekey

            yield_to_peer_rekey(session, now)
            # §1.4.1: the IKE SA and all its Child SAs go; the response is empty. The old SA of
            # a rekey is deleted this way too (§1.3.2): its successor lives on.
            reason = "rekeyed" if session.state == IkeState.REKEYED else "deleted_by_peer"
            session.close_after_response(IkeTrigger.DELETE_RECEIVED, reason)
            return []
        ours: list[bytes] = []
        for delete in deletes:
            if delete.protocol_id != ProtocolId.ESP:
                continue
            for spi in delete.spis:
                # After an IKE SA rekey the Child SA may be on the successor (§2.8).
                holder = session.holder_of_outbound_spi(spi)
                child = holder.child_by_outbound_spi(spi)
                if child is None:
                    # §1.4.1: an unknown SPI is ignored. It may be a Child SA whose
                    # CREATE_CHILD_SA response is still on its way to us: remembered.
                    session.note_unknown_delete(spi)
                    continue
                if child.state != ChildState.DELETING:
                    # We were not deleting it ourselves: answer with our inbound SPI.
                    ours.append(child.spi_in)
                if child.spi_in in holder.child_collisions:
                    # §2.8.1: the peer won a rekey collision it may not have noticed and now
                    # deletes the old Child SA: its replacement is the survivor.
                    from ikecore.exchanges.create_child import peer_rekey_won

                    peer_rekey_won(holder, child)
                replaced = child.state == ChildState.REKEYED
                holder.child_transition(child, ChildTrigger.DELETE_RECEIVED)
                holder.remove_child(child, "rekeyed" if replaced else "deleted_by_peer")
        # RFC 4555: address updates and lists, NAT detection and COOKIE2 (exchanges/mobike.py).
        from ikecore.exchanges.mobike import mobike_response

        mobike = mobike_response(session, message, payloads, now)
        if ours:
            return [Delete(ProtocolId.ESP, 4, tuple(ours)), *mobike]
        return mobike
