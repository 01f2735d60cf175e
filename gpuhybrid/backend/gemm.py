"""Matrix products on the CPU: blocks of the output over gpuhybrid's thread pool, each block one
single-threaded BLAS call (``kernels/gh_gemm.c``).

Why: a threaded BLAS gives each of its threads one share of a GEMM and waits for all of them, so when
another process keeps one core busy every GEMM waits for the thread on that core (OpenBLAS here: the MLP
forward 7x slower). Here the caller and the pool's workers (``host_threads``) claim blocks of rows (or of
columns, whichever repeats less packing of the other operand) one at a time, so a worker kept off its
core delays only its own block, and the pool's backoff runs the next products on the caller alone.

Which BLAS runs the blocks is decided in one place, ``blas()``:

- ``mkl``: Intel MKL's sequential layer, when the ``mkl`` package is installed (``pip install
  gpuhybrid[mkl]``; about 700 MB): one thread of it ran (64x512)@(256x512)^T in 124 µs here, one of
  OpenBLAS in 175 µs. Loaded privately (``_private_mkl``, ``kernels/gh_blas_mkl.c``): no other library
  of the process (PyTorch's own MKL, NumPy's BLAS) ever calls it, whatever the import order;
- ``openblas``: a private, single-threaded instance of the OpenBLAS that NumPy loaded (a copy of its
  file, loaded apart), so the user's own ``numpy.dot`` keeps its threads;
- ``numpy``: ``numpy.matmul`` itself (NumPy's BLAS and its threads).

``GPUHYBRID_BLAS=mkl|openblas|numpy`` forces one (an unavailable one is an error); otherwise the first
available in that order. Products the engine does not take go to ``numpy.matmul``: dtypes other than
float32/float64, 1-D operands, layouts that leading dimensions cannot express, and products so small
that a call through ctypes costs more than NumPy's.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import os
import struct
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GhError
from .host_compiler import HostCompileError, find_host_compiler, thread_runtime
from .compile_cache import entry_key, load_cached
from . import host_threads
from .kernel_files import kernel_dir

CHOICES = ("mkl", "openblas", "numpy")
# Products of fewer multiply-adds than this go to numpy.matmul: a ctypes call costs more than they do.
NUMPY_BELOW = 8192
# Products of fewer multiply-adds than this run as one BLAS call on the calling thread (no split).
SPLIT_MIN = 1 << 18
CHUNKS_PER_THREAD = 2      # a few blocks per thread: a late worker leaves its second share to the caller
BLOCK_ALIGN = 16           # rows/columns per block, a multiple of the BLAS kernels' register tiles

_FLAG_DOUBLE, _FLAG_ILP64, _FLAG_TRANS_A, _FLAG_TRANS_B, _FLAG_SPLIT_COLUMNS = 1, 2, 4, 8, 16
_MKL_CBWR_AUTO = 2         # MKL's conditional numerical reproducibility: one code path per CPU


@dataclass(frozen=True)
class Blas:
    """The BLAS that the engine calls: its name, its cblas_sgemm/cblas_dgemm addresses (0 for numpy),
    whether they take 64-bit integers, and the function holding it to one thread on a thread (or 0)."""
    name: str
    sgemm: int = 0
    dgemm: int = 0
    ilp64: bool = False
    set_local_threads: int = 0
    library: object = None     # keeps the loaded library alive


# gh_gemm_job in kernels/gh_gemm.c: BLAS function, thread setter, flags, m, n, k, lda, ldb, ldc, batch,
# the three batch strides, block, alpha, beta.
_JOB = struct.Struct("@PP12q2d")
_FLOAT32, _FLOAT64 = np.dtype(np.float32), np.dtype(np.float64)


def _address(library, names) -> int:
    for name in names:
        if hasattr(library, name):
            return ctypes.cast(getattr(library, name), ctypes.c_void_p).value
    return 0


def _mkl_library_path() -> Path | None:
    """``libmkl_rt.so.*`` of the installed ``mkl`` package (its layer libraries lie beside it), or None."""
    try:
        files = importlib.metadata.distribution("mkl").files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name.startswith("libmkl_rt.so"):
            path = Path(file.locate()).resolve()
            if path.is_file():
                return path
    return None


def _load_mkl() -> Blas | None:
    path = _mkl_library_path()
    if path is None or not sys.platform.startswith("linux"):
        return None
    return _mkl_of(path)


@functools.lru_cache(maxsize=None)
def _mkl_of(runtime: Path) -> Blas | None:
    """The engine's MKL, once per process: the one some other library already loaded (held to one
    thread on our threads only), else gpuhybrid's private instance (``_private_mkl``)."""
    loaded = _loaded_mkl(runtime)
    if loaded is None:
        return _private_mkl(runtime)
    sgemm, dgemm = _address(loaded, ("cblas_sgemm",)), _address(loaded, ("cblas_dgemm",))
    if not sgemm or not dgemm:
        return None             # only MKL's core, through an interface we do not call: leave it alone
    return Blas("mkl", sgemm, dgemm, False, _address(loaded, ("MKL_Set_Num_Threads_Local",)), loaded)


