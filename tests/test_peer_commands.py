"""`ikecore respond` and `ikecore initiate` as two processes on loopback, with ESP traffic."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from udp_harness import CLIENT, GATEWAY, free_port_pair, ikecore_command

from ikecore.cli import main
from ikecore.peer_commands import _host_port, echo_reply_for, echo_request
from ikecore.wireshark import read_key_tables


def test_respond_and_initiate_exchange_esp(tmp_path: Path) -> None:
    ike_port, nat_port = free_port_pair()
    psk = tmp_path / "psk"
    psk.write_text("ikecore-test-psk-not-secret-0123456789\n")
    responder = subprocess.Popen(
        ikecore_command(
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
            "--keylog",
            str(tmp_path / "gateway-keys"),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        time.sleep(0.5)  # let it bind
        # IKE_SA_INIT --> <-- ; IKE_AUTH --> <-- ; 3 x ESP(ICMP echo) --> <-- ESP(echo reply)
        # INFORMATIONAL {D(IKE)} --> <--
        initiator = subprocess.run(
            ikecore_command(
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
                "--keylog",
                str(tmp_path / "client-keys"),
            ),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
        assert initiator.returncode == 0, initiator.stderr
        result = json.loads(initiator.stdout)
        assert result["established"] and result["child_sas"] == 1 and result["deleted"]
        assert result["echo_requests"] == 3 and result["echo_replies"] == 3
        assert result["clone_supported_by_peer"] is True
        out, err = responder.communicate(timeout=15)
        assert responder.returncode == 0, err
        summary = json.loads(out)
        assert summary["ike_sas"] == 1 and summary["child_sas"] == 1
        assert summary["echoes_answered"] == 3 and summary["ended"] == 1
        assert summary["sessions"][0]["spi_i"] == result["ike_sa"]["spi_i"]
        # Both key logs name the same IKE SA and both directions of the Child SA.
        spi_i = bytes.fromhex(result["ike_sa"]["spi_i"])
        (child,) = result["ike_sa"]["child_sas"]
        for directory in ("client-keys", "gateway-keys"):
            ike, esp = read_key_tables(tmp_path / directory)
            assert [k.spi_i for k in ike] == [spi_i]
            assert sorted(k.spi for k in esp) == sorted(
                int(child[key], 16) for key in ("spi_in", "spi_out")
            )
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
    request = echo_request("10.1.0.2", "10.2.0.1", 7)
    assert request[0] == 0x45 and int.from_bytes(request[2:4], "big") == len(request)
    assert request[9] == 1 and request[20] == 8  # ICMP, echo request
    # The IPv4 header and ICMP checksums verify (RFC 1071: the sum is 0xFFFF).
    for part in (request[:20], request[20:]):
        total = sum(int.from_bytes(part[i : i + 2], "big") for i in range(0, len(part), 2))
        assert (total & 0xFFFF) + (total >> 16) == 0xFFFF
    reply = echo_reply_for(request)
    assert reply is not None and reply[20] == 0
    assert reply[12:16] == request[16:20] and reply[16:20] == request[12:16]
    assert reply[24:] == request[24:]  # identifier, sequence and data unchanged
    assert echo_reply_for(reply) is None and echo_reply_for(b"\x60" + bytes(40)) is None


def test_respond_deletes_its_sas_and_reports_on_sigterm(tmp_path: Path) -> None:
    ike_port, nat_port = free_port_pair()
    psk = tmp_path / "psk"
    psk.write_text("another-test-psk\n")
    common = ["--nat-port", str(nat_port), "--psk-file", str(psk), "--json"]
    responder = subprocess.Popen(
        ikecore_command(
            "respond", "--listen", f"{GATEWAY}:{ike_port}", "--local-id", "gw", *common
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    initiator: subprocess.Popen[str] | None = None
    try:
        time.sleep(0.5)
        initiator = subprocess.Popen(
            ikecore_command(
                "initiate",
                "--local",
                f"{CLIENT}:{ike_port}",
                "--remote",
                f"{GATEWAY}:{ike_port}",
                "--local-id",
                "client",
                "--remote-id",
                "gw",
                "--hold",
                "20",
                "--keylog",
                str(tmp_path / "client-keys"),
                *common,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        # Established and holding: the initiator's key log has its Child SA's records, which
        # exist only once the IKE_AUTH response arrived, so the responder has established too.
        # (The table files themselves, with their comment header, exist from the start.) No
        # fixed sleep: the machine may be loaded.
        keys = tmp_path / "client-keys"
        deadline = time.monotonic() + 20
        while not read_key_tables(keys)[1]:
            assert time.monotonic() < deadline, "the initiator never established its Child SA"
            assert initiator.poll() is None, initiator.communicate()[1]
            time.sleep(0.1)
        # SIGTERM: the responder deletes its IKE SA (INFORMATIONAL {D(IKE)} <--), reports.
        responder.send_signal(signal.SIGTERM)
        out, err = responder.communicate(timeout=10)
        assert responder.returncode == 0, err
        summary = json.loads(out)
        assert summary["ike_sas"] == 1 and summary["ended"] == 0
        # The initiator stops holding as soon as the peer ended the SA (well before 20 s).
        out, err = initiator.communicate(timeout=10)
        assert initiator.returncode == 0, err
        result = json.loads(out)
        assert result["established"] and result["deleted"]
    finally:
        for process in (responder, initiator):
            if process is not None and process.poll() is None:
                process.kill()
