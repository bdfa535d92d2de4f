"""ikecore against strongSwan 5.9.8 (kernel-libipsec), both roles, every IKE proposal.

Per IKE proposal, one scenario per direction (module-scoped fixtures), then one test per
property. The engine runs in its own namespace (tests/interop_engine_peer.py, real UDP);
strongSwan's charon-systemd in the other; tcpdump captures the veth between them.

ikecore initiates (strongSwan responder, `dpd_delay = 1s`):

    IKE_SA_INIT, IKE_AUTH {.. SA(aes128gcm16) TSi TSr N(CLONE_IKE_SA_SUPPORTED)}  esp128
    CREATE_CHILD_SA esp256 (aes256gcm16); esp128esn, esp256esn -> N(NO_PROPOSAL_CHOSEN)
    ICMP echo through both Child SAs, from ikecore and from strongSwan's side
    request_clone -> refused NOT_NEGOTIATED locally (strongSwan sent no 16432), nothing sent
    ikecore: rekey esp128, rekey the IKE SA, liveness check
    strongSwan: rekey esp128, rekey the IKE SA, DPD (liveness), Delete of esp256
    ikecore: Delete of the IKE SA

strongSwan initiates (ikecore responder): the mirror image; strongSwan's ESN child is accepted
by ikecore, which strongSwan cannot install and deletes at once; ikecore deletes esp256 and
strongSwan the IKE SA.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from interop_engine_checks import (
    CHILDREN,
    NO_PROPOSAL_CHOSEN,
    Steps,
    child_key_mismatches,
    decode_matches_tshark,
    engine_args,
    flip_key_tables,
    ike_key_mismatches,
    tshark_problems,
    wait_for_log,
)
from interop_engine_peer import EnginePeer
from interop_peers import (
    IKE_PROPOSALS,
    INITIATOR_ID,
    PSK,
    RESPONDER_ID,
    Capture,
    NetnsPair,
    StrongSwan,
    _die_with_test_process,
    connection_name,
    icmp_echo,
    parse_keys,
    stop_process,
)
from interop_tshark import dissect

from ikecore.wireshark import read_key_tables

INSTALLABLE = CHILDREN[:2]
ESN_CHILDREN = CHILDREN[2:]
ECHOES = 3
EXCHANGE_IKE_AUTH = 35
CLONE_IKE_SA_SUPPORTED, CLONE_IKE_SA = 16432, 16433  # RFC 7791 §6
ESN_REASON = "strongSwan's kernel-libipsec has no ESN"
ESP_BOTH = "aes128gcm16, aes256gcm16"
ESP_ESN = "aes128gcm16-esn, aes256gcm16-esn"
ENGINE_ESP = "aes128gcm16,aes256gcm16,aes128gcm16-esn,aes256gcm16-esn"
STEP_TIMEOUT = 10.0
DPD_TIMEOUT = 4.0  # dpd_delay 1s: charon probes after a second without inbound traffic


@dataclass
class EngineRun:
    ike: str
    role: str  # ikecore's role in the IKE SA
    steps: Steps
    state: dict[str, Any]
    logged_keys: Any
    strongswan_log: str
    list_sas: str
    pcap: Path
    keys_dir: Path
    workdir: Path
    duration_s: float

    @property
    def peers(self) -> dict[str, str]:
        if self.role == "initiator":
            return {"initiator": "ikecore", "responder": "strongSwan"}
        return {"initiator": "strongSwan", "responder": "ikecore"}


# --- the two scenarios ------------------------------------------------------------------------

def _ping_both_ways(
    steps: Steps, engine: EnginePeer, pair: NetnsPair, strongswan: StrongSwan, label: str,
    spi_in: str, index: int, engine_is_initiator: bool,
) -> None:
    """ICMP echo from ikecore (strongSwan's libipsec decrypts, its kernel answers, libipsec
    encrypts the reply) and from strongSwan's side (ikecore decrypts and answers)."""
    inner_i, inner_r = pair.inner(index)
    ours, theirs = (inner_i, inner_r) if engine_is_initiator else (inner_r, inner_i)
    steps.run(f"ping {label}", engine, "ping", spi_in=spi_in, src=ours, dst=theirs,
              count=ECHOES)
    replies = icmp_echo(strongswan.netns, theirs, ours, ECHOES)
    steps.note(f"strongSwan ping {label}", replies=replies)