def _loaded_mkl(runtime: Path):
    """A handle on an MKL that this process already holds (a NumPy built on MKL), or None.

    Checked by name too, not only by file: the dynamic loader gives a library that needs
    ``libmkl_core.so.3`` whichever object of that name is loaded, so a private instance next to another
    installation's MKL of the same version would share its core and threading layer."""
    version = runtime.name[len("libmkl_rt"):]             # ".so.3"
    for name in (str(runtime), runtime.name, f"libmkl_intel_lp64{version}", f"libmkl_core{version}"):
        try:
            return ctypes.CDLL(name, mode=os.RTLD_NOLOAD)
        except OSError:
            continue
    return None


def _private_mkl(runtime: Path) -> Blas | None:
    """MKL's sequential layer in a scope of gpuhybrid's own: ``kernels/gh_blas_mkl.c``, linked against
    the layer libraries beside ``libmkl_rt`` and loaded with ``RTLD_LOCAL | RTLD_DEEPBIND``.

    Not ``libmkl_rt`` itself: it dlopens its layers with ``RTLD_GLOBAL``, after which a PyTorch imported
    later binds its own MKL's symbols to ours (the kernel file says more). Here nothing of MKL enters the
    global scope, and MKL's calls between its own libraries stay inside it whatever is global."""
    compiler = find_host_compiler()
    version = runtime.name[len("libmkl_rt"):]
    layers = [runtime.parent / f"libmkl_{layer}{version}" for layer in ("intel_lp64", "sequential", "core")]
    if compiler is None:
        return None
    missing = [layer.name for layer in layers if not layer.is_file()]
    if missing:
        warnings.warn(f"gpuhybrid found Intel MKL's {runtime} but not {', '.join(missing)} beside it (an "
                      f"installation of another layout); its CPU matrix products use the next BLAS "
                      f"(GPUHYBRID_BLAS in docs/threads.md)", RuntimeWarning, stacklevel=2)
        return None
    source = (kernel_dir() / "gh_blas_mkl.c").read_text()
    key = entry_key(source, compiler.identity, *map(str, layers), "gh-blas-mkl")

    def build(out: Path) -> None:
        import subprocess
        # -x none: the libraries after the source are inputs to link, not C; --no-as-needed: keep the
        # layers that the wrapper does not call itself (intel_lp64 needs them).
        command = [compiler.path, "-x", "c", "-std=c11", "-O2", "-shared", "-fPIC", "-fvisibility=hidden",
                   "-", "-o", str(out), "-x", "none", "-Wl,-Bsymbolic", "-Wl,--no-as-needed",
                   *map(str, layers), "-Xlinker", "-rpath", "-Xlinker", str(runtime.parent)]
        result = subprocess.run(command, input=source, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise OSError(f"{compiler.path} could not build kernels/gh_blas_mkl.c against "
                          f"{runtime.parent}:\n{result.stderr.strip()}")

    private = _private_mode()
    try:
        library = load_cached("gemm", key, ".so", build, lambda path: ctypes.CDLL(str(path), mode=private))
    except OSError as exc:
        warnings.warn(f"gpuhybrid could not load Intel MKL privately ({exc}); its CPU matrix products use "
                      "the next BLAS (GPUHYBRID_BLAS in docs/threads.md)", RuntimeWarning, stacklevel=2)
        return None
    _preload_cpu_kernels(runtime, private)
    library.gh_blas_mkl_sgemm.restype = library.gh_blas_mkl_dgemm.restype = ctypes.c_void_p
    library.gh_blas_mkl_set_cbwr.argtypes = [ctypes.c_int]
    if not os.environ.get("MKL_CBWR"):
        # One code path whatever MKL's run-time dispatch would pick: without it a block's rounding
        # changed with the process's history, and a hybridized training curve with it
        # (tests/test_gluon_conv.py's LeNet, after other tests in the same process). MKL's STRICT mode
        # (alignment-independent too) made the batch-1 MLP forward 2.7x slower (48 against 18 µs).
        library.gh_blas_mkl_set_cbwr(_MKL_CBWR_AUTO)
    return Blas("mkl", library.gh_blas_mkl_sgemm(), library.gh_blas_mkl_dgemm(), False, 0, library)


def _private_mode() -> int:
    """``RTLD_LOCAL | RTLD_DEEPBIND``, or ``RTLD_LOCAL`` alone under a sanitizer's runtime (AddressSanitizer
    ends a process that dlopens a library with ``RTLD_DEEPBIND``): MKL then stays invisible to the
    others but could bind to another MKL that is global."""
    everyone = ctypes.CDLL(None)
    if any(hasattr(everyone, name) for name in ("__asan_init", "__tsan_init", "__msan_init", "__lsan_init")):
        return os.RTLD_LOCAL
    return os.RTLD_LOCAL | getattr(os, "RTLD_DEEPBIND", 0)


# MKL's per-CPU kernel libraries (MKL's core dlopens the one for this CPU at its first call) and the
# /proc/cpuinfo flag each one needs; "" for those any x86-64 CPU runs.
_MKL_CPU_KERNELS = {"def": "", "mc3": "sse4_2", "avx2": "avx2", "avx512": "avx512f", "avx10": "avx10",
                    "vml_def": "", "vml_mc3": "sse4_2", "vml_avx2": "avx2", "vml_avx512": "avx512f",
                    "vml_avx10": "avx10", "vml_cmpt": ""}


def _preload_cpu_kernels(runtime: Path, mode: int) -> None:
    """Load this CPU's MKL kernel libraries now, in our scope, bound at once.

    MKL's core loads them itself at its first call, with the global scope searched first: where another
    MKL's symbols are global (PyTorch imported with ``TORCH_USE_RTLD_GLOBAL=1``), they bound about 1600
    of theirs to it. Loaded here first, the core's later dlopen finds them as they are."""
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return
    version = runtime.name[len("libmkl_rt"):]
    for name, needs in _MKL_CPU_KERNELS.items():
        path = runtime.parent / f"libmkl_{name}{version}"
        if (not needs or any(flag.startswith(needs) for flag in flags)) and path.is_file():
            try:
                ctypes.CDLL(str(path), mode=mode)
            except OSError:
                continue        # MKL's core then loads it itself, as it would have anyway


def _load_openblas() -> Blas | None:
    """A private, single-threaded instance of the OpenBLAS NumPy loaded.

    OpenBLAS's thread count is one number per library instance (its ``openblas_set_num_threads_local``
    sets that same global count here: measured), so holding NumPy's OpenBLAS to one thread would change
    what the user's own ``numpy.dot`` does. A copy of its file, loaded privately (``RTLD_LOCAL``) with
    ``OPENBLAS_NUM_THREADS=1`` while it initialises, is a second instance whose one thread changes
    nothing of NumPy's; the copy is removed once loaded (a mapped library stays valid)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.rsplit("/", 1)[-1]})
    for path in paths:
        library = _private_copy(path)
        if library is None:
            continue
        for prefix, suffix, ilp64 in (("scipy_", "64_", True), ("", "64_", True), ("scipy_", "", False),
                                      ("", "", False)):
            sgemm = _address(library, (f"{prefix}cblas_sgemm{suffix}",))
            dgemm = _address(library, (f"{prefix}cblas_dgemm{suffix}",))
            if sgemm and dgemm:
                return Blas("openblas", sgemm, dgemm, ilp64, 0, library)
    return None


def _private_copy(path: str):
    """``path``'s library loaded as a new single-threaded instance (see ``_load_openblas``), or None."""
    import shutil
    import tempfile
    names = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    handle, copy = tempfile.mkstemp(prefix="gpuhybrid-openblas-", suffix=".so")
    os.close(handle)
    try:
        shutil.copyfile(path, copy)
        os.environ.update({name: "1" for name in names})     # read by its constructor, once
        library = ctypes.CDLL(copy)
    except OSError:
        return None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        os.unlink(copy)
    for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                 "openblas_set_num_threads64_", "openblas_set_num_threads"):
        if hasattr(library, name):
            getattr(library, name).argtypes = [ctypes.c_int]
            getattr(library, name)(1)
            break
    return library


