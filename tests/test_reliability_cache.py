"""The kernel cache under faults: truncated or swapped libraries with forged checks, unusable folders,
a full disk, temporary files of killed writers, the size cap, and libraries unloaded with their plans.

Scenarios that could crash the interpreter (a truncated library mapped by dlopen dies of SIGBUS) run in
child processes.
"""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from gpuhybrid import nd
from gpuhybrid.backend import compile_cache, loaded_libraries
from gpuhybrid.backend.atomic_files import temp_path
from gpuhybrid.backend.compile_cache import check_text, elf_is_complete
from gpuhybrid.backend.environment import ConfigurationError
from gpuhybrid.backend.host_compiler import compile_host, find_host_compiler
from gpuhybrid.gluon import nn

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="no host C++ compiler")

# A child process: compile one generated kernel, run it on random data, check it against NumPy.
CHILD = textwrap.dedent("""
    import ctypes, sys
    import numpy as np
    from gpuhybrid.backend.host_compiler import compile_host
    from gpuhybrid.codegen import single_op_kernel
    kernel = single_op_kernel("tanh", {}, ["float64"], "float64")
    fn = getattr(compile_host(kernel.text, kernel.name, exports=(kernel.name,)), kernel.name)
    x = np.random.default_rng(int(sys.argv[1])).normal(size=1000) * 3
    y = np.empty_like(x)
    fn(ctypes.c_int(x.size), ctypes.c_void_p(y.ctypes.data), ctypes.c_void_p(x.ctypes.data))
    np.testing.assert_allclose(y, np.tanh(x), rtol=1e-13)
    print("ok")
""")


