"""Fixtures of the interop suite: real strongSwan peers in network namespaces, tcpdump, tshark.

The suite needs root and the Debian packages of the Makefile's DEB_PACKAGES (`make deps`);
without them every test FAILS with the reason (CI runs as root and installs them).

Every test that exercises a peer records its case with the ``interop_case`` fixture; at the end
of the session the cases and their outcomes are written to ``ci-artifacts/interop.json``, from
which the README's Interoperability table is generated (tests/interop_report.py).

How the ikecore engine is put on the wire: tests/interop_engine_peer.py runs an `IkeEndpoint`
on the asyncio UDP driver inside a namespace and takes one JSON command per line (initiate,
create_child, ping through ESP, rekeys, liveness, delete, clone, MOBIKE move, hold/release of
arriving datagrams, wait for peer-caused events, state with every SA's keys), so a test can
interleave its steps with what it makes strongSwan do (swanctl). The session fixtures
``strongswan_responder`` / ``strongswan_initiator`` are the daemons facing it (pairs "k"/"m",
all IKE proposals, the Child SAs of interop_engine_checks.CHILDREN, dpd_delay 1s).
kernel-libipsec makes strongSwan fake a NAT: after NAT-D, IKE floats to 4500 with the non-ESP
marker and ESP runs in UDP 4500. ESN: kernel-libipsec cannot install ESN SAs (NO_PROPOSAL_CHOSEN
as responder; as initiator it proposes ESN, then Deletes the Child SA it cannot install) and
tshark 4.0 cannot verify ESN ICVs: those cases are recorded as "not testable".
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from interop_engine_checks import children_config
from interop_peers import (
    ESP_CHILDREN,
    IKE_PROPOSALS,
    INITIATOR_ID,
    RESPONDER_ID,
    ChildConfig,
    ConnectionConfig,
    InteropSetupError,
    NetnsPair,
    StrongSwan,
    StrongSwanPair,
    connection_name,
    environment_problem,
    remove_stale_namespaces,
    strongswan_version,
)
from interop_tshark import tshark_version

CASES_KEY = pytest.StashKey[list[dict[str, Any]]]()
REPORT_PATH = Path("ci-artifacts") / "interop.json"

def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session", autouse=True)
def interop_environment() -> Iterator[dict[str, str]]:
    """Fail (never skip) when the machine cannot run the suite: the reason says what to do.

    While the suite runs, SIGTERM (e.g. a CI timeout) is turned into KeyboardInterrupt so that
    pytest still runs the finalizers: daemons stopped, namespaces deleted.
    """
    problem = environment_problem()
    if problem is not None:
        pytest.fail(f"interop suite cannot run: {problem}", pytrace=False)
    remove_stale_namespaces()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    yield {"strongswan": strongswan_version(), "tshark": tshark_version()}
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def netns_pair_factory() -> Iterator[Callable[[str], NetnsPair]]:
    """Makes namespace pairs (tag = one letter, unique per pair); all deleted at the end."""
    made: list[NetnsPair] = []

    def make(tag: str) -> NetnsPair:
        pair = NetnsPair(tag)
        made.append(pair)
        try:
            pair.create()
        except InteropSetupError as exc:
            pytest.fail(f"interop suite cannot run: {exc}", pytrace=False)
        return pair

    yield make
    for pair in made:
        pair.delete()


@pytest.fixture(scope="session")
def strongswan_pair(
    netns_pair_factory: Callable[[str], NetnsPair], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StrongSwanPair]:
    """Two charon daemons configured for every IKE proposal x ESP proposal of issue 8.

    The responder accepts all IKE proposals on one connection; the initiator has one
    connection per IKE proposal (offering only that one), each with the four ESP children.
    """
    pair = netns_pair_factory("s")
    workdir = tmp_path_factory.mktemp("strongswan")
    initiator = StrongSwan(pair.initiator, workdir / "initiator")
    responder = StrongSwan(pair.responder, workdir / "responder")
    try:
        responder.start()
        initiator.start()
        responder.load([
            ConnectionConfig(
                "resp", pair.responder_addr, "%any", IKE_PROPOSALS, RESPONDER_ID, INITIATOR_ID,
                [ChildConfig(name, f"{pair.inner(k)[1]}/32", f"{pair.inner(k)[0]}/32", esp)
                 for k, (name, esp) in enumerate(ESP_CHILDREN)],
            )
        ])
        initiator.load([
            ConnectionConfig(
                connection_name(ike), pair.initiator_addr, pair.responder_addr, [ike],
                INITIATOR_ID, RESPONDER_ID,
                [ChildConfig(name, f"{pair.inner(k)[0]}/32", f"{pair.inner(k)[1]}/32", esp)
                 for k, (name, esp) in enumerate(ESP_CHILDREN)],
            )
            for ike in IKE_PROPOSALS
        ])
    except InteropSetupError as exc:
        initiator.stop()
        responder.stop()
        pytest.fail(f"strongSwan did not start: {exc}", pytrace=False)
    yield StrongSwanPair(pair, initiator, responder)
    initiator.stop()
    responder.stop()


# --- strongSwan facing the ikecore engine, one daemon per direction ----------------------------

@pytest.fixture(scope="session")
def strongswan_responder(
    netns_pair_factory: Callable[[str], NetnsPair], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[NetnsPair, StrongSwan]]:
    pair = netns_pair_factory("k")
    daemon = StrongSwan(pair.responder, tmp_path_factory.mktemp("ss-responder"))
    try:
        daemon.start()
        daemon.load([ConnectionConfig(
            "resp", pair.responder_addr, "%any", IKE_PROPOSALS, RESPONDER_ID, INITIATOR_ID,
            children_config(pair, initiator=False), dpd_delay="1s",
        )])
    except InteropSetupError as exc:
        daemon.stop()
        pytest.fail(f"strongSwan did not start: {exc}", pytrace=False)
    yield pair, daemon
    daemon.stop()


@pytest.fixture(scope="session")
def strongswan_initiator(
    netns_pair_factory: Callable[[str], NetnsPair], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[NetnsPair, StrongSwan]]:
    pair = netns_pair_factory("m")
    daemon = StrongSwan(pair.initiator, tmp_path_factory.mktemp("ss-initiator"))
    try:
        daemon.start()
        daemon.load([
            ConnectionConfig(
                connection_name(ike), pair.initiator_addr, pair.responder_addr, [ike],
                INITIATOR_ID, RESPONDER_ID, children_config(pair, initiator=True),
                dpd_delay="1s",
            )
            for ike in IKE_PROPOSALS
        ])
    except InteropSetupError as exc:
        daemon.stop()
        pytest.fail(f"strongSwan did not start: {exc}", pytrace=False)
    yield pair, daemon
    daemon.stop()


# --- the interop report ---------------------------------------------------------------------

@pytest.fixture
def interop_case(
    request: pytest.FixtureRequest, interop_environment: dict[str, str]
) -> Callable[..., None]:
    """Record one case this test exercises: interop_case(initiator=..., responder=..., ike=...,
    esp=..., exercised=...). The test's outcome becomes the case's result; with
    ``not_testable="why"`` a passing test records "not testable" (the peer cannot do it, and
    the test checked that its refusal was handled cleanly)."""

    def record(**fields: Any) -> None:
        fields.setdefault("strongswan_version", interop_environment["strongswan"])
        fields.setdefault("tshark_version", interop_environment["tshark"])
        request.node.stash.setdefault(CASES_KEY, []).append(fields)

    return record


_results: list[dict[str, Any]] = []
_span: list[float] = []  # wall-clock start/stop of every interop test phase




@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    _span.extend((report.start, report.stop))
    cases = item.stash.get(CASES_KEY, None)
    if cases is None or report.when not in ("call", "teardown"):
        return
    if report.when == "call":
        for case in cases:
            # A case the peer cannot exercise (``not_testable=reason``) passes as that verdict
            # only if the test proved the refusal was handled; otherwise it failed like any.
            result = report.outcome
            if result == "passed" and case.get("not_testable"):
                result = "not testable"
            case.update(test=item.nodeid, result=result, duration_s=round(report.duration, 3))
            _results.append(case)
    elif report.failed:  # a failing teardown fails the cases too
        for case in cases:
            case["result"] = "failed"


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _results:
        return
    path = session.config.rootpath / REPORT_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "suite_duration_s": round(max(_span) - min(_span), 1),
        "cases": _results,
    }
    path.write_text(json.dumps(report, indent=2) + "\n")