def _rekeys_and_liveness(
    steps: Steps, engine: EnginePeer, pair: NetnsPair, strongswan: StrongSwan, ike_name: str,
    child128: str, engine_is_initiator: bool,
) -> str:
    """Child SA rekey, IKE SA rekey and liveness from each side; traffic after each rekey.
    Returns the esp128 Child SA's current inbound SPI."""
    answer = steps.run("ikecore rekeys child", engine, "rekey_child", spi_in=child128)
    if answer["ok"]:
        child128 = answer["child"]["new"]
    _ping_both_ways(steps, engine, pair, strongswan, "after ikecore's child rekey", child128, 0,
                    engine_is_initiator)
    steps.run("ikecore rekeys IKE SA", engine, "rekey_ike")
    steps.run("ikecore liveness", engine, "liveness")
    _ping_both_ways(steps, engine, pair, strongswan, "after ikecore's IKE rekey", child128, 0,
                    engine_is_initiator)

    since = engine.step("state")["events"]
    out = strongswan.swanctl("--rekey", "--child", "esp128", check=False)
    answer = steps.run("strongSwan rekeys child", engine, "wait", event="ChildSaRekeyed",
                       since=since, match={"old": child128}, timeout=STEP_TIMEOUT)
    answer["swanctl"] = out
    if answer["ok"]:
        child128 = answer["found"]["new"]
    _ping_both_ways(steps, engine, pair, strongswan, "after strongSwan's child rekey", child128,
                    0, engine_is_initiator)
    since = engine.step("state")["events"]
    out = strongswan.swanctl("--rekey", "--ike", ike_name, check=False)
    answer = steps.run("strongSwan rekeys IKE SA", engine, "wait", event="IkeSaRekeyed",
                       since=since, timeout=STEP_TIMEOUT)
    answer["swanctl"] = out
    _ping_both_ways(steps, engine, pair, strongswan, "after strongSwan's IKE rekey", child128,
                    0, engine_is_initiator)

    # strongSwan's liveness check: DPD after dpd_delay without traffic from us.
    offset = strongswan.log_offset()
    log = wait_for_log(strongswan, offset, lambda t: "sending DPD request" in t
                       and "parsed INFORMATIONAL response" in t, DPD_TIMEOUT)
    steps.note("strongSwan liveness", log=log)
    return child128


def _finish(
    ike: str, role: str, steps: Steps, engine: EnginePeer, strongswan: StrongSwan,
    capture: Capture, offset: int, workdir: Path, started: float,
) -> EngineRun:
    state = engine.step("state")
    engine.close()
    pcap = capture.stop()
    log = strongswan.log_since(offset)
    return EngineRun(
        ike=ike, role=role, steps=steps, state=state, logged_keys=parse_keys(log),
        strongswan_log=log, list_sas=steps.answers.get("list-sas", {}).get("text", ""),
        pcap=pcap, keys_dir=workdir / "keys", workdir=workdir,
        duration_s=round(time.monotonic() - started, 2),
    )


def ikecore_initiates(
    ike: str, pair: NetnsPair, strongswan: StrongSwan, workdir: Path
) -> EngineRun:
    started = time.monotonic()
    offset = strongswan.log_offset()
    capture = Capture(pair.responder, pair.responder_if, workdir / "capture.pcap")
    engine = EnginePeer(pair.initiator.exec_args(),
                        engine_args("initiator", pair, workdir, ike, "aes128gcm16"),
                        workdir / "engine.log", _die_with_test_process)
    steps = Steps()
    try:
        answer = steps.run("initiate", engine, "initiate", timeout=STEP_TIMEOUT)
        child128 = answer["child"]["child"] if answer["ok"] else ""
        for name, esp, index in CHILDREN[1:]:
            inner_i, inner_r = pair.inner(index)
            steps.run(f"create {name}", engine, "create_child", esp=esp,
                      local_ts=f"{inner_i}/32", remote_ts=f"{inner_r}/32")
        child256 = steps.answers["create esp256"].get("child", {}).get("child", "")
        steps.note("list-sas established", text=strongswan.list_sas())
        _ping_both_ways(steps, engine, pair, strongswan, "esp128", child128, 0, True)
        _ping_both_ways(steps, engine, pair, strongswan, "esp256", child256, 1, True)
        steps.run("clone", engine, "clone")
        _ping_both_ways(steps, engine, pair, strongswan, "after clone refusal", child128, 0, True)
        child128 = _rekeys_and_liveness(steps, engine, pair, strongswan, "resp", child128, True)
        since = engine.step("state")["events"]
        out = strongswan.swanctl("--terminate", "--child", "esp256", "--timeout", "5",
                                 check=False)
        steps.run("strongSwan deletes child", engine, "wait", event="ChildSaDeleted",
                  since=since, match={"child": child256, "reason": "deleted_by_peer"},
                  timeout=STEP_TIMEOUT)["swanctl"] = out
        steps.note("list-sas", text=strongswan.list_sas())
        keys_state = engine.step("state")
        offset_delete = strongswan.log_offset()
        steps.run("ikecore deletes IKE SA", engine, "delete")
        steps.note("strongSwan saw the Delete", log=wait_for_log(
            strongswan, offset_delete, lambda t: "IKE_SA deleted" in t, STEP_TIMEOUT))
        steps.answers["state before delete"] = keys_state
    finally:
        run = _finish(ike, "initiator", steps, engine, strongswan, capture, offset, workdir,
                      started)
    return run


