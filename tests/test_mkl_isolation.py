"""gpuhybrid's MKL stays its own (gpuhybrid/backend/gemm.py, ``_private_mkl``; kernels/gh_blas_mkl.c).

MKL's ``libmkl_rt`` puts its layers' symbols in the process's global scope, where a PyTorch imported
after gpuhybrid's first product bound ~4900 of its own MKL's symbols to gpuhybrid's (its ``sgemm_``
among them). Each test runs a fresh process in one import order, multiplies with gpuhybrid, PyTorch,
NumPy, SciPy and JAX (those installed), and then reads, for every library of the process, the address the
dynamic loader wrote into each symbol slot (tests/got_slots.py): none may point into gpuhybrid's MKL.
Timings say nothing here; the slots say who calls whom.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpuhybrid.backend import gemm

HAS_MKL = gemm._mkl_library_path() is not None and sys.platform.startswith("linux")
HAS_TORCH = importlib.util.find_spec("torch") is not None
TESTS = str(Path(__file__).resolve().parent)
pytestmark = pytest.mark.skipif(not HAS_MKL, reason="the mkl package is not installed (x86-64 Linux)")

_PRELUDE = """
import ctypes, importlib.util, os, sys
import numpy as np
import got_slots
from gpuhybrid.backend import gemm

def gpuhybrid_products():
    import gpuhybrid as gh
    rng = np.random.default_rng(5)
    for dtype, (m, k, n) in [("float32", (256, 512, 1024)), ("float32", (97, 300, 61)),
                             ("float64", (130, 257, 70)), ("float32", (1, 512, 256))]:
        a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
        got = gh.nd.dot(gh.nd.array(a, dtype=dtype), gh.nd.array(b, dtype=dtype)).asnumpy()
        assert got.dtype == dtype, got.dtype
        expected = a.astype(np.float64) @ b.astype(np.float64)
        tolerance = (1e-4 if dtype == "float32" else 1e-11) * k ** 0.5 * (1 + np.abs(expected).max())
        assert np.abs(got - expected).max() <= tolerance, (dtype, m, k, n, np.abs(got - expected).max())
    assert gemm.blas().name == "mkl", gemm.blas()

def peer_products(torch):
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((256, 512)), rng.standard_normal((512, 1024))
    np.testing.assert_allclose(a.astype(np.float32) @ b.astype(np.float32), a @ b, atol=1e-2)
    if torch is not None:    # sgemm_ and dgemm_ called, so their lazy slots are bound
        for dtype in (torch.float32, torch.float64):
            got = torch.from_numpy(a).to(dtype) @ torch.from_numpy(b).to(dtype)
            np.testing.assert_allclose(got.double().numpy(), a @ b, atol=1e-2)
    if importlib.util.find_spec("scipy") is not None:
        from scipy.linalg import blas
        np.testing.assert_allclose(blas.dgemm(1.0, a, b), a @ b, atol=1e-9)
    if importlib.util.find_spec("jax") is not None:
        import jax.numpy as jnp
        np.testing.assert_allclose(np.asarray(jnp.asarray(a, jnp.float32) @ jnp.asarray(b, jnp.float32)),
                                   a @ b, atol=5e-2)

def our_mkl_files():
    folder = os.path.realpath(gemm._mkl_library_path().parent)
    files = {os.path.realpath(path) for *_, path in got_slots.mapped_files()}
    return {path for path in files if os.path.basename(path).startswith("libmkl_")
            and os.path.dirname(path) == folder}
"""

_IMPORT_ORDER = _PRELUDE + """
order = sys.argv[1]
torch = None
if order == "gpuhybrid-first":
    gpuhybrid_products()
if importlib.util.find_spec("torch") is not None:
    import torch
    threads_at_import = torch.get_num_threads()
if order == "peers-first":
    peer_products(torch)
    gpuhybrid_products()
peer_products(torch)
ours = our_mkl_files()
assert any("libmkl_core" in path for path in ours), ours
callers = got_slots.calls_into(ours)
assert not callers, {path: symbols[:5] for path, symbols in callers.items()}
everyone = ctypes.CDLL(None)
for name in ("cblas_sgemm", "sgemm_", "mkl_blas_xsgemm", "MKL_Set_Num_Threads", "mkl_serv_malloc"):
    assert not hasattr(everyone, name), name + " is global"
if torch is not None:
    core = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    slots = got_slots.bound_slots(core, {"sgemm_", "dgemm_"}, got_slots.mapped_files())
    print("torch", threads_at_import, torch.get_num_threads(), sorted(map(os.path.basename, slots.values())))
