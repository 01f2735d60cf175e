"""The on-disk kernel cache: reuse across processes, atomic concurrent writes, corrupt entries rebuilt."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gpuhybrid.backend.compile_cache import check_text
from gpuhybrid.backend.host_compiler import find_host_compiler

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="no host C++ compiler")

# A child process: compile one generated kernel, run it on random data, check it against NumPy.
CHILD = textwrap.dedent("""
    import ctypes, sys
    import numpy as np
    from gpuhybrid.backend.host_compiler import compile_host
    from gpuhybrid.codegen import single_op_kernel
    kernel = single_op_kernel("softrelu", {}, ["float64"], "float64")
    fn = getattr(compile_host(kernel.text, kernel.name), kernel.name)
    x = np.random.default_rng(int(sys.argv[1])).normal(size=1000) * 5
    y = np.empty_like(x)
    fn(ctypes.c_int(x.size), ctypes.c_void_p(y.ctypes.data), ctypes.c_void_p(x.ctypes.data))
    np.testing.assert_allclose(y, np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0), rtol=1e-13)
    print("ok")
""")


def _run_children(cache: Path, seeds: list) -> None:
    env = {**os.environ, "GPUHYBRID_CACHE_DIR": str(cache)}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(s)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for s in seeds]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "ok", err


def _entries(cache: Path) -> list:
    return sorted((cache / "host").glob("*.so"))


def test_second_process_compiles_nothing(tmp_path):
    _run_children(tmp_path, [1])
    [entry] = _entries(tmp_path)
    inode = entry.stat().st_ino                 # a rebuild renames a new file into place
    _run_children(tmp_path, [2])
    assert _entries(tmp_path) == [entry] and entry.stat().st_ino == inode


def test_concurrent_processes_share_one_entry(tmp_path):
    _run_children(tmp_path, [3, 4, 5, 6])
    assert len(_entries(tmp_path)) == 1
    leftovers = [p.name for p in (tmp_path / "host").iterdir() if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete_checksum"])
def test_corrupt_entry_is_rebuilt(tmp_path, damage):
    _run_children(tmp_path, [7])
    [entry] = _entries(tmp_path)
    good = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(good[: len(good) // 3])
    elif damage == "garbage":
        entry.write_bytes(b"\0not a shared object" * 100)
    else:
        Path(str(entry) + ".check").unlink()
    _run_children(tmp_path, [8])
    rebuilt = entry.read_bytes()
    assert Path(str(entry) + ".check").read_text() == check_text(entry.name[:-3], rebuilt)
    assert len(rebuilt) == len(good)          # a whole library again, not the damaged bytes
