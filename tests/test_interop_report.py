"""tests/interop_report.py: the README table is built from the recorded cases, not typed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from interop_report import BEGIN, END, table

CASE = {
    "initiator": "strongSwan", "responder": "strongSwan",
    "strongswan_version": "5.9.8-5+deb12u6", "tshark_version": "4.0.17",
    "ike": "aes128gcm16-prfsha256-x25519", "esp": "aes128gcm16",
    "exercised": "IKE SA + Child SA", "test": "t::a", "result": "passed", "duration_s": 0.1,
}


def report(*cases: dict[str, object]) -> dict[str, object]:
    return {"generated": "2026-11-27T10:00:00+00:00", "suite_duration_s": 12.5,
            "cases": list(cases)}


def test_cases_of_one_row_merge_and_all_must_pass() -> None:
    text = table(report(
        CASE,
        {**CASE, "exercised": "tshark decrypts | ICV good", "decoder": "tshark", "test": "t::b"},
        {**CASE, "esp": "aes256gcm16", "result": "failed", "test": "t::c"},
        {**CASE, "esp": "aes256gcm16", "test": "t::d"},
    ))
    lines = text.splitlines()
    assert lines[0].startswith("| Initiator | Responder | Versions |")
    assert lines[2] == (
        "| strongSwan | strongSwan | strongSwan 5.9.8-5+deb12u6, tshark 4.0.17 |"
        " aes128gcm16-prfsha256-x25519 | aes128gcm16 |"
        " IKE SA + Child SA; tshark decrypts \\| ICV good | pass |"
    )
    assert lines[3].startswith("| strongSwan | strongSwan | strongSwan 5.9.8-5+deb12u6 |")
    assert lines[3].endswith("| aes256gcm16 | IKE SA + Child SA | FAIL (1 of 2) |")
    assert "(12.5 s)" in lines[-1]


def test_tshark_only_rows_name_tshark_and_dash_for_missing_proposals() -> None:
    text = table(report({**CASE, "initiator": "synthetic (cryptography)", "responder": "tshark",
                         "ike": None, "esp": "aes128gcm16-esn"}))
    assert "| synthetic (cryptography) | tshark | tshark 4.0.17 | — | aes128gcm16-esn |" in text


def test_not_testable_rows_say_so_and_a_failure_still_wins() -> None:
    esn = {**CASE, "esp": "aes128gcm16-esn", "result": "not testable",
           "not_testable": "libipsec has no ESN (NO_PROPOSAL_CHOSEN handled)"}
    text = table(report(esn, {**esn, "test": "t::e"}))
    assert text.splitlines()[2].endswith(
        "| not testable against this peer: libipsec has no ESN (NO_PROPOSAL_CHOSEN handled) |")
    text = table(report(esn, {**esn, "result": "failed", "test": "t::f"}))
    assert text.splitlines()[2].endswith("| FAIL (1 of 2) |")


def test_command_line_reads_the_json(tmp_path: Path) -> None:
    path = tmp_path / "interop.json"
    path.write_text(json.dumps(report(CASE)))
    script = Path(__file__).with_name("interop_report.py")
    out = subprocess.run([sys.executable, str(script), str(path)], capture_output=True,
                         text=True, check=True).stdout
    assert out == table(report(CASE))


def test_readme_section_is_replaced_between_the_markers(tmp_path: Path) -> None:
    data = tmp_path / "interop.json"
    data.write_text(json.dumps(report(CASE)))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Interoperability\n\n{BEGIN}\nold table\n{END}\n\n## Next\n")
    script = Path(__file__).with_name("interop_report.py")
    subprocess.run([sys.executable, str(script), str(data), "--readme", str(readme)],
                   check=True)
    text = readme.read_text()
    assert "old table" not in text
    assert text == (f"# x\n\n## Interoperability\n\n{BEGIN}\n{table(report(CASE))}{END}\n\n"
                    "## Next\n")
    readme.write_text("# no markers\n")
    failed = subprocess.run([sys.executable, str(script), str(data), "--readme", str(readme)],
                            capture_output=True, text=True)
    assert failed.returncode != 0 and "no '<!-- interop-table" in failed.stderr


def test_a_missing_report_fails_with_one_line(tmp_path: Path) -> None:
    script = Path(__file__).with_name("interop_report.py")
    failed = subprocess.run([sys.executable, str(script), str(tmp_path / "none.json")],
                            capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stderr == f"interop_report: no {tmp_path / 'none.json'}: run the interop " \
        "suite first (make test)\n"
