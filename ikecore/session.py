"""`IkeSession`: one IKE SA, its message IDs, retransmissions and response cache.

Reliability is the session's job, not the exchanges' (RFC 7296 §2.1-2.3):

- Our requests carry ``sa.next_request_id``; at most ``sa.peer_window`` are in flight (the
  peer's SET_WINDOW_SIZE, 1 by default); more wait in a queue.
- A request with no response is retransmitted byte for byte (same IV, never re-encrypted) at
  ``retransmit_timeout * retransmit_backoff ** n`` seconds; after ``retransmit_tries``
  retransmissions the SA is given up (`IkeSaDeleted(reason="timeout")`).
- A peer request inside our window is processed once; its response is cached (in the record,
  `IkeSa.responses`: kept across a restart or a cluster hand-off), and a retransmission of the
  *same bytes* is answered from the cache before any decryption, so an exchange never runs
  twice. Anything else outside the window is dropped.
- A message whose ICV fails is counted and dropped: no state changes, no answer.
- IKE fragmentation (RFC 7383), when both peers announced it: a protected message larger than
  the fragmentation threshold goes out as Encrypted Fragment messages (retransmitted all
  together); received fragments are reassembled before the message is processed.

The record (`IkeSa`) is written to the endpoint's store after every change once the SA is
established; a half-open SA never reaches the store (STYLE.md §5).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ikecore.config import Address, PeerConfig, TrafficSelector
from ikecore.constants import ExchangeType, NotifyType, PayloadType
from ikecore.errors import (
    IntegrityError,
    LocalProtocolError,
    MalformedMessage,
    RemoteProtocolError,
    SequenceExhausted,
)
from ikecore.events import ChildSaDeleted, Event, IkeSaDeleted
from ikecore.exchanges.base import DropMessage, InitiatorTask, NotifyError, ResponderTask
from ikecore.exchanges.clone_ike import start_clone
from ikecore.exchanges.create_child import CreateChildDispatch
from ikecore.exchanges.ike_auth import IkeAuthResponder
from ikecore.exchanges.ike_sa_init import Handshake, IkeSaInitResponder
from ikecore.exchanges.informational import InformationalResponder
from ikecore.exchanges.mobike import MobikeState
from ikecore.fragmentation import (
    DEFAULT_THRESHOLD_IPV4,
    DEFAULT_THRESHOLD_IPV6,
    Reassembly,
    build_protected,
    max_message_length,
)
from ikecore.payloads import EncryptedFragment, UnsupportedCriticalPayload
from ikecore.sa import ChildSa, IkeSa
from ikecore.states import (
    ChildState,
    ChildTrigger,
    IkeState,
    IkeTrigger,
    child_transition,
    ike_transition,
)
from ikecore.suites import ProposalSpec
from ikecore.wire import (
    IkeCipher,
    IkeMessage,
    Notify,
    Payload,
    build_message,
    ike_cipher,
    open_message,
)

if TYPE_CHECKING:
    from ikecore.endpoint import IkeEndpoint
    from ikecore.exchanges.create_child import ChildCollision
    from ikecore.exchanges.rekey_ike import RekeyCollision

__all__ = ["IkeSession"]

_MAX_MESSAGE_ID = 2**32 - 1
# RFC 7296 §2.25: an automatic rekey that did not happen (refused with TEMPORARY_FAILURE,
# collided, failed) is tried again after a while, not at once.
_REKEY_RETRY = 10.0
# §2.21.3: after authentication these end the IKE SA on both sides.
_FATAL_NOTIFIES = frozenset({NotifyType.INVALID_SYNTAX, NotifyType.AUTHENTICATION_FAILED})
# Read for every payload of every message: a plain int compares without an enum lookup.
_SET_WINDOW_SIZE = int(NotifyType.SET_WINDOW_SIZE)
# Enum members read for every message, bound once: reading a member off an Enum class takes
# the slow attribute path of a metaclass with __getattr__ (0.1-0.3 µs a read on CPython 3.11).
_IKE_SA_INIT = int(ExchangeType.IKE_SA_INIT)
_IKE_AUTH = int(ExchangeType.IKE_AUTH)
_SK = int(PayloadType.SK)
_SKF = int(PayloadType.SKF)
_CONNECTING = IkeState.CONNECTING
_ESTABLISHED = IkeState.ESTABLISHED
_DELETED = IkeState.DELETED
_HALF_OPEN = (IkeState.CONNECTING, IkeState.AUTHENTICATING)


@dataclass(slots=True)
class _Outstanding:
    task: InitiatorTask
    messages: tuple[bytes, ...]  # one, or the Encrypted Fragment messages (RFC 7383)
    tries: int
    deadline: float


class IkeSession:
    """One IKE SA as seen by the engine. Get one from `IkeEndpoint.initiate` or from an event."""

    # State most sessions never set, as class-level defaults (immutable values only): an
    # assignment on the instance replaces the default for that session, and a session (two
    # per clone) is not made with two dozen attribute stores.
    handshake: Handshake | None = None
    integrity_failures = 0
    retransmissions = 0
    cached_answers = 0
    # When an SA not in use ends by itself: half open (responder), or the peer's redundant
    # new SA of a rekey collision that the peer may never delete (§2.8.2).
    half_open_deadline: float | None = None
    # Dropped from its endpoint without a word to the peer (the SA went to another
    # cluster node, or a write could not be confirmed): it sends nothing any more.
    evicted = False
    # Where the peer's IKE_SA_INIT came from (responder side; the endpoint's index key).
    init_source: Address | None = None
    # (source, destination) of the peer request being processed: MOBIKE takes the new
    # addresses from the IP header (RFC 4555 §3.5).
    request_path: tuple[Address, Address] | None = None
    # The SK ciphers, made from the record's keys on first use (`_ciphers`).
    _cipher_in: IkeCipher | None = None
    _cipher_out: IkeCipher | None = None
    # RFC 7383 §2.6: incomplete fragmented messages; made at the first fragment (most SAs
    # never see one, and every container made here is one more for the GC per SA).
    _reassembly: Reassembly | None = None
    # When we last heard from the peer (an authentic IKE message or ESP packet): the
    # liveness check waits for `PeerConfig.dpd_delay` of silence.
    last_heard: float | None = None
    # When an automatic rekey was last started: b"" the IKE SA, else a Child SA's SPI
    # (made at the first one).
    _rekey_started: dict[bytes, float] | None = None
    _close_after_response: tuple[IkeTrigger, str, int | None] | None = None
    # §2.8.2: the SA we made answering the peer's rekey while ours was in flight.
    rekey_collision: RekeyCollision | None = None
    # §2.8.2: on such an SA made by the peer's rekey, the old SA, until the collision is
    # resolved.
    collision_parent: IkeSession | None = None
    # §2.8: after an IKE SA rekey, the SA that took our Child SAs over (a request about
    # one of them that was sent on this SA before the peer saw the rekey end applies there).
    successor: IkeSession | None = None
    # Child SAs the user has not been told about (made in a collision, maybe redundant):
    # they go without an event. Made at the first one (`keep_unannounced`).
    unannounced: set[bytes] | None = None
    # Child SA SPIs the peer deleted before we knew them (their creation still in flight;
    # made at the first one).
    _unknown_deletes: deque[bytes] | None = None

    def __init__(self, endpoint: IkeEndpoint, sa: IkeSa, peer: PeerConfig | None) -> None:
        self.endpoint = endpoint
        self.sa = sa
        self.peer = peer
        # RFC 4555 exchanges in flight (transient; what persists is in the record, `IkeSa`).
        self.mobike = MobikeState()
        self._queue: deque[InitiatorTask] = deque()
        self._outstanding: dict[int, _Outstanding] = {}
        # §2.8.1: per Child SA being rekeyed by both ends, the one the peer's request made.
        self.child_collisions: dict[bytes, ChildCollision] = {}
        # Whether the user has heard of this SA: only those get events when they end.
        self.visible = sa.initiator or sa.state not in _HALF_OPEN

    def __repr__(self) -> str:
        return f"<IkeSession {self.sa.spi_i.hex()}:{self.sa.spi_r.hex()} {self.sa.state.value}>"

    # -- what exchanges use --------------------------------------------------------------------

    @property
    def state(self) -> IkeState:
        return self.sa.state

    @property
    def child_sas(self) -> list[ChildSa]:
        return list(self.sa.child_sas.values())

    def transition(self, trigger: IkeTrigger, *, remote: bool = False) -> None:
        self.sa.state = ike_transition(self.sa.state, trigger, remote=remote)

    def install_keys(self) -> None:
        """The record's keys are new: SK ciphers are made from them when first needed."""
        self._cipher_out = self._cipher_in = None

    def _ciphers(self) -> tuple[IkeCipher, IkeCipher]:
        """(outbound, inbound) SK ciphers: SK_ei/SK_er by who is the original initiator. Made
        on first use, so an SA that never carries a message here (a clone handed to another
        node, a record loaded for its ESP) never pays for the native cipher contexts."""
        if self._cipher_out is None or self._cipher_in is None:
            sa = self.sa
            assert sa.keys is not None and sa.transforms is not None
            icv = sa.transforms.icv_length
            ours, theirs = (
                (sa.keys.sk_ei, sa.keys.sk_er) if sa.initiator else (sa.keys.sk_er, sa.keys.sk_ei)
            )
            # Our explicit IVs continue from the record's counter (never reused, RFC 5282
            # §3.1): nothing was sealed under these keys since it was last written.
            self._cipher_out = ike_cipher(sa.transforms.encr, ours, icv, sa.sk_iv)
            self._cipher_in = ike_cipher(sa.transforms.encr, theirs, icv, 0)
        return self._cipher_out, self._cipher_in

    def established(self, now: float) -> None:
        self.sa.established_at = now
        self.half_open_deadline = None
        self.visible = True
        self.endpoint.half_open_established(self)

    def float_to_nat_port(self) -> None:
        """RFC 7296 §2.23 (NAT found) and RFC 4555 §3.3 (MOBIKE): IKE moves to port 4500."""
        port = self.endpoint.config.nat_port
        sa = self.sa
        sa.local_address = (sa.local_address[0], port)
        sa.remote_address = (sa.remote_address[0], port)

    def emit(self, event: Event) -> None:
        self.endpoint.queue_event(event)

    def add_child(self, child: ChildSa) -> None:
        self.sa.child_sas[child.spi_in] = child
        self.endpoint.child_installed(self, child)

    def remove_child(self, child: ChildSa, reason: str, *, event: bool = True) -> None:
        if self.sa.child_sas.pop(child.spi_in, None) is None:
            return
        child.state = ChildState.DELETED
        self.endpoint.child_removed(child)
        # A §2.8.1 collision about it (as the replaced SA or as the peer's replacement) is moot.
        for spi, collision in list(self.child_collisions.items()):
            if child.spi_in in (spi, collision.child.spi_in):
                del self.child_collisions[spi]
        if self.unannounced is not None and child.spi_in in self.unannounced:
            self.unannounced.discard(child.spi_in)
            return
        if event:
            self.emit(ChildSaDeleted(self, child, reason))

    def keep_unannounced(self, spi_in: bytes) -> None:
        """The Child SA goes without events (§2.8.1: made in a collision, maybe redundant)."""
        if self.unannounced is None:
            self.unannounced = set()
        self.unannounced.add(spi_in)

    def note_unknown_delete(self, spi: bytes) -> None:
        if self._unknown_deletes is None:
            self._unknown_deletes = deque(maxlen=16)
        self._unknown_deletes.append(spi)

    def deleted_before_known(self, spi: bytes) -> bool:
        """The peer already deleted the Child SA with outbound SPI ``spi`` (we created it and
        its response reached us after the peer's Delete)."""
        if self._unknown_deletes is not None and spi in self._unknown_deletes:
            self._unknown_deletes.remove(spi)
            return True
        return False

    def child_by_outbound_spi(self, spi: bytes) -> ChildSa | None:
        for child in self.sa.child_sas.values():
            if child.spi_out == spi:
                return child
        return None

    def holder_of_outbound_spi(self, spi: bytes) -> IkeSession:
        """The session holding the Child SA with outbound SPI ``spi``: this one, or the
        successor an IKE SA rekey moved it to (§2.8); this one if neither has it."""
        session: IkeSession | None = self
        while session is not None:
            if session.child_by_outbound_spi(spi) is not None:
                return session
            session = session.successor
        return self

    def child_transition(self, child: ChildSa, trigger: ChildTrigger) -> None:
        child.state = child_transition(child.state, trigger)

    def close_after_response(
        self, trigger: IkeTrigger, reason: str, notify: int | None = None
    ) -> None:
        """End the SA once the response being built has been sent (a Delete of this SA)."""
        self._close_after_response = (trigger, reason, notify)

    def save(self) -> None:
        if self.evicted or self.sa.state in _NOT_STORED:
            return
        self.endpoint.save(self)

    def busy(self) -> bool:
        """Requests of ours in flight or queued."""
        return bool(self._outstanding or self._queue)

    def hand_over_queue(self, successor: IkeSession, now: float) -> None:
        """§2.8: the IKE SA that inherits the Child SAs carries every later control message
        for them, so our requests not sent yet go out on ``successor`` (and a Delete of this
        SA stays the last request sent on it)."""
        queued = list(self._queue)
        self._queue.clear()
        for task in queued:
            successor.start(task, now)

    def enqueue(self, task: InitiatorTask) -> None:
        """Queue a request of ours without sending it yet: while we answer a peer request,
        it goes out after that response."""
        self._queue.append(task)

    def outstanding_tasks(self) -> list[InitiatorTask]:
        return [out.task for out in self._outstanding.values()]

    # -- public API ----------------------------------------------------------------------------

    def _require_established(self) -> None:
        if self.sa.state != IkeState.ESTABLISHED:
            raise LocalProtocolError(f"IKE SA is {self.sa.state.value}, not ESTABLISHED")

    def create_child_sa(
        self,
        now: float,
        *,
        esp_proposals: tuple[ProposalSpec, ...] | None = None,
        local_ts: tuple[TrafficSelector, ...] | None = None,
        remote_ts: tuple[TrafficSelector, ...] | None = None,
    ) -> None:
        """CREATE_CHILD_SA for a new Child SA (RFC 7296 §1.3.1); PFS when the ESP proposals
        name a key exchange group. `ChildSaEstablished` or `ChildSaFailed` follows."""
        from ikecore.exchanges.create_child import CreateChildInitiator

        self._require_established()
        peer = self._peer_config()
        self.start(
            CreateChildInitiator(
                esp_proposals or peer.esp_proposals,
                local_ts or peer.local_ts,
                remote_ts or peer.remote_ts,
            ),
            now,
        )

    def rekey_child_sa(self, spi_in: bytes, now: float) -> None:
        """CREATE_CHILD_SA with REKEY_SA (RFC 7296 §1.3.3); `ChildSaRekeyed` follows."""
        from ikecore.exchanges.create_child import CreateChildInitiator

        self._require_established()
        child = self._child(spi_in)
        if child.state != ChildState.INSTALLED:
            raise LocalProtocolError(f"Child SA is {child.state.value}")
        self.child_transition(child, ChildTrigger.REKEY_STARTED)
        peer = self._peer_config()
        self.start(
            CreateChildInitiator(peer.esp_proposals, child.local_ts, child.remote_ts, rekey=child),
            now,
        )

    def delete_child_sa(self, spi_in: bytes, now: float) -> None:
        """INFORMATIONAL {D(ESP, spi)} (RFC 7296 §1.4.1); `ChildSaDeleted` follows."""
        self._delete_child(spi_in, now, "deleted_locally")

    def _delete_child(self, spi_in: bytes, now: float, reason: str) -> None:
        from ikecore.exchanges.informational import DeleteChildInitiator

        child = self._child(spi_in)
        self.child_transition(child, ChildTrigger.DELETE_STARTED)
        self.start(DeleteChildInitiator(child, reason), now)

    def rekey(self, now: float) -> None:
        """Rekey this IKE SA (RFC 7296 §1.3.2, §2.18); `IkeSaRekeyed` follows."""
        from ikecore.exchanges.rekey_ike import RekeyIkeInitiator

        self._require_established()
        self.transition(IkeTrigger.REKEY_STARTED)
        self.start(RekeyIkeInitiator(self._peer_config().ike_proposals), now)

    def delete(self, now: float) -> None:
        """INFORMATIONAL {D(IKE)} (RFC 7296 §1.4.1); `IkeSaDeleted` follows."""
        self.delete_because(now, "deleted_locally")

    def delete_because(self, now: float, reason: str) -> None:
        """`delete` whose `IkeSaDeleted` says ``reason`` (the engine's own deletes: "expired",
        "cookie2_mismatch")."""
        from ikecore.exchanges.informational import DeleteIkeInitiator

        if self.sa.state in (IkeState.DELETING, IkeState.DELETED):
            return
        if self.sa.state in (IkeState.CONNECTING, IkeState.AUTHENTICATING):
            self.terminate(IkeTrigger.FAILED, reason, now)
            return
        self.transition(IkeTrigger.DELETE_STARTED)
        # A Delete goes out at once; queued requests are moot (§1.4.1).
        queued = list(self._queue)
        self._queue.clear()
        for task in queued:
            task.abort(self, reason, now)
        self.start(DeleteIkeInitiator(reason), now, first=True)

    def request_clone(self, now: float) -> None:
        """Clone this IKE SA (RFC 7791 §5.2): CREATE_CHILD_SA {N(CLONE_IKE_SA), SA, Ni, KEi}.

        `IkeSaCloned` or `CloneFailed` follows. Raises `CloneRefused` and sends nothing when
        cloning was not negotiated (§5.1) or a refusal of the peer still holds (§5.3)."""
        start_clone(self, now)

    def update_addresses(
        self, local: Address, now: float, *, remote: Address | None = None
    ) -> None:
        """Move this IKE SA and its Child SAs to ``local`` (RFC 4555 §3.5, MOBIKE):
        INFORMATIONAL {N(UPDATE_SA_ADDRESSES), N(NAT_DETECTION_*), N(COOKIE2)} sent from the
        new address; `IkeSaMoved` follows."""
        from ikecore.exchanges.mobike import start_update

        start_update(self, local, remote, now)

    @property
    def peer_addresses(self) -> tuple[str, ...]:
        """The peer's address set (RFC 4555 §3.4, §3.6): the address its last announcement
        came from, then its ADDITIONAL_IP4/IP6_ADDRESS list (from IKE_AUTH or a later
        INFORMATIONAL); empty until it announced any."""
        return self.sa.peer_addresses

    def announce_addresses(
        self, additional: Iterable[str], now: float, *, local: Address | None = None
    ) -> None:
        """Tell the peer where else we can be reached (RFC 4555 §3.6): ADDITIONAL_IP4/6_ADDRESS
        per address, NO_ADDITIONAL_ADDRESSES when there is none.

        ``local`` (the MOBIKE responder only): the address in use is gone, so the IKE SA and
        its Child SAs leave from ``local`` now (§3.5) and the request goes from there to the
        initiator's current address, then, if it is not answered there, to each other address
        the initiator announced (§3.6). ``local``'s address is the one in the IP header: list
        only the others in ``additional``."""
        from ikecore.exchanges.mobike import start_announcement

        start_announcement(self, tuple(additional), now, local)

    def check_liveness(self, now: float) -> None:
        """An empty INFORMATIONAL request (RFC 7296 §1.4); `LivenessChecked` follows."""
        from ikecore.exchanges.informational import LivenessInitiator

        self._require_established()
        self.start(LivenessInitiator(), now)

    def _peer_config(self) -> PeerConfig:
        if self.peer is None:
            raise LocalProtocolError("no peer configuration for this SA")
        return self.peer

    def _child(self, spi_in: bytes) -> ChildSa:
        try:
            return self.sa.child_sas[spi_in]
        except KeyError:
            raise LocalProtocolError(f"no Child SA with inbound SPI {spi_in.hex()}") from None

    # -- sending -------------------------------------------------------------------------------

    def start(self, task: InitiatorTask, now: float, *, first: bool = False) -> None:
        if first:
            self._queue.appendleft(task)
        else:
            self._queue.append(task)
        self._pump(now)

    def _pump(self, now: float) -> None:
        while self._queue and len(self._outstanding) < self.sa.peer_window:
            if self.sa.state is _DELETED or self.evicted:
                return
            if self._outstanding and self._waits_for_exclusive():
                return
            task = self._queue.popleft()
            try:
                payloads = task.build_request(self, now)
            except LocalProtocolError:
                task.abort(self, "not applicable", now)
                continue
            self._send_request(task, payloads, now, None)

    def _waits_for_exclusive(self) -> bool:
        """With SET_WINDOW_SIZE > 1, an IKE SA rekey flies alone (RFC 7296 §2.8, §2.25.2):
        it goes once our other requests on the old SA are answered, and nothing follows it
        on the old SA (what is queued meanwhile goes on the new SA), so no request is
        answered on an SA whose Child SAs have moved, or lost with the old SA."""
        return getattr(self._queue[0], "exclusive", False) or any(
            getattr(out.task, "exclusive", False) for out in self._outstanding.values()
        )

    def _send_request(
        self, task: InitiatorTask, payloads: list[Payload], now: float, message_id: int | None
    ) -> None:
        sa = self.sa
        if message_id is None:
            if sa.next_request_id > _MAX_MESSAGE_ID:
                raise SequenceExhausted("message IDs of this IKE SA are used up; rekey it")
            message_id = sa.next_request_id
            sa.next_request_id += 1
        messages = self._build(task.exchange_type, False, message_id, payloads)
        if task.exchange_type == _IKE_SA_INIT and self.handshake is not None:
            self.handshake.request = messages[0]
        timeout = self.endpoint.config.retransmit_timeout
        self._outstanding[message_id] = _Outstanding(task, messages, 0, now + timeout)
        self._transmit_request(task, messages)

    def _transmit_request(self, task: InitiatorTask, messages: tuple[bytes, ...]) -> None:
        """A request goes to the SA's addresses, unless its task has a ``path`` of its own (the
        MOBIKE responder's address update when the path in use is gone, RFC 4555 §3.6)."""
        path: tuple[Address, Address] | None = getattr(task, "path", None)
        for raw in messages:
            self.endpoint.transmit(self, raw, path=path)

    def _build(
        self,
        exchange: int,
        response: bool,
        message_id: int,
        payloads: list[Payload],
        *,
        zero_spi_r: bool = False,
    ) -> tuple[bytes, ...]:
        sa = self.sa
        if exchange == _IKE_SA_INIT:
            raw = build_message(
                sa.spi_i,
                bytes(8) if zero_spi_r else sa.spi_r,
                _IKE_SA_INIT,
                initiator=sa.initiator,
                response=response,
                message_id=message_id,
                payloads=payloads,
            )
            return (raw,)
        cipher = self._cipher_out
        if cipher is None:
            cipher = self._ciphers()[0]
        messages = build_protected(
            cipher,
            sa.spi_i,
            sa.spi_r,
            exchange,
            initiator=sa.initiator,
            response=response,
            message_id=message_id,
            payloads=payloads,
            max_length=self._fragment_length(),
        )
        sa.sk_iv = cipher.iv_counter
        return messages

    @property
    def fragmentation_negotiated(self) -> bool:
        """Both peers announced IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383 §2.3)."""
        return self.endpoint.config.fragmentation and self.sa.peer_fragmentation_supported

    def _fragment_length(self) -> int | None:
        """The largest message before fragmenting (RFC 7383 §2.5.1), or None when
        fragmentation is not negotiated."""
        config = self.endpoint.config
        if not (config.fragmentation and self.sa.peer_fragmentation_supported):
            return None  # not negotiated (`fragmentation_negotiated`)
        ipv6 = ":" in self.sa.remote_address[0]
        threshold = config.fragment_threshold or (
            DEFAULT_THRESHOLD_IPV6 if ipv6 else DEFAULT_THRESHOLD_IPV4
        )
        nat_port = config.nat_port in (self.sa.local_address[1], self.sa.remote_address[1])
        return max_message_length(threshold, ipv6=ipv6, nat_port=nat_port)

    # -- receiving -----------------------------------------------------------------------------

    def receive(self, message: IkeMessage, now: float, src: Address, dst: Address) -> None:
        """A message addressed to this SA (the endpoint matched the SPIs)."""
        if message.is_initiator == self.sa.initiator:
            return  # a reflected or misrouted message: the I flag names the wrong side
        if message.is_response:
            self._receive_response(message, now)
        else:
            self._receive_request(message, now, src, dst)
        self.save()

    def _open(self, message: IkeMessage, now: float) -> list[Payload] | None:
        last = message.last_payload_type  # read once: SK, SKF or a clear payload
        if message.exchange == _IKE_SA_INIT:
            if last == _SK or last == _SKF:
                return None
            return list(message.payloads)
        if self.sa.keys is None:
            return None
        fragment = _fragment(message) if last == _SKF else None
        if fragment is not None and not self.fragmentation_negotiated:
            return None  # RFC 7383 §2.4: fragments only once both peers announced them
        if fragment is None and last != _SK:
            return None
        cipher = self._cipher_in
        if cipher is None:
            cipher = self._ciphers()[1]
        try:
            if fragment is not None:
                # RFC 7383 §2.6: None until the last fragment of the message arrives; given
                # up after as long as a half-open SA may wait (the RFC suggests the
                # initiator's give-up interval).
                if self._reassembly is None:
                    self._reassembly = Reassembly(self.endpoint.config.half_open_timeout)
                return self._reassembly.add(cipher, message, now)
            return open_message(cipher, message)
        except IntegrityError:
            self.integrity_failures += 1
            return None
        except UnsupportedCriticalPayload:
            raise  # authentic, but with a critical payload we do not know: the caller answers
        except (MalformedMessage, RemoteProtocolError):
            return None

    def _note_window(self, payloads: list[Payload]) -> None:
        """§2.3: SET_WINDOW_SIZE in an authenticated message sets how many requests of ours
        may be in flight (never below 1)."""
        for payload in payloads:
            if (
                isinstance(payload, Notify)
                and payload.notify_type == _SET_WINDOW_SIZE
                and len(payload.data) == 4
            ):
                self.sa.peer_window = max(1, int.from_bytes(payload.data, "big"))

    def _receive_response(self, message: IkeMessage, now: float) -> None:
        out = self._outstanding.get(message.message_id)
        if out is None or message.exchange != out.task.exchange_type:
            return  # unsolicited or duplicate response
        try:
            payloads = self._open(message, now)
        except UnsupportedCriticalPayload:
            payloads = None  # a response we cannot read: as good as lost
        if payloads is None:
            return
        self.last_heard = now
        self._note_window(payloads)
        del self._outstanding[message.message_id]
        if out.task.exchange_type == _IKE_SA_INIT and self.handshake is not None:
            self.handshake.response = message.to_bytes()
        try:
            retry = out.task.process_response(self, message, payloads, now)
        except RemoteProtocolError as refused:
            out.task.abort(self, str(refused), now)
            self.terminate(
                IkeTrigger.FAILED, _reason(refused.notify_type), now, refused.notify_type
            )
            return
        if retry is not None:
            self._send_request(out.task, retry.payloads, now, message.message_id)
            return
        self._pump(now)

    def _receive_request(self, message: IkeMessage, now: float, src: Address, dst: Address) -> None:
        sa = self.sa
        message_id = message.message_id
        request = message.to_bytes()
        # The cache is in the record (`IkeSa.responses`): answered here even after a restart
        # or on the cluster node that took the SA over. It holds every request answered ahead
        # of a lower one too, so such a request never reaches the exchange again.
        responses = sa.responses
        cached = None if responses is None else responses.get(message_id)
        if cached is not None:
            fragment = _fragment(message)
            # RFC 7383 §2.6.1: of a fragmented request, only fragment 1 asks for the response.
            # (The request is held, not hashed: the cache keeps one window of messages, and a
            # comparison costs less than a digest.)
            if cached[0] == request if fragment is None else fragment.fragment_number == 1:
                self.cached_answers += 1
                for raw in cached[1]:
                    self.endpoint.transmit(self, raw, (src, dst))
            return
        lowest = sa.next_peer_request_id
        if not lowest <= message_id < lowest + sa.local_window:
            return
        fatal: int | None = None
        response: list[Payload]
        try:
            payloads = self._open(message, now)
        except UnsupportedCriticalPayload as unsupported:
            # §2.5: the whole request is refused, naming the payload type; nothing runs.
            payloads = None
            response = [Notify.status(unsupported.notify_type, unsupported.notify_data)]
        else:
            if payloads is None:
                return
            self.last_heard = now
            self._note_window(payloads)
            if self.collision_parent is not None:
                from ikecore.exchanges.rekey_ike import request_on_successor

                request_on_successor(self, payloads, now)
            if (not sa.initiator and message.exchange == _IKE_AUTH) or (
                sa.remote_behind_nat and not sa.local_behind_nat and not _mobike_negotiated(sa)
            ):
                # §2.23: follow the initiator's move to the NAT-T port, and (the host not
                # behind a NAT, whichever end started this IKE SA or its rekey) a NAT's
                # rebinding, from authenticated requests only. With MOBIKE only
                # UPDATE_SA_ADDRESSES moves the SA (RFC 4555 §3.8).
                sa.remote_address, sa.local_address = src, dst
            self.request_path = (src, dst)
            try:
                task = self._responder_for(message)
                response = task.process_request(self, message, payloads, now)
            except DropMessage:
                return
            except NotifyError as refused:
                response = [Notify.status(refused.notify_type, refused.data)]
            except RemoteProtocolError as refused:
                response = [Notify.status(refused.notify_type)]
                if refused.notify_type in _FATAL_NOTIFIES:
                    fatal = refused.notify_type
        refused_init = (
            message.exchange == _IKE_SA_INIT and sa.state is _CONNECTING
        )
        # A refused IKE_SA_INIT is answered as HDR(SPIi, 0): the responder keeps nothing (§2.6).
        messages = self._build(
            message.exchange, True, message_id, response, zero_spi_r=refused_init
        )
        if message.exchange == _IKE_SA_INIT and self.handshake is not None:
            self.handshake.request = request
            self.handshake.response = messages[0]
        self._remember_response(message_id, request, messages)
        for raw in messages:
            self.endpoint.transmit(self, raw, (src, dst))
        if fatal is not None:
            self.terminate(IkeTrigger.FAILED, _reason(fatal), now)
        elif self._close_after_response is not None:
            trigger, reason, notify = self._close_after_response
            self._close_after_response = None
            self.terminate(trigger, reason, now, notify)
        else:
            self._pump(now)

    def _remember_response(
        self, message_id: int, request: bytes, messages: tuple[bytes, ...]
    ) -> None:
        sa = self.sa
        responses = sa.responses
        if responses is None:
            # Made at the first request answered (many SAs never answer one, as an initiator or
            # a clone): one container less per SA for the GC.
            responses = sa.responses = {}
        responses[message_id] = (request, messages)
        next_id = sa.next_peer_request_id
        if message_id == next_id:
            # Cached responses at or above the next ID are the requests answered ahead of it
            # (a window > 1): the window moves past them too.
            next_id += 1
            while next_id in responses:
                next_id += 1
            sa.next_peer_request_id = next_id
        # Keep the responses a peer may still retransmit for: one window back (§2.3).
        # (No list of the stale ones: one container less per request for the GC.)
        horizon = next_id - sa.local_window
        while (oldest := min(responses)) < horizon:
            del responses[oldest]

    def _responder_for(self, message: IkeMessage) -> ResponderTask:
        state, exchange = self.sa.state, message.exchange
        entry = _RESPONDERS.get(exchange)
        if entry is None or state not in entry[1]:
            raise DropMessage(f"{exchange} request in state {state.value}")
        return entry[0]()

    # -- timers and the end --------------------------------------------------------------------

    def get_timer(self) -> float | None:
        deadlines = [out.deadline for out in self._outstanding.values()]
        if self.half_open_deadline is not None:
            deadlines.append(self.half_open_deadline)
        deadlines += [when for when, _, _ in self._maintenance()]
        return min(deadlines, default=None)

    def _maintenance(self) -> list[tuple[float, str, bytes]]:
        """When the automatic work of `PeerConfig` falls due, as (time, action, SPI): "rekey"
        or "expire" of the IKE SA (SPI b"") or of a Child SA (its inbound SPI), "liveness"
        (SPI b""). Only on an established SA; an SA being rekeyed is left to its rekey."""
        peer, sa = self.peer, self.sa
        if peer is None or sa.state is not _ESTABLISHED or sa.established_at is None:
            return []
        due: list[tuple[float, str, bytes]] = []
        if peer.ike_rekey_time is not None:
            due.append(
                (self._rekey_due(b"", sa.established_at + peer.ike_rekey_time), "rekey", b"")
            )
        if peer.ike_lifetime is not None:
            due.append((sa.established_at + peer.ike_lifetime, "expire", b""))
        for child in sa.child_sas.values():
            if child.state != ChildState.INSTALLED:
                continue
            if peer.child_rekey_time is not None:
                scheduled = child.created_at + peer.child_rekey_time
                due.append((self._rekey_due(child.spi_in, scheduled), "rekey", child.spi_in))
            if peer.child_lifetime is not None:
                due.append((child.created_at + peer.child_lifetime, "expire", child.spi_in))
        if peer.dpd_delay is not None and not self._outstanding and not self._queue:
            heard = sa.established_at if self.last_heard is None else self.last_heard
            due.append((heard + peer.dpd_delay, "liveness", b""))
        return due

    def _rekey_due(self, key: bytes, scheduled: float) -> float:
        started = None if self._rekey_started is None else self._rekey_started.get(key)
        return scheduled if started is None else max(scheduled, started + _REKEY_RETRY)

    def handle_timer(self, now: float) -> None:
        config = self.endpoint.config
        if self.half_open_deadline is not None and now >= self.half_open_deadline:
            self.terminate(IkeTrigger.FAILED, "timeout", now)
            return
        for out in list(self._outstanding.values()):
            if out.deadline > now:
                continue
            if out.tries >= config.retransmit_tries:
                fallback = getattr(out.task, "path_failed", None)
                if fallback is not None and fallback(self, now):
                    # RFC 4555 §3.7: a new path that never answered; the request goes on
                    # on the previous one (its message ID must still be answered).
                    out.tries = 0
                    out.deadline = now + config.retransmit_timeout
                    self._transmit_request(out.task, out.messages)
                    continue
                # §2.4: a peer that never answers is gone; so is the SA.
                self.terminate(IkeTrigger.FAILED, "timeout", now)
                return
            out.tries += 1
            self.retransmissions += 1
            out.deadline = now + config.retransmit_timeout * config.retransmit_backoff**out.tries
            self._transmit_request(out.task, out.messages)
        # Expiry first: an SA past its hard lifetime is deleted, not rekeyed (§2.8).
        for when, action, spi in sorted(self._maintenance(), key=lambda due: due[1] != "expire"):
            if when > now or self.sa.state != IkeState.ESTABLISHED:
                continue  # not yet, or the SA is busy with what an earlier entry started
            child = self.sa.child_sas.get(spi) if spi else None
            if spi and (child is None or child.state != ChildState.INSTALLED):
                continue  # deleted or rekeyed by an earlier entry
            if action == "liveness":
                self.check_liveness(now)  # §1.4: DPD after dpd_delay of silence
            elif action == "expire" and not spi:
                self.delete_because(now, "expired")
            elif action == "expire":
                self._delete_child(spi, now, "expired")
            else:
                if self._rekey_started is None:
                    self._rekey_started = {}
                self._rekey_started[spi] = now
                if spi:
                    self.rekey_child_sa(spi, now)
                else:
                    self.rekey(now)

    def terminate(
        self, trigger: IkeTrigger, reason: str, now: float, notify: int | None = None
    ) -> None:
        """The SA is over: Child SAs and the record go, queued and in-flight tasks abort."""
        if self.sa.state is _DELETED:
            return
        self.sa.state = ike_transition(self.sa.state, trigger)
        tasks: Iterable[InitiatorTask] = [*self.outstanding_tasks(), *self._queue]
        self._outstanding.clear()
        self._queue.clear()
        for task in tasks:
            task.abort(self, reason, now)
        # The record first: if another node owns the SA by now, the delete is refused and
        # nothing of the SA (its Child SA SPIs) is ours to release.
        self.endpoint.delete_record(self)
        if self.evicted:
            return
        for child in list(self.sa.child_sas.values()):
            self.remove_child(child, reason, event=self.visible)
        if self.visible:
            self.emit(IkeSaDeleted(self, reason, notify))
        self.endpoint.forget(self)