print("ok")
"""


def _run(script: str, *args: str, **env: str) -> str:
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("GPUHYBRID_BLAS", "TORCH_USE_RTLD_GLOBAL")}
    environment.update(env, PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", script, *args], env=environment, capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0 and result.stdout.rstrip().endswith("ok"), (result.stdout,
                                                                               result.stderr[-3000:])
    return result.stdout


def _torch_threads_alone() -> int:
    result = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                            capture_output=True, text=True, timeout=300, check=True)
    return int(result.stdout)


@pytest.mark.parametrize("order", ["gpuhybrid-first", "peers-first"])
def test_no_library_calls_gpuhybrids_mkl(order):
    """Whatever the import order: no slot of PyTorch, NumPy, SciPy or JAX points into gpuhybrid's MKL, none of
    MKL's symbols is global, PyTorch's sgemm_/dgemm_ are its own and it keeps its threads, and
    gpuhybrid's products equal NumPy's in float64."""
    out = _run(_IMPORT_ORDER, order)
    if HAS_TORCH:
        line = next(line for line in out.splitlines() if line.startswith("torch "))
        _, at_import, after, files = line.split(maxsplit=3)
        assert files == "['libtorch_cpu.so', 'libtorch_cpu.so']", line
        assert int(at_import) == int(after) == _torch_threads_alone(), line


_TORCH_GLOBAL = _PRELUDE + """
import torch       # TORCH_USE_RTLD_GLOBAL=1: libtorch_cpu's MKL symbols are global
peer_products(torch)
gpuhybrid_products()
ours = our_mkl_files()
core = os.path.realpath(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
callers = got_slots.calls_into({core}, callers=ours)
assert not callers, {path: symbols[:5] for path, symbols in callers.items()}
print("ok")
"""


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_another_global_mkl_does_not_reach_gpuhybrids():
    """With PyTorch's MKL symbols global (``TORCH_USE_RTLD_GLOBAL=1``, imported first), gpuhybrid's MKL
    still calls only itself: its layers are bound inside their own scope (``RTLD_DEEPBIND``), and its
    per-CPU kernel libraries, which MKL's core would dlopen with the global scope first, are loaded in
    that scope beforehand (they bound ~1600 of PyTorch's symbols otherwise)."""
    _run(_TORCH_GLOBAL, TORCH_USE_RTLD_GLOBAL="1")


_FALLBACK = """
import sys, warnings
from pathlib import Path
from gpuhybrid.backend import gemm
folder = Path(sys.argv[1])
for name in ("rt", "intel_lp64", "sequential", "core"):
    (folder / f"libmkl_{name}.so.3").write_bytes(b"not a library")
gemm._mkl_library_path = lambda: folder / "libmkl_rt.so.3"
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    chosen = gemm.blas()
assert chosen.name == "openblas", chosen
assert any("could not load Intel MKL privately" in str(w.message) for w in caught), caught
print("ok")
"""


def test_an_mkl_that_cannot_be_linked_falls_back_to_openblas(tmp_path):
    """Layer files the linker rejects: one warning that says so, and the private OpenBLAS runs the GEMMs."""
    _run(_FALLBACK, str(tmp_path))


_LAYERS_MISSING = """
import sys, warnings
from pathlib import Path
from gpuhybrid.backend import gemm
folder = Path(sys.argv[1])
(folder / "libmkl_rt.so.3").write_bytes(b"not a library")      # the layers of its version are not there
gemm._mkl_library_path = lambda: folder / "libmkl_rt.so.3"
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    chosen = gemm.blas()
assert chosen.name == "openblas", chosen
found = [str(w.message) for w in caught if "libmkl_intel_lp64.so.3" in str(w.message)]
assert len(found) == 1 and "next BLAS" in found[0], [str(w.message) for w in caught]
print("ok")
"""


def test_an_mkl_without_its_layer_libraries_falls_back_with_a_warning(tmp_path):
    """libmkl_rt without the layer libraries of its version beside it (another layout): one warning naming
    what is missing (it fell back silently), and the private OpenBLAS runs the GEMMs."""
    _run(_LAYERS_MISSING, str(tmp_path))


_BORROWED = _PRELUDE + """
import ctypes
ctypes.CDLL(str(gemm._mkl_library_path()))    # as a NumPy built on MKL would have it
gpuhybrid_products()
chosen = gemm.blas()
assert chosen.set_local_threads and os.path.basename(chosen.library._name).startswith("libmkl_rt"), chosen
print("ok")
"""


def test_an_mkl_already_loaded_is_used_as_it_is():
    """Where the process already holds libmkl_rt, the engine calls that one, held to one thread on its own
    threads only (``MKL_Set_Num_Threads_Local``): a private instance would share its core by name."""
    _run(_BORROWED)


def _sanitizer_runtime() -> str | None:
    """AddressSanitizer's runtime library of the host compiler, or None."""
    from gpuhybrid.backend.host_compiler import find_host_compiler
    compiler = find_host_compiler()
    if compiler is None:
        return None
    found = subprocess.run([compiler.path, "-print-file-name=libasan.so"], capture_output=True, text=True,
                           check=False).stdout.strip()
    return found if os.path.isabs(found) and os.path.isfile(found) else None


_UNDER_SANITIZER = _PRELUDE + """
gpuhybrid_products()
ours = our_mkl_files()
callers = got_slots.calls_into(ours)
assert not callers, {path: symbols[:5] for path, symbols in callers.items()}
print("ok")
"""


@pytest.mark.skipif(_sanitizer_runtime() is None, reason="the host compiler has no AddressSanitizer runtime")
def test_under_a_sanitizer_runtime_mkl_loads_without_deepbind():
    """AddressSanitizer ends a process that dlopens a library with RTLD_DEEPBIND; under its runtime the
    private MKL is loaded with RTLD_LOCAL alone, still out of every other library's reach."""
    _run(_UNDER_SANITIZER, LD_PRELOAD=_sanitizer_runtime(), ASAN_OPTIONS="detect_leaks=0")
