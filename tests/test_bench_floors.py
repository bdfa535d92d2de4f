"""A floor can only gate what is measured: in a run of every bench module, a floor whose group no
benchmark measured (a renamed group) fails the run instead of silently gating nothing. Run on a
one-module copy of the bench harness (benches/conftest.py) with its own floors file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHES = Path(__file__).resolve().parents[1] / "benches"

TINY_BENCH = '''
def test_sum_ikecore(benchmark):
    benchmark.group = "sum 8"
    benchmark.extra_info["impl"] = "ikecore"
    benchmark(sum, range(8))


def test_sum_peer(benchmark):
    benchmark.group = "sum 8"
    benchmark.extra_info["impl"] = "peer"
    benchmark(sum, list(range(8)))
'''

pytestmark = pytest.mark.skipif(
    not (BENCHES / "conftest.py").is_file(), reason="benches/ is not beside tests/"
)


def run_harness(tmp_path: Path, floors: dict[str, float], *options: str) -> str:
    shutil.copy(BENCHES / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_sum.py").write_text(TINY_BENCH)
    (tmp_path / "floors.json").write_text(json.dumps(floors))
    env = dict(os.environ, IKECORE_BENCH_FLOORS=str(tmp_path / "floors.json"))
    result = subprocess.run(
        [sys.executable, "-I", "-m", "pytest", str(tmp_path), "-p", "no:cacheprovider",
         "--bench-mode=quick", *options],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    return f"rc={result.returncode}\n{result.stdout}{result.stderr}"


def test_a_floor_on_a_group_nobody_measures_fails_a_complete_run(tmp_path: Path) -> None:
    out = run_harness(tmp_path, {"sum 8|ikecore|peer": 0.0, "sum 16|ikecore|peer": 0.0})
    assert out.startswith("rc=1"), out[-3000:]
    assert "RATIO GATE FAILED: sum 16|ikecore|peer: group not measured" in out, out[-3000:]


def test_measured_floors_pass_and_a_filtered_run_gates_only_what_it_measured(
    tmp_path: Path,
) -> None:
    assert run_harness(tmp_path, {"sum 8|ikecore|peer": 0.0}).startswith("rc=0")
    # -k leaves groups out on purpose: their floors are not checked.
    out = run_harness(tmp_path, {"sum 8|ikecore|peer": 0.0, "sum 16|ikecore|peer": 0.0},
                      "-k", "sum")
    assert out.startswith("rc=0"), out[-3000:]
