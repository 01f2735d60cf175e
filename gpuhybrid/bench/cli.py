"""``gpuhybrid-bench`` (also ``python -m gpuhybrid.bench``): the command line."""
from __future__ import annotations

import argparse
import datetime
import importlib
import os
import re
import sys
from pathlib import Path

import gpuhybrid as gh

from . import import_effect, report, standalone
from .conv_training import resnet18_train_case
from .modes import MODES
from .peers import PEERS
from .suite import Settings, run_case
from .timing import copy_bandwidth
from .conv_workloads import lenet_case, resnet18_case
from .workloads import (EAGER_SINGLE_OPS, chain_case, eager_case, eager_op_case, layernorm_case, mlp_case,
                        softmax_case, train_case)

WORKLOADS = ("mlp", "chain", "softmax", "layernorm", "train", "eager", "lenet", "resnet18",
             "resnet18-train")
DESCRIPTION = """\
Time gpuhybrid imperatively and hybridized (and hybridized with static_alloc/static_shape) on the
lecture's MLP, elementwise chains, softmax, layer norm, an MLP training step and the per-op cost of eager
dispatch (eight ops on 16 values); with --peers, the same
workloads through NumPy, PyTorch (eager, torch.compile), JAX (jit) and on a GPU CuPy (eager, fuse).
Every runner's result is checked against a float64 NumPy reference before it is timed."""
EPILOG = """\
examples:
  gpuhybrid-bench mlp                                the lecture's MLP at batch 1
  gpuhybrid-bench mlp --batch-size 1,64,1024 --peers the MLP at three batch sizes, with every peer
  gpuhybrid-bench chain --chain-length 1,4,16 --plot chain.png
  gpuhybrid-bench eager --peers numpy,torch          per-op cost of imperative calls on 16 values
  gpuhybrid-bench eager --eager-ops relu,dot --modes imperative --peers torch   two ops against PyTorch
  gpuhybrid-bench all --peers --results-dir bench/results   writes <device>-<date>.json and .png
  gpuhybrid-bench softmax --peers torch,jax.jit --standalone-check
                                                     each row against its runner alone in a fresh
                                                     process, timed alternately: in this run / alone
  gpuhybrid-bench train mlp eager --batch-size 1,64,256 --modes hybridized --peer-import-ratio
                                                     gpuhybrid alone against gpuhybrid with PyTorch and
                                                     JAX imported, fresh processes, ratios
The JSON format is documented in docs/bench.md (schema: docs/bench-schema.json)."""


