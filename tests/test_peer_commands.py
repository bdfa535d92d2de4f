"""`ikecore respond` and `ikecore initiate` as two processes on loopback, with ESP traffic."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_aio import CLIENT, GATEWAY, free_port_pair

from ikecore.cli import main
from ikecore.peer_commands import _host_port, _ping_packet


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ikecore", *args]


def test_respond_and_initiate_exchange_esp(tmp_path: Path) -> None:
    ike_port, nat_port = free_port_pair()
    psk = tmp_path / "psk"
    psk.write_text("ikecore-test-psk-not-secret-0123456789\n")
    responder = subprocess.Popen(
        _command(
            "respond",
            "--listen",
            f"{GATEWAY}:{ike_port}",
            "--nat-port",
            str(nat_port),
            "--psk-file",
            str(psk),
            "--local-id",
            "gateway.example",
            "--count",
            "1",
            "--echo",
            "--json",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)  # let it bind
        # IKE_SA_INIT -->  <-- ; IKE_AUTH -->  <-- ; 3 x ESP -->  <-- (echo) ; INFORMATIONAL {D}
        initiator = subprocess.run(
            _command(
                "initiate",
                "--local",
                f"{CLIENT}:{ike_port}",
                "--remote",
                f"{GATEWAY}:{ike_port}",
                "--nat-port",
                str(nat_port),
                "--psk-file",
                str(psk),
                "--local-id",
                "client.example",
                "--remote-id",
                "gateway.example",
                "--ping",
                "3",
                "--json",
                "--timeout",
                "10",
            ),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert initiator.returncode == 0, initiator.stderr
        result = json.loads(initiator.stdout)
        assert result["established"] and result["child_sas"] == 1 and result["deleted"]
        assert result["esp_sent"] == 3 and result["esp_received"] == 3
        assert result["clone_supported_by_peer"] is True
        out, err = responder.communicate(timeout=15)
        assert responder.returncode == 0, err
        summary = json.loads(out)
        assert summary["ike_sas"] == 1 and summary["child_sas"] == 1
        assert summary["esp_echoed"] == 3 and summary["ended"] == 1
        assert summary["sessions"][0]["spi_i"] == result["ike_sa"]["spi_i"]
    finally:
        if responder.poll() is None:
            responder.kill()


def test_initiate_fails_with_a_one_line_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ike_port, nat_port = free_port_pair()
    psk = tmp_path / "psk"
    psk.write_text("secret")
    # Nobody answers: the retransmissions run out well after --timeout.
    status = main(
        [
            "initiate",
            "--local",
            f"{CLIENT}:{ike_port}",
            "--remote",
            f"{GATEWAY}:{ike_port}",
            "--nat-port",
            str(nat_port),
            "--psk-file",
            str(psk),
            "--local-id",
            "a.example",
            "--remote-id",
            "b.example",
            "--timeout",
            "0.5",
        ]
    )
    assert status == 1
    err = capsys.readouterr().err.strip()
    assert err == "ikecore initiate: timed out"
    assert (
        main(
            [
                "initiate",
                "--local",
                "nowhere",
                "--remote",
                "1.2.3.4",
                "--psk-file",
                str(psk),
                "--local-id",
                "a",
                "--remote-id",
                "b",
            ]
        )
        == 1
    )
    assert "bad address 'nowhere'" in capsys.readouterr().err


def test_argument_helpers() -> None:
    assert _host_port("192.0.2.1", 500) == ("192.0.2.1", 500)
    assert _host_port("192.0.2.1:4501", 500) == ("192.0.2.1", 4501)
    assert _host_port("[2001:db8::1]:600", 500) == ("2001:db8::1", 600)
    assert _host_port("2001:db8::1", 500) == ("2001:db8::1", 500)
    packet = _ping_packet(7)
    assert packet[0] == 0x45 and int.from_bytes(packet[2:4], "big") == len(packet)
    # The IPv4 header checksum verifies (sums to 0xFFFF).
    total = sum(int.from_bytes(packet[i : i + 2], "big") for i in range(0, 20, 2))
    assert (total & 0xFFFF) + (total >> 16) == 0xFFFF
