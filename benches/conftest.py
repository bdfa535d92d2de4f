"""Benchmarks run against the installed package, like the tests (DESIGN.md, import rule).

Convention for every bench file: one pytest-benchmark *group* per operation and size (e.g.
``"esp encapsulate 1400B"``), and in it one benchmark per implementation, tagged with
``benchmark.extra_info["impl"]``: ``"ikecore"`` (ours; several allowed, e.g. "ikecore batch"),
``"peer"`` (what a Python user would pick instead; more peers as "peer-<name>") or
``"c-limit"`` (a C loop over the same library call; ``"<work>-limit"`` for other work the
operation cannot avoid, e.g. ``"dh-limit"``). A group named ``"<operation> <size>B x<N>"``
times N operations per call in every implementation (tables show times per operation). At the
end of the session a table of ratios (peer median / ikecore median) is printed: comparisons are
always made within one run, never against stored absolute times, because the machines are
shared and noisy.

Ratio gates: ``benches/floors.json`` maps ``"<group>|<ikecore impl>|<peer impl>"`` to the
lowest acceptable speed-up (peer time / ikecore time; for ``c-limit`` the share of the C speed
reached). Floors are set somewhat below measured values (``benches/report.py floors``);
``IKECORE_BENCH_FLOORS`` points at another floors file. A gated pair is measured once more,
*interleaved*: as soon as both benchmarks of the pair have run, the two calls they timed are
timed again in alternating short rounds (ABBA) and the gate takes the median of the per-round
ratios. Two medians taken seconds apart differ by up to 2x on this shared 2-core machine, as
other jobs come and go; rounds a millisecond apart see the same load. The calls a gated
benchmark times must therefore be repeatable: one that raises when repeated leaves its gate to
the ratio of the medians (the summary says so). Set ``benchmark.group`` and ``extra_info["impl"]``
before calling ``benchmark(...)`` / ``benchmark.pedantic(...)``: the call is filed under them.
A ratio below its floor fails the run, and so does a floor whose group was measured but not its
pair (a renamed impl), or, in a run of every bench module without ``-k``/``-m``, a floor whose
group was not measured at all (a renamed group; floors name groups that quick mode measures).

Modes: ``--bench-mode=quick`` (CI, every run: short rounds, benchmarks marked ``full`` deselected)
and ``--bench-mode=full`` (releases: long rounds, everything); without the option pytest-benchmark's
own settings apply. The JSON of ``--benchmark-json`` gets an ``"ikecore"`` entry: the machine
(CPU model and flags from /proc/cpuinfo, cores, engines, library versions), the mode, the ratios,
the gates and their failures; the raw per-round samples are left out (they made it 16 MB).
"""

from __future__ import annotations

import functools
import gc
import json
import os
import platform
import ssl
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from ikecore.aead import available_engines, ipsec_mb_version

FLOORS_FILE = Path(os.environ.get("IKECORE_BENCH_FLOORS", Path(__file__).with_name("floors.json")))

# pytest-benchmark settings per mode: seconds of rounds per benchmark (as much again goes to the
# warm-up of the benches that ask for one), and the fewest rounds whose median is kept
MODES = {
    "quick": {"benchmark_max_time": 0.1, "benchmark_min_rounds": 5},
    "full": {"benchmark_max_time": 1.0, "benchmark_min_rounds": 20},
}
# seconds of interleaved rounds per gated pair (the mode's max_time otherwise)
PAIRED_SECONDS = {"quick": 0.3, "full": 1.0}
PAIRED_ROUND = 200e-6  # each side of an interleaved round runs at least this long
# CPU features that decide the figures (AES-GCM, GHASH, SHA-256 paths of the libraries)
CPU_FLAGS = ("aes", "pclmulqdq", "avx2", "avx512f", "vaes", "vpclmulqdq", "sha_ni")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-mode",
        choices=sorted(MODES),
        default=None,
        help="quick: CI settings, benchmarks marked 'full' left out; full: release settings",
    )


def pytest_configure(config: pytest.Config) -> None:
    # runs before pytest-benchmark's own pytest_configure (trylast), which reads these options
    config.addinivalue_line("markers", "full: measured in the full (release) bench run only")
    mode = config.getoption("--bench-mode")
    seconds = PAIRED_SECONDS.get(mode, config.getoption("benchmark_max_time", 1.0))
    config._ikecore_pairing = _Pairing(float(seconds), _floors())  # type: ignore[attr-defined]
    if mode is not None:
        config.option.benchmark_disable_gc = True
        for option, value in MODES[mode].items():
            setattr(config.option, option, value)


