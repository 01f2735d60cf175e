"""Where the kernel prelude lives: ``kernels/`` beside the package in a checkout, or inside the wheel."""
from __future__ import annotations

import functools
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=None)
def kernel_dir() -> Path:
    """The folder holding ``gh_scalar.h`` and ``gh_kernel.h`` (the include path of generated code)."""
    for candidate in (_PACKAGE_DIR / "kernels", _PACKAGE_DIR.parent / "kernels"):
        if (candidate / "gh_scalar.h").is_file():
            return candidate
    raise FileNotFoundError(f"gpuhybrid's kernels/ folder is missing (looked in {_PACKAGE_DIR / 'kernels'} "
                            f"and {_PACKAGE_DIR.parent / 'kernels'}); reinstall gpuhybrid")