def strongswan_initiates(
    ike: str, pair: NetnsPair, strongswan: StrongSwan, workdir: Path
) -> EngineRun:
    conn = connection_name(ike)
    started = time.monotonic()
    offset = strongswan.log_offset()
    capture = Capture(pair.responder, pair.responder_if, workdir / "capture.pcap")
    engine = EnginePeer(pair.responder.exec_args(),
                        engine_args("responder", pair, workdir, ike, ENGINE_ESP),
                        workdir / "engine.log", _die_with_test_process)
    steps = Steps()
    try:
        children: dict[str, str] = {}
        for name, _, _ in CHILDREN:
            since = engine.step("state")["events"]
            ok, out = strongswan.initiate(name, conn)
            steps.note(f"swanctl initiate {name}", initiated=ok, output=out)
            answer = steps.run(f"create {name}", engine, "wait", event="ChildSaEstablished",
                               since=since, timeout=STEP_TIMEOUT)
            if answer["ok"]:
                children[name] = answer["found"]["child"]
            if name in dict((n, e) for n, e, _ in ESN_CHILDREN) and answer["ok"]:
                # strongSwan cannot install what it proposed: it deletes the Child SA.
                steps.run(f"strongSwan deletes {name}", engine, "wait", event="ChildSaDeleted",
                          since=since, match={"child": children[name]}, timeout=STEP_TIMEOUT)
        child128, child256 = children.get("esp128", ""), children.get("esp256", "")
        steps.note("list-sas established", text=strongswan.list_sas())
        _ping_both_ways(steps, engine, pair, strongswan, "esp128", child128, 0, False)
        _ping_both_ways(steps, engine, pair, strongswan, "esp256", child256, 1, False)
        steps.run("clone", engine, "clone")
        _ping_both_ways(steps, engine, pair, strongswan, "after clone refusal", child128, 0,
                        False)
        child128 = _rekeys_and_liveness(steps, engine, pair, strongswan, conn, child128, False)
        offset_delete = strongswan.log_offset()
        steps.run("ikecore deletes child", engine, "delete_child", spi_in=child256)
        steps.note("strongSwan saw the child Delete", log=wait_for_log(
            strongswan, offset_delete, lambda t: "CHILD_SA closed" in t, STEP_TIMEOUT))
        steps.note("list-sas", text=strongswan.list_sas())
        steps.answers["state before delete"] = engine.step("state")
        since = engine.step("state")["events"]
        out = strongswan.swanctl("--terminate", "--ike", conn, "--timeout", "5", check=False)
        steps.run("strongSwan deletes IKE SA", engine, "wait", event="IkeSaDeleted",
                  since=since, match={"reason": "deleted_by_peer"},
                  timeout=STEP_TIMEOUT)["swanctl"] = out
    finally:
        run = _finish(ike, "responder", steps, engine, strongswan, capture, offset, workdir,
                      started)
    return run


@pytest.fixture(
    scope="module",
    params=[(role, ike) for role in ("ikecore", "strongSwan") for ike in IKE_PROPOSALS],
    ids=lambda param: f"{param[0]} initiates-{param[1]}",
)
def engine_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> EngineRun:
    """One scenario (who initiates, IKE proposal), shared by the property tests below."""
    initiator, ike = request.param
    if initiator == "ikecore":
        pair, strongswan = request.getfixturevalue("strongswan_responder")
        return ikecore_initiates(ike, pair, strongswan, tmp_path_factory.mktemp("ikecore-i"))
    pair, strongswan = request.getfixturevalue("strongswan_initiator")
    return strongswan_initiates(ike, pair, strongswan, tmp_path_factory.mktemp("ikecore-r"))


