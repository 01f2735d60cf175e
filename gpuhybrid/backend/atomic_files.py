"""Files written through a temporary file and a rename, and the temporary files of writers that died.

A writer's temporary file is hidden and named after what it will become, its host and its process:
``.<name>.tmp-<host>-<pid>-<random><suffix>``. A process killed mid-write (kill -9, power loss) leaves
it behind; the next writer into the same folder removes those whose process is gone (same host) or
that are older than a day (another host sharing the folder, or a recycled process id).
"""
from __future__ import annotations

import os
import re
import secrets
import socket
import time
from pathlib import Path

STALE_AFTER_S = 24 * 3600          # a temporary file this old belongs to nobody, whoever wrote it
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.tmp-(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-[0-9a-f]+")


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24]


def temp_path(folder: Path, target: str, suffix: str = "") -> Path:
    """A new, empty, private temporary file in ``folder`` for the file named ``target``."""
    while True:
        path = folder / f".{target}.tmp-{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return path
        except FileExistsError:
            continue


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:        # alive, owned by someone else
        return True
    return True


def is_stale_temp(path: Path, now: float | None = None) -> bool:
    """Whether ``path`` is the temporary file of a writer that is gone."""
    match = _TEMP_NAME.match(path.name)
    if match is None:
        return False
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except OSError:
        return False
    if age > STALE_AFTER_S:
        return True
    return match["host"] == _host_tag() and not _process_alive(int(match["pid"]))


def remove_stale_temps(folder: Path, target: str | None = None) -> int:
    """Remove the stale temporary files in ``folder`` (of ``target`` only, when given); how many."""
    removed, now = 0, time.time()
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    prefix = "." if target is None else f".{target}.tmp-"
    for name in names:
        if name.startswith(prefix) and ".tmp-" in name:
            path = folder / name
            match = _TEMP_NAME.match(name)
            if match and (target is None or match["target"] == target) and is_stale_temp(path, now):
                try:
                    path.unlink()
                    removed += 1
                except OSError:
                    pass
    return removed


def fsync_file(path: Path) -> None:
    """Flush ``path``'s bytes to the disk (before a rename makes it visible under its final name)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never a half-written file,
    and no temporary file left behind by this or by an earlier writer that was killed."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    remove_stale_temps(folder, path.name)
    tmp = temp_path(folder, path.name)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
