"""Fixtures of the interop suite: real strongSwan peers in network namespaces, tcpdump, tshark.

The suite needs root and the Debian packages of the Makefile's DEB_PACKAGES (`make deps`);
without them every test FAILS with the reason (CI runs as root and installs them).

Every test that exercises a peer records its case with the ``interop_case`` fixture; at the end
of the session the cases and their outcomes are written to ``ci-artifacts/interop.json``, from
which the README's Interoperability table is generated.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
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


# --- the interop report ---------------------------------------------------------------------

@pytest.fixture
def interop_case(
    request: pytest.FixtureRequest, interop_environment: dict[str, str]
) -> Callable[..., None]:
    """Record one case this test exercises: interop_case(initiator=..., responder=..., ike=...,
    esp=..., exercised=...). The test's outcome becomes the case's result."""

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
            case.update(test=item.nodeid, result=report.outcome,
                        duration_s=round(report.duration, 3))
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
