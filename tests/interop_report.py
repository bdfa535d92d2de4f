"""Markdown table for the README's Interoperability section, from an interop run's JSON.

    python tests/interop_report.py [ci-artifacts/interop.json]

The JSON is written by tests/interop/conftest.py (one entry per case a test exercised, with
the test's outcome). Cases with the same peers and proposals make one row, which passes only
if all of its cases passed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COLUMNS = ("Initiator", "Responder", "Versions", "IKE proposal", "ESP proposal", "Exercised",
           "Result")


def _versions(cases: list[dict[str, Any]]) -> str:
    """The versions of the real components the row's cases involved."""
    parts = []
    peers = " ".join(f"{case['initiator']} {case['responder']}" for case in cases)
    if "strongSwan" in peers:
        parts.append(f"strongSwan {cases[0]['strongswan_version']}")
    if any("tshark" in f"{peers} {case.get('decoder') or ''}" for case in cases):
        parts.append(f"tshark {cases[0]['tshark_version']}")
    return ", ".join(parts)


def table(report: dict[str, Any]) -> str:
    rows: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for case in report["cases"]:
        key = (case["initiator"], case["responder"], case.get("ike") or "—",
               case.get("esp") or "—")
        rows.setdefault(key, []).append(case)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for (initiator, responder, ike, esp), cases in rows.items():
        exercised = list(dict.fromkeys(case["exercised"] for case in cases))
        failed = sum(case["result"] not in ("passed", "not testable") for case in cases)
        untestable = [case["not_testable"] for case in cases if case["result"] == "not testable"]
        if failed:
            verdict = f"FAIL ({failed} of {len(cases)})"
        elif untestable:
            verdict = "not testable against this peer: " + "; ".join(dict.fromkeys(untestable))
        else:
            verdict = "pass"
        cells = [initiator, responder, _versions(cases), ike, esp, "; ".join(exercised), verdict]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    lines.append("")
    lines.append(f"Generated {report['generated']} by the interop suite "
                 f"({report['suite_duration_s']} s).")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else "ci-artifacts/interop.json")
    sys.stdout.write(table(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
