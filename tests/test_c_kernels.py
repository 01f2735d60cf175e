"""The loader of the hand-written CPU kernels (gpuhybrid/backend/c_kernels.py): a kernel file the host
compiler cannot build leaves its ops on their NumPy routes with one warning, and a compiler whose probe
rejected -march=native still builds them (without it)."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import warnings

import pytest

from gpuhybrid.backend import c_kernels
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.backend.host_launch import launcher

pytestmark = pytest.mark.skipif(find_host_compiler() is None or launcher() is None,
                                reason="the hand-written kernels need a host compiler and the launcher")


def test_a_kernel_file_that_does_not_compile_gives_none_and_one_warning(tmp_path, monkeypatch):
    (tmp_path / "gh_review_broken.c").write_text("#error this file does not compile\n")
    monkeypatch.setattr(c_kernels, "kernel_dir", lambda: tmp_path)
    job = (("gh_review_broken_job_size", 8),)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert c_kernels.packed_entries("gh_review_broken.c", ("gh_review_broken_packed",), job) is None
        assert c_kernels.packed_entries("gh_review_broken.c", ("gh_review_broken_packed",), job) is None
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "kernels/gh_review_broken.c" in messages[0], messages
    assert "NumPy routes" in messages[0]


_WITHOUT_MARCH_NATIVE = """
import numpy as np
from gpuhybrid.backend import host_compiler, norm_kernels, pool_kernels
assert "-march=native" not in host_compiler.find_host_compiler().flags
assert norm_kernels.available() and pool_kernels.available()
x = np.random.default_rng(0).standard_normal((8, 3, 40, 20))
out = norm_kernels.channel_reduce(x, 1, False, np.empty(3))
np.testing.assert_allclose(out, x.sum(axis=(0, 2, 3)), rtol=1e-12)
print("ok")
"""


def test_a_compiler_without_march_native_still_builds_the_kernels(tmp_path):
    """The probe drops -march=native where the compiler rejects it (GCC on POWER): the hand-written
    kernels are then built without it too, instead of failing (which raised out of every max pooling,
    BatchNorm and channel sum)."""
    real = find_host_compiler().path
    wrapper = tmp_path / "cxx-without-march-native"
    wrapper.write_text("#!/bin/sh\n"
                       'for arg in "$@"; do\n'
                       '  if [ "$arg" = "-march=native" ]; then echo "no -march=native" >&2; exit 1; fi\n'
                       "done\n"
                       f'exec "{real}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "CXX": str(wrapper), "GPUHYBRID_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", _WITHOUT_MARCH_NATIVE], env=env, capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
