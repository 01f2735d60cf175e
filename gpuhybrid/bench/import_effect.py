"""``gpuhybrid-bench --peer-import-ratio``: does importing PyTorch and JAX slow gpuhybrid down?

Issue 15's target "no case more than 1.3x slower with PyTorch imported than without" cannot be read from
one process: once PyTorch is loaded (its ``libgomp``, its MKL and oneDNN, their threads) it cannot be
unloaded. So gpuhybrid's own rows (no peers) are measured in fresh processes of two kinds, alternated
round by round so that load from elsewhere on the machine falls on both alike:

    without  nothing but gpuhybrid (and NumPy) imported;
    with     PyTorch and JAX imported first, each run once (a small product in PyTorch, which starts its
             OpenMP pool; a jit-compiled product in JAX, which starts its CPU client), then gpuhybrid.

Each child is this command line's run with the same workloads, sizes, modes and timing settings, written
to a JSON file (docs/bench.md). The parent prints each row's median without and with, and the ratio
with / without (the median over rounds of each round's ratio), marking those above ``LIMIT``; beside it
the ratio of the fastest repeats (best with / best without over all rounds) and the ratio of the
process's CPU time per call (all its threads: a peer's threads spinning beside gpuhybrid's count),
which load from other processes on a shared machine moves far less than wall-clock medians. Its own
JSON holds that summary and every child's document.
"""
from __future__ import annotations

import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LIMIT = 1.3        # issue 15: no case more than 1.3x slower with PyTorch imported than without
KINDS = ("without", "with")

# The child's program: the peers first (as a user who imported them before gpuhybrid), then the bench.
_CHILD = """\
import sys
if sys.argv[1] == "with":
    import torch
    import jax
    import jax.numpy as jnp
    torch.mm(torch.ones(256, 256), torch.ones(256, 256))
    jax.block_until_ready(jax.jit(lambda a: a @ a)(jnp.ones((256, 256))))
print("peers in this process:", ",".join(m for m in ("torch", "jax") if m in sys.modules), flush=True)
from gpuhybrid.bench.cli import main
sys.exit(main(sys.argv[2:]))
"""


def child_argv(args) -> list:
    """The command line (after the program) of one child: ``args``'s workloads, sizes, modes and timing,
    gpuhybrid's rows alone, JSON only."""
    argv = list(args.workloads) + ["--device", args.device, "--modes", ",".join(args.modes), "--no-progress"]
    if args.batch_size:
        argv += ["--batch-size", ",".join(map(str, args.batch_size))]
    argv += ["--chain-length", ",".join(map(str, args.chain_length)), "--elements", str(args.elements),
             "--rows", str(args.rows), "--cols", str(args.cols), "--eager-ops", ",".join(args.eager_ops),
             "--repeats", str(args.repeats), "--min-time", str(args.min_time), "--warmup", str(args.warmup)]
    if args.settle is not None:
        argv += ["--settle", str(args.settle)]
    if args.quick:
        argv.append("--quick")
    return argv


def missing_peers() -> list:
    """The peer libraries this comparison imports that are not installed."""
    import importlib.util
    return [name for name in ("torch", "jax") if importlib.util.find_spec(name) is None]


