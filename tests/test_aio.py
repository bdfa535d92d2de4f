"""The setup, a Child SA, a rekey and a delete through aio.py over real UDP on loopback."""

from __future__ import annotations

import asyncio
import dataclasses

from engine_harness import peer_configs
from udp_harness import CLIENT, GATEWAY, SECOND, expect, free_port_pair, udp_pair

from ikecore.events import (
    ChildSaEstablished,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaRekeyed,
)
from ikecore.states import IkeState


def test_handshake_child_rekey_delete_over_udp() -> None:
    ike_port, nat_port = ports = free_port_pair()

    async def scenario() -> None:
        initiator_peer, responder_peer = peer_configs()
        initiator_peer = dataclasses.replace(
            initiator_peer, remote_address=(GATEWAY, ike_port), local_address=(CLIENT, ike_port)
        )
        async with udp_pair(initiator_peer, responder_peer, ports) as (client, gateway):
            # IKE_SA_INIT (port 500-like) -->  <--  ; IKE_AUTH (NAT-T port, marker) -->  <--
            session = client.endpoint.initiate(initiator_peer, client.now())
            client.pump()
            await expect(client, IkeSaEstablished)
            await expect(client, ChildSaEstablished)
            await expect(gateway, ChildSaEstablished)
            assert session.state == IkeState.ESTABLISHED
            assert session.sa.remote_address == (GATEWAY, nat_port)
            (peer_session,) = gateway.endpoint.sessions
            assert peer_session.sa.remote_address == (CLIENT, nat_port)
            # CREATE_CHILD_SA -->  <--
            session.create_child_sa(client.now())
            client.pump()
            await expect(client, ChildSaEstablished)
            # IKE SA rekey: CREATE_CHILD_SA -->  <-- ; INFORMATIONAL {D} -->  <--
            session.rekey(client.now())
            client.pump()
            rekeyed = await expect(client, IkeSaRekeyed)
            await expect(client, IkeSaDeleted)
            new = rekeyed.new  # type: ignore[attr-defined]
            assert len(new.child_sas) == 2
            # INFORMATIONAL {D(IKE)} -->  <--
            new.delete(client.now())
            client.pump()
            old_deleted = await expect(gateway, IkeSaDeleted)
            assert old_deleted.reason == "rekeyed"  # type: ignore[attr-defined]
            new_deleted = await expect(gateway, IkeSaDeleted)
            assert new_deleted.reason == "deleted_by_peer"  # type: ignore[attr-defined]
            await expect(client, IkeSaDeleted)
            assert client.endpoint.sessions == [] and gateway.endpoint.sessions == []
            # Six requests (INIT, AUTH, CHILD, REKEY, 2 x DELETE), each answered once.
            assert client.sent == gateway.sent == 6
            assert client.received_count == gateway.received_count == 6

    asyncio.run(scenario())


def test_several_local_addresses_and_nat_keepalives() -> None:
    ike_port, nat_port = ports = free_port_pair()
    second = SECOND

    async def scenario() -> None:
        initiator_peer, responder_peer = peer_configs()
        async with udp_pair(
            initiator_peer, responder_peer, ports, [CLIENT, second], keepalive_interval=0.05
        ) as (client, gateway):
            assert sorted(client.bound) == sorted(
                (host, port) for host in (CLIENT, second) for port in (ike_port, nat_port)
            )
            # One IKE SA from each local address.
            sessions = []
            for local in (CLIENT, second):
                peer = dataclasses.replace(
                    initiator_peer,
                    remote_address=(GATEWAY, ike_port),
                    local_address=(local, ike_port),
                )
                sessions.append(client.endpoint.initiate(peer, client.now()))
                client.pump()
                await expect(client, ChildSaEstablished)
            remote_ends = sorted(s.sa.remote_address for s in gateway.endpoint.sessions)
            assert remote_ends == [(CLIENT, nat_port), (second, nat_port)]
            # A NAT in front of the first one (as NAT-D would have found): keepalives flow
            # (RFC 3948 §2.3) and the gateway's endpoint ignores them.
            sessions[0].sa.local_behind_nat = True
            before = gateway.received_count
            await asyncio.sleep(0.3)
            assert gateway.received_count - before >= 2
            assert [s.state for s in gateway.endpoint.sessions] == [IkeState.ESTABLISHED] * 2
            assert gateway.endpoint.malformed == 0 and gateway.endpoint.esp_dropped == 0

    asyncio.run(scenario())
