"""Simultaneous rekeys between ikecore and strongSwan (RFC 7296 §2.8.1, §2.8.2).

Both peers start a rekey of the same SA before either sees the other's request: the engine
peer keeps what arrives (`hold`) while strongSwan's request comes in, then sends its own
(strongSwan receives it with its own request outstanding), then gets strongSwan's request
and response (`release`). Both exchanges complete; the RFC says which of the two new SAs
survives: the one *not* made by the exchange that used the lowest of the four nonces, which
its maker deletes. The nonces and SPIs come from the capture, decrypted by `ikecore decode
--keylog` (checked against tshark in the other interop tests).

    ikecore                                           strongSwan
      (holds arrivals)                         <--  CREATE_CHILD_SA {N(REKEY_SA), SA, Ni', ...}
    CREATE_CHILD_SA {N(REKEY_SA), SA, Ni, ...} -->
      (releases)                               <--  {SA, Nr, ...}   (to ikecore's request)
    {SA, Nr', ...}                              -->                  (to strongSwan's request)
    INFORMATIONAL {D(redundant SA)}            <->  (from the side that made it)
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from interop_engine_checks import (
    Steps,
    child_key_mismatches,
    decode_keylog,
    engine_args,
    ike_key_mismatches,
    tshark_problems,
)
from interop_engine_peer import EnginePeer
from interop_peers import (
    Capture,
    StrongSwan,
    _die_with_test_process,
    connection_name,
    parse_keys,
)
from interop_tshark import dissect

IKE = "aes128gcm16-prfsha256-x25519"
ECHOES = 3
STEP_TIMEOUT = 10.0
REKEY_SA = 16393  # RFC 7296 §3.10.1


@dataclass(frozen=True)
class RekeyExchange:
    """One CREATE_CHILD_SA rekey exchange as captured: who asked, nonces, the new SA's SPIs."""

    initiator_is_ikecore: bool
    ni: bytes
    nr: bytes
    spis: tuple[str, str]  # (SPI in the request's SA payload, SPI in the response's)


@dataclass
class CollisionRun:
    first: str  # who initiated the IKE SA: "ikecore" or "strongSwan"
    conn: str  # strongSwan's connection name
    steps: Steps
    state: dict[str, Any]
    exchanges: list[RekeyExchange]
    strongswan_log: str
    pcap: Path
    keys_dir: Path


def rekey_exchanges(
    pcap: Path, keys_dir: Path, ikecore_addr: str, protocol: str
) -> list[RekeyExchange]:
    """The CREATE_CHILD_SA exchanges of the capture whose SA payload is for ``protocol``
    ("ESP": Child SA rekeys, "IKE": IKE SA rekeys), in capture order of their requests."""
    requests: dict[tuple[str, str, int], dict[str, Any]] = {}
    exchanges = []
    for message in decode_keylog(pcap, keys_dir):
        if message["exchange"] != "CREATE_CHILD_SA" or "decrypted" not in message:
            continue
        payloads = message["decrypted"]["payloads"]
        sas = [p for p in payloads if p["payload"] == "SA"]
        nonces = [p["data"] for p in payloads if p["payload"] == "NONCE"]
        if not sas or not nonces:
            continue  # an error answer (e.g. TEMPORARY_FAILURE)
        proposal = sas[0]["proposals"][0]
        if proposal["protocol_id"]["name"] != protocol:
            continue
        if protocol == "ESP" and not message["is_response"] and not any(
            p["payload"] == "NOTIFY" and p["notify_type"] == {"value": REKEY_SA,
                                                              "name": "REKEY_SA"}
            for p in payloads
        ):
            continue  # a new Child SA, not a rekey
        key = (message["spi_i"], message["spi_r"], message["message_id"])
        if not message["is_response"]:
            requests[key] = {"source": message["source"], "ni": nonces[0],
                             "spi": proposal["spi"]}
            continue
        request = requests.pop(key)
        exchanges.append(RekeyExchange(
            initiator_is_ikecore=_source_host(request["source"]) == ikecore_addr,
            ni=bytes.fromhex(request["ni"]), nr=bytes.fromhex(nonces[0]),
            spis=(request["spi"], proposal["spi"]),
        ))
    return exchanges


def _source_host(label: str) -> str:
    """The sender of a decoded frame: labels read "frame N SRC:PORT -> DST:PORT"."""
    return label.split()[2].rsplit(":", 1)[0]


def survivor(exchanges: list[RekeyExchange]) -> RekeyExchange:
    """RFC 7296 §2.8.1/§2.8.2: the SA made with the lowest of the four nonces is deleted;
    the other one stays."""
    first, second = exchanges
    lowest = min(first.ni, first.nr, second.ni, second.nr)
    return second if lowest in (first.ni, first.nr) else first


