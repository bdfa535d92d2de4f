"""C loops compiled at bench time: the "c-limit" of a group, the same library call the Cython core
makes with no Python in between (benches/*_c_loop.c), loaded with ctypes."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest


def build(source: str, library: str, out_dir: Path) -> ctypes.CDLL:
    """Compiles ``benches/<source>`` against ``-l<library>`` into ``out_dir``; skips the calling
    bench when there is no C compiler (the c-limit is then simply missing from the table)."""
    compiler = shutil.which("cc")
    if compiler is None:
        pytest.skip("the c-limit needs a C compiler (cc)")
    shared = out_dir / Path(source).with_suffix(".so").name
    subprocess.run(
        [compiler, "-O2", "-shared", "-fPIC", "-Wno-deprecated-declarations", "-o", str(shared),
         str(Path(__file__).with_name(source)), f"-l{library}"],
        check=True,
    )
    return ctypes.CDLL(str(shared))
