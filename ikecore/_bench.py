"""``ikecore bench``: the benchmark suite of a source checkout, with progress and a results table.

The benches (``benches/``, pytest-benchmark) are not part of the wheel: they need pytest, the
peers (cryptography, scapy, a pure-Python ESP and parser kept beside them) and a C compiler for
the C loops. The command runs them in-process with ``pytest.main`` from the ``benches/`` of the
checkout found from the current directory upwards, or from ``--benches DIR``; without one it
fails with a one-line reason. What the benches measure is the installed ``ikecore``.

The suite's own conventions (``benches/conftest.py``): one group per operation and size,
``extra_info["impl"]`` of "ikecore…", "peer…" or "c-limit" per benchmark, ratio gates from
``benches/floors.json``. A group named ``"<operation> <size> x<N>"`` times N operations per call;
the table shows every time per operation (median / N).

Only the standard library is imported here at module level: pytest and rich are imported when
the command runs (both are in the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "BenchError",
    "Row",
    "add_arguments",
    "find_benches",
    "rows_from_results",
    "run",
    "split_group",
]

# the ikecore implementations the table shows by default (the others with --all)
HEADLINE_IMPLS = ("ikecore", "ikecore batch")
C_LIMIT = "c-limit"
_GROUP = re.compile(r"^(?P<operation>.+?) (?P<size>\d+B)(?: x(?P<count>\d+))?$")


class BenchError(Exception):
    """A failure to report as the one-line reason of a non-zero exit."""


@dataclass(frozen=True)
class Row:
    """One line of the results table; times in seconds per operation."""

    operation: str
    size: str
    per_call: int  # operations per timed call (the N of "x<N>" groups)
    impl: str
    ikecore: float
    peer: str | None
    peer_time: float | None
    ratio: float | None  # peer time / ikecore time: how many times faster ikecore is
    c_limit: float | None
    limit_ratio: float | None  # limit time / ikecore time: the share of the limit reached
    limit: str | None = None  # "c-limit", or another "<work>-limit" (e.g. the DH of a handshake)


def _is_limit(impl: str) -> bool:
    """"c-limit" (a C loop over the same library calls) or "<work>-limit": the work the
    operation cannot avoid (e.g. "dh-limit", the key exchange inside a handshake)."""
    return impl == C_LIMIT or impl.endswith("-limit")


def split_group(group: str) -> tuple[str, str, int]:
    """``"esp encapsulate 1400B x256"`` -> ``("esp encapsulate", "1400B", 256)``; a group with
    no size keeps its whole name as the operation (``"handshake x25519"`` is no burst)."""
    match = _GROUP.match(group)
    if match:
        return match["operation"], match["size"], int(match["count"] or 1)
    return group, "", 1


def _size_key(size: str) -> int:
    return int(size[:-1]) if size else 0


def rows_from_results(results: dict[str, Any], all_impls: bool = False) -> list[Row]:
    """The table rows of a pytest-benchmark JSON document (medians, per operation)."""
    medians: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in results.get("benchmarks", []):
        impl = bench.get("extra_info", {}).get("impl")
        if impl and bench.get("stats"):
            medians[bench["group"] or bench["name"]][impl] = float(bench["stats"]["median"])
    rows = []
    for group, impls in medians.items():
        operation, size, per_call = split_group(group)
        ours = sorted(i for i in impls if i.startswith("ikecore"))
        shown = ours if all_impls else [i for i in ours if i in HEADLINE_IMPLS] or ours
        peers: list[str | None] = [
            i for i in sorted(impls) if not i.startswith("ikecore") and not _is_limit(i)
        ]
        limit_name = next((i for i in sorted(impls, key=lambda i: i != C_LIMIT)
                           if _is_limit(i)), None)
        limit = impls[limit_name] if limit_name else None
        for impl in shown:
            ours_time = impls[impl]
            for peer in peers or [None]:
                peer_time = impls[peer] if peer else None
                rows.append(Row(
                    operation, size, per_call, impl, ours_time / per_call, peer,
                    peer_time / per_call if peer_time else None,
                    peer_time / ours_time if peer_time else None,
                    limit / per_call if limit else None,
                    limit / ours_time if limit else None,
                    limit_name,
                ))
    rows.sort(key=lambda r: (r.operation, _size_key(r.size), r.per_call, r.impl, r.peer or ""))
    return rows


def find_benches(explicit: str | None, start: Path) -> Path:
    """The ``benches/`` directory to run: ``explicit``, or the one of the source checkout that
    ``start`` is in (a ``benches/conftest.py`` in it or a parent directory)."""
    if explicit is not None:
        path = Path(explicit)
        if not (path / "conftest.py").is_file():
            raise BenchError(f"{explicit} is not a benches directory (no conftest.py in it)")
        return path.resolve()
    for directory in (start, *start.parents):
        if (directory / "benches" / "conftest.py").is_file():
            return (directory / "benches").resolve()
    raise BenchError(
        f"no benches/ found in {start} or its parents: the benches ship with the source "
        "checkout, not the wheel; run from a checkout of ikecore or pass --benches DIR"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true",
        help="the CI pass (short rounds, the plot-only sizes left out; about a minute) instead "
             "of the full release run",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--benches", metavar="DIR",
        help="the benches/ directory to run (default: the one of the checkout the current "
             "directory is in)",
    )
    parser.add_argument(
        "--output", metavar="FILE", help="also keep pytest-benchmark's JSON document in FILE",
    )
    parser.add_argument(
        "-k", dest="select", metavar="EXPR", help="only the benchmarks matching EXPR (pytest -k)",
    )
    parser.add_argument(
        "--all", action="store_true",
        help="a row for every ikecore variant (engines, *_into) instead of the headline ones",
    )


class _Progress:
    """pytest plugin: advances a rich progress bar per benchmark and records the failures."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._task = progress.add_task("collecting", total=None)
        self.failed: list[str] = []  # "nodeid: last line of the failure"
        self.gate_failures: list[str] = []

    def pytest_collection_finish(self, session: Any) -> None:
        self._progress.update(self._task, total=len(session.items), description="benchmarks")
        self._progress.refresh()

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed:
            lines = report.longreprtext.strip().splitlines() or ["failed"]
            self.failed.append(f"{report.nodeid}: {lines[-1]}")
        if report.when == "teardown":
            name = report.nodeid.rsplit("::", 1)[-1]
            self._progress.update(self._task, advance=1, description=f"{name[:48]:<48}")
            self._progress.refresh()

    def pytest_unconfigure(self, config: Any) -> None:
        # set by benches/conftest.py at the end of the session
        self.gate_failures = list(getattr(config, "_ikecore_gate_failures", []))


