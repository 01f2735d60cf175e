"""Where the libraries of this process call: the file holding the address that the dynamic loader wrote
into each of their symbol slots (ELF relocations against a named symbol: GOT and PLT entries), read
from this process's memory and mapped through ``/proc/self/maps``. tests/test_mkl_isolation.py uses it
to show that no library but gpuhybrid's own calls into gpuhybrid's MKL, whatever the import order.

x86-64 and AArch64 Linux, ELF64 little-endian; a slot not bound yet (a lazy PLT entry never called)
points into its own library, which is where the check wants it anyway.
"""
from __future__ import annotations

import bisect
import ctypes
import mmap
import os
import struct

import numpy as np

_SHT_RELA, _SHT_DYNSYM, _PT_LOAD = 4, 11, 1
_RELA = np.dtype([("offset", "<u8"), ("info", "<u8"), ("addend", "<i8")])
_SYM = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"), ("value", "<u8"),
                 ("size", "<u8")])


def mapped_files() -> list:
    """(start, end, file offset, path) of every private file mapping of this process (a loaded library's
    are; a file mapped to be read, as ``_slots`` does, is shared)."""
    maps = []
    with open("/proc/self/maps") as lines:
        for line in lines:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith("/") and fields[1].endswith("p"):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                maps.append((start, end, int(fields[2], 16), fields[5].strip()))
    return maps


def owner(address: int, maps: list) -> str | None:
    """The path of the file mapped at ``address``, or None (``maps`` sorted by start, as the kernel
    lists them)."""
    at = bisect.bisect_right(maps, (address, float("inf"))) - 1
    if at >= 0 and maps[at][0] <= address < maps[at][1]:
        return maps[at][3]
    return None


def _sections(data: bytes) -> list:
    shoff, = struct.unpack_from("<Q", data, 0x28)
    entsize, count = struct.unpack_from("<HH", data, 0x3A)
    return [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * entsize) for i in range(count)]


def _load_bias(path: str, data: bytes, maps: list) -> int | None:
    """Where ``path``'s virtual address 0 lies in this process (its first PT_LOAD maps file offset 0)."""
    phoff, = struct.unpack_from("<Q", data, 0x20)
    entsize, count = struct.unpack_from("<HH", data, 0x36)
    loads = [struct.unpack_from("<IIQQ", data, phoff + i * entsize) for i in range(count)]
    first = min((vaddr for kind, _, _, vaddr in loads if kind == _PT_LOAD), default=None)
    real = os.path.realpath(path)
    starts = [start for start, _, offset, mapped in maps if offset == 0 and os.path.realpath(mapped) == real]
    if first is None or not starts:
        return None
    return min(starts) - (first & ~0xFFF)


def _slots(path: str, maps: list) -> tuple:
    """(addresses, name): the address in each slot of ``path`` (a library loaded in this process) whose
    relocation names a symbol, and ``name(i)``, the symbol of slot ``i``."""
    with open(path, "rb") as file:
        data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    empty = (np.zeros(0, np.uint64), None)
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return empty
    bias = _load_bias(path, data, maps)
    if bias is None:
        return empty
    sections = _sections(data)
    addresses, symbols_of = [], []
    for _, kind, _, _, offset, size, link, _, _, _ in sections:
        if kind != _SHT_RELA or not size or sections[link][1] != _SHT_DYNSYM:
            continue
        relocations = np.frombuffer(data, _RELA, size // _RELA.itemsize, offset)
        named = relocations[(relocations["info"] >> np.uint64(32)) != 0]
        addresses += [ctypes.c_uint64.from_address(bias + slot).value for slot in named["offset"].tolist()]
        symbols_of.append((link, named["info"] >> np.uint64(32)))

    def name(i: int) -> str:
        for link, indices in symbols_of:
            if i < len(indices):
                table = sections[link]
                entry = np.frombuffer(data, _SYM, 1, table[4] + int(indices[i]) * _SYM.itemsize)[0]
                at = sections[table[6]][4] + int(entry["name"])
                return bytes(data[at:data.find(b"\0", at)]).decode()
            i -= len(indices)
        raise IndexError(i)
    return np.array(addresses, np.uint64), name


def bound_slots(path: str, names: set, maps: list) -> dict:
    """{symbol: file its slot points into} for the symbols of ``names`` that ``path`` binds."""
    addresses, name = _slots(path, maps)
    found = {}
    for i, address in enumerate(addresses.tolist()):
        symbol = name(i)
        if symbol in names:
            found[symbol] = owner(address, maps)
    return found


def calls_into(targets: set, callers: set | None = None) -> dict:
    """{library: [symbols]} for every library file of this process (those of ``callers`` only, when
    given), other than ``targets`` (real paths), with a slot pointing into one of ``targets``. Libraries
    whose file is gone (gpuhybrid's kernels, loaded from private copies removed once mapped) are not
    read."""
    maps = mapped_files()
    ranges = [(start, end) for start, end, _, path in maps if os.path.realpath(path) in targets]
    libraries = sorted({path for *_, path in maps if ".so" in os.path.basename(path)
                        and os.path.isfile(path) and os.path.realpath(path) not in targets
                        and (callers is None or os.path.realpath(path) in callers)})
    found = {}
    for path in libraries:
        addresses, name = _slots(path, maps)
        inside = np.zeros(len(addresses), bool)
        for start, end in ranges:
            inside |= (addresses >= np.uint64(start)) & (addresses < np.uint64(end))
        if inside.any():
            found[path] = sorted(name(i) for i in np.flatnonzero(inside).tolist())
    return found
