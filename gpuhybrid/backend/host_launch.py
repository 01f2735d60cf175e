"""Fast calls into generated CPU kernels: a small CPython extension (``kernels/gh_host_launch.c``, on
the NumPy C API) built once per Python and NumPy version through the kernel cache. Where it cannot be
built (no Python headers), ``launcher()`` returns None and callers use ctypes (kernels then run on the
calling thread). Launches go through the kernel thread pool (``host_threads``)."""
from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy

from .compile_cache import entry_key, load_cached
from .host_compiler import find_host_compiler
from .host_threads import run_address
from .kernel_files import kernel_dir


@functools.lru_cache(maxsize=None)
def launcher():
    """The ``gh_host_launch`` module, or None when it cannot be built here."""
    compiler = find_host_compiler()
    include = sysconfig.get_paths().get("include")
    if compiler is None or not include or not (Path(include) / "Python.h").is_file():
        return None
    source = (kernel_dir() / "gh_host_launch.c").read_text()
    numpy_include = numpy.get_include()
    key = entry_key(source, compiler.identity, sys.version, include, numpy.__version__, numpy_include,
                    "host-launch")

    def build(out: Path) -> None:
        result = subprocess.run([compiler.path, "-x", "c", "-O2", "-shared", "-fPIC", f"-I{include}",
                                 f"-I{numpy_include}", "-",
                                 "-o", str(out)], input=source, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise OSError(result.stderr)

    def load(path: Path):
        spec = importlib.util.spec_from_file_location("gh_host_launch", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    try:
        module = load_cached("host", key, importlib.machinery.EXTENSION_SUFFIXES[0], build, load)
    except (OSError, ImportError):
        return None
    module.set_runner(run_address())
    return module