@contextlib.contextmanager
def _pytest_output(log: IO[str]) -> Iterator[None]:
    """pytest's own report goes to the log; the terminal keeps the progress bar and the table."""
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


def _run_suite(args: argparse.Namespace, benches: Path, json_path: Path,
               log_path: Path) -> tuple[int, _Progress]:
    try:
        import pytest
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    except ImportError as e:
        raise BenchError(f"needs the bench extra (pip install 'ikecore[bench]'): {e}") from None
    pytest_args = [
        str(benches), "-q", "-p", "no:cacheprovider",
        "--bench-mode", "quick" if args.quick else "full",
        "--benchmark-json", str(json_path),
    ]
    if args.select:
        pytest_args += ["-k", args.select]
    # the benches import their helpers (pure-Python peers, C loop builders) by module name
    sys.path.insert(0, str(benches))
    console = Console(file=sys.stderr)
    progress = Progress(
        "{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, auto_refresh=False, transient=True,
    )
    plugin = _Progress(progress)
    with progress, log_path.open("w") as log, _pytest_output(log):
        status = int(pytest.main(pytest_args, plugins=[plugin]))
    return status, plugin


def _format_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ns = seconds * 1e9
    if ns < 10_000:
        return f"{ns:,.0f} ns"
    return f"{ns / 1000:,.1f} µs"


def _format_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _print_table(rows: list[Row], results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    machine = results.get("ikecore", {}).get("machine", {})
    table = Table(
        title="ikecore against its peers (medians of this run, per operation)",
        caption=(
            f"{machine.get('cpu_model', '?')}, {machine.get('cores', '?')} cores, "
            f"engines {', '.join(machine.get('engines', []))}. ratio = peer time / ikecore "
            "time; ikecore/limit = C loop (or named limit) time / ikecore time; 'xN' = bursts of "
            "N per call. peer: what a Python user would write; (best): cryptography HMAC; "
            "(bare-aead): cryptography's AESGCM call alone; (scapy): scapy's IKEv2 layer"
        ),
    )
    for column in ("operation", "size", "ikecore", "peer", "ratio", "C limit", "ikecore/limit"):
        justify = "left" if column in ("operation", "size") else "right"
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    previous = None
    for row in rows:
        key = (row.operation, row.size, row.per_call)
        size = row.size + (f" x{row.per_call}" if row.per_call > 1 else "")
        first = key != previous
        previous = key
        impl = "" if row.impl == "ikecore" else f" ({row.impl.removeprefix('ikecore ')})"
        table.add_row(
            row.operation if first else "",
            size if first else "",
            _format_time(row.ikecore) + impl,
            "-" if row.peer is None else _format_time(row.peer_time) + (
                "" if row.peer == "peer" else f" ({row.peer.removeprefix('peer-')})"),
            _format_ratio(row.ratio),
            _format_time(row.c_limit) + (
                f" {row.limit}" if row.limit not in (None, C_LIMIT) else ""),
            _format_ratio(row.limit_ratio),
            end_section=False,
        )
    # a fixed width when not on a terminal (logs, pipes), where rich would assume 80 columns
    Console(width=None if sys.stdout.isatty() else 150).print(table)


def run(args: argparse.Namespace) -> int:
    benches = find_benches(args.benches, Path.cwd())
    with tempfile.TemporaryDirectory(prefix="ikecore-bench-") as scratch:
        json_path = Path(args.output) if args.output else Path(scratch) / "bench.json"
        log_path = Path(scratch) / "pytest.log"
        status, plugin = _run_suite(args, benches, json_path, log_path)
        if not json_path.is_file():
            tail = log_path.read_text().strip().splitlines()[-1:] or ["no output"]
            raise BenchError(f"no benchmark ran (pytest exit {status}): {tail[0]}")
        results = json.loads(json_path.read_text())
    rows = rows_from_results(results, args.all)
    if args.json:
        json.dump({
            "benches": str(benches),
            "mode": "quick" if args.quick else "full",
            "machine": results.get("ikecore", {}).get("machine"),
            "date": results.get("datetime"),
            "rows": [asdict(row) for row in rows],
            "failed": plugin.failed,
            "gates": results.get("ikecore", {}).get("gates", []),
            "gate_failures": plugin.gate_failures,
        }, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_table(rows, results)
        for failure in plugin.gate_failures:
            print(f"RATIO GATE FAILED: {failure}", file=sys.stderr)
    if plugin.failed:
        raise BenchError(f"{len(plugin.failed)} benchmark(s) failed, first {plugin.failed[0]}")
    if plugin.gate_failures:
        raise BenchError(f"{len(plugin.gate_failures)} ratio gate(s) below their floor, first: "
                         f"{plugin.gate_failures[0]}")
    if status != 0:
        raise BenchError(f"pytest exited with status {status}")
    return 0