def _child(cache: Path, seed: int, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GPUHYBRID_CACHE_DIR": str(cache), **(extra_env or {})}
    return subprocess.run([sys.executable, "-c", CHILD, str(seed)], env=env, capture_output=True, text=True,
                          timeout=120)


def _entry(cache: Path) -> Path:
    [entry] = sorted((cache / "host").glob("*.so"))
    return entry


def _forge_checks(entry: Path, data: bytes) -> None:
    """Damage an entry and rewrite its check (and the old plain SHA-256 sidecar) to match the damage."""
    import hashlib
    entry.write_bytes(data)
    Path(f"{entry}.check").write_text(check_text(entry.name[:-3], data))
    Path(f"{entry}.sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7])
def test_truncated_library_with_a_matching_check_is_rebuilt_not_mapped(tmp_path, fraction):
    assert _child(tmp_path, 1).returncode == 0
    entry = _entry(tmp_path)
    good = entry.read_bytes()
    _forge_checks(entry, good[: int(len(good) * fraction)])
    result = _child(tmp_path, 2)
    assert result.returncode == 0 and result.stdout.strip() == "ok", (result.returncode,
                                                                      result.stderr[-2000:])
    assert len(entry.read_bytes()) == len(good) and elf_is_complete(entry.read_bytes())


def test_elf_completeness_check(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUHYBRID_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(compile_cache, "_fallback_root", None)
    assert compile_host("extern \"C\" int seven() { return 7; }", "seven").seven() == 7
    data = _entry(tmp_path).read_bytes()
    assert elf_is_complete(data)
    assert not any(elf_is_complete(data[:cut]) for cut in (0, 10, 63, len(data) // 2, len(data) - 1))
    assert not elf_is_complete(b"\0not a shared object" * 100)


def test_a_valid_library_of_another_kernel_under_the_key_is_rebuilt(tmp_path):
    """A wrong but loadable library whose check was forged: rebuilt, not an AttributeError."""
    assert _child(tmp_path, 3).returncode == 0
    entry = _entry(tmp_path)
    good = entry.read_bytes()
    other = tmp_path / "other"
    subprocess.run([find_host_compiler().path, "-shared", "-fPIC", "-x", "c++", "-", "-o", str(other)],
                   input="extern \"C\" int unrelated() { return 1; }", text=True, check=True)
    _forge_checks(entry, other.read_bytes())
    result = _child(tmp_path, 4)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
    assert len(entry.read_bytes()) == len(good) and elf_is_complete(entry.read_bytes())


def test_cache_path_that_is_a_file_falls_back_with_one_warning(tmp_path):
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("not a folder")
    result = _child(blocker, 5, {"PYTHONWARNINGS": "default"})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
    assert result.stderr.count("cannot be used") == 1 and "GPUHYBRID_CACHE_DIR" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_cache_folder_falls_back(tmp_path):
    (tmp_path / "host").mkdir()
    os.chmod(tmp_path / "host", 0o500)
    try:
        result = _child(tmp_path, 6, {"PYTHONWARNINGS": "default"})
    finally:
        os.chmod(tmp_path / "host", 0o700)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
    assert result.stderr.count("cannot be used") == 1


def test_full_disk_falls_back_and_leaves_no_source(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUHYBRID_CACHE_DIR", str(tmp_path / "full"))
    monkeypatch.setattr(compile_cache, "_fallback_root", None)
    real_usage = compile_cache.shutil.disk_usage

    def usage(path):
        full = str(path).startswith(str(tmp_path / "full"))
        return real_usage(path)._replace(free=0) if full else real_usage(path)
    monkeypatch.setattr(compile_cache.shutil, "disk_usage", usage)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        library = compile_host("extern \"C\" int full_disk_probe() { return 41; }", "full_disk_probe")
        library2 = compile_host("extern \"C\" int full_disk_probe2() { return 42; }", "full_disk_probe2")
    assert library.full_disk_probe() == 41 and library2.full_disk_probe2() == 42
    assert sum("cannot be used" in str(w.message) for w in caught) == 1
    assert not list((tmp_path / "full").rglob("*.cpp"))
    assert not any(p.name.startswith(".") for p in (tmp_path / "full").rglob("*"))


def test_temporary_files_of_killed_writers_are_removed_on_next_start(tmp_path):
    folder = tmp_path / "host"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live_pid = os.getpid()
    stale = [folder / f".{'a' * 32}.tmp-{_host()}-{dead.pid}-0123abcd.so",
             folder / f".{'a' * 32}.tmp-{_host()}-{dead.pid}-0123abcd.cpp"]
    old = folder / f".{'b' * 32}.tmp-otherhost-{live_pid}-0123abcd.so"
    fresh = folder / f".{'c' * 32}.tmp-otherhost-{live_pid}-0123abcd.so"
    legacy = folder / f".{'d' * 32}.k2x9a0qz.so"          # an older version's mkstemp name
    for path in stale + [old, fresh, legacy]:
        path.write_bytes(b"\0" * 4096)
    os.utime(old, (0, 0))                   # a day old: nobody's, whoever wrote it
    os.utime(legacy, (0, 0))
    assert _child(tmp_path, 7).returncode == 0
    hidden = sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
    assert hidden == [fresh.name]           # another host's writer may still be at work


def test_save_removes_the_temporary_files_of_a_killed_save(tmp_path):
    net = nn.Dense(3, in_units=4)
    net.initialize()
    target = tmp_path / "model.params"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".model.params.tmp-{_host()}-{dead.pid}-0123abcd"
    stale.write_bytes(b"\0" * 1000)
    unrelated = tmp_path / ".model.params.notes"
    unrelated.write_text("the user's own file")
    net.save_parameters(str(target))
    assert not stale.exists() and unrelated.exists() and target.exists()


def _host() -> str:
    return temp_path.__globals__["_host_tag"]()


def test_size_cap_evicts_least_recently_used_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUHYBRID_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(compile_cache, "_fallback_root", None)
    names = [f"cap_probe_{k}" for k in range(6)]
    sources = {n: f"extern \"C\" int {n}() {{ return {k}; }}" for k, n in enumerate(names)}
    compile_host(sources[names[0]], names[0])
    entry_size = sum(p.stat().st_size for p in (tmp_path / "host").iterdir())
    monkeypatch.setenv("GPUHYBRID_CACHE_MAX_BYTES", str(int(entry_size * 3.5)))
    for name in names[1:]:
        first = next(p for p in (tmp_path / "host").glob("*.so"))
        os.utime(first, None)
        compile_host(sources[name], name)
        compile_host(sources[names[0]], names[0])     # in use: the LRU keeps it
    total = sum(p.stat().st_size for p in (tmp_path / "host").iterdir())
    assert total <= entry_size * 3.5
    assert len(list((tmp_path / "host").glob("*.so"))) == 3


def test_builds_under_the_cap_do_not_rescan_the_folder(tmp_path, monkeypatch):
    """A scan stats every entry (seconds for a cache of 70,000 kernels): a process scans a folder at its
    first build into it and again only when what it added may pass the cap."""
    monkeypatch.setenv("GPUHYBRID_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(compile_cache, "_fallback_root", None)
    scans = []
    evict = compile_cache._evict
    monkeypatch.setattr(compile_cache, "_evict", lambda *args: scans.append(args) or evict(*args))
    for k in range(3):
        compile_host(f"extern \"C\" int scan_probe_{k}() {{ return {k}; }}", f"scan_probe_{k}")
    assert len(scans) == 1
    entry_size = sum(p.stat().st_size for p in (tmp_path / "host").iterdir()) // 3
    monkeypatch.setenv("GPUHYBRID_CACHE_MAX_BYTES", str(int(entry_size * 3.5)))
    compile_host("extern \"C\" int scan_probe_3() { return 3; }", "scan_probe_3")
    assert len(scans) == 2                              # past the cap: scanned, and the oldest evicted
    assert len(list((tmp_path / "host").glob("*.so"))) == 3


def test_cache_size_variable_is_validated(monkeypatch):
    monkeypatch.setenv("GPUHYBRID_CACHE_MAX_BYTES", "lots")
    with pytest.raises(ConfigurationError, match="GPUHYBRID_CACHE_MAX_BYTES='lots'"):
        compile_cache.max_cache_bytes()
    monkeypatch.setenv("GPUHYBRID_CACHE_MAX_BYTES", "512M")
    assert compile_cache.max_cache_bytes() == 512 << 20


@pytest.mark.filterwarnings("ignore:.*traced")
def test_retracing_unloads_the_libraries_of_evicted_plans():
    net = nn.HybridSequential()
    net.add(nn.Dense(7, activation="tanh", in_units=5, dtype="float64"))
    net.initialize()
    net.hybridize(max_cached_plans=3)
    weight, bias = net[0].weight.data().asnumpy(), net[0].bias.data().asnumpy()
    rng = np.random.default_rng(11)
    unloaded_before = loaded_libraries.unloaded
    live = []
    for batch in range(1, 25):
        x = rng.normal(size=(batch, 5))
        np.testing.assert_allclose(net(nd.array(x, dtype="float64")).asnumpy(), np.tanh(x @ weight.T + bias),
                                   rtol=1e-12, atol=1e-12)
        gc.collect()
        live.append(loaded_libraries.live_libraries())
    assert loaded_libraries.unloaded - unloaded_before >= 18
    assert max(live[5:]) <= live[5] + 2            # bounded by the plan cache, not by the shapes seen
    for batch in (22, 23, 24):                     # the plans still held run their (loaded) kernels
        x = rng.normal(size=(batch, 5))
        np.testing.assert_allclose(net(nd.array(x, dtype="float64")).asnumpy(), np.tanh(x @ weight.T + bias),
                                   rtol=1e-12, atol=1e-12)