# --- the properties ---------------------------------------------------------------------------

def test_ike_sa_and_child_sas_established_with_esp_both_ways(
    engine_run: EngineRun, interop_case: Callable[..., None]
) -> None:
    steps = engine_run.steps
    for name, esp, _ in INSTALLABLE:
        if engine_run.role == "initiator" and name == "esp128":
            made = steps.ok("initiate")["child"]
        elif engine_run.role == "initiator":
            made = steps.ok(f"create {name}")["child"]
        else:
            assert steps.ok(f"swanctl initiate {name}")["initiated"]
            made = steps.ok(f"create {name}")["found"]
        assert made["event"] == "ChildSaEstablished"
        bits = esp[3:6]
        established = steps.ok("list-sas established")["text"]
        assert f"{name}: #" in established
        assert f"INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-{bits}" in established
        assert steps.ok(f"ping {name}")["replies"] == ECHOES
        assert steps.ok(f"strongSwan ping {name}")["replies"] == ECHOES
    interop_case(**engine_run.peers, ike=engine_run.ike, esp=ESP_BOTH,
                 exercised="IKE SA + 2 Child SAs up on both sides, ICMP through ESP both ways",
                 scenario_duration_s=engine_run.duration_s)
    state = engine_run.state
    assert state["esp_dropped"] == 0 and state["malformed"] == 0


def test_every_key_ikecore_derived_equals_strongswans(
    engine_run: EngineRun, interop_case: Callable[..., None]
) -> None:
    """All IKE SAs (first and both rekeys) and all Child SAs (IKE_AUTH, CREATE_CHILD_SA, both
    rekeys) ikecore made: every key equals the one charon logged for the same SA."""
    state = engine_run.steps.ok("state before delete")
    ike_sas, child_sas = state["ike_sas"], state["child_sas"]
    assert len(ike_sas) == 3  # first, rekeyed by ikecore, rekeyed by strongSwan
    assert len(child_sas) >= 4
    assert ike_key_mismatches(ike_sas, engine_run.logged_keys) == []
    installed = [c for c in child_sas if not c["transforms"]["esn"]]
    assert child_key_mismatches(installed, engine_run.logged_keys) == []
    interop_case(**engine_run.peers, ike=engine_run.ike, esp=ESP_BOTH,
                 exercised="every key (3 IKE SAs, all Child SAs) = strongSwan's logged keys")


def test_child_sa_rekey_from_each_side(
    engine_run: EngineRun, interop_case: Callable[..., None]
) -> None:
    steps = engine_run.steps
    assert steps.ok("ikecore rekeys child")["child"]["event"] == "ChildSaRekeyed"
    assert steps.ok("strongSwan rekeys child")["found"]["event"] == "ChildSaRekeyed"
    for label in ("after ikecore's child rekey", "after strongSwan's child rekey"):
        assert steps.ok(f"ping {label}")["replies"] == ECHOES
        assert steps.ok(f"strongSwan ping {label}")["replies"] == ECHOES
    interop_case(**engine_run.peers, ike=engine_run.ike, esp=ESP_BOTH,
                 exercised="Child SA rekey from each side")


def test_ike_sa_rekey_and_liveness_from_each_side(
    engine_run: EngineRun, interop_case: Callable[..., None]
) -> None:
    steps = engine_run.steps
    steps.ok("ikecore rekeys IKE SA")
    steps.ok("strongSwan rekeys IKE SA")
    steps.ok("ikecore liveness")
    dpd = steps.ok("strongSwan liveness")["log"]
    assert "sending DPD request" in dpd and "parsed INFORMATIONAL response" in dpd
    assert "retransmit" not in dpd
    for label in ("after ikecore's IKE rekey", "after strongSwan's IKE rekey"):
        assert steps.ok(f"ping {label}")["replies"] == ECHOES
        assert steps.ok(f"strongSwan ping {label}")["replies"] == ECHOES
    # The Child SAs moved to the newest IKE SA, which is the one still up.
    current = steps.ok("state before delete")["current"]
    assert current["spis"] == steps.ok("strongSwan rekeys IKE SA")["found"]["new"]
    interop_case(**engine_run.peers, ike=engine_run.ike, esp=ESP_BOTH,
                 exercised="IKE SA rekey and liveness from each side")


