"""SAs served from the store: a restarted endpoint (or another node) picks an SA up by SPI.

`SnapshotStore` keeps only `IkeSa.to_dict()` snapshots, like a persistent store would, so
these tests also prove that the record holds everything an SA needs to continue: keys,
message IDs, IV counters, Child SAs and ESP sequence numbers.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from engine_harness import RESPONDER_HOST, drain, of_type, pair

from ikecore.config import EndpointConfig, Identity
from ikecore.endpoint import IkeEndpoint
from ikecore.events import ChildSaEstablished, EspPacketReceived, IkeSaDeleted, LivenessChecked
from ikecore.sa import IkeSa
from ikecore.states import IkeState
from ikecore.store import MemoryStore, SaStore


class SnapshotStore(MemoryStore):
    """A MemoryStore that keeps JSON snapshots and hands out fresh records."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: dict[tuple[bytes, bytes], str] = {}

    def put_ike_sa(self, sa: IkeSa) -> None:
        super().put_ike_sa(copy.copy(sa))
        self.snapshots[sa.spis] = json.dumps(sa.to_dict())

    def get_ike_sa(self, spi_i: bytes, spi_r: bytes) -> IkeSa | None:
        text = self.snapshots.get((spi_i, spi_r))
        return None if text is None else IkeSa.from_dict(json.loads(text))

    def delete_ike_sa(self, spi_i: bytes, spi_r: bytes) -> None:
        super().delete_ike_sa(spi_i, spi_r)
        self.snapshots.pop((spi_i, spi_r), None)


def _restart(old: IkeEndpoint, store: SaStore, **extra: Any) -> IkeEndpoint:
    """A new process on the same store and configuration (nothing in memory)."""
    return IkeEndpoint(old.config, store, **extra)


def test_restarted_responder_continues_the_sa() -> None:
    initiator, responder, peer, net = pair()
    store = SnapshotStore()
    responder = IkeEndpoint(responder.config, store, random=responder.random)
    net.hosts[RESPONDER_HOST] = responder
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    session.create_child_sa(1.0)
    net.run(1.0)
    drain(initiator)
    (child, _) = session.child_sas
    assert len(store.snapshots) == 1
    # The responder process restarts: nothing in memory, the store has the record.
    restarted = _restart(responder, store)
    net.hosts[RESPONDER_HOST] = restarted
    assert restarted.sessions == []
    # INFORMATIONAL #3 {} -->  (loaded from the store by SPI)  <-- INFORMATIONAL #3 {}
    session.check_liveness(2.0)
    flow = net.run(2.0)
    assert [str(d) for d in flow] == ["INFORMATIONAL --> #3", "INFORMATIONAL <-- #3"]
    assert of_type(drain(initiator), LivenessChecked)
    (loaded,) = restarted.sessions
    assert loaded.sa.next_peer_request_id == 4 and len(loaded.child_sas) == 2
    assert loaded.peer is not None and loaded.peer.local_id == Identity.parse("gateway.example")
    # Its IV counter continued: the old process sealed IVs 1 (IKE_AUTH) and 2
    # (CREATE_CHILD_SA); the restarted one used 3, never one of those again.
    sealed_iv = flow[1].datagram.data[4 + 28 + 4 : 4 + 28 + 12]
    assert int.from_bytes(sealed_iv, "big") == 3 and loaded.sa.sk_iv == 3
    # ESP continues on the loaded Child SAs.
    initiator.send_esp(child.spi_in, b"\x45" + bytes(19), 4, 3.0)
    net.run(3.0)
    (packet,) = of_type(drain(restarted), EspPacketReceived)
    assert isinstance(packet, EspPacketReceived) and packet.session is loaded
    # A new Child SA on the loaded SA, then the delete.
    session.create_child_sa(4.0)
    net.run(4.0)
    assert of_type(drain(restarted), ChildSaEstablished)
    session.delete(5.0)
    net.run(5.0)
    assert of_type(drain(restarted), IkeSaDeleted)
    assert store.snapshots == {} and loaded.state == IkeState.DELETED


def test_unknown_spis_are_not_answered() -> None:
    initiator, responder, peer, net = pair()
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    # The responder forgets everything (a store without the SA): requests go unanswered.
    net.hosts[RESPONDER_HOST] = IkeEndpoint(EndpointConfig(peers=responder.config.peers))
    session.check_liveness(1.0)
    flow = net.run(1.0)
    assert [str(d) for d in flow] == ["INFORMATIONAL --> #2"]
