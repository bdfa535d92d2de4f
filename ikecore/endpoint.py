"""`IkeEndpoint`: the sans-IO IKEv2 engine (aioquic's connection shape, STYLE.md §3).

The user feeds it datagrams and time and takes out datagrams, events and the next timer:

    endpoint.receive_datagram(data, src, dst, now)
    for datagram in endpoint.datagrams_to_send(now): sock.sendto(datagram.data, datagram.dst)
    while (event := endpoint.next_event()) is not None: ...
    endpoint.handle_timer(now) once endpoint.get_timer() has passed

It demultiplexes IKE messages by SPI to sessions (loading them from the store when they are not
in memory: a restart, or a cluster node taking over an SA), answers the first IKE_SA_INIT of a
new peer (statelessly with a COOKIE when too many SAs are half open, RFC 7296 §2.6), and
tells IKE from ESP and keepalives on the NAT-T port (RFC 3948 §2.2, RFC 7296 §2.23).

Cluster nodes (RFC 7791 §1, issue "SA stores"): a node serves only the SAs its store says it
owns. `hand_off` gives one to another node, `take_over` loads one given to this node. A write
the store refuses (`WriteConflict`: the SA belongs to another node now) or cannot confirm
(`StoreUnavailable`) drops the session from memory, and what it had queued for the peer is
withdrawn: the peer never sees a change that is not durably ours. Outbound ESP sequence numbers
are reserved in blocks of ``EndpointConfig.esp_seq_block`` before they are used (RFC 6311's
idea), so a node that loads the SA later starts above anything ever sent.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import ipaddress
import os
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ikecore.config import Address, EndpointConfig, Identity, PeerConfig
from ikecore.constants import ExchangeType, NotifyType
from ikecore.dh import KeyExchange, key_exchange
from ikecore.errors import (
    IntegrityError,
    LocalProtocolError,
    MalformedMessage,
    RemoteProtocolError,
    ReplayError,
)
from ikecore.esp import DUMMY_NEXT_HEADER, EspInbound, EspOutbound
from ikecore.events import EspPacketReceived, Event, IkeSaDeleted
from ikecore.exchanges.base import find_notify
from ikecore.exchanges.ike_auth import IkeAuthInitiator
from ikecore.exchanges.ike_sa_init import Handshake, IkeSaInitInitiator
from ikecore.sa import ChildSa, IkeSa, SpiPair
from ikecore.session import IkeSession
from ikecore.states import IkeState
from ikecore.store import MemoryStore, SaStore, StoreUnavailable, WriteConflict
from ikecore.wire import (
    IkeMessage,
    Nonce,
    Notify,
    aead_algorithm,
    build_message,
    parse_message,
)

if TYPE_CHECKING:
    from ikecore.exchanges.clone_ike import CloneBackoff

__all__ = ["Datagram", "EspState", "IkeEndpoint"]

_ZERO_SPI = bytes(8)
_NON_ESP_MARKER = bytes(4)
_KEEPALIVE = b"\xff"
# Enum members read for every datagram, bound once (an Enum class attribute read takes the
# slow path of a metaclass with __getattr__ on CPython 3.11).
_IKE_SA_INIT = int(ExchangeType.IKE_SA_INIT)
_AUTHENTICATING = IkeState.AUTHENTICATING
_DELETED = IkeState.DELETED
# Store lookups for ESP with an SPI not in memory, per second (and burst): every such packet
# would otherwise cost a store round trip, which random SPIs from anyone could make for free.
_ESP_LOADS_PER_SECOND = 1000.0


@dataclass(slots=True)
class EspState:
    """The native ESP objects of one Child SA (built from its record, RFC 4303/4106).

    ``seq_limit``: outbound sequence numbers up to this one are reserved in the store
    (`SaStore.reserve_seq`); sending beyond it reserves the next block first. A data path
    that uses ``outbound`` directly calls `IkeEndpoint.reserve_esp` before it does.
    """

    session: IkeSession
    child: ChildSa
    inbound: EspInbound
    outbound: EspOutbound
    seq_limit: int


def _esp_state(session: IkeSession, child: ChildSa) -> EspState:
    t = child.transforms
    algorithm = aead_algorithm(t.encr)
    # The replay window continues from the record (a node that took the SA over).
    inbound = EspInbound(
        child.spi_in,
        child.key_in,
        t.icv_length,
        t.esn,
        algorithm=algorithm,
        highest_seq=child.replay_highest,
        replay_bitmap=child.replay_bitmap,
    )
    outbound = EspOutbound(
        child.spi_out, child.key_out, t.icv_length, t.esn, child.seq_out, algorithm=algorithm
    )
    # Nothing reserved beyond what the record says was used: the first send reserves.
    return EspState(session, child, inbound, outbound, child.seq_out)


@dataclass(frozen=True, slots=True)
class Datagram:
    """A UDP payload and its addresses: ``src`` is ours, ``dst`` the peer's."""

    data: bytes
    src: Address
    dst: Address