@functools.lru_cache(maxsize=None)
def blas() -> Blas:
    """The BLAS the engine uses (``GPUHYBRID_BLAS`` or the first available of mkl, openblas, numpy)."""
    forced = os.environ.get("GPUHYBRID_BLAS", "").strip().lower()
    if forced and forced not in CHOICES:
        raise GhError(f"GPUHYBRID_BLAS={forced!r} is not one of {', '.join(CHOICES)}; unset it to let "
                      "gpuhybrid choose")
    if forced == "numpy" or (not forced and engine() is None):
        return Blas("numpy")
    loaders = {"mkl": _load_mkl, "openblas": _load_openblas}
    for name in ([forced] if forced else ["mkl", "openblas"]):
        found = loaders[name]()
        if found is not None:
            if engine() is None:
                raise GhError(f"GPUHYBRID_BLAS={forced}: the GEMM engine could not be built (no host C "
                              "compiler); set GPUHYBRID_BLAS=numpy")
            return found
        if forced:
            how = ("pip install 'gpuhybrid[mkl]' (x86-64 Linux)" if name == "mkl" else
                   "use a NumPy built on OpenBLAS (NumPy's own wheels are)")
            raise GhError(f"GPUHYBRID_BLAS={name} but no usable {name} is loaded in this process: {how}, "
                          "or unset GPUHYBRID_BLAS")
    return Blas("numpy")