def size(text: str) -> int:
    """A positive integer: 4096, 2^22 or 2**22."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:(?:\^|\*\*)\s*(\d+))?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 4096 or 2^22)")
    value = int(match.group(1)) ** int(match.group(2)) if match.group(2) else int(match.group(1))
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def sizes(text: str) -> list:
    """A comma-separated list of sizes: 1,16,256."""
    return [size(part) for part in text.split(",") if part.strip()]


def names(allowed: tuple, what: str):
    def parse(text: str) -> list:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        if chosen == ["all"]:
            return list(allowed)
        unknown = [c for c in chosen if c not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown)}; "
                                             f"choose from {', '.join(allowed)}")
        return chosen
    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpuhybrid-bench", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workloads", nargs="*", default=["mlp"], metavar="WORKLOAD",
                   help=f"any of {', '.join(WORKLOADS)}, or all (default: mlp)")
    p.add_argument("--device", default="auto",
                   help="auto (GPU when CuPy sees one), cpu, gpu or gpu:N (default auto)")
    p.add_argument("--modes", type=names(MODES, "mode"), default=list(MODES),
                   help=f"comma-separated, from {', '.join(MODES)} (default: all three)")
    p.add_argument("--peers", nargs="?", const=list(PEERS), default=[], type=names(PEERS, "peer"),
                   help=f"also run peers: all when given alone, or a comma-separated list of "
                        f"{', '.join(PEERS)} (name the workloads before a bare --peers)")
    g = p.add_argument_group("sizes (comma-separated lists make a sweep)")
    g.add_argument("--batch-size", type=sizes, default=None,
                   help="mlp, train, lenet and resnet18 batch sizes (default 1 for mlp and lenet, 64 for "
                        "train, 16 for resnet18 and resnet18-train)")
    g.add_argument("--chain-length", type=sizes, default=[8], help="elementwise ops in the chain (default 8)")
    g.add_argument("--elements", type=size, default=1 << 22,
                   help="elements the chain runs over (default 2^22)")
    g.add_argument("--rows", type=size, default=4096, help="softmax/layernorm rows (default 4096)")
    g.add_argument("--cols", type=size, default=1024, help="softmax/layernorm columns (default 1024)")
    g.add_argument("--eager-ops", type=names(tuple(EAGER_SINGLE_OPS), "eager op"),
                   default=list(EAGER_SINGLE_OPS),
                   help=f"eager: the single ops timed one call each besides the eight-op mix, from "
                        f"{', '.join(EAGER_SINGLE_OPS)} (default all)")
    g.add_argument("--quick", action="store_true",
                   help="tiny sizes and short timings: a smoke test, not a measurement")
    t = p.add_argument_group("method")
    t.add_argument("--repeats", type=size, default=7,
                   help="timed repeats; the median is reported (default 7)")
    t.add_argument("--min-time", type=float, default=0.05, help="seconds per repeat, at least (default 0.05)")
    t.add_argument("--warmup", type=float, default=0.05, help="seconds of warm-up per runner (default 0.05)")
    t.add_argument("--settle", type=float, default=None,
                   help="seconds of quiet before each timed stretch, for other libraries' thread pools "
                        f"to stop spinning (default {SETTLE_WITH_POOLS} with peers other than numpy, "
                        f"else {SETTLE_ALONE})")
    t.add_argument("--peer-import-ratio", action="store_true",
                   help="time gpuhybrid's rows (no peers) in fresh processes without and with PyTorch and "
                        "JAX imported first (and run once), alternated for --rounds rounds; print both "
                        f"medians and the ratio with / without, marking those over {import_effect.LIMIT}x "
                        "(issue 15's limit); --json keeps the summary and every process's figures")
    t.add_argument("--standalone-check", nargs="?", const=[], default=None,
                   type=names(PEERS + MODES, "runner"), metavar="RUNNERS",
                   help="time each row's runner once more in a fresh process that imports only its own "
                        "library, alternating with this run stretch by stretch, and print the ratio in this "
                        f"run / alone (marked over {standalone.LIMIT}x): every row when given alone, or a "
                        "comma-separated list of peers and modes (name the workloads before a bare flag)")
    t.add_argument("--rounds", type=size, default=2,
                   help="--peer-import-ratio: pairs of processes (default 2)")
    o = p.add_argument_group("output")
    o.add_argument("--json", type=Path, metavar="PATH", help="write every figure as JSON (docs/bench.md)")
    o.add_argument("--plot", type=Path, metavar="PATH",
                   help="draw speedup vs batch size / chain length (PNG, SVG)")
    o.add_argument("--results-dir", type=Path, metavar="DIR",
                   help="write DIR/<device>-<date>.json and DIR/<device>-<date>.png")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


# PyTorch's MKL/OpenMP threads spin for 200 ms after their work (KMP_BLOCKTIME), OpenBLAS's ~0.1 s.
SETTLE_WITH_POOLS, SETTLE_ALONE = 0.25, 0.02


def default_settle(args, device=None) -> float:
    """The pause before each timed stretch: long enough for other libraries' CPU thread pools to stop
    spinning, when they share the CPU with the runs (on a GPU they do not)."""
    if args.settle is not None:
        return args.settle
    if device is not None and device.is_gpu:
        return SETTLE_ALONE
    return SETTLE_WITH_POOLS if any(p != "numpy" for p in args.peers) else SETTLE_ALONE


PEER_LIBRARIES = {"torch": "torch", "torch.compile": "torch", "jax.jit": "jax", "cupy": "cupy",
                  "cupy.fuse": "cupy"}


def import_peers(peers: list) -> list:
    """Import the chosen peers' libraries before gpuhybrid computes anything, as a program that imports
    them at its top does: a library loaded later can find gpuhybrid's in its place (PyTorch, loaded after
    gpuhybrid's first product, calls gpuhybrid's MKL: docs/bench.md). Missing ones are left to their rows
    (skipped, with the reason). Returns the modules imported."""
    imported = []
    for module in dict.fromkeys(PEER_LIBRARIES[p] for p in peers if p in PEER_LIBRARIES):
        try:
            importlib.import_module(module)
            imported.append(module)
        except Exception:  # noqa: BLE001 - not installed or broken: its rows say so
            pass
    return imported


def choose_device(requested: str):
    """The device and why it was chosen."""
    if requested == "auto":
        if gh.num_gpus() > 0:
            return gh.gpu(0), f"auto: CuPy sees {gh.num_gpus()} GPU(s)"
        try:
            gh.gpu(0)
        except gh.DeviceUnavailableError as exc:
            return gh.cpu(), f"auto: no GPU ({exc})"
        return gh.cpu(), "auto"
    kind, _, index = requested.partition(":")
    if kind == "cpu":
        return gh.cpu(), "--device cpu"
    if kind == "gpu":
        return gh.gpu(int(index or 0)), f"--device {requested}"
    raise gh.DeviceError(f"--device {requested!r}: use auto, cpu, gpu or gpu:N")


def build_cases(args) -> list:
    chosen = WORKLOADS if "all" in args.workloads else args.workloads
    if args.quick:
        args.elements, args.rows, args.cols = min(args.elements, 4096), min(args.rows, 64), min(args.cols, 64)
    cases = []
    for workload in chosen:
        if workload == "mlp":
            cases += [mlp_case(b) for b in args.batch_size or [1]]
        elif workload == "chain":
            cases += [chain_case(n, args.elements) for n in args.chain_length]
        elif workload == "softmax":
            cases.append(softmax_case(args.rows, args.cols))
        elif workload == "layernorm":
            cases.append(layernorm_case(args.rows, args.cols))
        elif workload == "train":
            cases += [train_case(b) for b in args.batch_size or [64]]
        elif workload == "lenet":
            cases += [lenet_case(b) for b in args.batch_size or [1]]
        elif workload == "resnet18":
            cases += [resnet18_case(b) for b in args.batch_size or [16]]
        elif workload == "resnet18-train":
            cases += [resnet18_train_case(b) for b in args.batch_size or [16]]
        elif workload == "eager":
            cases.append(eager_case(16))
            cases += [eager_op_case(name) for name in args.eager_ops]
    return cases


def device_slug(info: dict) -> str:
    """``cpu-amd-epyc`` / ``gpu-nvidia-h100-80gb-hbm3``: the device part of result file names."""
    model = re.sub(r"[^a-z0-9]+", "-", (info["model"] or "").lower()).strip("-")[:40].strip("-")
    return f"{info['kind']}-{model}" if model else info["kind"]


def _progress(enabled: bool, total: int):
    """A rich progress bar on stderr, or a stand-in that does nothing."""
    try:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:
        enabled = False
    if not enabled:
        class Quiet:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def add_task(self, *a, **k):
                return 0

            def update(self, *a, **k):
                pass
        return Quiet()
    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=console,
                    transient=True, disable=not console.is_terminal)


def main(argv: list | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    bad = [w for w in args.workloads if w not in WORKLOADS + ("all",)]
    if bad:
        parser().error(f"unknown workload {', '.join(bad)}; choose from {', '.join(WORKLOADS)}, all")
    if args.peer_import_ratio:
        if args.peers or args.plot or args.standalone_check is not None:
            parser().error("--peer-import-ratio times gpuhybrid alone in each process: drop "
                           "--peers/--plot/--standalone-check")
        return import_effect.run(args, argv)
    import_peers(args.peers)
    try:
        device, why = choose_device(args.device)
    except gh.GhError as exc:
        print(f"gpuhybrid-bench: {exc}", file=sys.stderr)
        return 2
    settings = (Settings(repeats=3, min_repeat_s=0.002, warmup_s=0.002, settle_s=0.0) if args.quick else
                Settings(repeats=args.repeats, min_repeat_s=args.min_time, warmup_s=args.warmup,
                         settle_s=default_settle(args, device)))
    settings.standalone = args.standalone_check
    cases = build_cases(args)
    device_info = report.describe_device(device, why)
    env = report.environment()
    machine_before = report.cpu_snapshot()

    copy = None
    memory_bound = [c.bytes_per_call for c in cases if c.bytes_per_call]
    with _progress(not args.no_progress, len(cases)) as progress:
        task = progress.add_task("copy bandwidth", total=len(cases))
        if memory_bound:
            threads = 1 if device.is_gpu else (os.cpu_count() or 1)
            with device.activate():
                # On a GPU at least 256 MiB: beyond the L2 cache (50 MiB on an H200).
                nbytes = max(memory_bound) // 2 if not device.is_gpu else max(max(memory_bound) // 2, 1 << 28)
                copy = copy_bandwidth(device.xp, nbytes, gh.waitall, settings.repeats, threads)
            copy["method"] = ("CuPy copyto on the GPU" if device.is_gpu else
                              f"NumPy copyto in {threads} thread{'s' if threads > 1 else ''}")
        rows = []
        for case in cases:
            # one eager call: nothing to hybridize
            modes = [m for m in args.modes if m == "imperative"] if case.imperative_only else args.modes
            rows += run_case(case, device, modes, args.peers, settings,
                             copy["gb_per_s"] if copy else None,
                             on_step=lambda text: progress.update(task, description=text))
            progress.update(task, advance=1)

    settings_doc = {"repeats": settings.repeats, "min_repeat_s": settings.min_repeat_s,
                    "warmup_s": settings.warmup_s, "rtol": settings.rtol, "atol": settings.atol,
                    "settle_s": settings.settle_s,
                    "modes": list(args.modes), "peers": list(args.peers), "quick": bool(args.quick),
                    "workloads": sorted({c.workload for c in cases}),
                    "standalone_check": args.standalone_check}
    env["conditions"] = report.conditions(machine_before)
    doc = report.document(rows, device_info, settings_doc, copy, argv, env)
    report.print_table(doc)
    report.print_eager_summary(doc)

    json_path, plot_path = args.json, args.plot
    if args.results_dir:
        stem = f"{device_slug(device_info)}-{datetime.date.today().isoformat()}"
        json_path = json_path or args.results_dir / f"{stem}.json"
        plot_path = plot_path or args.results_dir / f"{stem}.png"
    if json_path:
        report.print_notes(report.write_json(doc, json_path))
        print(f"wrote {json_path}")
    if plot_path:
        try:
            print(f"wrote {report.plot_speedups(doc, plot_path)}")
        except ImportError as exc:
            print(f"no plot: matplotlib is missing ({exc}); pip install matplotlib", file=sys.stderr)
        except ValueError as exc:
            print(f"no plot: {exc}", file=sys.stderr)
    failed = [r for r in rows if r["status"] == "failed"]
    return 1 if failed else 0


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())


__all__ = ["main", "run", "parser"]
