"""The clone scenario over real UDP on loopback: through aio.py in one process, and as two
processes (`ikecore respond --max-clones 1` and `ikecore initiate --clone 2`)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import subprocess
import time
from pathlib import Path

from engine_harness import peer_configs
from udp_harness import CLIENT, GATEWAY, SECOND, expect, free_port_pair, ikecore_command, udp_pair

from ikecore.events import (
    ChildSaEstablished,
    CloneFailed,
    CloneRequestRefused,
    EspPacketReceived,
    IkeSaCloned,
    IkeSaEstablished,
    IkeSaMoved,
)
from ikecore.states import IkeState

PING = b"\x45" + bytes(27)


def test_clone_child_mobike_and_esp_through_aio() -> None:
    ike_port, nat_port = ports = free_port_pair()

    async def scenario() -> None:
        client_peer, gateway_peer = peer_configs()
        client_peer = dataclasses.replace(
            client_peer, remote_address=(GATEWAY, ike_port), local_address=(CLIENT, ike_port)
        )
        gateway_peer = dataclasses.replace(gateway_peer, max_clones=1)
        async with udp_pair(client_peer, gateway_peer, ports, [CLIENT, SECOND]) as (
            client,
            gateway,
        ):
            # IKE_SA_INIT --> <-- ; IKE_AUTH {.., N(CLONE_IKE_SA_SUPPORTED), ..} --> <--
            old = client.endpoint.initiate(client_peer, client.now())
            client.pump()
            await expect(client, ChildSaEstablished)
            # CREATE_CHILD_SA {N(CLONE_IKE_SA), SA, Ni, KEi} -->  <-- {SA, Nr, KEr}
            old.request_clone(client.now())
            client.pump()
            made = await expect(client, IkeSaCloned)
            assert isinstance(made, IkeSaCloned)
            clone = made.clone
            await expect(gateway, IkeSaEstablished)
            peer_made = await expect(gateway, IkeSaCloned)
            assert isinstance(peer_made, IkeSaCloned)
            # A second clone: the gateway allows one per family.
            # CREATE_CHILD_SA {N(CLONE_IKE_SA), ...} -->  <-- {N(NO_ADDITIONAL_SAS)}
            clone.request_clone(client.now())
            client.pump()
            refused = await expect(client, CloneFailed)
            assert isinstance(refused, CloneFailed) and refused.reason == "NO_ADDITIONAL_SAS"
            assert isinstance(await expect(gateway, CloneRequestRefused), CloneRequestRefused)
            # CREATE_CHILD_SA (on the clone) {SA, Ni, TSi, TSr} --> <-- {SA, Nr, TSi, TSr}
            clone.create_child_sa(client.now())
            client.pump()
            child_event = await expect(client, ChildSaEstablished)
            assert isinstance(child_event, ChildSaEstablished) and child_event.session is clone
            # (from SECOND) INFORMATIONAL {N(UPDATE_SA_ADDRESSES), N(NAT_D_*), N(COOKIE2)} -->
            clone.update_addresses((SECOND, nat_port), client.now())
            client.pump()
            assert isinstance(await expect(client, IkeSaMoved), IkeSaMoved)
            peer_moved = await expect(gateway, IkeSaMoved)
            assert isinstance(peer_moved, IkeSaMoved)
            assert peer_moved.session.sa.remote_address == (SECOND, nat_port)
            assert peer_made.parent.sa.remote_address == (CLIENT, nat_port)
            # ESP through the old SA's Child SA and the clone's, gateway to client.
            (peer_child,) = peer_moved.session.child_sas
            old_peer_child = peer_made.parent.child_sas[0]
            for child in (peer_child, old_peer_child):
                gateway.endpoint.send_esp(child.spi_in, PING, 4, gateway.now())
            gateway.pump()
            arrived = {
                event.child.spi_in  # type: ignore[attr-defined]
                for event in [await expect(client, EspPacketReceived) for _ in range(2)]
            }
            assert arrived == {child_event.child.spi_in, old.child_sas[0].spi_in}
            assert old.state == clone.state == IkeState.ESTABLISHED

    asyncio.run(scenario())


def test_respond_max_clones_1_and_initiate_clone_2(tmp_path: Path) -> None:
    ike_port, nat_port = free_port_pair()
    psk = tmp_path / "psk"
    psk.write_text("ikecore-test-psk-not-secret-0123456789\n")
    common = ["--nat-port", str(nat_port), "--psk-file", str(psk), "--json"]
    responder = subprocess.Popen(
        ikecore_command(
            "respond",
            "--listen",
            f"{GATEWAY}:{ike_port}",
            "--local-id",
            "gateway.example",
            "--max-clones",
            "1",
            *common,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        time.sleep(0.5)  # let it bind
        # IKE_SA_INIT --> <-- ; IKE_AUTH --> <-- ;
        # CREATE_CHILD_SA {N(CLONE_IKE_SA), SA, Ni, KEi} --> <-- {SA, Nr, KEr}     (clone 1)
        # CREATE_CHILD_SA {N(CLONE_IKE_SA), SA, Ni, KEi} --> <-- {N(NO_ADDITIONAL_SAS)}
        # INFORMATIONAL {D(IKE)} --> <--  (each IKE SA)
        initiator = subprocess.run(
            ikecore_command(
                "initiate",
                "--local",
                f"{CLIENT}:{ike_port}",
                "--remote",
                f"{GATEWAY}:{ike_port}",
                "--local-id",
                "client.example",
                "--remote-id",
                "gateway.example",
                "--clone",
                "2",
                "--timeout",
                "10",
                *common,
            ),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
        assert initiator.returncode == 0, initiator.stderr
        result = json.loads(initiator.stdout)
        assert result["established"] and result["clone_supported_by_peer"] is True
        assert result["clones"] == 1 and result["clone_refusals"] == ["NO_ADDITIONAL_SAS"]
        (clone,) = result["clone_sas"]
        assert clone["spi_i"] != result["ike_sa"]["spi_i"] and clone["child_sas"] == []
        assert result["deleted"]
        responder.send_signal(signal.SIGTERM)
        out, err = responder.communicate(timeout=10)
        assert responder.returncode == 0, err
        summary = json.loads(out)
        assert summary["clones"] == 1 and summary["clone_refusals"] == ["NO_ADDITIONAL_SAS"]
        assert summary["clone_supported_by_peer"] is True and summary["ike_sas"] == 1
        assert {s["spi_i"] for s in summary["sessions"]} == {
            result["ike_sa"]["spi_i"],
            clone["spi_i"],
        }
    finally:
        if responder.poll() is None:
            responder.kill()