def _fragment(message: IkeMessage) -> EncryptedFragment | None:
    """The message's Encrypted Fragment payload (RFC 7383 §2.5), if it is one."""
    if message.last_payload_type != _SKF:
        return None
    fragment = message.encrypted
    assert isinstance(fragment, EncryptedFragment)
    return fragment


# DELETING too: such a request is answered TEMPORARY_FAILURE (RFC 7296 §2.25.2, RFC 7791 §5.3).
_CHILD_CAPABLE = (IkeState.ESTABLISHED, IkeState.REKEYING, IkeState.REKEYED, IkeState.DELETING)
_INFORMATIONAL_CAPABLE = (
    IkeState.AUTHENTICATING,
    IkeState.ESTABLISHED,
    IkeState.REKEYING,
    IkeState.REKEYED,
    IkeState.DELETING,
)
# Per exchange type, the responder task for a peer request and the IKE SA states that take it
# (any other request is dropped): one lookup per request.
_RESPONDERS: dict[int, tuple[Callable[[], ResponderTask], tuple[IkeState, ...]]] = {
    ExchangeType.IKE_SA_INIT: (IkeSaInitResponder, (IkeState.CONNECTING,)),
    ExchangeType.IKE_AUTH: (IkeAuthResponder, (IkeState.AUTHENTICATING,)),
    ExchangeType.CREATE_CHILD_SA: (CreateChildDispatch, _CHILD_CAPABLE),
    ExchangeType.INFORMATIONAL: (InformationalResponder, _INFORMATIONAL_CAPABLE),
}


# A half-open SA never reaches the store (STYLE.md §5); a deleted one has left it.
_NOT_STORED = (IkeState.CONNECTING, IkeState.AUTHENTICATING, IkeState.DELETED)


def _mobike_negotiated(sa: IkeSa) -> bool:
    return sa.local_mobike_supported and sa.peer_mobike_supported


def _reason(notify: int) -> str:
    reasons: dict[int, str] = {
        NotifyType.AUTHENTICATION_FAILED: "authentication_failed",
        NotifyType.NO_PROPOSAL_CHOSEN: "no_proposal_chosen",
        NotifyType.INVALID_KE_PAYLOAD: "invalid_ke_payload",
        NotifyType.INVALID_SYNTAX: "invalid_syntax",
        NotifyType.UNEXPECTED_NAT_DETECTED: "unexpected_nat_detected",
    }
    return reasons.get(notify, "failed")
