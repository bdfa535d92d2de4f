"""IKE fragmentation (RFC 7383) between ikecore and strongSwan, both roles.

Both sides use a 160-byte fragmentation threshold (ikecore: ``fragment_threshold``;
strongSwan: ``charon.fragment_size``), so the IKE_AUTH request and its response each go as
Encrypted Fragment messages, one way split by ikecore and reassembled by strongSwan, the other
way the reverse. strongSwan's log says what it split and reassembled; ESP through the Child
SA shows that both ended with the same keys.

    ikecore initiates:    IKE_SA_INIT {.. N(IKEV2_FRAGMENTATION_SUPPORTED)} <-> {.. same}
                          IKE_AUTH SKF(1/n) .. SKF(n/n) -->  <-- IKE_AUTH SKF(1/m) .. SKF(m/m)
    strongSwan initiates: the mirror image.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from interop_engine_checks import children_config, engine_args, wait_for_log
from interop_engine_peer import EnginePeer
from interop_peers import (
    INITIATOR_ID,
    RESPONDER_ID,
    ConnectionConfig,
    InteropSetupError,
    NetnsPair,
    StrongSwan,
    _die_with_test_process,
    connection_name,
    icmp_echo,
)

IKE = "aes128gcm16-prfsha256-x25519"
THRESHOLD = 160
TIMEOUT = 10.0
ECHOES = 3
SPLIT = re.compile(r"splitting IKE message \((\d+) bytes\) into (\d+) fragments")
REASSEMBLED = re.compile(r"received fragment #\d+ of (\d+), reassembled fragmented IKE message")


def _daemon(
    pair: NetnsPair, workdir: Path, *, initiator: bool
) -> StrongSwan:
    netns = pair.initiator if initiator else pair.responder
    daemon = StrongSwan(netns, workdir, fragment_size=THRESHOLD)
    try:
        daemon.start()
    except InteropSetupError as exc:
        pytest.fail(f"strongSwan did not start: {exc}", pytrace=False)
    if initiator:
        daemon.load([ConnectionConfig(
            connection_name(IKE), pair.initiator_addr, pair.responder_addr, [IKE],
            INITIATOR_ID, RESPONDER_ID, children_config(pair, initiator=True),
        )])
    else:
        daemon.load([ConnectionConfig(
            "resp", pair.responder_addr, "%any", [IKE], RESPONDER_ID, INITIATOR_ID,
            children_config(pair, initiator=False),
        )])
    return daemon


@pytest.fixture(scope="module")
def fragmenting_pair(
    netns_pair_factory: Callable[[str], NetnsPair],
) -> NetnsPair:
    return netns_pair_factory("f")


@pytest.fixture
def engine_factory(
    tmp_path: Path,
) -> Iterator[Callable[[NetnsPair, str], EnginePeer]]:
    engines: list[EnginePeer] = []

    def start(pair: NetnsPair, role: str) -> EnginePeer:
        netns = pair.initiator if role == "initiator" else pair.responder
        args = engine_args(role, pair, tmp_path, IKE, "aes128gcm16")
        engine = EnginePeer(
            netns.exec_args(), [*args, "--fragment-threshold", str(THRESHOLD)],
            tmp_path / "engine.log", _die_with_test_process,
        )
        engines.append(engine)
        return engine

    yield start
    for engine in engines:
        engine.close()


def _check_fragments_and_traffic(
    log: str,
    engine: EnginePeer,
    daemon: StrongSwan,
    pair: NetnsPair,
    spi_in: str,
    *,
    ikecore_initiated: bool,
    interop_case: Callable[..., None],
) -> None:
    """Both IKE_AUTH messages went in fragments (strongSwan split one, reassembled the other),
    ICMP gets through the Child SA both ways; the case is recorded for the interop report."""
    split = [int(m.group(2)) for m in SPLIT.finditer(log)]
    reassembled = [int(m.group(1)) for m in REASSEMBLED.finditer(log)]
    assert split and split[0] > 1, log
    assert reassembled and reassembled[0] > 1, log
    inner_i, inner_r = pair.inner(0)
    ours, theirs = (inner_i, inner_r) if ikecore_initiated else (inner_r, inner_i)
    ping = engine.must("ping", spi_in=spi_in, src=ours, dst=theirs, count=ECHOES)
    assert ping["replies"] == ECHOES
    assert icmp_echo(daemon.netns, theirs, ours, ECHOES) == ECHOES
    request, response = (reassembled, split) if ikecore_initiated else (split, reassembled)
    peers = ("ikecore", "strongSwan") if ikecore_initiated else ("strongSwan", "ikecore")
    interop_case(
        initiator=peers[0], responder=peers[1], ike=IKE, esp="aes128gcm16",
        exercised=(
            f"IKE fragmentation (RFC 7383) at {THRESHOLD} bytes: IKE_AUTH request in "
            f"{request[0]} fragments, response in {response[0]}; ICMP through ESP"
        ),
    )


def test_ikecore_initiates_and_ike_auth_is_fragmented_both_ways(
    fragmenting_pair: NetnsPair,
    engine_factory: Callable[[NetnsPair, str], EnginePeer],
    tmp_path: Path,
    interop_case: Callable[..., None],
) -> None:
    pair = fragmenting_pair
    daemon = _daemon(pair, tmp_path / "strongswan", initiator=False)
    try:
        offset = daemon.log_offset()
        engine = engine_factory(pair, "initiator")
        answer = engine.must("initiate", timeout=TIMEOUT)
        log = wait_for_log(daemon, offset, lambda t: "splitting IKE message" in t, TIMEOUT)
        _check_fragments_and_traffic(
            log, engine, daemon, pair, answer["child"]["child"], ikecore_initiated=True,
            interop_case=interop_case,
        )
    finally:
        daemon.stop()


def test_strongswan_initiates_and_ike_auth_is_fragmented_both_ways(
    fragmenting_pair: NetnsPair,
    engine_factory: Callable[[NetnsPair, str], EnginePeer],
    tmp_path: Path,
    interop_case: Callable[..., None],
) -> None:
    pair = fragmenting_pair
    engine = engine_factory(pair, "responder")
    daemon = _daemon(pair, tmp_path / "strongswan", initiator=True)
    try:
        offset = daemon.log_offset()
        since = engine.step("state")["events"]
        ok, out = daemon.initiate("esp128", connection_name(IKE))
        assert ok, out
        found = engine.must("wait", event="ChildSaEstablished", since=since, timeout=TIMEOUT)
        _check_fragments_and_traffic(
            daemon.log_since(offset), engine, daemon, pair, found["found"]["child"],
            ikecore_initiated=False, interop_case=interop_case,
        )
    finally:
        daemon.stop()