@functools.lru_cache(maxsize=None)
def engine():
    """The loaded ``kernels/gh_gemm.c`` library, or None without a host compiler."""
    compiler = find_host_compiler()
    if compiler is None:
        return None
    try:
        host_threads.runtime()      # the pool, loaded (RTLD_GLOBAL) first: gh_gemm calls its gh_part
    except (HostCompileError, OSError):
        return None
    source = (kernel_dir() / "gh_gemm.c").read_text()
    key = entry_key(source, compiler.identity, "gh-gemm")

    def build(out: Path) -> None:
        import subprocess
        command = [compiler.path, "-x", "c", "-std=c11", "-O2", "-shared", "-fPIC", "-", "-o", str(out)]
        result = subprocess.run(command, input=source, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise OSError(f"{compiler.path} could not compile kernels/gh_gemm.c:\n{result.stderr.strip()}")

    library = load_cached("gemm", key, ".so", build, lambda path: ctypes.CDLL(str(path)))
    library.gh_gemm_job_size.restype = ctypes.c_size_t
    if library.gh_gemm_job_size() != _JOB.size:
        raise AssertionError("gpuhybrid.backend.gemm._JOB does not match gh_gemm_job in kernels/gh_gemm.c")
    return library


def _stored(array, batch: int, rows: int, cols: int):
    """(C-contiguous array holding ``array``'s matrices, transposed?, leading dimension, batch stride in
    elements), or None when its matrices are not laid out as BLAS reads them (NumPy then runs it). The
    ``matmul`` call makes the transposed view itself, this one only decides."""
    if array.flags.c_contiguous:
        stored, transposed = array, False
    else:
        stored, transposed = array.swapaxes(-1, -2), True
        if not stored.flags.c_contiguous:
            return None
    count = array.size // (rows * cols) if rows * cols else 0
    if count == batch:
        stride = rows * cols
    elif count == 1:
        stride = 0                      # one matrix for every product of the batch
    else:
        return None                     # broadcast over some batch axes only
    return stored, transposed, stored.shape[-1], stride


@dataclass(frozen=True)
class _Prepared:
    """How the engine runs products of one signature: the operands' transposes, units, output and job."""
    transpose_a: bool
    transpose_b: bool
    units: int
    shape: tuple
    allocate: tuple             # the launcher's (shape, dtype) spec of a fresh output
    scalars: bytes


_prepared: dict = {}            # signature -> _Prepared, or None where NumPy runs it
_PREPARED_MOST = 512


def matmul(a, b, out=None, *, alpha: float = 1.0, beta: float = 0.0):
    """``alpha * numpy.matmul(a, b) + beta * out`` (``beta`` only with ``out``) for NumPy arrays, through
    the engine where it applies, else through NumPy.

    What a signature (shapes, strides, dtypes, alpha, beta, threads) needs is worked out once; a later
    call with the same signature costs a dictionary look-up and the launch."""
    key = (a.shape, a.strides, a.dtype, b.shape, b.strides, b.dtype, out is None, alpha, beta,
           host_threads.threads_now)
    try:
        prepared = _prepared[key]
    except KeyError:
        if len(_prepared) >= _PREPARED_MOST:
            _prepared.clear()
        prepared = _prepared[key] = _prepare(a, b, out is not None, alpha, beta)
    except (TypeError, AttributeError):     # not NumPy arrays: NumPy says what is wrong
        prepared = None
    if prepared is None:
        return _numpy_matmul(a, b, out, alpha, beta)
    if out is None:
        outputs = prepared.allocate
    elif (out.dtype == a.dtype and out.shape == prepared.shape and out.flags.carray
          and not _overlaps(out, a, b)):
        outputs = [out]
    else:
        return _numpy_matmul(a, b, out, alpha, beta)
    return _launch()(_entry(), prepared.units, outputs,
                     [a.swapaxes(-1, -2) if prepared.transpose_a else a,
                      b.swapaxes(-1, -2) if prepared.transpose_b else b], prepared.scalars)


def plan_product():
    """``x @ w.T`` for one GEMM step of a compiled plan (``runner``): its operands' shapes and dtypes are
    the plan's signature, so what the first call works out (``_prepare``) holds for every later one,
    which is then only the launch. A later operand laid out otherwise is still right: the launcher
    copies an input that is not C-contiguous into one, which holds the same matrix."""
    prepared = None
    launch = entry = None
    first = True

    def product(x, w, out=None):
        nonlocal prepared, launch, entry, first
        if first:
            prepared = _prepare(x, w.T, out is not None, 1.0, 0.0)
            if prepared is not None:
                launch, entry = _launch(), _entry()
            first = False
        if prepared is None:
            return np.matmul(x, w.T) if out is None else np.matmul(x, w.T, out=out)
        return launch(entry, prepared.units, prepared.allocate if out is None else [out],
                      [x.swapaxes(-1, -2) if prepared.transpose_a else x, w if prepared.transpose_b else w.T],
                      prepared.scalars)
    return product


def _prepare(a, b, has_out: bool, alpha: float, beta: float) -> _Prepared | None:
    """The engine's plan for products of ``a``'s and ``b``'s signature, or None where NumPy runs them."""
    chosen = blas()
    dtype = a.dtype
    if (chosen.name == "numpy" or a.ndim < 2 or b.ndim < 2 or dtype != b.dtype
            or not (dtype == _FLOAT32 or dtype == _FLOAT64)):
        return None
    m, k = a.shape[-2:]
    n = b.shape[-1]
    if b.shape[-2] != k:
        return None                     # NumPy raises its own error
    try:
        batch_shape = () if a.ndim == b.ndim == 2 else np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        return None
    batch = 1
    for size in batch_shape:
        batch *= size
    work = batch * m * n * k
    if work == 0 or work < NUMPY_BELOW:     # an empty product: BLAS refuses leading dimensions of 0
        return None
    layout_a, layout_b = _stored(a, batch, m, k), _stored(b, batch, k, n)
    if layout_a is None or layout_b is None:
        return None
    flags = (_FLAG_DOUBLE if dtype == _FLOAT64 else 0) | (_FLAG_ILP64 if chosen.ilp64 else 0)
    flags |= (_FLAG_TRANS_A if layout_a[1] else 0) | (_FLAG_TRANS_B if layout_b[1] else 0)
    threads = host_threads.threads_now
    units, block = batch, max(m, 1)     # one unit per product of the batch, each one BLAS call
    wanted = threads * CHUNKS_PER_THREAD
    if threads > 1 and work >= SPLIT_MIN and batch < wanted:
        # Split the axis whose blocks repeat the packing of the smaller other operand.
        extent = n if n > m else m
        split = -(-extent // -(-wanted // batch))
        split = -(-split // BLOCK_ALIGN) * BLOCK_ALIGN
        if split < extent:              # else one block per product after all: whole products, by rows
            flags |= _FLAG_SPLIT_COLUMNS if n > m else 0
            block, units = split, batch * -(-extent // split)
    scalars = _JOB.pack(chosen.dgemm if flags & _FLAG_DOUBLE else chosen.sgemm, chosen.set_local_threads,
                        flags, m, n, k, layout_a[2], layout_b[2], n, batch, layout_a[3], layout_b[3], m * n,
                        block, alpha, beta if has_out else 0.0)
    shape = batch_shape + (m, n)
    return _Prepared(layout_a[1], layout_b[1], units, shape, ((shape, dtype),), scalars)


def _overlaps(out, a, b) -> bool:
    return np.may_share_memory(out, a) or np.may_share_memory(out, b)


@functools.lru_cache(maxsize=None)
def _entry() -> int:
    return ctypes.cast(engine().gh_gemm_packed, ctypes.c_void_p).value


@functools.lru_cache(maxsize=None)
def _launch():
    """``launch(entry, units, outputs, inputs, scalars)``: the launcher extension's, or the same through
    ctypes where the extension cannot be built (no Python headers)."""
    from .host_launch import launcher
    extension = launcher()
    return extension.launch if extension is not None else _launch_with_ctypes


def _launch_with_ctypes(entry: int, units: int, outputs, inputs: list, scalars: bytes):
    """The launcher extension's ``launch`` for one output, through ctypes (inputs made C-contiguous)."""
    out = outputs[0] if isinstance(outputs, list) else np.empty(*outputs[0])
    arrays = [out] + [np.ascontiguousarray(x) for x in inputs]
    pointers = (ctypes.c_void_p * len(arrays))(*(x.ctypes.data for x in arrays))
    thread_runtime().gh_parallel_run(entry, units, pointers, scalars, max(x.size for x in arrays))
    return out


def _numpy_matmul(a, b, out, alpha, beta):
    if alpha == 1.0 and beta == 0.0:
        return np.matmul(a, b, out=out) if out is not None else np.matmul(a, b)
    product = np.matmul(a, b)
    if alpha != 1.0:
        product *= alpha
    if out is None:
        return product
    if beta == 0.0:
        out[...] = product
    else:
        out *= beta
        out += product
    return out


def gemm(a, b, *, trans_a: bool = False, trans_b: bool = False, out=None, alpha: float = 1.0,
         beta: float = 0.0):
    """``alpha * op(a) @ op(b) + beta * out`` for 2-D arrays (``op``: transpose when asked)."""
    if a.ndim != 2 or b.ndim != 2:
        raise GhError(f"gemm takes 2-D operands, got shapes {a.shape} and {b.shape}; use matmul for stacks")
    return matmul(a.T if trans_a else a, b.T if trans_b else b, out, alpha=alpha, beta=beta)


def matmul_of(xp):
    """The matrix product for arrays of the module ``xp``: the engine's for NumPy, ``xp.matmul`` else."""
    return matmul if xp is np else xp.matmul
