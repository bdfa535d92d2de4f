"""``ikecore bench``: finding the benches, the table rows, and one quick end-to-end run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ikecore._bench import BenchError, find_benches, rows_from_results, split_group
from ikecore.cli import main

BENCHES = Path(__file__).resolve().parents[1] / "benches"
needs_benches = pytest.mark.skipif(
    not (BENCHES / "conftest.py").is_file(),
    reason="benches/ is not beside tests/ (a copy of tests/ alone)",
)


@pytest.mark.parametrize(("group", "expected"), [
    ("esp encapsulate 1400B x256", ("esp encapsulate", "1400B", 256)),
    ("esp encapsulate 64B", ("esp encapsulate", "64B", 1)),
    ("ike sa keys aes256gcm16-prfsha256 168B x64",
     ("ike sa keys aes256gcm16-prfsha256", "168B", 64)),
    ("decode IKE_SA_INIT full", ("decode IKE_SA_INIT full", "", 1)),
    ("handshake x25519", ("handshake x25519", "", 1)),
])
def test_split_group(group: str, expected: tuple[str, str, int]) -> None:
    assert split_group(group) == expected


def _bench(group: str, impl: str, median: float) -> dict[str, Any]:
    return {"group": group, "name": f"test_{impl}", "extra_info": {"impl": impl},
            "stats": {"median": median}}


RESULTS = {"benchmarks": [
    _bench("esp encapsulate 64B x256", "ikecore batch", 25.6e-6),
    _bench("esp encapsulate 64B x256", "ikecore batch openssl", 51.2e-6),
    _bench("esp encapsulate 64B x256", "peer", 512e-6),
    _bench("esp encapsulate 64B x256", "c-limit", 12.8e-6),
    _bench("decode IKE_SA_INIT full", "ikecore", 2e-6),
    _bench("decode IKE_SA_INIT full", "peer", 6e-6),
    _bench("decode IKE_SA_INIT full", "peer-scapy", 200e-6),
    _bench("store put", "ikecore sqlite", 1e-5),
    _bench("handshake x25519", "ikecore", 3e-3),
    _bench("handshake x25519", "dh-limit", 2e-3),
    {"group": "untagged", "name": "test_x", "extra_info": {}, "stats": {"median": 1.0}},
]}


def test_rows_are_per_operation_with_ratios_against_each_peer_and_the_limit() -> None:
    rows = {(r.operation, r.impl, r.peer): r for r in rows_from_results(RESULTS)}
    batch = rows[("esp encapsulate", "ikecore batch", "peer")]
    assert (batch.size, batch.per_call) == ("64B", 256)
    assert batch.ikecore == pytest.approx(100e-9) and batch.peer_time == pytest.approx(2e-6)
    assert batch.ratio == pytest.approx(20.0)
    assert batch.c_limit == pytest.approx(50e-9) and batch.limit_ratio == pytest.approx(0.5)
    assert rows[("decode IKE_SA_INIT full", "ikecore", "peer-scapy")].ratio == pytest.approx(100)
    assert rows[("decode IKE_SA_INIT full", "ikecore", "peer")].c_limit is None
    # a group without a headline impl shows what it has; a group without peers gets one row
    assert rows[("store put", "ikecore sqlite", None)].ratio is None
    # "<work>-limit" is a limit, not a peer
    handshake = rows[("handshake x25519", "ikecore", None)]
    assert handshake.limit == "dh-limit" and handshake.limit_ratio == pytest.approx(2 / 3)
    assert batch.limit == "c-limit"
    # non-headline variants only on request; untagged benchmarks are not rows
    assert ("esp encapsulate", "ikecore batch openssl", "peer") not in rows
    assert "untagged" not in {r.operation for r in rows.values()}
    every = {(r.impl, r.peer) for r in rows_from_results(RESULTS, all_impls=True)}
    assert ("ikecore batch openssl", "peer") in every


def test_find_benches_from_a_checkout_subdirectory(tmp_path: Path) -> None:
    (tmp_path / "benches").mkdir()
    (tmp_path / "benches" / "conftest.py").write_text("")
    (tmp_path / "docs" / "deep").mkdir(parents=True)
    assert find_benches(None, tmp_path / "docs" / "deep") == (tmp_path / "benches").resolve()
    assert find_benches(str(tmp_path / "benches"), Path("/")) == (tmp_path / "benches").resolve()


def test_find_benches_outside_a_checkout_says_why(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="ship with the source checkout, not the wheel"):
        find_benches(None, tmp_path)
    with pytest.raises(BenchError, match="not a benches directory"):
        find_benches(str(tmp_path), tmp_path)


def test_bench_command_without_benches_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--quick", "--benches", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ikecore bench: ") and err.count("\n") == 1


def _ikecore_bench(*args: str, floors: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IKECORE_BENCH_FLOORS": str(floors)}
    env.pop("IKECORE_AEAD_ENGINE", None)
    return subprocess.run(
        # -I: the checkout is the working directory, and its ikecore/ (no compiled _fast) must
        # not shadow the installed package (DESIGN.md, import rule).
        [sys.executable, "-I", "-m", "ikecore", "bench", "--quick", "--json", *args],
        cwd=BENCHES.parent, env=env, capture_output=True, text=True, timeout=120,
    )


SUBSET = ("64] and (test_encapsulate_ikecore or test_encapsulate_peer or "
          "test_encapsulate_batch_ikecore or test_encapsulate_burst_c_limit) and not openssl")


@needs_benches
def test_bench_quick_json_end_to_end(tmp_path: Path) -> None:
    """From the checkout (found from the current directory), a five-benchmark subset. The floors
    file holds one floor no run can reach, so that the gate path is checked without depending
    on this machine's load: the run fails naming it, and still reports every row."""
    floors = tmp_path / "floors.json"
    floors.write_text(json.dumps({"esp encapsulate 64B|ikecore|peer": 1e6}))
    output = tmp_path / "bench.json"
    result = _ikecore_bench("-k", SUBSET, "--output", str(output), floors=floors)
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.splitlines()[-1].startswith(
        "ikecore bench: 1 ratio gate(s) below their floor, first: esp encapsulate 64B: ikecore "
        "vs peer ratio ")
    report = json.loads(result.stdout)
    assert report["mode"] == "quick" and report["benches"] == str(BENCHES)
    assert report["failed"] == [] and len(report["gate_failures"]) == 1
    assert report["machine"]["cores"] == os.cpu_count()
    rows = {(r["operation"], r["size"], r["per_call"], r["impl"], r["peer"]): r
            for r in report["rows"]}
    single = rows[("esp encapsulate", "64B", 1, "ikecore", "peer")]
    assert single["ikecore"] > 0 and single["ratio"] == pytest.approx(
        single["peer_time"] / single["ikecore"])
    assert ("esp encapsulate", "64B", 1, "ikecore", "peer-bare-aead") in rows
    batch = rows[("esp encapsulate", "64B", 256, "ikecore batch", None)]
    assert batch["limit"] == "c-limit"
    assert batch["limit_ratio"] == pytest.approx(batch["c_limit"] / batch["ikecore"])
    # pytest-benchmark's document is kept where asked, without the raw samples
    kept = json.loads(output.read_text())
    assert len(kept["benchmarks"]) == 5
    assert all("data" not in b["stats"] for b in kept["benchmarks"])
