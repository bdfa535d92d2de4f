"""`ikecore demo --scenario cluster` as a user runs it: the installed command in a subprocess,
which starts the two gateway nodes as processes of their own; the store is the default
temporary SQLite file or the test's real redis-server."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

import pytest

SCRIPT = pathlib.Path(sys.executable).parent / "ikecore"


def demo(tmp_path: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-I", "-m", "ikecore"]
    return subprocess.run(
        [*command, "demo", "--scenario", "cluster", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=90,
    )


def check_report(report: dict[str, Any]) -> None:
    assert report["ok"] is True and report["scenario"] == "cluster" and report["moved"] is True
    assert (report["ike_sas"], report["child_sas"], report["clones"]) == (2, 2, 1)
    assert report["esp_packets_ok"] == report["esp_packets_sent"] == 14
    assert report["owners"] == {"old SA": "A", "clone": "B"}
    nodes = report["nodes"]
    assert nodes["A"]["address"] == "127.0.0.2" and nodes["B"]["address"] == "127.0.0.3"
    assert nodes["A"]["pid"] != nodes["B"]["pid"]  # separate processes
    assert (nodes["A"]["echo_requests"], nodes["B"]["echo_requests"]) == (4, 3)
    # B continued the clone: the client's CREATE_CHILD_SA (#0) answered by A, nothing of
    # B's own yet; ESP above the block A reserved when it sent sequence number 1.
    assert nodes["B"]["loaded"] == {
        "next_request_id": 0,
        "next_peer_request_id": 1,
        "esp_seq_out": [16384],
    }
    assert report["vpn_1_esp_seq"] == {"A": [1], "B": [16385, 16386, 16387]}
    update = next(m for m in report["messages"] if "N(UPDATE_SA_ADDRESSES)" in m)
    assert update.startswith("<-- INFORMATIONAL") and "(clone #0, 127.0.0.3:" in update


def test_cluster_demo_on_the_default_sqlite_store(tmp_path: pathlib.Path) -> None:
    result = demo(tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "[node A] clone handed to B (store compare-and-set)" in lines
    assert any(line.startswith("[node B] took the clone over: message IDs 0/1") for line in lines)
    assert "esp_packets_ok: 14" in lines and "ok: every step passed" in lines
    assert any(line.startswith("node B (127.0.0.3, pid ") for line in lines)
    result = demo(tmp_path, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    check_report(report)
    assert report["store"] == "sqlite (temporary file)"
    assert list(tmp_path.iterdir()) == []  # the temporary store is gone


def test_cluster_demo_on_redis(tmp_path: pathlib.Path, redis_url: str) -> None:
    result = demo(tmp_path, "--store", redis_url, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    check_report(report)
    assert report["store"].startswith("redis://127.0.0.1:")


@pytest.mark.parametrize("store", ["memory:", "postgres://db", "redis://127.0.0.1:1/0"])
def test_cluster_demo_without_a_usable_shared_store_fails_in_one_line(
    tmp_path: pathlib.Path, store: str
) -> None:
    result = demo(tmp_path, "--store", store, "--json", "--timeout", "10")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("ikecore demo: ")
    assert json.loads(result.stdout) == {"ok": False, "error": line.removeprefix("ikecore demo: ")}
