"""Benchmarks run against the installed package, like the tests (DESIGN.md, import rule).

Convention for every bench file: one pytest-benchmark *group* per operation and size (e.g.
``"esp encapsulate 1400B"``), and in it one benchmark per implementation, tagged with
``benchmark.extra_info["impl"]``: ``"ikecore"`` (ours; several allowed, e.g. "ikecore batch"),
``"peer"`` (what a Python user would pick instead) or ``"c-limit"`` (a C loop over the same
library call). At the end of the session a table of ratios (peer median / ikecore median) is
printed, so the comparison is always made within one run, never against stored absolute times.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest


def _medians_by_group(session: pytest.Session) -> dict[str, dict[str, float]]:
    bs = getattr(session.config, "_benchmarksession", None)
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    if bs is None:
        return groups
    for bench in bs.benchmarks:
        if not bench.stats:
            continue
        impl = bench.extra_info.get("impl")
        if impl:
            groups[bench.group or bench.name][impl] = bench.stats.median
    return groups


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    groups = _medians_by_group(terminalreporter._session)
    rows = []
    for group, impls in sorted(groups.items()):
        peer = impls.get("peer")
        for impl, median in sorted(impls.items()):
            if impl.startswith("ikecore") and peer:
                ratio = peer / median
                rows.append(f"{group:<44} {impl:<16} {median * 1e9:>12.0f} ns  x{ratio:6.2f}")
    if rows:
        terminalreporter.section("ikecore vs peer (median, same run)")
        for row in rows:
            terminalreporter.write_line(row)


def pytest_sessionstart(session: pytest.Session) -> None:
    terminalreporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if terminalreporter is not None:
        terminalreporter._session = session
