"""The on-disk cache of compiled kernels.

An entry is keyed by a hash of everything that decides the binary: the source text, the kernel
headers it includes, the compiler's identity and version, the flags and the target. Entries are
written to a temporary file and renamed into place (atomic, so concurrent processes compiling the same
kernel are safe), with a SHA-256 sidecar; an entry whose bytes do not match its sidecar is rebuilt.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

from .kernel_files import kernel_dir


def cache_dir() -> Path:
    """``GPUHYBRID_CACHE_DIR``, else ``$XDG_CACHE_HOME/gpuhybrid``, else ``~/.cache/gpuhybrid``."""
    explicit = os.environ.get("GPUHYBRID_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gpuhybrid"


def headers_digest() -> str:
    """A hash of every header in ``kernels/`` (generated sources include them)."""
    digest = hashlib.sha256()
    for path in sorted(kernel_dir().glob("*.h")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def entry_key(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:32]


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cached_build(kind: str, key: str, suffix: str, build: Callable[[Path], None]) -> Path:
    """The path of a verified cache entry, calling ``build(tmp_path)`` to (re)create it when needed."""
    folder = cache_dir() / kind
    folder.mkdir(parents=True, exist_ok=True)
    entry, sidecar = folder / f"{key}{suffix}", folder / f"{key}{suffix}.sha256"
    if entry.is_file() and sidecar.is_file():
        if sidecar.read_text().strip() == _sha256_file(entry):
            return entry
    # Missing, truncated or corrupt: build next to the entry, then rename into place.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{key}.", suffix=suffix, dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        build(tmp)
        checksum = _sha256_file(tmp)
        tmp_sum = tmp.with_name(tmp.name + ".sha256")
        tmp_sum.write_text(checksum + "\n")
        os.replace(tmp, entry)
        os.replace(tmp_sum, sidecar)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".sha256")):
            if leftover.exists():
                leftover.unlink()
    return entry