def run_child(kind: str, argv: list, folder: Path, number: int) -> dict:
    """One fresh process of ``kind`` (without / with peers imported): its JSON document, with the peer
    libraries the process held when it began timing under ``peers_imported``."""
    out = folder / f"{kind}-{number}.json"
    done = subprocess.run([sys.executable, "-c", _CHILD, kind, *argv, "--json", str(out)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"the {kind}-peers process (round {number}) failed with exit code "
                           f"{done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    doc = json.loads(out.read_text())
    marker = [line for line in done.stdout.splitlines() if line.startswith("peers in this process:")]
    doc["peers_imported"] = [name for name in marker[0].split(":", 1)[1].strip().split(",") if name]
    return doc


def _key(row: dict) -> tuple:
    return row["label"], row["mode"]


def summarise(rounds: list) -> list:
    """One summary per gpuhybrid row: median seconds without and with peers over the rounds, each
    round's ratio with / without, and their median."""
    rows, order = {}, []
    for pair in rounds:
        by_kind = {kind: {_key(r): r for r in pair[kind]["results"]} for kind in KINDS}
        for key, without in by_kind["without"].items():
            with_peers = by_kind["with"].get(key)
            if key not in rows:
                order.append(key)
                rows[key] = {"workload": without["workload"], "label": key[0], "mode": key[1],
                             "without_s": [], "with_s": [], "ratios": [], "cpu_ratios": [],
                             "without_best_s": None,
                             "with_best_s": None, "status": "ok"}
            entry = rows[key]
            if (without["status"] != "ok" or with_peers is None or with_peers["status"] != "ok"):
                entry["status"] = (without["reason"] if without["status"] != "ok" else
                                   "missing in the with-peers run" if with_peers is None else
                                   with_peers["reason"]) or "not ok"
                continue
            entry["without_s"].append(without["median_s"])
            entry["with_s"].append(with_peers["median_s"])
            entry["ratios"].append(with_peers["median_s"] / without["median_s"])
            if with_peers.get("cpu_median_s") and without.get("cpu_median_s"):
                entry["cpu_ratios"].append(with_peers["cpu_median_s"] / without["cpu_median_s"])
            for kind, row in (("without", without), ("with", with_peers)):
                best = row["spread"]["min_s"]
                previous = entry[f"{kind}_best_s"]
                entry[f"{kind}_best_s"] = best if previous is None else min(previous, best)
    out = []
    for key in order:
        entry = rows[key]
        if entry["ratios"]:
            entry.update(without_median_s=statistics.median(entry["without_s"]),
                         with_median_s=statistics.median(entry["with_s"]),
                         ratio=statistics.median(entry["ratios"]),
                         best_ratio=entry["with_best_s"] / entry["without_best_s"],
                         cpu_ratio=statistics.median(entry["cpu_ratios"]) if entry["cpu_ratios"] else None)
            entry["over_limit"] = entry["ratio"] > LIMIT
        else:
            entry.update(without_median_s=None, with_median_s=None, ratio=None, best_ratio=None,
                         cpu_ratio=None, over_limit=None)
        out.append(entry)
    return out


def table(summary: list) -> str:
    lines = [f"{'case':<34} {'mode':<12} {'without':>11} {'with peers':>11} {'ratio':>6} {'best':>6} "
             f"{'cpu':>6}  rounds"]
    for entry in summary:
        if entry["ratio"] is None:
            lines.append(f"{entry['label']:<34} {entry['mode']:<12} {entry['status']}")
            continue
        mark = f"  > {LIMIT}" if entry["over_limit"] else ""
        rounds = " ".join(f"{r:.2f}" for r in entry["ratios"])
        cpu = "" if entry["cpu_ratio"] is None else f"{entry['cpu_ratio']:.2f}"
        without_us, with_us = entry["without_median_s"] * 1e6, entry["with_median_s"] * 1e6
        lines.append(f"{entry['label']:<34} {entry['mode']:<12} {without_us:>9.1f}us {with_us:>9.1f}us "
                     f"{entry['ratio']:>6.2f} {entry['best_ratio']:>6.2f} {cpu:>6}  {rounds}{mark}")
    return "\n".join(lines)


def run(args, argv: list) -> int:
    """The whole comparison for the parsed ``args``; writes ``--json`` (or into ``--results-dir``)."""
    missing = missing_peers()
    if missing:
        print(f"gpuhybrid-bench --peer-import-ratio imports PyTorch and JAX, and {', '.join(missing)} "
              "is not installed: pip install torch jax (or make venv EXTRAS=peers)", file=sys.stderr)
        return 2
    child = child_argv(args)
    load_before = os.getloadavg()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="gpuhybrid-import-ratio-") as folder:
        for number in range(args.rounds):
            # alternate which kind goes first, so that a drift in load favours neither
            kinds = KINDS if number % 2 == 0 else KINDS[::-1]
            docs = {}
            for kind in kinds:
                print(f"round {number + 1}/{args.rounds}: gpuhybrid {kind} PyTorch and JAX imported",
                      file=sys.stderr, flush=True)
                docs[kind] = run_child(kind, child, Path(folder), number)
            rounds.append(docs)
    summary = summarise(rounds)
    print(f"gpuhybrid with PyTorch and JAX imported / without, fresh processes, {args.rounds} rounds "
          f"(median per call; ratio: median over rounds of with / without; best: fastest repeat with / "
          f"fastest without; cpu: the same ratio of the process's CPU time per call, all threads; "
          f"load average at the start "
          f"{load_before[0]:.2f}, at the end {os.getloadavg()[0]:.2f})")
    print(table(summary))
    over = [e for e in summary if e["over_limit"]]
    print(f"{len(over)} of {sum(e['ratio'] is not None for e in summary)} rows over {LIMIT}x")
    path = args.json
    if path is None and args.results_dir:
        path = args.results_dir / f"cpu-peer-import-{datetime.date.today().isoformat()}.json"
    if path:
        doc = {"kind": "peer-import-ratio", "limit": LIMIT, "command": ["gpuhybrid-bench", *argv],
               "child_command": child, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
               "load_average": {"start": load_before, "end": os.getloadavg()},
               "summary": summary, "rounds": rounds}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {path}")
    failed = [e for e in summary if e["ratio"] is None]
    return 1 if failed else 0
