"""Benchmarks run against the installed package, like the tests (DESIGN.md, import rule).

Convention for every bench file: one pytest-benchmark *group* per operation and size (e.g.
``"esp encapsulate 1400B"``), and in it one benchmark per implementation, tagged with
``benchmark.extra_info["impl"]``: ``"ikecore"`` (ours; several allowed, e.g. "ikecore batch"),
``"peer"`` (what a Python user would pick instead; more peers as "peer-<name>") or
``"c-limit"`` (a C loop over the same library call). At the end of the session a table of
ratios (peer median / ikecore median) is printed: comparisons are always made within one run,
never against stored absolute times, because the machines are shared and noisy.

Ratio gates: ``benches/floors.json`` maps ``"<group>|<ikecore impl>|<peer impl>"`` to the
lowest acceptable speed-up. A measured ratio below its floor fails the run. Floors are set
somewhat below measured values; ``IKECORE_BENCH_FLOORS`` points at another floors file.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

FLOORS_FILE = Path(os.environ.get("IKECORE_BENCH_FLOORS", Path(__file__).with_name("floors.json")))


def _medians_by_group(config: pytest.Config) -> dict[str, dict[str, float]]:
    session = getattr(config, "_benchmarksession", None)
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    if session is None:
        return groups
    for bench in session.benchmarks:
        impl = bench.extra_info.get("impl")
        if impl and bench.stats:
            groups[bench.group or bench.name][impl] = bench.stats.median
    return groups


def ratio_rows(config: pytest.Config) -> list[tuple[str, str, str, float, float]]:
    """(group, ikecore impl, peer impl, ikecore median s, peer median / ikecore median)."""
    rows = []
    for group, impls in sorted(_medians_by_group(config).items()):
        ours = {k: v for k, v in impls.items() if k.startswith("ikecore")}
        others = {k: v for k, v in impls.items() if not k.startswith("ikecore")}
        for impl, median in sorted(ours.items()):
            for peer, peer_median in sorted(others.items()):
                rows.append((group, impl, peer, median, peer_median / median))
    return rows


def _gate_failures(rows: list[tuple[str, str, str, float, float]]) -> list[str]:
    if not FLOORS_FILE.is_file():
        return []
    floors: dict[str, float] = json.loads(FLOORS_FILE.read_text())
    failures = []
    for group, impl, peer, _, ratio in rows:
        floor = floors.get(f"{group}|{impl}|{peer}")
        if floor is not None and ratio < floor:
            failures.append(f"{group}: {impl} vs {peer} ratio {ratio:.2f} < floor {floor}")
    return failures


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    failures = _gate_failures(ratio_rows(session.config))
    session.config._ikecore_gate_failures = failures  # type: ignore[attr-defined]
    if failures and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rows = ratio_rows(config)
    if rows:
        terminalreporter.section("ikecore vs peers (medians of this run)")
        for group, impl, peer, median, ratio in rows:
            terminalreporter.write_line(
                f"{group:<40} {impl:<16} {median * 1e9:>10.0f} ns   {ratio:7.2f}x vs {peer}"
            )
    for failure in getattr(config, "_ikecore_gate_failures", []):
        terminalreporter.write_line(f"RATIO GATE FAILED: {failure}", red=True)
