"""The on-disk cache of compiled kernels.

An entry ``<key><suffix>`` is keyed by a hash of everything that decides the binary: the source text,
the kernel headers it includes, the compiler's identity and version, the flags and the target. Beside
it, ``<key><suffix>.check`` holds the entry's size and a SHA-256 of the key and the entry's bytes. A
writer builds into a temporary file (``atomic_files``), flushes it to disk, renames it into place and
only then writes the check, so concurrent processes are safe and an entry that is truncated, garbled or
copied from another key fails its check and is rebuilt. A shared library must also be a complete ELF
file (every segment inside the file) before anyone maps it: dlopen of a truncated library dies of SIGBUS.

Libraries are loaded from a private copy of the bytes that passed the check (``load_cached``): nothing
another process does to the cache afterwards can change what this process maps.

The folder is bounded: ``GPUHYBRID_CACHE_MAX_BYTES`` (default 1 GiB; ``512M``, ``2G`` also read) caps
each kind's folder, and the least recently used entries go first when a new one would exceed it (a
process measures the folder at its first build into it, then counts what it adds: ``_keep_under_cap``). A
folder that cannot be used (read-only, a path that is a file, a full disk) is replaced, with one
warning, by a temporary folder of this process's own, removed when it exits.
"""
from __future__ import annotations

import atexit
import errno
import hashlib
import os
import shutil
import struct
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, TypeVar

from .atomic_files import fsync_file, remove_stale_temps, temp_path
from .environment import env_bytes
from .kernel_files import kernel_dir

DEFAULT_MAX_BYTES = 1 << 30
CHECK_SUFFIX = ".check"
_MIN_FREE_BYTES = 32 << 20       # less free space than this counts as a full disk
_UNUSABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
             errno.EEXIST, errno.ENOENT}
_fallback_root: Path | None = None
_swept: set = set()             # folders whose stale temporary files this process removed
Loaded = TypeVar("Loaded")


class CacheUnusableError(OSError):
    """Neither the kernel cache folder nor a temporary one can hold a compiled kernel."""


def configured_cache_dir() -> Path:
    """``GPUHYBRID_CACHE_DIR``, else ``$XDG_CACHE_HOME/gpuhybrid``, else ``~/.cache/gpuhybrid``."""
    explicit = os.environ.get("GPUHYBRID_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gpuhybrid"


def cache_dir() -> Path:
    """The folder in use: the configured one, or this process's temporary one once that proved unusable."""
    return _fallback_root if _fallback_root is not None else configured_cache_dir()


def max_cache_bytes() -> int:
    return env_bytes("GPUHYBRID_CACHE_MAX_BYTES", DEFAULT_MAX_BYTES)


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


def check_text(key: str, data: bytes) -> str:
    """The check file's text of an entry of ``key`` holding ``data``."""
    digest = hashlib.sha256(key.encode() + b"\0" + data).hexdigest()
    return f"{len(data)} {digest}\n"


def elf_is_complete(data: bytes) -> bool:
    """Whether ``data`` is an ELF file whose headers and every loadable segment lie inside it."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return False
    wide, order = data[4] == 2, "<" if data[5] == 1 else ">"
    if wide:
        phoff, shoff = struct.unpack_from(order + "QQ", data, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", data, 54)
    else:
        phoff, shoff = struct.unpack_from(order + "II", data, 28)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", data, 42)
    if phoff + phentsize * phnum > len(data) or shoff + shentsize * shnum > len(data):
        return False
    for k in range(phnum):
        at = phoff + k * phentsize
        if wide:
            kind, = struct.unpack_from(order + "I", data, at)
            offset, _, _, file_size = struct.unpack_from(order + "QQQQ", data, at + 8)
        else:
            kind, offset, _, _, file_size = struct.unpack_from(order + "IIIII", data, at)
        if kind == 1 and offset + file_size > len(data):      # PT_LOAD beyond the end of the file
            return False
    return True


def _verified(entry: Path, check: Path, key: str) -> bytes | None:
    """The entry's bytes when they pass the check (and, for a library, are a complete ELF file)."""
    try:
        data, expected = entry.read_bytes(), check.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    if expected != check_text(key, data):
        return None
    if entry.suffix == ".so" and not elf_is_complete(data):
        return None
    return data


def _folder(kind: str) -> Path:
    """The kind's folder, made and swept of stale temporary files on first use in this process."""
    folder = cache_dir() / kind
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(folder))
    except OSError as exc:
        _fall_back(folder, exc)
        return _folder(kind)
    if folder not in _swept:
        _swept.add(folder)
        remove_stale_temps(folder)
        _remove_old_hidden_files(folder)
    return folder