def _collide(
    steps: Steps, engine: EnginePeer, strongswan: StrongSwan, label: str,
    swanctl: list[str], ikecore_op: str, **fields: Any,
) -> None:
    """strongSwan's rekey request arrives while held, ikecore's goes out, both answers cross."""
    steps.run(f"{label}: hold", engine, "hold")
    rekey = subprocess.Popen(
        [*strongswan.netns.exec_args(), "swanctl", *swanctl, "--uri", f"unix://{strongswan.vici}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    steps.run(f"{label}: strongSwan's request held", engine, "held", count=1,
              timeout=STEP_TIMEOUT)
    steps.run(f"{label}: ikecore's request", engine, ikecore_op, nowait=True, **fields)
    steps.run(f"{label}: strongSwan's answer held", engine, "held", count=2,
              timeout=STEP_TIMEOUT)
    steps.run(f"{label}: release", engine, "release")
    out, _ = rekey.communicate(timeout=STEP_TIMEOUT)
    steps.note(f"{label}: swanctl", output=out, status=rekey.returncode)


@pytest.fixture(scope="module", params=["ikecore", "strongSwan"],
                ids=lambda who: f"{who} initiated the IKE SA")
def collisions(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> CollisionRun:
    ikecore_first = request.param == "ikecore"
    fixture = "strongswan_responder" if ikecore_first else "strongswan_initiator"
    pair, strongswan = request.getfixturevalue(fixture)
    workdir = tmp_path_factory.mktemp("collisions")
    offset = strongswan.log_offset()
    capture = Capture(pair.responder, pair.responder_if, workdir / "capture.pcap")
    role, netns = ("initiator", pair.initiator) if ikecore_first else (
        "responder", pair.responder)
    engine = EnginePeer(netns.exec_args(),
                        engine_args(role, pair, workdir, IKE, "aes128gcm16"),
                        workdir / "engine.log", _die_with_test_process)
    conn = "resp" if ikecore_first else connection_name(IKE)
    inner_i, inner_r = pair.inner(0)
    ours, theirs = (inner_i, inner_r) if ikecore_first else (inner_r, inner_i)
    ikecore_addr = pair.initiator_addr if ikecore_first else pair.responder_addr
    steps = Steps()
    try:
        if ikecore_first:
            child = steps.run("initiate", engine, "initiate")["child"]["child"]
        else:
            strongswan.initiate("esp128", conn)
            child = steps.run("initiate", engine, "wait", event="ChildSaEstablished",
                              since=0)["found"]["child"]
        since = engine.step("state")["events"]
        _collide(steps, engine, strongswan, "child", ["--rekey", "--child", "esp128"],
                 "rekey_child", spi_in=child)
        steps.run("child: rekeyed", engine, "wait", event="ChildSaRekeyed", since=since,
                  timeout=STEP_TIMEOUT)
        steps.run("child: settled", engine, "wait", event="ChildSaDeleted", since=since,
                  match={"child": child}, timeout=STEP_TIMEOUT)
        # §2.8.1: the redundant new SA is deleted by its maker: wait until one is left.
        steps.note("child: list-sas", text=_wait_list_sas(
            strongswan, lambda text: len(installed_esp128(text)) == 1))
        current = engine.step("state")["current"]["children"]
        steps.note("child: left", children=current)
        steps.run("child: ping", engine, "ping", spi_in=current[0], src=ours, dst=theirs,
                  count=ECHOES)
        since = engine.step("state")["events"]
        _collide(steps, engine, strongswan, "ike", ["--rekey", "--ike", conn], "rekey_ike")
        steps.run("ike: rekeyed", engine, "wait", event="IkeSaRekeyed", since=since,
                  timeout=STEP_TIMEOUT)
        steps.note("ike: list-sas", text=_wait_list_sas(
            strongswan, lambda text: text.count(f"{conn}: #") == 1))
        state = engine.step("state")
        steps.run("ike: liveness", engine, "liveness")
        steps.run("ike: ping", engine, "ping", spi_in=state["current"]["children"][0],
                  src=ours, dst=theirs, count=ECHOES)
        steps.run("delete", engine, "delete")
    finally:
        state = engine.step("state")
        engine.close()
        pcap = capture.stop()
    log = strongswan.log_since(offset)
    return CollisionRun(
        request.param, conn, steps, state,
        rekey_exchanges(pcap, workdir / "keys", ikecore_addr, "ESP")
        + rekey_exchanges(pcap, workdir / "keys", ikecore_addr, "IKE"),
        log, pcap, workdir / "keys",
    )


def installed_esp128(list_sas: str) -> list[str]:
    """The INSTALLED esp128 Child SAs in `swanctl --list-sas` output, each with its lines.
    (charon lists a rekeyed SA as DELETED for 5 s more: its inbound SA stays installed for
    late packets, strongswan.conf delete_rekeyed_delay.)"""
    blocks = re.split(r"\n(?=\s+\S+: #\d+, )", list_sas)
    return [b for b in blocks if re.match(r"\s+esp128: #\d+, reqid \d+, INSTALLED", b)]


def _wait_list_sas(strongswan: StrongSwan, accept: Callable[[str], bool]) -> str:
    deadline = time.monotonic() + STEP_TIMEOUT
    text = strongswan.list_sas()
    while not accept(text) and time.monotonic() < deadline:
        time.sleep(0.1)
        text = strongswan.list_sas()
    return text


def _peers(run: CollisionRun) -> dict[str, str]:
    other = "strongSwan" if run.first == "ikecore" else "ikecore"
    return {"initiator": run.first, "responder": other}


def test_simultaneous_child_sa_rekey(
    collisions: CollisionRun, interop_case: Callable[..., None]
) -> None:
    steps = collisions.steps
    for name in ("hold", "strongSwan's request held", "ikecore's request",
                 "strongSwan's answer held", "release"):
        steps.ok(f"child: {name}")
    steps.ok("child: rekeyed")
    steps.ok("child: settled")
    assert "collision" in collisions.strongswan_log.lower()  # strongSwan saw it as one, too
    children = [e for e in collisions.exchanges if e.spis[0] and len(e.spis[0]) == 8]
    assert sorted(e.initiator_is_ikecore for e in children) == [False, True], children
    kept = survivor(children)
    # One Child SA left on each side, and it is the one the RFC keeps.
    left = steps.ok("child: left")["children"]
    assert len(left) == 1
    [installed] = installed_esp128(steps.ok("child: list-sas")["text"])
    assert left[0] in kept.spis
    assert all(spi in installed for spi in kept.spis)
    assert steps.ok("child: ping")["replies"] == ECHOES
    interop_case(**_peers(collisions), ike=IKE, esp="aes128gcm16",
                 exercised="simultaneous Child SA rekey (RFC 7296 §2.8.1): both exchanges "
                           "complete, the SA of the lowest nonce is deleted, the same SA "
                           "survives on both sides, ESP through it")


def test_simultaneous_ike_sa_rekey(
    collisions: CollisionRun, interop_case: Callable[..., None]
) -> None:
    steps = collisions.steps
    for name in ("hold", "strongSwan's request held", "ikecore's request",
                 "strongSwan's answer held", "release"):
        steps.ok(f"ike: {name}")
    rekeyed = steps.ok("ike: rekeyed")["found"]
    ikes = [e for e in collisions.exchanges if len(e.spis[0]) == 16]
    assert sorted(e.initiator_is_ikecore for e in ikes) == [False, True], ikes
    kept = survivor(ikes)
    assert rekeyed["new"] == f"{kept.spis[0]}:{kept.spis[1]}"
    list_sas = steps.ok("ike: list-sas")["text"]
    assert list_sas.count(f"{collisions.conn}: #") == 1
    assert f"{kept.spis[0]}_i" in list_sas and f"{kept.spis[1]}_r" in list_sas
    steps.ok("ike: liveness")
    assert steps.ok("ike: ping")["replies"] == ECHOES
    steps.ok("delete")
    interop_case(**_peers(collisions), ike=IKE, esp="aes128gcm16",
                 exercised="simultaneous IKE SA rekey (RFC 7296 §2.8.2): the SA of the lowest "
                           "nonce is deleted, the same IKE SA survives on both sides, Child SA "
                           "moved, liveness and ESP after it")


def test_collision_keys_and_capture(
    collisions: CollisionRun, interop_case: Callable[..., None]
) -> None:
    """Every SA ikecore made in the collisions (the redundant ones too) has strongSwan's keys;
    tshark opens the whole capture with ikecore's --keylog."""
    logged = parse_keys(collisions.strongswan_log)
    assert ike_key_mismatches(collisions.state["ike_sas"], logged) == []
    assert child_key_mismatches(collisions.state["child_sas"], logged) == []
    assert tshark_problems(dissect(collisions.pcap, collisions.keys_dir)) == []
    interop_case(**_peers(collisions), ike=IKE, esp="aes128gcm16",
                 decoder="tshark",
                 exercised="rekey collisions: every key (redundant SAs too) = strongSwan's; "
                           "tshark opens the capture with ikecore's --keylog")
