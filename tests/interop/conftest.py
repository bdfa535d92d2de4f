"""Fixtures of the interop suite: real strongSwan peers in network namespaces, tcpdump, tshark.

The suite needs root and the Debian packages of the Makefile's DEB_PACKAGES (`make deps`);
without them every test FAILS with the reason (CI runs as root and installs them).

Every test that exercises a peer records its case with the ``interop_case`` fixture; at the end
of the session the cases and their outcomes are written to ``ci-artifacts/interop.json``, from
which the README's Interoperability table is generated (tests/interop_report.py).

Plugging in the ikecore engine (one side of the pair becomes `ikecore`):

* Namespaces: ``pair = netns_pair_factory("e")`` (another letter per pair); the IKE peers are
  192.0.2.1 (``pair.initiator``) and 192.0.2.2 (``pair.responder``) on a veth pair, tunnel
  addresses ``pair.inner(k)`` sit on lo. Run ikecore inside with
  ``pair.initiator.popen([sys.executable, "-m", "ikecore", ...], stdout=...)`` (tracked child,
  dies with the test process) or ``pair.initiator.run([...])``; stop it with
  ``stop_process(proc)`` (SIGTERM, SIGKILL after 5 s).
* strongSwan responder for `ikecore initiate`: ``StrongSwan(pair.responder, dir).start()``,
  ``.load([ConnectionConfig("resp", "192.0.2.2", "%any", [ike], RESPONDER_ID, INITIATOR_ID,
  [ChildConfig(...)])])``; then ``ikecore initiate --local 192.0.2.1 --remote 192.0.2.2
  --psk-file F --local-id init@ikecore.test --remote-id resp@ikecore.test --ike P --esp P
  --keylog DIR --hold S --json``. strongSwan initiator for `ikecore respond --listen 192.0.2.2
  --keylog DIR --json`: the mirror image, ``StrongSwan(pair.initiator, dir).initiate(child,
  ike)``, then SIGTERM to ikecore for its JSON summary.
* What ikecore must provide: ``--keylog DIR`` written with ikecore.wireshark.KeyLog
  (add_ike_sa for every IKE SA incl. rekeys and clones; add_child_sa with the IKE peers' outer
  addresses and KEYMAT), so ``dissect(pcap, DIR)`` and ``read_key_tables(DIR)`` work; the JSON
  with per-SA SPIs (IKE SPIs as hex, Child SA SPIs in/out) so logged keys can be matched to
  strongSwan's (``parse_keys`` of its log, looked up by SPI). kernel-libipsec makes strongSwan
  fake a NAT: after NAT-D, IKE must float to 4500 with the non-ESP marker and ESP runs in UDP
  4500. ESP traffic through the tunnel needs ikecore to send and answer packets itself (it has
  no TUN device): e.g. an option that sends N ICMP echoes inner-src -> inner-dst through the
  Child SA and counts the replies strongSwan's libipsec returns, and answers echoes it receives.
* ESN: strongSwan's kernel-libipsec cannot install ESN SAs (it refuses with
  NO_PROPOSAL_CHOSEN even when no-ESN is offered too) and tshark 4.0 cannot verify ESN ICVs,
  so ESN can only be checked against ikecore itself and the `cryptography` oracle.
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