def test_delete_from_each_side(
    engine_run: EngineRun, interop_case: Callable[..., None]
) -> None:
    steps = engine_run.steps
    if engine_run.role == "initiator":
        steps.ok("strongSwan deletes child")
        assert "esp256: #" not in engine_run.list_sas
        assert steps.ok("ikecore deletes IKE SA")["deleted"]["reason"] == "deleted_locally"
        assert "IKE_SA deleted" in steps.ok("strongSwan saw the Delete")["log"]
        exercised = "Delete: Child SA by strongSwan, IKE SA by ikecore"
    else:
        steps.ok("ikecore deletes child")
        assert "CHILD_SA closed" in steps.ok("strongSwan saw the child Delete")["log"]
        assert "esp256: #" not in engine_run.list_sas
        steps.ok("strongSwan deletes IKE SA")
        exercised = "Delete: Child SA by ikecore, IKE SA by strongSwan"
    interop_case(**engine_run.peers, ike=engine_run.ike, esp=ESP_BOTH, exercised=exercised)


def test_esn_is_refused_by_strongswan_and_handled_cleanly(
    engine_run: EngineRun, interop_case: Callable[..., None]
) -> None:
    """kernel-libipsec cannot install ESN SAs. strongSwan as responder answers
    N(NO_PROPOSAL_CHOSEN): ikecore reports ChildSaFailed and keeps the IKE SA. As initiator
    it proposes ESN anyway, ikecore accepts, strongSwan fails to install and Deletes the Child
    SA: ikecore removes it and keeps the IKE SA. Either way no ESN traffic is possible."""
    steps = engine_run.steps
    for name, _, _ in ESN_CHILDREN:
        if engine_run.role == "initiator":
            failed = steps.ok(f"create {name}")["child"]
            assert failed["event"] == "ChildSaFailed"
            assert failed["notify"] == NO_PROPOSAL_CHOSEN
        else:
            assert not steps.ok(f"swanctl initiate {name}")["initiated"]
            steps.ok(f"create {name}")
            deleted = steps.ok(f"strongSwan deletes {name}")["found"]
            assert deleted["reason"] == "deleted_by_peer"
        assert "ESN not supported" in engine_run.strongswan_log
        assert f"{name}: #" not in engine_run.list_sas
    # The IKE SA went on: ESP through the other Child SAs afterwards (rekeys and Deletes
    # after it are checked in the other tests).
    assert steps.ok("ping esp128")["replies"] == ECHOES
    interop_case(**engine_run.peers, ike=engine_run.ike, esp=ESP_ESN,
                 exercised="ESN Child SA refused by strongSwan, handled: the IKE SA and the "
                           "other Child SAs keep working",
                 not_testable=ESN_REASON)


def test_tshark_decrypts_the_capture_with_ikecores_keys(
    engine_run: EngineRun, interop_case: Callable[..., None], tmp_path: Path
) -> None:
    """tshark decrypts every IKE message and ESP packet of the run with ikecore's --keylog
    tables, every ICV correct; one key byte wrong and every ICV is flagged. (tshark 4.0 has
    no ChaCha20-Poly1305 for IKE: for that proposal only ESP is checked.)"""
    dissection = dissect(engine_run.pcap, engine_run.keys_dir)
    chacha = engine_run.ike.startswith("chacha20")
    assert len(dissection.esp) >= 4 * ECHOES * 6
    if chacha:
        dissection = type(dissection)((), dissection.esp)
    else:
        assert len(dissection.encrypted_ike) >= 20
    assert tshark_problems(dissection) == []
    if not chacha:  # ikecore's own decoder reads strongSwan's messages as tshark does
        assert decode_matches_tshark(engine_run.pcap, engine_run.keys_dir) == []
    flip_key_tables(engine_run.keys_dir, tmp_path / "wrong")
    wrong = dissect(engine_run.pcap, tmp_path / "wrong")
    # tshark never accepts an ICV under a wrong key; a few packets get no verdict at all
    # (Wireshark 4.0 dissects the garbage plaintext before the ICV check and gives up when
    # that dissector throws), so "flagged" is: no good ICV, and bad on most of them.
    assert not any(e.icv_good for e in wrong.esp)
    assert sum(e.icv_bad for e in wrong.esp) >= len(wrong.esp) // 2
    if not chacha:
        assert all(f.icv_correct is False for f in wrong.encrypted_ike)
    interop_case(**engine_run.peers, ike=engine_run.ike, esp=ESP_BOTH, decoder="tshark",
                 exercised="tshark decrypts the capture with ikecore's --keylog, all ICVs "
                           "correct, one wrong key byte flags them"
                           + (" (ESP only: no ChaCha20 for IKE in tshark 4.0)" if chacha
                              else "; decode --keylog = tshark"))