def _remove_old_hidden_files(folder: Path) -> None:
    """Hidden files an hour old in a cache folder: temporary files of killed writers from versions
    that did not name them after their process (every writer renames its file within minutes)."""
    cutoff = time.time() - 3600
    try:
        with os.scandir(folder) as scan:
            old = [Path(item.path) for item in scan if item.name.startswith(".") and ".tmp-" not in item.name
                   and item.is_file(follow_symlinks=False) and item.stat().st_mtime < cutoff]
    except OSError:
        return
    for path in old:
        path.unlink(missing_ok=True)


def _fall_back(folder: Path, reason: OSError) -> None:
    """Switch to a temporary cache of this process, with one warning; raise when that fails too."""
    global _fallback_root
    if _fallback_root is not None:
        raise CacheUnusableError(reason.errno, f"gpuhybrid cannot write compiled kernels to {folder} nor to "
                                               f"a temporary folder ({reason}); free some disk space or set "
                                               f"GPUHYBRID_CACHE_DIR to a writable folder") from reason
    _fallback_root = Path(tempfile.mkdtemp(prefix="gpuhybrid-cache-"))
    atexit.register(shutil.rmtree, _fallback_root, True)
    warnings.warn(f"gpuhybrid's kernel cache {folder} cannot be used ({reason}); this process keeps its "
                  f"compiled kernels in {_fallback_root}, removed at exit, and compiles them again next "
                  f"time. Set GPUHYBRID_CACHE_DIR to a writable folder to keep them", stacklevel=4)


def _build_entry(folder: Path, key: str, suffix: str, build: Callable[[Path], None]) -> bytes:
    """Build the entry into a temporary file, flush it, rename it into place, then write its check."""
    entry, check = folder / f"{key}{suffix}", folder / f"{key}{suffix}{CHECK_SUFFIX}"
    if shutil.disk_usage(folder).free < _MIN_FREE_BYTES:
        raise OSError(errno.ENOSPC, "less than 32 MiB free", str(folder))
    tmp = temp_path(folder, key, suffix)
    tmp_check = None
    try:
        build(tmp)
        data = tmp.read_bytes()
        fsync_file(tmp)
        tmp_check = temp_path(folder, key, suffix + CHECK_SUFFIX)
        tmp_check.write_text(check_text(key, data))
        fsync_file(tmp_check)
        os.replace(tmp, entry)
        os.replace(tmp_check, check)
    finally:
        # A build removes its own scratch files (the source next to the output); a killed build's share
        # the temporary name and are swept as stale by the next process (remove_stale_temps). Listing
        # the folder here would cost every build a scan of every entry.
        tmp.unlink(missing_ok=True)
        if tmp_check is not None:
            tmp_check.unlink(missing_ok=True)
    _keep_under_cap(folder, key, len(data) + check.stat().st_size)
    return data


# folder -> bytes it held at this process's last scan plus what this process added since. Scanning a
# folder costs a stat of every entry (1.5 s for 70,000 entries), so it is scanned at this process's first
# build into it and again only when that estimate passes the cap. Entries other processes add meanwhile
# are seen at the next scan: the folder may pass the cap by what they add between two of our scans.
_estimated_bytes: dict = {}


def _keep_under_cap(folder: Path, key: str, added: int) -> None:
    estimate = _estimated_bytes.get(folder)
    if estimate is not None and estimate + added <= max_cache_bytes():
        _estimated_bytes[folder] = estimate + added
        return
    _estimated_bytes[folder] = _evict(folder, key, max_cache_bytes())[1]


