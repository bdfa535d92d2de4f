"""ikecore to ikecore on the wire, checked by tshark and by `ikecore decode --keylog`.

Two engine peers (tests/interop_engine_peer.py) in two namespaces run the RFC 7791 scenario
that `ikecore demo` is meant to show (the demo command itself does not exist yet, so the
same steps are driven here), for each AES-GCM IKE proposal (tshark 4.0 has no ChaCha20 for
IKE):

    IKE_SA_INIT, IKE_AUTH {.. N(CLONE_IKE_SA_SUPPORTED)} both ways          esp128 on SA 1
    ICMP echo through esp128
    CREATE_CHILD_SA {N(CLONE_IKE_SA), SA, Ni, KEi}  -> clone (SA 2)
    CREATE_CHILD_SA on the clone                      esp256 on SA 2, ICMP echo through it
    INFORMATIONAL {N(UPDATE_SA_ADDRESSES) ..} on the clone from a second address (MOBIKE),
    ICMP echo from there; Child SA rekey, IKE SA rekey, liveness from each side on SA 1;
    Delete of the clone by the initiator, of SA 1 by the responder.

Then tshark, given only the initiator's --keylog tables, decrypts every IKE message and ESP
packet of the capture with correct ICVs and sees the inner payloads ikecore put there (16432
in both IKE_AUTH messages, 16433 in the clone request, 16400 in the MOBIKE update, ICMP
between the inner addresses); with one key byte wrong every ICV is flagged. `ikecore decode
--keylog` reads the same payload and notify types as tshark. A second run with a responder
that announced cloning but allows no clones (--max-clones 0) shows N(NO_ADDITIONAL_SAS)
handled: CloneFailed, the SA keeps working.
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
from interop_engine_checks import Steps, decode_matches_tshark, flip_key_tables, tshark_problems
from interop_engine_peer import EnginePeer
from interop_peers import (
    IKE_PROPOSALS,
    INITIATOR_ID,
    PSK,
    RESPONDER_ID,
    Capture,
    NetnsPair,
    _die_with_test_process,
    stop_process,
)
from interop_tshark import Dissection, IkeFrame, dissect

from ikecore.constants import ExchangeType, NotifyType, PayloadType

GCM_PROPOSALS = [ike for ike in IKE_PROPOSALS if not ike.startswith("chacha20")]
MOVED_ADDR = "192.0.2.3"  # the initiator's second address, for the MOBIKE move of the clone
ECHOES = 3
ESP_BOTH = "aes128gcm16, aes256gcm16"
ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0


@dataclass
class PairRun:
    ike: str
    steps: Steps
    initiator_state: dict[str, Any]
    responder_state: dict[str, Any]
    pcap: Path
    keys_dir: Path
    workdir: Path
    duration_s: float


@pytest.fixture(scope="module")
def engine_pair(netns_pair_factory: Callable[[str], NetnsPair]) -> NetnsPair:
    pair = netns_pair_factory("t")
    pair.initiator.run(["ip", "addr", "add", f"{MOVED_ADDR}/24", "dev", pair.initiator_if])
    return pair


def _engines(
    pair: NetnsPair, workdir: Path, ike: str, max_clones: int | None = None
) -> tuple[EnginePeer, EnginePeer]:
    psk = workdir / "psk"
    psk.write_text(PSK)
    common = ["--psk-file", str(psk), "--ike", ike, "--esp", "aes128gcm16,aes256gcm16"]
    inner_i, inner_r = pair.inner(0)
    responder_args = ["--role", "responder", "--local", pair.responder_addr,
                      "--local-id", RESPONDER_ID, "--keylog", str(workdir / "keys-r"), *common]
    if max_clones is not None:
        responder_args += ["--max-clones", str(max_clones)]
    responder = EnginePeer(pair.responder.exec_args(), responder_args,
                           workdir / "responder.log", _die_with_test_process)
    initiator = EnginePeer(
        pair.initiator.exec_args(),
        ["--role", "initiator", "--local", pair.initiator_addr, "--extra-local", MOVED_ADDR,
         "--remote", pair.responder_addr, "--local-id", INITIATOR_ID,
         "--remote-id", RESPONDER_ID, "--local-ts", f"{inner_i}/32",
         "--remote-ts", f"{inner_r}/32", "--keylog", str(workdir / "keys"), *common],
        workdir / "initiator.log", _die_with_test_process)
    return initiator, responder


@pytest.fixture(scope="module", params=GCM_PROPOSALS)
def pair_run(
    request: pytest.FixtureRequest, engine_pair: NetnsPair,
    tmp_path_factory: pytest.TempPathFactory,
) -> PairRun:
    ike: str = request.param
    pair = engine_pair
    workdir = tmp_path_factory.mktemp("ikecore-pair")
    capture = Capture(pair.responder, pair.responder_if, workdir / "capture.pcap")
    initiator, responder = _engines(pair, workdir, ike)
    steps = Steps()
    inner0, inner1 = pair.inner(0), pair.inner(1)
    started = time.monotonic()
    try:
        child = steps.run("initiate", initiator, "initiate")["child"]["child"]
        steps.run("ping", initiator, "ping", spi_in=child, src=inner0[0], dst=inner0[1],
                  count=ECHOES)
        steps.run("clone", initiator, "clone")
        clone_child = steps.run(
            "child on clone", initiator, "create_child", on="clone", esp="aes256gcm16",
            local_ts=f"{inner1[0]}/32", remote_ts=f"{inner1[1]}/32")["child"]["child"]
        steps.run("ping clone", initiator, "ping", on="clone", spi_in=clone_child,
                  src=inner1[0], dst=inner1[1], count=ECHOES)
        steps.run("move clone", initiator, "move", on="clone", local=MOVED_ADDR)
        steps.run("ping moved clone", initiator, "ping", on="clone", spi_in=clone_child,
                  src=inner1[0], dst=inner1[1], count=ECHOES)
        steps.run("initiator rekeys child", initiator, "rekey_child", spi_in=child)
        child = steps.answers["initiator rekeys child"]["child"]["new"]
        steps.run("initiator rekeys IKE SA", initiator, "rekey_ike")
        steps.run("initiator liveness", initiator, "liveness")
        theirs = responder.step("state")["current"]["children"][0]
        steps.run("responder rekeys child", responder, "rekey_child", spi_in=theirs)
        steps.run("responder rekeys IKE SA", responder, "rekey_ike")
        steps.run("responder liveness", responder, "liveness")
        child = initiator.step("state")["current"]["children"][0]
        steps.run("ping after rekeys", initiator, "ping", spi_in=child, src=inner0[0],
                  dst=inner0[1], count=ECHOES)
        steps.run("initiator deletes clone", initiator, "delete", on="clone")
        steps.run("responder deletes IKE SA", responder, "delete")
    finally:
        initiator_state = initiator.step("state")
        responder_state = responder.step("state")
        initiator.close()
        responder.close()
        pcap = capture.stop()
    return PairRun(ike, steps, initiator_state, responder_state, pcap, workdir / "keys",
                   workdir, round(time.monotonic() - started, 2))


# --- the scenario itself ----------------------------------------------------------------------

def test_clone_scenario_runs_between_two_ikecore_peers(pair_run: PairRun) -> None:
    steps = pair_run.steps
    assert steps.ok("ping")["replies"] == ECHOES
    clone = steps.ok("clone")
    assert clone["outcome"]["event"] == "IkeSaCloned", clone
    assert steps.ok("ping clone")["replies"] == ECHOES
    moved = steps.ok("move clone")["moved"]
    assert moved["local"] == [MOVED_ADDR, 4500]
    assert steps.ok("ping moved clone")["replies"] == ECHOES
    for name in ("initiator rekeys child", "initiator rekeys IKE SA", "initiator liveness",
                 "responder rekeys child", "responder rekeys IKE SA", "responder liveness"):
        steps.ok(name)
    assert steps.ok("ping after rekeys")["replies"] == ECHOES
    steps.ok("initiator deletes clone")
    steps.ok("responder deletes IKE SA")
    for state in (pair_run.initiator_state, pair_run.responder_state):
        assert state["esp_dropped"] == 0 and state["malformed"] == 0
    # Both sides derived the same keys for every IKE SA (first, clone, two rekeys).
    mine = {(sa["spi_i"], sa["spi_r"]): sa["keys"] for sa in pair_run.initiator_state["ike_sas"]}
    theirs = {(sa["spi_i"], sa["spi_r"]): sa["keys"] for sa in pair_run.responder_state["ike_sas"]}
    assert len(mine) == 4 and mine == theirs


# --- tshark -----------------------------------------------------------------------------------

def _frames(dissection: Dissection, exchange: int, *, response: bool) -> list[IkeFrame]:
    return [f for f in dissection.ike if f.exchange == exchange and f.is_response == response]


def test_tshark_decrypts_everything_with_ikecores_keylog(
    pair_run: PairRun, interop_case: Callable[..., None]
) -> None:
    dissection = dissect(pair_run.pcap, pair_run.keys_dir)
    assert tshark_problems(dissection) == []
    # Every IKE message after IKE_SA_INIT is encrypted and was decrypted.
    assert len(dissection.encrypted_ike) == len(dissection.ike) - 2 >= 24
    # ESP: 4 echo exchanges x 3 echoes, request and reply, each decrypted to the inner ICMP
    # packet between the tunnel's inner addresses.
    assert len(dissection.esp) == 4 * ECHOES * 2
    inner = {pair_run_inner for pair_run_inner in _inner_pairs()}
    for esp in dissection.esp:
        assert (esp.inner_src, esp.inner_dst) in inner, esp
        assert esp.inner_protocol == 1 and esp.icmp_type in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY)
    moved = [esp for esp in dissection.esp if MOVED_ADDR in (esp.src, esp.dst)]
    assert len(moved) == 2 * ECHOES
    # The inner payloads are the ones ikecore meant.
    auth_request, = _frames(dissection, ExchangeType.IKE_AUTH, response=False)
    auth_response, = _frames(dissection, ExchangeType.IKE_AUTH, response=True)
    for frame in (auth_request, auth_response):
        assert NotifyType.CLONE_IKE_SA_SUPPORTED in frame.notify_types
        assert {PayloadType.AUTH, PayloadType.SA, PayloadType.TSI, PayloadType.TSR} <= set(
            frame.payloads)
    assert PayloadType.IDI in auth_request.payloads and PayloadType.IDR in auth_response.payloads
    clone_requests = [f for f in _frames(dissection, ExchangeType.CREATE_CHILD_SA,
                                         response=False)
                      if NotifyType.CLONE_IKE_SA in f.notify_types]
    assert len(clone_requests) == 1
    assert {PayloadType.SA, PayloadType.NONCE, PayloadType.KE} <= set(clone_requests[0].payloads)
    updates = [f for f in _frames(dissection, ExchangeType.INFORMATIONAL, response=False)
               if NotifyType.UPDATE_SA_ADDRESSES in f.notify_types]
    assert len(updates) == 1
    assert updates[0].spi_i.hex() + ":" + updates[0].spi_r.hex() == (
        pair_run.steps.ok("clone")["outcome"]["clone"])
    deletes = [f for f in _frames(dissection, ExchangeType.INFORMATIONAL, response=False)
               if PayloadType.DELETE in f.payloads]
    assert len(deletes) >= 4  # two rekeyed Child SAs, two rekeyed IKE SAs, clone, SA 1
    interop_case(initiator="ikecore", responder="ikecore", ike=pair_run.ike,
                 esp=ESP_BOTH, decoder="tshark",
                 exercised="clone, Child SA on the clone, MOBIKE move, rekeys, liveness, "
                           "Deletes: tshark decrypts all with ikecore's --keylog, ICVs correct, "
                           "16432/16433/16400 and inner ICMP where ikecore put them",
                 scenario_duration_s=pair_run.duration_s)


def _inner_pairs() -> set[tuple[str, str]]:
    pairs = set()
    for index in range(2):
        a, b = f"198.51.100.{2 * index + 1}", f"198.51.100.{2 * index + 2}"
        pairs |= {(a, b), (b, a)}
    return pairs


def test_one_wrong_key_byte_flags_every_icv(
    pair_run: PairRun, interop_case: Callable[..., None]
) -> None:
    wrong = pair_run.workdir / "wrong-keys"
    flip_key_tables(pair_run.keys_dir, wrong)
    dissection = dissect(pair_run.pcap, wrong)
    assert dissection.encrypted_ike
    assert all(f.icv_correct is False for f in dissection.encrypted_ike)
    # tshark never accepts an ESP ICV under a wrong key; a few packets get no verdict (it
    # dissects the garbage plaintext first and stops when that throws).
    assert not any(e.icv_good for e in dissection.esp)
    assert sum(e.icv_bad for e in dissection.esp) >= len(dissection.esp) // 2
    interop_case(initiator="ikecore", responder="ikecore", ike=pair_run.ike,
                 esp=ESP_BOTH, decoder="tshark",
                 exercised="one wrong key byte: tshark flags every ICV")


# --- ikecore decode --keylog against tshark ---------------------------------------------------

def test_ikecore_decode_keylog_agrees_with_tshark(
    pair_run: PairRun, interop_case: Callable[..., None]
) -> None:
    assert decode_matches_tshark(pair_run.pcap, pair_run.keys_dir) == []
    interop_case(initiator="ikecore", responder="ikecore", ike=pair_run.ike,
                 esp=ESP_BOTH, decoder="tshark",
                 exercised="`ikecore decode --keylog` = tshark (payload and notify types)")


# --- RFC 7791 §5.3: announced, then refused ---------------------------------------------------

def test_clone_refused_with_no_additional_sas_is_handled(
    engine_pair: NetnsPair, tmp_path: Path, interop_case: Callable[..., None]
) -> None:
    """The responder announced CLONE_IKE_SA_SUPPORTED but allows no clones (max_clones 0): it
    answers the clone request with N(NO_ADDITIONAL_SAS); the initiator reports CloneFailed
    and the IKE SA and its Child SA keep working."""
    ike = GCM_PROPOSALS[0]
    pair = engine_pair
    inner = pair.inner(0)
    capture = Capture(pair.responder, pair.responder_if, tmp_path / "capture.pcap")
    initiator, responder = _engines(pair, tmp_path, ike, max_clones=0)
    try:
        child = initiator.must("initiate")["child"]["child"]
        clone = initiator.must("clone")
        assert clone["outcome"] == {
            "event": "CloneFailed", "reason": "NO_ADDITIONAL_SAS",
            "ike_sa": initiator.must("state")["current"]["spis"]}
        assert clone["datagrams_sent"] == 1
        assert initiator.must("ping", spi_in=child, src=inner[0], dst=inner[1],
                              count=ECHOES)["replies"] == ECHOES
        initiator.must("liveness")
        initiator.must("delete")
    finally:
        initiator.close()
        responder.close()
        pcap = capture.stop()
    dissection = dissect(pcap, tmp_path / "keys")
    assert tshark_problems(dissection) == []
    request, = [f for f in dissection.ike if NotifyType.CLONE_IKE_SA in f.notify_types]
    response, = [f for f in dissection.ike if f.is_response
                 and (f.spi_i, f.message_id) == (request.spi_i, request.message_id)]
    assert NotifyType.NO_ADDITIONAL_SAS in response.notify_types
    interop_case(initiator="ikecore", responder="ikecore (--max-clones 0)", ike=ike,
                 esp="aes128gcm16", decoder="tshark",
                 exercised="RFC 7791 §5.3: clone refused with NO_ADDITIONAL_SAS -> CloneFailed, "
                           "SA keeps working")


# --- the commands: `ikecore initiate --clone` against `ikecore respond`, both --keylog ---------

def test_commands_keylog_covers_clones(
    engine_pair: NetnsPair, tmp_path: Path, interop_case: Callable[..., None]
) -> None:
    """`ikecore initiate --clone 1 --ping 3 --keylog` against `ikecore respond --echo
    --keylog`: the clone is made, and each side's --keylog alone lets tshark open every IKE
    message (the clone's CREATE_CHILD_SA and its Delete included) and ESP packet."""
    pair = engine_pair
    ike = GCM_PROPOSALS[0]
    inner_i, inner_r = pair.inner(0)
    psk = tmp_path / "psk"
    psk.write_text(PSK)
    common = ["--psk-file", str(psk), "--ike", ike, "--esp", "aes128gcm16", "--json"]
    capture = Capture(pair.responder, pair.responder_if, tmp_path / "capture.pcap")
    respond_out = tmp_path / "respond.json"
    responder = pair.responder.popen(
        [sys.executable, "-I", "-m", "ikecore", "respond", "--listen", pair.responder_addr,
         "--local-id", RESPONDER_ID, "--keylog", str(tmp_path / "keys-r"), "--echo",
         *common], stdout=respond_out)
    try:
        deadline = time.monotonic() + 10
        while not pair.responder.run(
                ["ss", "-Hlun", f"src {pair.responder_addr}:4500"]).stdout.strip():
            assert time.monotonic() < deadline, "ikecore respond never bound its ports"
            time.sleep(0.05)
        proc = pair.initiator.run(
            [sys.executable, "-I", "-m", "ikecore", "initiate", "--local", pair.initiator_addr,
             "--remote", pair.responder_addr, "--local-id", INITIATOR_ID,
             "--remote-id", RESPONDER_ID, "--keylog", str(tmp_path / "keys-i"), "--clone", "1",
             "--ping", str(ECHOES), "--ping-from", inner_i, "--ping-to", inner_r,
             "--timeout", "10", *common], check=False, timeout=40)
    finally:
        stop_process(responder)
        pcap = capture.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["clones"] == 1 and result["echo_replies"] == ECHOES
    summary = json.loads(respond_out.read_text().splitlines()[-1])
    assert summary["clones"] == 1 and summary["echoes_answered"] == ECHOES
    for keys in ("keys-i", "keys-r"):
        dissection = dissect(pcap, tmp_path / keys)
        assert tshark_problems(dissection) == [], keys
        assert len(dissection.encrypted_ike) == len(dissection.ike) - 2
        assert any(NotifyType.CLONE_IKE_SA in f.notify_types for f in dissection.ike)
        assert len(dissection.esp) == 2 * ECHOES
    interop_case(initiator="ikecore initiate", responder="ikecore respond", ike=ike,
                 esp="aes128gcm16", decoder="tshark",
                 exercised="the commands: --clone 1 made, --ping/--echo through ESP; each "
                           "side's --keylog lets tshark open every message, the clone's too")