def test_clone_not_negotiated_with_strongswan(
    engine_run: EngineRun, interop_case: Callable[..., None]
) -> None:
    """RFC 7791 §5.1: ikecore announces CLONE_IKE_SA_SUPPORTED in its IKE_AUTH message (request
    or response), strongSwan never does and ignores ours: request_clone refuses with
    NOT_NEGOTIATED and sends nothing; the SA keeps working."""
    run = engine_run
    steps = run.steps
    state = steps.ok("state before delete")
    first = state["ike_sas"][0]
    assert first["local_clone_supported"] and not first["peer_clone_supported"]
    clone = steps.ok("clone")
    assert clone.get("refused") == "NOT_NEGOTIATED", clone
    assert clone["datagrams_sent"] == 0
    assert steps.ok("ping after clone refusal")["replies"] == ECHOES
    if not run.ike.startswith("chacha20"):
        dissection = dissect(run.pcap, run.keys_dir)
        ours_is_response = run.role == "responder"
        auth = [f for f in dissection.ike if f.exchange == EXCHANGE_IKE_AUTH]
        assert [CLONE_IKE_SA_SUPPORTED in f.notify_types for f in auth
                if f.is_response == ours_is_response] == [True]
        assert all(CLONE_IKE_SA_SUPPORTED not in f.notify_types for f in auth
                   if f.is_response != ours_is_response)
        assert all(CLONE_IKE_SA not in f.notify_types for f in dissection.ike)
    interop_case(**run.peers, ike=run.ike, esp=ESP_BOTH,
                 exercised="RFC 7791: CLONE_IKE_SA_SUPPORTED ignored by strongSwan, "
                           "request_clone -> NOT_NEGOTIATED, nothing sent, SA keeps working")


# --- the commands themselves: `ikecore initiate` and `ikecore respond` --------------------------

def _keylog_matches_strongswan(keys_dir: Path, logged: Any) -> list[str]:
    """Every IKE and ESP key in ikecore's --keylog tables is one strongSwan logged."""
    ike_sas, esp_sas = read_key_tables(keys_dir)
    problems = []
    logged_ike = {(k.sk_ei, k.sk_er) for k in logged.ike}
    for sa in ike_sas:
        if (sa.sk_ei, sa.sk_er) not in logged_ike:
            problems.append(f"IKE SA {sa.spi_i.hex()}: SK_ei/SK_er not in strongSwan's log")
    by_spi = {}
    for child in logged.children:
        # strongSwan's inbound SA carries what its peer sends; the initiator of the Child SA
        # sends with encr_i (RFC 7296 §2.17).
        for spi in (child.inbound_spi, child.outbound_spi):
            by_spi[spi] = {child.encr_i, child.encr_r}
    for esp in esp_sas:
        if esp.key not in by_spi.get(esp.spi, set()):
            problems.append(f"ESP SA {esp.spi:08x}: key not in strongSwan's log")
    if not ike_sas or not esp_sas:
        problems.append("empty key tables")
    return problems