def cached_bytes(kind: str, key: str, suffix: str, build: Callable[[Path], None]) -> bytes:
    """The verified bytes of an entry, calling ``build(tmp_path)`` to (re)create it when needed."""
    folder = _folder(kind)
    entry, check = folder / f"{key}{suffix}", folder / f"{key}{suffix}{CHECK_SUFFIX}"
    data = _verified(entry, check, key)
    if data is not None:
        try:
            os.utime(entry)            # recently used: the size cap evicts it last
        except OSError:
            pass
        return data
    try:
        return _build_entry(folder, key, suffix, build)
    except OSError as exc:
        if exc.errno not in _UNUSABLE or isinstance(exc, CacheUnusableError):
            raise
        _fall_back(folder, exc)
        return _build_entry(_folder(kind), key, suffix, build)


def cached_build(kind: str, key: str, suffix: str, build: Callable[[Path], None]) -> Path:
    """The path of a verified entry (built when needed), for tools that hand the file itself to another
    program: the CUDA emulator links its runtime object and loads its test libraries from there."""
    cached_bytes(kind, key, suffix, build)
    return _folder(kind) / f"{key}{suffix}"


def invalidate(kind: str, key: str, suffix: str) -> None:
    """Remove an entry (and its check), so that the next use rebuilds it."""
    folder = cache_dir() / kind
    for path in (folder / f"{key}{suffix}", folder / f"{key}{suffix}{CHECK_SUFFIX}"):
        path.unlink(missing_ok=True)


def load_cached(kind: str, key: str, suffix: str, build: Callable[[Path], None],
                load: Callable[[Path], Loaded]) -> Loaded:
    """``load(path)`` of a private copy of the verified entry, removed once loaded. An entry that
    passes its check but does not load (``OSError``/``ImportError``) is rebuilt once."""
    for attempt in (0, 1):
        copy = _private_copy(kind, key, suffix, cached_bytes(kind, key, suffix, build))
        try:
            return load(copy)
        except (OSError, ImportError):
            if attempt:
                raise
            invalidate(kind, key, suffix)
        finally:
            copy.unlink(missing_ok=True)     # a mapped library stays valid once its file is gone
    raise AssertionError("unreachable")


def _private_copy(kind: str, key: str, suffix: str, data: bytes) -> Path:
    """``data`` in a new file of this process (in the temporary cache when the disk is full)."""
    folder = _folder(kind)
    copy = None
    try:
        copy = temp_path(folder, key, suffix)
        copy.write_bytes(data)
        return copy
    except OSError as exc:
        if copy is not None:
            copy.unlink(missing_ok=True)
        if exc.errno not in _UNUSABLE or isinstance(exc, CacheUnusableError):
            raise
        _fall_back(folder, exc)
        return _private_copy(kind, key, suffix, data)


def enforce_size_cap(folder: Path, keep: str = "", limit: int | None = None) -> int:
    """Remove least recently used entries until the folder holds at most ``limit`` bytes (default
    ``GPUHYBRID_CACHE_MAX_BYTES``), sparing the entry ``keep``; how many bytes were removed."""
    return _evict(folder, keep, max_cache_bytes() if limit is None else limit)[0]


def _evict(folder: Path, keep: str, limit: int) -> tuple:
    """``enforce_size_cap``'s work: (bytes removed, bytes the folder's entries hold afterwards)."""
    groups: dict = {}                # key -> [newest mtime, total bytes, paths]
    total = 0
    with os.scandir(folder) as scan:
        for item in scan:
            if item.name.startswith(".") or not item.is_file(follow_symlinks=False):
                continue
            try:
                stat = item.stat(follow_symlinks=False)
            except OSError:
                continue
            group = groups.setdefault(item.name.split(".", 1)[0], [0.0, 0, []])
            group[0], group[1] = max(group[0], stat.st_mtime), group[1] + stat.st_size
            group[2].append(Path(item.path))
            total += stat.st_size
    removed = 0
    for key, (_, size, paths) in sorted(groups.items(), key=lambda item: item[1][0]):
        if total - removed <= limit:
            break
        if key == keep:
            continue
        for path in paths:
            path.unlink(missing_ok=True)
        removed += size
    return removed, total - removed

