"""``python -m gpuhybrid.emu DIR [--check] [--include HEADERS_DIR]``: run the CUDA branch of every kernel
``GPUHYBRID_DUMP_KERNELS=DIR`` dumped under the emulator, against its CPU branch on random inputs.

One line per kernel (OK, MISMATCH, REPORT, ERROR or SKIPPED, with what went wrong) and a summary; the
exit status is 1 when any kernel mismatches, is reported by the checker or cannot be run.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .batch import DEFAULT_MAX_ELEMENTS, emulate, summary
from .build import EmuBuildError
from .launch_spec import load_dump


def parse_args(argv: list | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gpuhybrid.emu", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path,
                        help="a GPUHYBRID_DUMP_KERNELS folder (<kernel>.cu + <kernel>.json)")
    parser.add_argument("--check", action="store_true",
                        help="instrument every access: racecheck, initcheck, memcheck, misaligned accesses "
                             "(synccheck and the comparison always run)")
    parser.add_argument("--include", type=Path, metavar="HEADERS_DIR",
                        help="compile against this copy of the kernel headers (gh_kernel.h, gh_row.h, ...) "
                             "instead of gpuhybrid's")
    parser.add_argument("--max-elements", type=int, default=DEFAULT_MAX_ELEMENTS,
                        help=f"run each kernel over at most this many elements, whole rows (default "
                             f"{DEFAULT_MAX_ELEMENTS})")
    parser.add_argument("--only", metavar="GLOB", help="only kernels whose file name matches GLOB")
    return parser.parse_args(argv)


def main(argv: list | None = None) -> int:
    args = parse_args(argv)
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder (set GPUHYBRID_DUMP_KERNELS=DIR to dump kernels there)",
              file=sys.stderr)
        return 2
    if args.include is not None and not (args.include / "gh_kernel.h").is_file():
        print(f"error: --include {args.include} holds no gh_kernel.h", file=sys.stderr)
        return 2
    found = [(path, spec) for path, spec in load_dump(args.folder) if not args.only or path.match(args.only)]
    if not found:
        print(f"error: no <kernel>.cu in {args.folder}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        outcomes = emulate([spec for _, spec in found], check=args.check, headers=args.include,
                           max_elements=args.max_elements, progress=lambda o: print(o.line(), flush=True))
    except EmuBuildError as error:        # the emulator itself (its runtime) did not compile
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary(outcomes, time.perf_counter() - start) + (" (check mode)" if args.check else ""))
    return 1 if any(o.failed for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