def test_ikecore_initiate_command_against_strongswan(
    strongswan_responder: tuple[NetnsPair, StrongSwan], tmp_path: Path,
    interop_case: Callable[..., None],
) -> None:
    """`ikecore initiate --clone 1 --ping 3 --keylog DIR --json`, as a user would run it: IKE
    SA and Child SA, the clone refused locally with NOT_NEGOTIATED (strongSwan announced no
    RFC 7791 support) and nothing sent for it, three echoes answered through strongSwan's
    libipsec, Delete, and the keys it logged are strongSwan's."""
    pair, strongswan = strongswan_responder
    ike = IKE_PROPOSALS[0]
    inner_i, inner_r = pair.inner(0)
    offset = strongswan.log_offset()
    psk = tmp_path / "psk"
    psk.write_text(PSK)
    capture = Capture(pair.responder, pair.responder_if, tmp_path / "capture.pcap")
    try:
        proc = pair.initiator.run(
            [sys.executable, "-I", "-m", "ikecore", "initiate", "--local", pair.initiator_addr,
             "--remote", pair.responder_addr, "--psk-file", str(psk),
             "--local-id", INITIATOR_ID, "--remote-id", RESPONDER_ID, "--ike", ike,
             "--esp", "aes128gcm16", "--keylog", str(tmp_path / "keys"), "--clone", "1",
             "--ping", str(ECHOES), "--ping-from", inner_i, "--ping-to", inner_r,
             "--timeout", "10", "--json"], check=False, timeout=40)
        log = wait_for_log(strongswan, offset, lambda t: "IKE_SA deleted" in t, STEP_TIMEOUT)
    finally:
        pcap = capture.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["established"] and result["child_sas"] == 1 and result["deleted"]
    assert result["echo_replies"] == result["echo_requests"] == ECHOES
    assert result["clone_supported_by_peer"] is False
    assert (result["clones"], result["clone_refusals"]) == (0, ["NOT_NEGOTIATED"])
    assert "IKE_SA deleted" in log
    assert _keylog_matches_strongswan(tmp_path / "keys", parse_keys(log)) == []
    # On the wire: IKE_SA_INIT, IKE_AUTH, INFORMATIONAL (Delete); no CREATE_CHILD_SA at all.
    dissection = dissect(pcap, tmp_path / "keys")
    assert tshark_problems(dissection) == []
    assert {f.exchange for f in dissection.ike} == {34, EXCHANGE_IKE_AUTH, 37}
    assert all(CLONE_IKE_SA not in f.notify_types for f in dissection.ike)
    interop_case(initiator="ikecore initiate", responder="strongSwan", ike=ike,
                 esp="aes128gcm16",
                 exercised="the command: --clone 1 refused NOT_NEGOTIATED with nothing sent, "
                           "--ping through ESP (all answered), --keylog keys = strongSwan's, "
                           "Delete")


def test_ikecore_respond_command_against_strongswan(
    strongswan_initiator: tuple[NetnsPair, StrongSwan], tmp_path: Path,
    interop_case: Callable[..., None],
) -> None:
    """`ikecore respond --echo --keylog DIR --json` serving strongSwan: IKE SA and Child SA,
    strongSwan's echoes answered through ESP, and on SIGTERM ikecore deletes the SA and prints
    its summary."""
    pair, strongswan = strongswan_initiator
    ike = IKE_PROPOSALS[0]
    inner_i, inner_r = pair.inner(0)
    offset = strongswan.log_offset()
    psk = tmp_path / "psk"
    psk.write_text(PSK)
    out = tmp_path / "respond.json"
    proc = pair.responder.popen(
        [sys.executable, "-I", "-m", "ikecore", "respond", "--listen", pair.responder_addr,
         "--psk-file", str(psk), "--local-id", RESPONDER_ID, "--ike", ike,
         "--esp", "aes128gcm16", "--keylog", str(tmp_path / "keys"), "--echo", "--json"],
        stdout=out)
    try:
        deadline = time.monotonic() + STEP_TIMEOUT
        listening = ["ss", "-Hlun", f"src {pair.responder_addr}:4500"]
        while not pair.responder.run(listening).stdout.strip():  # ikecore's sockets are up
            assert time.monotonic() < deadline, "ikecore respond never bound its ports"
            time.sleep(0.05)
        ok, text = strongswan.initiate("esp128", connection_name(ike))
        assert ok, text
        replies = icmp_echo(pair.initiator, inner_i, inner_r, ECHOES)
    finally:
        status = stop_process(proc)
    assert status == 0, out.read_text()
    summary = json.loads(out.read_text().splitlines()[-1])
    assert summary["ike_sas"] == 1 and summary["child_sas"] == 1
    assert replies == ECHOES and summary["echoes_answered"] == ECHOES
    log = wait_for_log(strongswan, offset, lambda t: "IKE_SA deleted" in t, STEP_TIMEOUT)
    assert "received DELETE for IKE_SA" in log
    assert _keylog_matches_strongswan(tmp_path / "keys", parse_keys(log)) == []
    interop_case(initiator="strongSwan", responder="ikecore respond", ike=ike,
                 esp="aes128gcm16",
                 exercised="the command: --echo answers strongSwan's ICMP through ESP, "
                           "--keylog keys = strongSwan's, Delete on SIGTERM")
