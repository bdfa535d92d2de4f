"""Build the Cython core: every ``_fast/*.pyx`` becomes ``ikecore._fast.<name>``.

All modules link OpenSSL libcrypto (>= 3.0). Where intel-ipsec-mb is installed (Debian
``libipsec-mb-dev``, x86-64) it is linked too and ``IKECORE_HAVE_IPSEC_MB=1`` is defined, which
turns on the ipsec-mb AES-GCM engine in ``_fast/aead.pyx``; without it the package builds and runs
on the OpenSSL engine alone.

Environment knobs (used by cibuildwheel, see pyproject.toml):
  IKECORE_OPENSSL_PREFIX   prefix with include/ and lib/ (macOS Homebrew, Windows)
  IKECORE_OPENSSL_INCLUDE  / IKECORE_OPENSSL_LIBDIR   explicit directories (manylinux openssl3)
  IKECORE_IPSEC_MB         "0" never link ipsec-mb, "1" require it, unset: use it when found
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
FAST = HERE / "_fast"


def _openssl_dirs() -> tuple[list[str], list[str]]:
    include_dirs: list[str] = []
    library_dirs: list[str] = []
    prefix = os.environ.get("IKECORE_OPENSSL_PREFIX")
    if prefix:
        include_dirs.append(os.path.join(prefix, "include"))
        library_dirs.append(os.path.join(prefix, "lib"))
    if os.environ.get("IKECORE_OPENSSL_INCLUDE"):
        include_dirs.insert(0, os.environ["IKECORE_OPENSSL_INCLUDE"])
    if os.environ.get("IKECORE_OPENSSL_LIBDIR"):
        library_dirs.insert(0, os.environ["IKECORE_OPENSSL_LIBDIR"])
    return include_dirs, library_dirs


def _find_ipsec_mb(include_dirs: list[str]) -> bool:
    wanted = os.environ.get("IKECORE_IPSEC_MB")
    if wanted == "0":
        return False
    candidates = [*include_dirs, "/usr/include", "/usr/local/include"]
    found = any(Path(d, "intel-ipsec-mb.h").is_file() for d in candidates)
    if wanted == "1" and not found:
        sys.exit("IKECORE_IPSEC_MB=1 but intel-ipsec-mb.h was not found")
    return found


def _cython_include_dir() -> str:
    """A tree where ``ikecore/_fast/*.pxd`` resolves, so that ``.pyx`` files can write
    ``from ikecore._fast._libcrypto cimport ...`` although the sources live in ``_fast/``
    (package_dir maps ``ikecore._fast`` to ``_fast``; Cython looks pxd files up by full name)."""
    root = HERE / "build" / "cython-include"
    target = root / "ikecore" / "_fast"
    shutil.rmtree(root, ignore_errors=True)
    target.mkdir(parents=True)
    (root / "ikecore" / "__init__.pxd").touch()
    (target / "__init__.pxd").touch()
    for pxd in FAST.glob("*.pxd"):
        shutil.copy2(pxd, target / pxd.name)
    return str(root)


def _extensions() -> list[Extension]:
    include_dirs, library_dirs = _openssl_dirs()
    libraries = ["libcrypto" if sys.platform == "win32" else "crypto"]
    macros: list[tuple[str, str | None]] = [("OPENSSL_API_COMPAT", "30000")]
    if _find_ipsec_mb(include_dirs):
        libraries.append("IPSec_MB")
        macros.append(("IKECORE_HAVE_IPSEC_MB", "1"))
    else:
        macros.append(("IKECORE_HAVE_IPSEC_MB", "0"))
    compile_args = [] if sys.platform == "win32" else ["-O3", "-fno-strict-aliasing"]
    return [
        Extension(
            f"ikecore._fast.{pyx.stem}",
            [str(pyx.relative_to(HERE))],
            include_dirs=[str(FAST.relative_to(HERE)), *include_dirs],
            library_dirs=library_dirs,
            libraries=libraries,
            define_macros=macros,
            extra_compile_args=compile_args,
        )
        for pyx in sorted(FAST.glob("*.pyx"))
    ]


setup(
    # Compile the extensions side by side (CI has 2 cores; each module is one large C file).
    options={"build_ext": {"parallel": os.cpu_count() or 1}},
    ext_modules=cythonize(
        _extensions(),
        language_level=3,
        compiler_directives={"embedsignature": True},
        include_path=[_cython_include_dir()],
    ),
)