# A frozen dataclass's __init__ sets each field through object.__setattr__; the engine makes one
# Datagram per message sent, so it fills the slots through their descriptors (the same object,
# half the cost).
_new_object = object.__new__
_set_data, _set_src, _set_dst = (Datagram.__dict__[name].__set__ for name in ("data", "src", "dst"))


def _datagram(data: bytes, src: Address, dst: Address) -> Datagram:
    datagram: Datagram = _new_object(Datagram)
    _set_data(datagram, data)
    _set_src(datagram, src)
    _set_dst(datagram, dst)
    return datagram


class IkeEndpoint:
    """All IKE SAs of one local identity set; see the module docstring for the loop.

    ``random`` and ``key_exchange`` are the deterministic hooks: tests and vector replays pass
    functions that return fixed SPIs, nonces and private keys. Nothing else is random.
    """

    def __init__(
        self,
        config: EndpointConfig,
        store: SaStore | None = None,
        *,
        random: Callable[[int], bytes] = os.urandom,
        key_exchange: Callable[[int], KeyExchange] = key_exchange,
    ) -> None:
        self.config = config
        self.store: SaStore = MemoryStore() if store is None else store
        self.random = random
        self._new_key_exchange = key_exchange
        self._sessions: dict[bytes, IkeSession] = {}
        # Responder SAs by (SPIi, initiator address): a retransmitted or late IKE_SA_INIT
        # finds its SA instead of opening a new one (§2.1). Half-open ones are also counted.
        self._by_init: dict[tuple[bytes, Address], IkeSession] = {}
        self._half_open: set[IkeSession] = set()
        # Child SAs by inbound SPI; their native ESP objects are made on first use, so a
        # daemon with its own data path never pays for them.
        self._children: dict[bytes, tuple[IkeSession, ChildSa]] = {}
        self._esp: dict[bytes, EspState] = {}
        self._events: deque[Event] = deque()
        self._outbox: list[Datagram] = []
        # Timers: each session's next deadline (`IkeSession.get_timer`) waits in a heap, and
        # only the sessions that changed since (they sent, saved or received something, or
        # are new) are asked again, so get_timer and handle_timer do not visit every SA: a
        # gateway with thousands of SAs calls them after every datagram.
        self._timer_heap: list[tuple[float, int, IkeSession]] = []
        self._timer_pushes = 0  # heap tie-breaker: entries never compare sessions
        self._deadline_of: dict[IkeSession, float | None] = {}
        self._changed: dict[IkeSession, None] = {}  # ordered: no set iteration order
        # Each scheduled session's arrival number: timers due together run in this order.
        self._order_of: dict[IkeSession, int] = {}
        self._arrivals = 0
        # What each session queued since the last datagrams_to_send: withdrawn if its
        # change cannot be saved (see _evict).
        self._queued_by: dict[IkeSession, list[Datagram]] = {}
        # §2.6: the COOKIE secret changes every `cookie_secret_lifetime` seconds; cookies made
        # with the one before it are still accepted (a peer may be just retrying with one).
        self._cookie_secrets: dict[int, bytes] = {1: random(32)}
        self._cookie_version = 1
        self._cookie_secret_since: float | None = None
        self.malformed = 0
        self.cookies_sent = 0
        self.esp_dropped = 0
        self._esp_load_tokens = _ESP_LOADS_PER_SECOND
        self._esp_load_time: float | None = None
        # RFC 7791 §5.3: the refusals of our clone requests that still hold (made at the
        # first refusal, `clone_ike.backoff_for`).
        self.clone_backoff: CloneBackoff | None = None

    # -- services for sessions and exchanges ---------------------------------------------------

    def new_key_exchange(self, group: int) -> KeyExchange:
        return self._new_key_exchange(group)

    def allocate_ike_spi(self) -> bytes:
        while True:
            spi = self.random(8)
            if spi != _ZERO_SPI and self.store.claim_ike_spi(spi):
                return spi

    def allocate_esp_spi(self) -> bytes:
        while True:
            spi = self.random(4)
            # SPI values 1..255 are reserved, 0 means "no SPI" (RFC 4303 §2.1).
            if int.from_bytes(spi, "big") > 255 and self.store.claim_esp_spi(spi):
                return spi

    def release_esp_spi(self, spi: bytes) -> None:
        self.store.release_esp_spi(spi)

    def queue_event(self, event: Event) -> None:
        self._events.append(event)

    def transmit(
        self,
        session: IkeSession,
        raw: bytes,
        reply_to: tuple[Address, Address] | None = None,
        *,
        path: tuple[Address, Address] | None = None,
    ) -> None:
        """Queue an IKE message of ``session``: requests go to the SA's addresses (or on
        ``path``, (local, remote), a request's own, RFC 4555 §3.6), responses (``reply_to`` =
        the request's (src, dst)) back where the request came from (§2.11)."""
        if session.evicted:
            return
        self._changed[session] = None  # a request sent: its retransmission is due
        if path is not None:
            datagram = self._send(raw, *path)
        elif reply_to is None:
            datagram = self._send(raw, session.sa.local_address, session.sa.remote_address)
        else:
            peer, local = reply_to
            datagram = self._send(raw, local, peer)
        queued = self._queued_by.get(session)  # (setdefault would build a list every time)
        if queued is None:
            self._queued_by[session] = [datagram]
        else:
            queued.append(datagram)

    def _send(self, raw: bytes, src: Address, dst: Address) -> Datagram:
        # RFC 3948 §2.2: IKE on the NAT-T port carries the non-ESP marker.
        nat_port = self.config.nat_port
        if src[1] == nat_port or dst[1] == nat_port:
            raw = _NON_ESP_MARKER + raw
        datagram = _datagram(raw, src, dst)
        self._outbox.append(datagram)
        return datagram

    def save(self, session: IkeSession) -> None:
        """Write the session's record (`IkeSession.save`), with the ESP replay windows as they
        are now. A refused write (`WriteConflict`: another node owns the SA) or an unconfirmed
        one (`StoreUnavailable`: it may or may not have been made) drops the session from
        this process and withdraws what it queued for the peer; the next datagram for the SA
        loads the durable record again (if this node still owns it)."""
        self._changed[session] = None  # a state change may move its deadlines
        sa = session.sa
        try:
            if self._esp:  # (no native ESP state made yet: no window to copy, no loop)
                self._copy_replay_windows(sa)
            self.store.put_ike_sa(sa)
        except WriteConflict:
            self._evict(session, "transferred")
        except StoreUnavailable:
            self._evict(session, "store_unavailable")

    def _copy_replay_windows(self, sa: IkeSa) -> None:
        """Into the record: the replay windows of its Child SAs' native ESP state."""
        for spi_in in sa.child_sas:
            state = self._esp.get(spi_in)
            if state is not None:
                state.child.replay_highest = state.inbound.highest_seq
                state.child.replay_bitmap = state.inbound.replay_bitmap

    def delete_record(self, session: IkeSession) -> None:
        """Remove the record of an SA that ended; if another node owns it, only forget it."""
        try:
            self.store.delete_ike_sa(session.sa.spi_i, session.sa.spi_r)
        except WriteConflict:
            self._evict(session, "transferred")
        except StoreUnavailable:
            self._evict(session, "store_unavailable")

    def _evict(self, session: IkeSession, reason: str) -> None:
        """Forget a session without a word to the peer and without touching the store (its
        SPIs stay claimed: the record, or its new owner, still uses them). ``reason``
        ("transferred", "store_unavailable", "handed_off") goes in `IkeSaDeleted` except for
        a hand-off the user asked for."""
        if session.evicted:
            return
        session.evicted = True
        sa = session.sa
        if self._sessions.get(sa.local_spi) is session:
            del self._sessions[sa.local_spi]
        self._untrack(session)
        self._half_open.discard(session)
        if session.init_source is not None:
            self._by_init.pop((sa.spi_i, session.init_source), None)
        for spi_in in sa.child_sas:
            route = self._children.get(spi_in)
            if route is not None and route[0] is session:
                del self._children[spi_in]
                self._esp.pop(spi_in, None)
        withdrawn = {id(d) for d in self._queued_by.pop(session, [])}
        if withdrawn:
            self._outbox = [d for d in self._outbox if id(d) not in withdrawn]
        if session.visible and reason != "handed_off":
            self.queue_event(IkeSaDeleted(session, reason))

    def adopt(self, session: IkeSession) -> None:
        """Track a session created by an exchange (the successor of a rekey, a clone)."""
        self._sessions[session.sa.local_spi] = session
        self._changed[session] = None  # its timers are looked at from now on

    def forget(self, session: IkeSession) -> None:
        if session.evicted:
            return  # its SPIs are not ours to release any more
        sa = session.sa
        if self._sessions.get(sa.local_spi) is session:
            del self._sessions[sa.local_spi]
        self._untrack(session)
        self._half_open.discard(session)
        if session.init_source is not None:
            self._by_init.pop((sa.spi_i, session.init_source), None)
        self.store.release_ike_spi(sa.local_spi)

    def child_installed(self, session: IkeSession, child: ChildSa) -> None:
        self._children[child.spi_in] = (session, child)
        state = self._esp.get(child.spi_in)
        if state is not None:
            # Moved to the successor of an IKE SA rekey: same keys, counters continue.
            state.session = session

    def child_removed(self, child: ChildSa) -> None:
        self._children.pop(child.spi_in, None)
        self._esp.pop(child.spi_in, None)
        self.store.release_esp_spi(child.spi_in)

    # -- the user's API ------------------------------------------------------------------------

    @property
    def sessions(self) -> list[IkeSession]:
        return list(self._sessions.values())

    def sessions_with(self, remote_id: Identity) -> list[IkeSession]:
        """The sessions held here of the IKE SAs with this authenticated peer, found through
        the store's identity index instead of a pass over every SA (a gateway checks this for
        every client that says INITIAL_CONTACT). A store that cannot answer: the pass."""
        try:
            records = self.store.find_by_identity(remote_id)
        except StoreUnavailable:
            return [s for s in self._sessions.values() if s.sa.remote_id == remote_id]
        held = [self._sessions.get(sa.local_spi) for sa in records]
        return [s for s in held if s is not None and s.sa.remote_id == remote_id]

    def initiate(
        self,
        peer: PeerConfig,
        now: float,
        *,
        local: Address | None = None,
        remote: Address | None = None,
    ) -> IkeSession:
        """Start IKE_SA_INIT + IKE_AUTH towards ``peer`` (RFC 7296 §1.2)."""
        remote = remote or peer.remote_address
        if remote is None:
            raise LocalProtocolError("no remote address: set PeerConfig.remote_address")
        local = local or peer.local_address or ("0.0.0.0", 500)
        spi_i = self.allocate_ike_spi()
        # (spi_i, spi_r, initiator, local_address, remote_address), the rest set one by one:
        # a class called with keyword arguments builds a dict of them (~2 µs on CPython 3.11).
        sa = IkeSa(spi_i, _ZERO_SPI, True, local, remote)
        sa.mobike_initiator = True
        sa.peer_name = peer.name
        sa.local_window = self.config.window_size
        sa.created_at = now
        sa.family = spi_i.hex()
        session = IkeSession(self, sa, peer)
        session.handshake = Handshake()
        self._sessions[spi_i] = session
        self._changed[session] = None
        session.start(IkeSaInitInitiator(peer), now)
        session.start(IkeAuthInitiator(peer), now)
        return session

    def receive_datagram(self, data: bytes, src: Address, dst: Address, now: float) -> None:
        """One UDP payload as received on ``dst`` from ``src``."""
        data = bytes(data)
        nat_port = self.config.nat_port
        if src[1] == nat_port or dst[1] == nat_port:
            if data == _KEEPALIVE:
                return  # NAT keepalive (RFC 3948 §2.3): not even liveness
            if data[:4] != _NON_ESP_MARKER:
                self._receive_esp(data, now)
                return
            data = data[4:]
        try:
            message = parse_message(data)
        except (MalformedMessage, RemoteProtocolError):
            self.malformed += 1
            return
        session = self._find_session(message, src)
        if session is not None:
            if session.sa.state is not _DELETED and not session.evicted:
                self._changed[session] = None  # an answer or a request changes its timers
                try:
                    session.receive(message, now, src, dst)
                except StoreUnavailable:
                    # An SPI claim the store could not make mid-exchange: as with a save it
                    # cannot confirm, the session goes with what it queued, and the peer's
                    # retransmission loads the durable record again.
                    self._evict(session, "store_unavailable")
            return
        if (
            message.exchange == _IKE_SA_INIT
            and message.is_initiator
            and not message.is_response
            and message.spi_r == _ZERO_SPI
            and message.message_id == 0
        ):
            self._new_responder(message, src, dst, now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._outbox = self._outbox, []
        self._queued_by.clear()
        return out

    # -- cluster nodes (RFC 7791 §1) -----------------------------------------------------------

    def hand_off(self, session: IkeSession, to_node: str) -> None:
        """Give an IKE SA (with its Child SAs) to cluster node ``to_node``: the record is
        saved with its counters and replay windows, ownership moves in the store
        (compare-and-set, `SaStore.transfer`) and this endpoint forgets the session without a
        word to the peer. The new owner continues with `take_over`.

        Raises LocalProtocolError while exchanges of ours are in flight or queued (their
        responses could not be matched on the other node) or when the SA is not established,
        `WriteConflict` when this node does not own it (then it is dropped here too)."""
        if session.evicted or session.sa.state != IkeState.ESTABLISHED:
            raise LocalProtocolError("only an established IKE SA can be handed off")
        if session.busy():
            raise LocalProtocolError("exchanges in flight: hand the IKE SA off when they end")
        try:
            self._copy_replay_windows(session.sa)
            self.store.put_ike_sa(session.sa)
        except WriteConflict:
            self._evict(session, "transferred")
            raise
        # StoreUnavailable: nothing moved for sure; the session stays and may be handed again.
        if not self.store.transfer(session.sa.spis, self.store.node_id, to_node):
            self._evict(session, "transferred")
            raise WriteConflict(f"{self.store.node_id} does not own {session!r}")
        self._evict(session, "handed_off")

    def take_over(self, spis: SpiPair) -> IkeSession:
        """Serve an IKE SA given to this node (`hand_off` on another node): loaded from the
        store with message IDs, SK IV counter, ESP sequence numbers above every one the old
        owner reserved, and replay windows. Moving the peer to this node is the caller's next
        step (`IkeSession.update_addresses`, RFC 4555 §3.5; docs/CLUSTER.md).
        LocalProtocolError when the store has no such live SA owned by this node."""
        for stale in list(self._sessions.values()):
            if stale.sa.spis == spis:
                self._evict(stale, "handed_off")  # a copy from an earlier turn here
        session = self._load(*spis)
        if session is None:
            raise LocalProtocolError(
                f"no live IKE SA {spis[0].hex()}/{spis[1].hex()} owned by {self.store.node_id}"
            )
        return session

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest deadline of any session (None: no timer)."""
        self._reschedule_changed()
        heap = self._timer_heap
        while heap:
            deadline, _, session = heap[0]
            if self._deadline_of.get(session) != deadline:
                heapq.heappop(heap)  # superseded by a newer deadline, or the session is gone
            elif session.get_timer() != deadline:
                # Moved without a change we track (ESP traffic defers the liveness check).
                self._schedule(session)
            else:
                return deadline
        return None

    def handle_timer(self, now: float) -> None:
        """Run the sessions whose deadline has passed, in the order they came."""
        self._reschedule_changed()
        heap = self._timer_heap
        due: list[IkeSession] = []
        while heap and heap[0][0] <= now:
            deadline, _, session = heapq.heappop(heap)
            if self._deadline_of.get(session) == deadline:
                del self._deadline_of[session]  # asked again below
                due.append(session)
        due.sort(key=self._order_of.__getitem__)
        for session in due:
            if session in self._order_of:  # not ended by a timer run before it
                timer = session.get_timer()
                if timer is not None and timer <= now:
                    try:
                        session.handle_timer(now)
                    except StoreUnavailable:
                        # As in receive_datagram: the next datagram loads the record again.
                        self._evict(session, "store_unavailable")
                self._changed[session] = None

    def _untrack(self, session: IkeSession) -> None:
        """A session gone from `_sessions`: its heap entries are dropped when they surface."""
        self._order_of.pop(session, None)
        self._deadline_of.pop(session, None)
        self._changed.pop(session, None)

    def _reschedule_changed(self) -> None:
        changed = self._changed
        if changed:
            sessions = self._sessions
            for session in changed:
                if sessions.get(session.sa.local_spi) is session:  # still ours
                    self._schedule(session)
            changed.clear()

    def _schedule(self, session: IkeSession) -> None:
        if session not in self._order_of:
            # Numbered when first scheduled: sessions enter `_changed` as they arrive.
            self._order_of[session] = self._arrivals
            self._arrivals += 1
        deadline = session.get_timer()
        if session in self._deadline_of and self._deadline_of[session] == deadline:
            return  # its entry in the heap still stands
        self._deadline_of[session] = deadline
        if deadline is None:
            return
        heap = self._timer_heap
        if len(heap) > 2 * len(self._deadline_of) + 64:
            # Superseded entries wait until they surface; an SA whose deadline keeps moving
            # (a liveness check deferred by every message) would pile them up: rebuild.
            heap[:] = [
                (when, order, live)
                for order, (live, when) in enumerate(self._deadline_of.items())
                if when is not None and live is not session
            ]
            heapq.heapify(heap)
            self._timer_pushes = len(heap)
        self._timer_pushes += 1
        heapq.heappush(heap, (deadline, self._timer_pushes, session))

    # -- demultiplexing ------------------------------------------------------------------------

    def _find_session(self, message: IkeMessage, src: Address) -> IkeSession | None:
        if message.is_initiator:
            # Sent by the original initiator: we are the responder and SPIr is ours.
            if message.spi_r == _ZERO_SPI:
                return self._by_init.get((message.spi_i, src))
            session = self._sessions.get(message.spi_r)
            if session is not None:
                return session if session.sa.spi_i == message.spi_i else None
        else:
            session = self._sessions.get(message.spi_i)
            if session is not None:
                awaiting_spi_r = session.sa.spi_r == _ZERO_SPI
                return session if awaiting_spi_r or session.sa.spi_r == message.spi_r else None
        return self._load(message.spi_i, message.spi_r)

    def _load(self, spi_i: bytes, spi_r: bytes) -> IkeSession | None:
        """An SA this process does not hold: from the store (restart, cluster hand-off)."""
        try:
            sa = self.store.get_ike_sa(spi_i, spi_r)
            if sa is None or sa.state == IkeState.DELETED:
                return None
            # A node serves only what it owns (the old owner of a handed-off SA stays out).
            if self.store.owner(spi_i, spi_r) != self.store.node_id:
                return None
        except StoreUnavailable:
            return None  # as if lost: the peer retransmits
        return self._adopt_record(sa)

    def _adopt_record(self, sa: IkeSa) -> IkeSession:
        peer = next((p for p in self.config.peers if sa.peer_name and p.name == sa.peer_name), None)
        if peer is None and sa.remote_id is not None:
            peer = self.config.peer_for(sa.remote_id)
        session = IkeSession(self, sa, peer)
        self._sessions[sa.local_spi] = session
        self._changed[session] = None
        for child in sa.child_sas.values():
            self.child_installed(session, child)
        return session

    # -- a new peer ----------------------------------------------------------------------------

    def _cookie(self, version: int, ni: bytes, src: Address, spi_i: bytes) -> bytes:
        # §2.6: Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)
        packed = ipaddress.ip_address(src[0]).packed
        secret = self._cookie_secrets[version]
        digest = hmac.new(secret, ni + packed + spi_i, hashlib.sha256).digest()
        return version.to_bytes(4, "big") + digest

    def _rotate_cookie_secret(self, now: float) -> None:
        if self._cookie_secret_since is None:
            self._cookie_secret_since = now
            return
        elapsed, lifetime = now - self._cookie_secret_since, self.config.cookie_secret_lifetime
        if elapsed < lifetime:
            return
        previous = self._cookie_version
        self._cookie_version = previous % 0xFFFFFFFF + 1
        # The previous secret stays valid for one lifetime after it was replaced.
        kept = {previous: self._cookie_secrets[previous]} if elapsed < 2 * lifetime else {}
        self._cookie_secrets = {**kept, self._cookie_version: self.random(32)}
        self._cookie_secret_since = now

    def _cookie_accepted(self, offered: bytes, ni: bytes, src: Address, spi_i: bytes) -> bool:
        version = int.from_bytes(offered[:4], "big")
        if version not in self._cookie_secrets:
            return False  # too old, or not a cookie of ours
        return hmac.compare_digest(offered, self._cookie(version, ni, src, spi_i))

    def _new_responder(self, message: IkeMessage, src: Address, dst: Address, now: float) -> None:
        if len(self._half_open) >= self.config.cookie_threshold:
            nonce = next((p for p in message.payloads if isinstance(p, Nonce)), None)
            if nonce is None:
                return
            self._rotate_cookie_secret(now)
            offered = find_notify(message.payloads, NotifyType.COOKIE)
            if offered is None or not self._cookie_accepted(
                offered.data, nonce.data, src, message.spi_i
            ):
                expected = self._cookie(self._cookie_version, nonce.data, src, message.spi_i)
                # Stateless: nothing is kept for this peer until it returns the cookie.
                self.cookies_sent += 1
                reply = build_message(
                    message.spi_i,
                    _ZERO_SPI,
                    ExchangeType.IKE_SA_INIT,
                    initiator=False,
                    response=True,
                    message_id=0,
                    payloads=[Notify.status(NotifyType.COOKIE, expected)],
                )
                self._send(reply, dst, src)
                return
        try:
            spi_r = self.allocate_ike_spi()
        except StoreUnavailable:
            return  # as if lost: the initiator retransmits (§2.1)
        # Positional, the rest set one by one (see `initiate`).
        sa = IkeSa(message.spi_i, spi_r, False, dst, src)
        sa.local_window = self.config.window_size
        sa.created_at = now
        sa.family = sa.spi_r.hex()
        session = IkeSession(self, sa, None)
        session.handshake = Handshake()
        session.half_open_deadline = now + self.config.half_open_timeout
        session.init_source = src
        self._sessions[sa.spi_r] = session
        self._changed[session] = None
        self._by_init[(sa.spi_i, src)] = session
        self._half_open.add(session)
        try:
            session.receive(message, now, src, dst)
        except StoreUnavailable:
            self._evict(session, "store_unavailable")  # as in receive_datagram
            return
        if sa.state is not _AUTHENTICATING:
            # Refused (NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD) or dropped: keep no state.
            self.forget(session)

    @property
    def half_open_count(self) -> int:
        """Responder SAs between IKE_SA_INIT and IKE_AUTH (what the COOKIE threshold counts)."""
        return len(self._half_open)

    def half_open_established(self, session: IkeSession) -> None:
        """IKE_AUTH done: the SA no longer counts as half open."""
        self._half_open.discard(session)

    # -- ESP -----------------------------------------------------------------------------------

    def esp(self, spi_in: bytes) -> EspState:
        """The ESP objects of a Child SA (by our inbound SPI), for a daemon's data path."""
        state = self._esp.get(spi_in)
        if state is None:
            route = self._children.get(spi_in)
            if route is None:
                raise LocalProtocolError(f"no Child SA with inbound SPI {spi_in.hex()}")
            state = self._esp[spi_in] = _esp_state(*route)
        return state

    def reserve_esp(self, spi_in: bytes, count: int) -> EspState:
        """Make sure the next ``count`` outbound sequence numbers of the Child SA are reserved
        in the store (a block of at least ``esp_seq_block``, one durable write) and return
        its ESP state. Raises `WriteConflict` (another node owns the SA: it is dropped here),
        `StoreUnavailable` (nothing may be sent now; a later call reserves again) or
        SequenceExhausted."""
        state = self.esp(spi_in)
        if state.outbound.seq + count > state.seq_limit:
            block = max(count, self.config.esp_seq_block)
            try:
                state.seq_limit = self.store.reserve_seq(spi_in, block)
            except WriteConflict:
                self._evict(state.session, "transferred")
                raise
        return state

    def send_esp(self, spi_in: bytes, inner: bytes, next_header: int, now: float) -> None:
        """Encapsulate one inner packet on the Child SA and queue it as ESP-in-UDP to the
        peer's NAT-T port (RFC 3948 §2.1). Raises SequenceExhausted instead of wrapping, and
        what `reserve_esp` raises."""
        state = self.reserve_esp(spi_in, 1)
        packet = state.outbound.encapsulate(inner, next_header)
        state.child.seq_out = state.outbound.seq
        self._outbox.append(_datagram(packet, *self._esp_path(state)))

    def send_esp_batch(
        self, spi_in: bytes, inners: list[bytes], next_header: int, now: float
    ) -> None:
        """`send_esp` for several inner packets in order, sealed in one native call (all or
        nothing: sequence numbers are reserved for the whole batch first)."""
        if not inners:
            return
        state = self.reserve_esp(spi_in, len(inners))
        outbound = state.outbound
        out = bytearray(sum(outbound.packet_len(len(inner)) for inner in inners))
        ends = array("q", bytes(8 * len(inners)))
        outbound.encapsulate_batch(inners, next_header, out, ends)
        state.child.seq_out = outbound.seq
        src, dst = self._esp_path(state)
        start = 0
        for end in ends:
            self._outbox.append(_datagram(bytes(out[start:end]), src, dst))
            start = end

    def _esp_path(self, state: EspState) -> tuple[Address, Address]:
        verified = state.session.mobike.esp_path
        if verified is not None:
            # RFC 4555 §3.7: the peer's new address is being checked; until it answers the
            # Child SAs stay on the path they had.
            return verified
        sa = state.session.sa
        port = self.config.nat_port
        if sa.local_address[1] == port:
            # The IKE SA floated: ESP uses exactly its addresses and ports (RFC 3948 §2.1),
            # which behind a NAT are the NAT's mapping, not 4500.
            return sa.local_address, sa.remote_address
        return (sa.local_address[0], port), (sa.remote_address[0], port)

    def _receive_esp(self, data: bytes, now: float) -> None:
        """ESP-in-UDP (RFC 3948): routed by SPI; replay check, then ICV, then the window
        (the native core's order); anything that fails is counted and dropped."""
        spi = data[:4]
        state = self._esp.get(spi)
        if state is None:
            route = self._children.get(spi) or self._load_by_esp_spi(spi, now)
            if route is None:
                self.esp_dropped += 1
                return
            state = self._esp[spi] = _esp_state(*route)
        try:
            next_header, inner = state.inbound.decapsulate(data)
        except (IntegrityError, ReplayError, MalformedMessage):
            self.esp_dropped += 1
            return
        state.session.last_heard = now  # authentic traffic: the peer is alive (DPD waits)
        if next_header == DUMMY_NEXT_HEADER:
            return  # RFC 4303 §2.6: authentic, counted, discarded
        self.queue_event(EspPacketReceived(state.session, state.child, next_header, inner))

    def _load_by_esp_spi(self, spi: bytes, now: float) -> tuple[IkeSession, ChildSa] | None:
        """ESP for a Child SA this process does not hold: its IKE SA from the store (a
        restart, or a node that took the SA over and hears ESP before any IKE message), at
        most `_ESP_LOADS_PER_SECOND` lookups a second (a token bucket)."""
        if len(spi) != 4:
            return None
        if self._esp_load_time is not None:
            elapsed = max(now - self._esp_load_time, 0.0)
            self._esp_load_tokens = min(
                _ESP_LOADS_PER_SECOND, self._esp_load_tokens + elapsed * _ESP_LOADS_PER_SECOND
            )
        self._esp_load_time = now
        if self._esp_load_tokens < 1:
            return None
        self._esp_load_tokens -= 1
        try:
            sa = self.store.find_by_esp_spi(spi)
            if sa is None or sa.state == IkeState.DELETED or spi not in sa.child_sas:
                return None
            if self.store.owner(sa.spi_i, sa.spi_r) != self.store.node_id:
                return None
        except StoreUnavailable:
            return None
        if sa.local_spi in self._sessions:
            return None  # held here, and the Child SA is not in it: a stale record
        self._adopt_record(sa)
        return self._children.get(spi)
