"""The ratio gates of the benchmark suite can fail: ESP forced onto the OpenSSL engine, against the
committed floors (set for the ipsec-mb engine), must fail its gates while every benchmark in the
run passes. The subset is eight quick benchmarks (a few seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ikecore.aead import available_engines

BENCHES = Path(__file__).resolve().parents[1] / "benches"
ESP_GATES = (
    "esp encapsulate 64B|ikecore|peer",
    "esp encapsulate 1400B|ikecore|peer",
    "esp encapsulate 1400B x256|ikecore batch|c-limit",
)

pytestmark = [
    pytest.mark.skipif(not (BENCHES / "floors.json").is_file(),
                       reason="benches/ is not beside tests/ (a copy of tests/ alone)"),
    pytest.mark.skipif("ipsec-mb" not in available_engines(),
                       reason="the committed floors are set for the ipsec-mb engine"),
]


def run_esp_subset(engine: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "IKECORE_BENCH_FLOORS"}
    env["IKECORE_AEAD_ENGINE"] = engine
    selection = (
        "(test_encapsulate_ikecore or test_encapsulate_peer or test_encapsulate_batch_ikecore "
        "or test_encapsulate_burst_c_limit) and not bare and not ipsec-mb"
        " and (64] or 1400])"
    )
    # -I: run from the checkout without its ikecore/ (no compiled _fast) shadowing the installed one
    return subprocess.run(
        [sys.executable, "-I", "-m", "pytest", str(BENCHES / "test_esp.py"),
         "-p", "no:cacheprovider", "--bench-mode=quick", "-k", selection],
        cwd=BENCHES.parent, env=env, capture_output=True, text=True, timeout=120,
    )


def test_committed_floors_name_the_headline_esp_gates() -> None:
    floors = json.loads((BENCHES / "floors.json").read_text())
    for gate in ESP_GATES:
        assert floors[gate] > 0


def test_openssl_engine_fails_the_esp_gates_set_for_ipsec_mb() -> None:
    result = run_esp_subset("openssl")
    out = result.stdout
    assert result.returncode == 1, out[-3000:] + result.stderr[-2000:]
    # the benchmarks themselves passed: only the gates failed the run
    assert " failed" not in out.splitlines()[-1] and "8 passed" in out.splitlines()[-1], out[-2000:]
    failed_gates = [line for line in out.splitlines() if line.startswith("RATIO GATE FAILED: ")]
    for gate in ESP_GATES:
        group, impl, peer = gate.split("|")
        assert any(line.startswith(f"RATIO GATE FAILED: {group}: {impl} vs {peer} ratio ")
                   for line in failed_gates), "\n".join(failed_gates)


ONE_GROUP = '''
class Resource:
    """Usable until its test closes it, like a function-scoped fixture's object."""

    open = True

    def use(self):
        if not self.open:
            raise RuntimeError("closed")
        return sum(range(20))


def test_ours(benchmark):
    benchmark.group = "g"
    benchmark.extra_info["impl"] = "ikecore"
    resource = Resource()
    benchmark(resource.use)
    resource.open = False


def test_peer(benchmark):
    benchmark.group = "g"
    benchmark.extra_info["impl"] = "peer"
    benchmark(lambda: sum(range(2000)))
'''


def test_gate_bookkeeping_on_a_private_group(tmp_path: Path) -> None:
    """The conftest alone on a two-benchmark group: a gated call that cannot be repeated leaves
    its gate to the medians (and says so); a floor naming a pair the group lacks fails the run."""
    benches = tmp_path / "benches"
    benches.mkdir()
    (benches / "conftest.py").write_text((BENCHES / "conftest.py").read_text())
    (benches / "test_group.py").write_text(ONE_GROUP)
    floors = tmp_path / "floors.json"
    floors.write_text(json.dumps({"g|ikecore|peer": 1.0, "g|ikecore|peer-renamed": 1.0}))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(benches), "-p", "no:cacheprovider",
         "--bench-mode=quick"],
        cwd=tmp_path, env={**os.environ, "IKECORE_BENCH_FLOORS": str(floors)},
        capture_output=True, text=True, timeout=120,
    )
    out = result.stdout
    assert result.returncode == 1, out[-3000:] + result.stderr[-2000:]
    assert "2 passed" in out.splitlines()[-1]
    gate = next(line for line in out.splitlines() if line.startswith("ok   g|ikecore|peer "))
    assert "medians only: the calls could not be repeated (RuntimeError: closed)" in gate
    assert ("RATIO GATE FAILED: g|ikecore|peer-renamed: floor names a pair not measured in its "
            "group") in out