def pytest_collection_finish(session: pytest.Session) -> None:
    # Every floor's group must be measured when every bench module runs unfiltered: otherwise
    # renaming a group (or an impl's whole group) would drop its gate without a failure.
    config = session.config
    modules = {path.name for path in Path(__file__).parent.glob("test_*.py")}
    ran = {Path(str(item.path)).name for item in session.items}
    filtered = bool(config.option.keyword or config.option.markexpr)
    config._ikecore_complete_run = not filtered and modules <= ran  # type: ignore[attr-defined]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--bench-mode") != "quick":
        return
    kept = [item for item in items if item.get_closest_marker("full") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


def machine() -> dict[str, Any]:
    """What the figures depend on, for the JSON and the README."""
    cpu_model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu_model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return {
        "cpu_model": cpu_model,
        "cpu_flags": [flag for flag in CPU_FLAGS if flag in flags],
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
        "ipsec_mb": ipsec_mb_version(),
        "engines": list(available_engines()),
        "aead_engine_env": os.environ.get("IKECORE_AEAD_ENGINE"),
    }


def _floors() -> dict[str, float]:
    floors: dict[str, float] = json.loads(FLOORS_FILE.read_text()) if FLOORS_FILE.is_file() else {}
    return floors


# --- interleaved measurement of the gated pairs ------------------------------------------------


def _timed(call: Callable[[], Any], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        call()
    return time.perf_counter() - start


def _calibrated(call: Callable[[], Any]) -> int:
    count = 1
    while _timed(call, count) < PAIRED_ROUND:
        count *= 2
    return count


def interleaved_ratio(ours: Callable[[], Any], peer: Callable[[], Any], seconds: float) -> float:
    """Median over alternating rounds of (peer time per call / ours per call); ABBA order, so
    that a trend in the machine's load weighs on both sides alike."""
    ours_count, peer_count = _calibrated(ours), _calibrated(peer)
    ratios = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        deadline = time.perf_counter() + seconds
        while len(ratios) < 10 or time.perf_counter() < deadline:
            if len(ratios) % 2:
                ours_time = _timed(ours, ours_count)
                peer_time = _timed(peer, peer_count)
            else:
                peer_time = _timed(peer, peer_count)
                ours_time = _timed(ours, ours_count)
            ratios.append((peer_time / peer_count) / (ours_time / ours_count))
    finally:
        if enabled:
            gc.enable()
    return statistics.median(ratios)


@dataclass
class _Pairing:
    """The calls of this module's benchmarks, by (group, impl), until a gated pair is complete."""

    seconds: float
    floors: dict[str, float]
    module: str = ""
    calls: dict[tuple[str, str], Callable[[], Any]] | None = None
    ratios: dict[str, float] | None = None
    unrepeatable: dict[str, str] = field(default_factory=dict)

    def record(self, module: str, group: str, impl: str, call: Callable[[], Any]) -> None:
        if self.calls is None or module != self.module:
            # a module's fixtures (C loops, ring buffers) end with it: never replay across modules
            self.module, self.calls = module, {}
        if self.ratios is None:
            self.ratios = {}
        self.calls[(group, impl)] = call
        for key in self.floors:
            gate_group, ours, peer = key.split("|")
            if gate_group == group and impl in (ours, peer) and key not in self.ratios:
                ours_call, peer_call = self.calls.get((group, ours)), self.calls.get((group, peer))
                if ours_call is not None and peer_call is not None:
                    try:
                        self.ratios[key] = interleaved_ratio(ours_call, peer_call, self.seconds)
                    except Exception as e:  # the gate falls back to the ratio of the medians
                        self.unrepeatable[key] = f"{type(e).__name__}: {e}"


class _RecordingBenchmark(BenchmarkFixture):  # type: ignore[misc]
    """pytest-benchmark's fixture, also handing each timed call to the pairing (the fixture's
    class is swapped for this one: pytest-benchmark accepts no other type of fixture)."""

    _ikecore_on_call: Callable[[Callable[[], Any]], None]

    def __call__(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        result = super().__call__(function, *args, **kwargs)
        # A partial, not a lambda: a Python frame per call would add ~0.1 us to both sides of
        # the pair, a large share of a 0.2 us call (ESP encapsulate 64 B) and hide the ratio.
        self._ikecore_on_call(functools.partial(function, *args, **kwargs))
        return result

    def pedantic(self, target: Callable[..., Any], args: tuple[Any, ...] = (),
                 kwargs: dict[str, Any] | None = None, setup: Callable[[], Any] | None = None,
                 **options: Any) -> Any:
        result = super().pedantic(target, args=args, kwargs=kwargs, setup=setup, **options)
        call_kwargs = kwargs or {}

        def replay() -> Any:
            if setup is None:
                return target(*args, **call_kwargs)
            made = setup()
            made_args, made_kwargs = made if made is not None else (args, call_kwargs)
            return target(*made_args, **(made_kwargs or {}))

        self._ikecore_on_call(replay)
        return result


@pytest.fixture
def benchmark(benchmark: Any, request: pytest.FixtureRequest) -> Any:
    pairing: _Pairing = request.config._ikecore_pairing  # type: ignore[attr-defined]
    if not pairing.floors or benchmark.disabled or type(benchmark) is not BenchmarkFixture:
        return benchmark

    def on_call(call: Callable[[], Any]) -> None:
        impl = benchmark.extra_info.get("impl")
        if impl and benchmark.group:
            pairing.record(request.node.module.__name__, benchmark.group, impl, call)

    benchmark.__class__ = _RecordingBenchmark
    benchmark._ikecore_on_call = on_call
    return benchmark


# --- ratios and gates --------------------------------------------------------------------------


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


def gates(config: pytest.Config) -> tuple[list[dict[str, Any]], list[str]]:
    """The gates of the measured groups, and the failures (one line each)."""
    rows = ratio_rows(config)
    medians = {f"{group}|{impl}|{peer}": ratio for group, impl, peer, _, ratio in rows}
    measured_groups = {row[0] for row in rows}
    interleaved = config._ikecore_pairing.ratios or {}  # type: ignore[attr-defined]
    results, failures = [], []
    for key, floor in sorted(_floors().items()):
        group, impl, peer = key.split("|")
        if key not in medians:
            if group in measured_groups:
                failures.append(f"{key}: floor names a pair not measured in its group")
            elif getattr(config, "_ikecore_complete_run", False):
                failures.append(f"{key}: group not measured in a run of every bench (renamed?)")
            continue
        ratio = interleaved.get(key, medians[key])
        results.append({"gate": key, "floor": floor, "ratio": ratio,
                        "interleaved": key in interleaved, "medians_ratio": medians[key],
                        "not_repeatable": config._ikecore_pairing.unrepeatable.get(key)})  # type: ignore[attr-defined]
        if ratio < floor:
            failures.append(f"{group}: {impl} vs {peer} ratio {ratio:.2f} < floor {floor}")
    return results, failures


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]
) -> None:
    for bench in output_json["benchmarks"]:
        bench["stats"].pop("data", None)
    checked, failures = gates(config)
    output_json["ikecore"] = {
        "machine": machine(),
        "mode": config.getoption("--bench-mode"),
        "floors": str(FLOORS_FILE) if FLOORS_FILE.is_file() else None,
        "ratios": [
            {"group": group, "impl": impl, "peer": peer, "ratio": ratio}
            for group, impl, peer, _, ratio in ratio_rows(config)
        ],
        "gates": checked,
        "gate_failures": failures,
    }


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    checked, failures = gates(session.config)
    session.config._ikecore_gates = checked  # type: ignore[attr-defined]
    session.config._ikecore_gate_failures = failures  # type: ignore[attr-defined]
    if failures and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rows = ratio_rows(config)
    if rows:
        terminalreporter.section("ikecore vs peers (medians of this run)")
        for group, impl, peer, median, ratio in rows:
            terminalreporter.write_line(
                f"{group:<44} {impl:<24} {median * 1e9:>10.0f} ns   {ratio:7.2f}x vs {peer}"
            )
    checked = getattr(config, "_ikecore_gates", [])
    if checked:
        terminalreporter.section("ratio gates (interleaved rounds; medians' ratio in brackets)")
        for gate in checked:
            verdict = "ok  " if gate["ratio"] >= gate["floor"] else "FAIL"
            note = "" if gate["interleaved"] else (
                f"  medians only: the calls could not be repeated ({gate['not_repeatable']})"
                if gate["not_repeatable"] else "  medians only")
            terminalreporter.write_line(
                f"{verdict} {gate['gate']:<64} {gate['ratio']:7.2f} "
                f"({gate['medians_ratio']:.2f}) floor {gate['floor']}{note}"
            )
    for failure in getattr(config, "_ikecore_gate_failures", []):
        terminalreporter.write_line(f"RATIO GATE FAILED: {failure}", red=True)
