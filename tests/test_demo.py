"""`ikecore demo` as a user runs it: the installed command, in a subprocess, away from the
source tree (whose ikecore/ has no compiled core)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(sys.executable).parent / "ikecore"


def ikecore(tmp_path: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-I", "-m", "ikecore"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, check=False, cwd=tmp_path, timeout=60
    )


def test_demo_prints_the_flow_and_passes(tmp_path: pathlib.Path) -> None:
    result = ikecore(tmp_path, "demo")
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    flow = [line.split("  (")[0] for line in lines if "-->" in line or "<--" in line]
    # The IKE messages in order (ESP lines left out), as RFC 7296 / 7791 / 4555 draw them.
    ike = [line for line in flow if "ESP" not in line]
    assert ike == [
        "IKE_SA_INIT {SA, KEi, Ni, N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP),"
        " N(IKEV2_FRAGMENTATION_SUPPORTED)} -->",
        "<-- IKE_SA_INIT {SA, KEr, Nr, N(NAT_DETECTION_SOURCE_IP),"
        " N(NAT_DETECTION_DESTINATION_IP), N(IKEV2_FRAGMENTATION_SUPPORTED)}",
        "IKE_AUTH {IDi, AUTH, N(CLONE_IKE_SA_SUPPORTED), N(MOBIKE_SUPPORTED), SA, TSi, TSr} -->",
        "<-- IKE_AUTH {IDr, AUTH, N(CLONE_IKE_SA_SUPPORTED), N(MOBIKE_SUPPORTED), SA, TSi, TSr}",
        "CREATE_CHILD_SA {N(CLONE_IKE_SA), SA, Ni, KEi} -->",
        "<-- CREATE_CHILD_SA {SA, Nr, KEr}",
        "CREATE_CHILD_SA {SA, Ni, TSi, TSr} -->",
        "<-- CREATE_CHILD_SA {SA, Nr, TSi, TSr}",
        "INFORMATIONAL {N(UPDATE_SA_ADDRESSES), N(NAT_DETECTION_SOURCE_IP),"
        " N(NAT_DETECTION_DESTINATION_IP), N(COOKIE2)} -->",
        "<-- INFORMATIONAL {N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP),"
        " N(COOKIE2)}",
        # The gateway's return routability check of the new address (RFC 4555 §3.7).
        "<-- INFORMATIONAL {N(COOKIE2)}",
        "INFORMATIONAL {N(COOKIE2)} -->",
        "INFORMATIONAL {D} -->",
        "<-- INFORMATIONAL {}",
        "INFORMATIONAL {D} -->",
        "<-- INFORMATIONAL {}",
    ]
    assert sum("ESP VPN_1" in line for line in flow) == 6
    # The clone's exchanges after the move leave from the second address.
    update = next(line for line in lines if "N(UPDATE_SA_ADDRESSES)" in line)
    assert "(clone #1, 127.0.0.3:" in update
    assert "esp_packets_ok: 12" in lines and "ok: every step passed" in lines


def test_demo_on_a_sqlite_store(tmp_path: pathlib.Path) -> None:
    result = ikecore(tmp_path, "demo", "--json", "--store", f"sqlite:{tmp_path / 'sas.db'}")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["clones"] == 1 and report["esp_packets_ok"] == 12
    assert (tmp_path / "sas.db").stat().st_size > 0


def test_demo_json(tmp_path: pathlib.Path) -> None:
    result = ikecore(tmp_path, "demo", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["moved"] is True
    assert (report["ike_sas"], report["child_sas"], report["clones"]) == (2, 2, 1)
    assert report["esp_packets_ok"] == report["esp_packets_sent"] == 12
    assert report["addresses"]["clone"].startswith("127.0.0.3")
    assert report["addresses"]["old SA"].startswith("127.0.0.2")
    assert report["spis"]["clone"] != report["spis"]["old SA"]
    assert any("N(CLONE_IKE_SA)" in m for m in report["messages"])
    assert len(report["steps"]) == 6


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("--scenario", "cluster", "--store", "memory:"), "a store both nodes share"),
        (("--store", "nosuch:/db"), "unsupported store URL"),
        (("--store", "sqlite:/nonexistent/dir/db"), "store sqlite:/nonexistent/dir/db: "),
        (("--scenario", "cluster", "--store", "sqlite:/nonexistent/db"), "cannot open the store"),
    ],
)
def test_demo_fails_with_a_one_line_reason(
    tmp_path: pathlib.Path, args: tuple[str, ...], reason: str
) -> None:
    result = ikecore(tmp_path, "demo", *args, "--json")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("ikecore demo: ") and reason in line
    assert json.loads(result.stdout) == {"ok": False, "error": line.removeprefix("ikecore demo: ")}


def test_demo_without_a_second_address_fails_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ikecore import demo
    from ikecore.cli import main

    monkeypatch.setattr(demo, "CLIENT_HOSTS", ("127.0.0.2", "192.0.2.55"))  # not ours
    assert main(["demo"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("ikecore demo: cannot use loopback address 192.0.2.55")


def test_a_failed_step_ends_the_demo_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses

    from ikecore import demo
    from ikecore.cli import main
    from ikecore.config import PeerConfig

    def gateway_without_clone(**fields: object) -> PeerConfig:
        peer = PeerConfig(**fields)  # type: ignore[arg-type]
        is_gateway = str(peer.local_id) == "gateway.demo"
        return dataclasses.replace(peer, clone=False) if is_gateway else peer

    monkeypatch.setattr(demo, "PeerConfig", gateway_without_clone)
    assert main(["demo", "--json"]) == 1
    out, err = capsys.readouterr()
    assert err.strip() == "ikecore demo: the gateway did not announce CLONE_IKE_SA_SUPPORTED"
    assert json.loads(out)["ok"] is False
