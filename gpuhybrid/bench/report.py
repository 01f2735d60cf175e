"""What a benchmark run reports: the table (rich when installed, plain text otherwise), the JSON
document (every figure, the device, library versions, the git commit; checked against
docs/bench-schema.json) and the speedup plot (matplotlib)."""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import gpuhybrid as gh

from .standalone import LIMIT as LIMIT_ALONE

SCHEMA_ID = "gpuhybrid-bench/1"
SCHEMA_FILE = "bench-schema.json"
LIBRARIES = ("gpuhybrid", "numpy", "cupy-cuda13x", "cupy-cuda12x", "torch", "jax", "jaxlib", "rich",
             "matplotlib")


# --- the environment ---------------------------------------------------------------------------------
def library_versions() -> dict:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict:
    """The commit of the gpuhybrid checkout this runs from (``GPUHYBRID_COMMIT`` outside a git checkout,
    else None)."""
    here = Path(__file__).resolve().parent

    def git(*args):
        done = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else None
    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no") if commit else None
    except OSError:                                   # no git on this machine
        commit = dirty = None
    if commit is None and os.environ.get("GPUHYBRID_COMMIT"):   # a copy of a checkout, without .git
        return {"git_commit": os.environ["GPUHYBRID_COMMIT"], "git_dirty": None}
    return {"git_commit": commit, "git_dirty": None if commit is None else bool(dirty)}


def describe_device(device, why: str) -> dict:
    info = {"name": str(device), "kind": "gpu" if device.is_gpu else "cpu", "why": why,
            "model": None, "cores": os.cpu_count(), "memory_bytes": None}
    if device.is_gpu:
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(device.device_id)
        name = props["name"]
        info["model"] = name.decode() if isinstance(name, bytes) else str(name)
        info["memory_bytes"] = int(props["totalGlobalMem"])
    else:
        info["model"] = _cpu_model()
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_compiler() -> dict | None:
    try:
        return gh.profiler.host_compiler()
    except Exception:  # informational only: never fail a benchmark over it
        return None


def environment() -> dict:
    try:
        load = [round(x, 2) for x in os.getloadavg()]      # other work on the machine skews timings
    except OSError:
        load = None
    return {"python": platform.python_version(), "platform": platform.platform(),
            "libraries": library_versions(), "host_compiler": host_compiler(), "load_average": load,
            **git_commit()}


THREAD_VARIABLES = ("GPUHYBRID_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "XLA_FLAGS", "GPUHYBRID_DENORMALS")
PEER_MODULES = ("torch", "jax", "cupy")


def cpu_snapshot() -> dict | None:
    """The machine's busy CPU seconds so far (/proc/stat: all but idle and iowait), this process's own
    (its finished children included) and the time; None where /proc/stat is missing."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        hertz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    own = os.times()
    return {"busy_s": (sum(ticks) - ticks[3] - ticks[4]) / hertz, "wall_s": own.elapsed,
            "own_s": own.user + own.system + own.children_user + own.children_system}


def conditions(before: dict | None) -> dict:
    """What a run's figures depend on besides the code: threads (gpuhybrid's, PyTorch's when imported, the
    thread variables set), the peer libraries this process holds, the load average at the end, and how
    many cores' worth of CPU other processes used since ``before`` (``cpu_snapshot``)."""
    threads = {}
    try:
        threads["gpuhybrid"] = gh.get_num_threads()
    except Exception:  # noqa: BLE001 - no host compiler: no pool, nothing to report
        pass
    if "torch" in sys.modules:
        threads["torch"] = sys.modules["torch"].get_num_threads()
    after, others = cpu_snapshot(), None
    if before and after and after["wall_s"] > before["wall_s"]:
        busy = after["busy_s"] - before["busy_s"] - (after["own_s"] - before["own_s"])
        others = round(max(busy, 0.0) / (after["wall_s"] - before["wall_s"]), 2)
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"threads": threads, "thread_variables": {k: os.environ[k] for k in THREAD_VARIABLES
                                                     if k in os.environ},
            "peers_imported": [m for m in PEER_MODULES if m in sys.modules], "load_average_end": load,
            "others_cpu_cores": others}


def conditions_text(env: dict, cores: int | None) -> str:
    """One paragraph for a table's caption: the conditions its figures were taken under."""
    found = env.get("conditions") or {}
    parts = []
    threads = found.get("threads") or {}
    if threads:
        parts.append("threads: " + ", ".join(f"{name} {count}" for name, count in threads.items()))
    for name, value in (found.get("thread_variables") or {}).items():
        parts.append(f"{name}={value}")
    if "peers_imported" in found:
        parts.append("peer libraries in this process: " + (", ".join(found["peers_imported"]) or "none"))
    load, end = env.get("load_average"), found.get("load_average_end")
    if load:
        at_end = f", {end[0]:.2f} at the end" if end else ""
        parts.append(f"load average {load[0]:.2f} at the start{at_end}")
    others = found.get("others_cpu_cores")
    if others is not None:
        parts.append(f"other processes kept {others:.2f} of {cores or '?'} cores busy during the run")
    text = "conditions: " + "; ".join(parts) if parts else ""
    if others is not None and cores and others > 0.25 * cores:
        text += ("\nthe machine was shared: a runner whose threads wait for each other (PyTorch's OpenMP) "
                 "loses far more to other processes than one whose threads do not, so these speedups are "
                 "this "
                 "load's, not a quiet machine's; compare only runs under similar load")
    return text


def document(rows: list, device_info: dict, settings: dict, copy: dict | None, argv: list,
             env: dict | None = None) -> dict:
    """The JSON document of one run (see docs/bench.md); ``env`` as ``environment()`` gave it when the
    run started (taken now when not given)."""
    return {"schema": SCHEMA_ID,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["gpuhybrid-bench", *argv]), "device": device_info,
            "environment": env or environment(), "settings": settings, "copy_bandwidth": copy,
            "results": rows}


# --- the schema ----------------------------------------------------------------------------------------
def schema_path() -> Path:
    """docs/bench-schema.json in a checkout; the copy shipped inside the package otherwise."""
    checkout = Path(__file__).resolve().parents[2] / "docs" / SCHEMA_FILE
    return checkout if checkout.exists() else Path(__file__).with_name(SCHEMA_FILE)


def validate(doc: dict) -> None:
    """Raise ``jsonschema.ValidationError`` when ``doc`` does not follow the schema."""
    import jsonschema
    schema = json.loads(schema_path().read_text())
    jsonschema.validate(doc, schema, format_checker=jsonschema.FormatChecker())


def write_json(doc: dict, path: Path) -> list:
    """Write ``doc`` to ``path``; validated first when jsonschema is installed. Returns warnings."""
    notes = []
    try:
        validate(doc)
    except ImportError:
        notes.append("jsonschema is not installed: the JSON was written without checking it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return notes


# --- the table -----------------------------------------------------------------------------------------
def _time_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def table_rows(rows: list) -> tuple:
    """Cells for each result (case, runner, per call, spread, speedup, launches, GB/s, check), and the
    numbered reasons that skipped or failed rows refer to."""
    cells, reasons, previous = [], [], None
    for row in rows:
        label = row["label"] if row["label"] != previous else ""
        previous = row["label"]
        runner = row["mode"] or row["name"]
        if row["status"] != "ok":
            if row["reason"] not in reasons:
                reasons.append(row["reason"])
            note = f"{row['status']} [{reasons.index(row['reason']) + 1}]"
            cells.append((label, runner, "", "", "", "", "", "", note))
            continue
        launches = row["launches_per_call"]
        launch_text = (f"{launches['total']} ({launches['kernels']}+{launches['library']})" if launches
                       else "-")
        speedup = row["speedup_vs_imperative"]
        bandwidth = ""
        if row["gb_per_s"] is not None:
            bandwidth = f"{row['gb_per_s']:.1f}"
            if row["fraction_of_copy"] is not None:
                bandwidth += f" ({row['fraction_of_copy']:.0%})"
        cells.append((label, runner, _time_text(row["median_s"]), f"±{row['relative_spread'] / 2:.0%}",
                      f"{speedup:.2f}x" if speedup is not None else "-", launch_text, bandwidth,
                      _alone_text(row.get("standalone")), f"ok ({row['max_abs_error']:.0e})"))
    return cells, reasons


def _alone_text(alone: dict | None) -> str:
    """The --standalone-check cell: in this run / alone, with the quartiles of the repeats' ratios."""
    if not alone:
        return ""
    if "error" in alone:
        return "error"
    mark = " !" if alone["over_limit"] else ""
    return (f"{alone['ratio']:.2f} ({alone['ratio_q1']:.2f}-{alone['ratio_q3']:.2f}) "
            f"cpu {alone['cpu_ratio']:.2f}{mark}")


HEADERS = ("case", "runner", "per call", "spread", "speedup", "launches", "GB/s (of copy)",
           "run/alone", "check")
CAPTION = ("runner: gpuhybrid's modes, then peers; speedup: over gpuhybrid imperative (docs/bench.md); "
           "spread: half the interquartile range of the repeats; launches per call: "
           "kernels + library calls (gh.profiler.count_launches); check: max |error| against float64 NumPy")


def print_table(doc: dict, console=None) -> None:
    title = (f"gpuhybrid-bench on {doc['device']['name']} ({doc['device']['model']}), median of "
             f"{doc['settings']['repeats']} repeats")
    copy = doc["copy_bandwidth"]
    caption = f"copy bandwidth in this run: {copy['gb_per_s']:.1f} GB/s ({copy['method']}). " if copy else ""
    caption = f"device: {doc['device']['why']}\n" + caption
    caption += CAPTION
    if any(row.get("standalone") for row in doc["results"]):
        caption += ("; run/alone: this row's time in this run over the same runner's in a fresh process "
                    "importing only its library, timed alternately (median and quartiles of the repeats' "
                    "ratios; cpu: the same of the process's CPU time per call; ! over "
                    f"{LIMIT_ALONE}x, and over 1 in three repeats of four)")
    conditions = conditions_text(doc["environment"], doc["device"].get("cores"))
    if conditions:
        caption += "\n" + conditions
    elif doc["environment"]["load_average"]:
        caption += f"; load average at the start: {doc['environment']['load_average'][0]:.2f}"
    errors = [f"{r['label']} {r['name']}: {r['standalone']['error']}" for r in doc["results"]
              if (r.get("standalone") or {}).get("error")]
    caption += "".join(f"\nrun/alone error: {e}" for e in errors)
    cells, reasons = table_rows(doc["results"])
    caption += "".join(f"\n[{i}] {reason}" for i, reason in enumerate(reasons, 1))
    keep = [i for i in range(len(HEADERS)) if i < 2 or any(c[i] for c in cells)]
    headers = [HEADERS[i] for i in keep]
    cells = [tuple(c[i] for i in keep) for c in cells]
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
    except ImportError:
        _print_plain(title, caption, headers, cells)
        return
    # Reasons and captions hold text such as 'gpuhybrid[cuda]' that rich would read as markup.
    cells = [tuple(escape(c) for c in row) for row in cells]
    table = Table(title=escape(title), caption=escape(caption), caption_justify="left")
    for header in headers:
        numeric = header in ("per call", "spread", "speedup", "launches", "GB/s (of copy)", "run/alone")
        table.add_column(header, justify="right" if numeric else "left", overflow="fold",
                         no_wrap=header in ("runner", "per call", "speedup", "launches", "run/alone"))
    for i, row in enumerate(cells):
        if row[0] and i:
            table.add_section()
        table.add_row(*row, style=None if row[2] else "dim")
    if console is None:
        console = Console()
        if not console.is_terminal:         # a file, a pipe, a notebook: wide, and no colour codes
            console = Console(width=140, color_system=None, force_jupyter=False)
    console.print(table)


def eager_summary(doc: dict) -> list:
    """(case label, {runner name: median s}) for the eager cases, in run order: the per-op comparison."""
    cases: dict = {}
    for row in doc["results"]:
        if row["workload"] == "eager" and row["status"] == "ok":
            cases.setdefault(row["label"], {})[row["name"]] = row["median_s"]
    return list(cases.items())


def print_eager_summary(doc: dict) -> None:
    """Per eager case: gpuhybrid imperative's time per call and its ratio to each peer's (below 1: faster)."""
    cases = eager_summary(doc)
    peers = [name for name in dict.fromkeys(n for _, runs in cases for n in runs) if name.startswith(
        ("NumPy", "PyTorch", "JAX", "CuPy", "torch"))]
    if not cases or not peers:
        return
    print("eager per call: gpuhybrid imperative, each peer, and gpuhybrid / peer")
    print(f"{'case':34} {'gpuhybrid':>10} " + " ".join(f"{p:>14} {'ratio':>6}" for p in peers))
    for label, runs in cases:
        ours = runs.get("gpuhybrid imperative")
        ratios = [ours / runs[p] if ours and runs.get(p) else float("nan") for p in peers]
        cells = [f"{_time_text(runs.get(p)):>14} {ratio:6.2f}" for p, ratio in zip(peers, ratios)]
        print(f"{label:34} {_time_text(ours):>10} " + " ".join(cells))


def _print_plain(title: str, caption: str, headers: list, cells: list) -> None:
    widths = [max(len(str(c[i])) for c in [headers, *cells]) for i in range(len(headers))]
    print(title)
    for row in [headers, *cells]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    print(caption)


# --- the plot ------------------------------------------------------------------------------------------
SWEEPS = (("mlp", "batch_size", "MLP 512-256-128-2: speedup vs batch size", "batch size"),
          ("chain", "length", "elementwise chain: speedup vs chain length", "ops in the chain"),
          ("train", "batch_size", "MLP training step: speedup vs batch size", "batch size"))


def plot_speedups(doc: dict, path: Path) -> Path:
    """Speedup over imperative vs batch size (mlp, train) and chain length (chain), one line per runner."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [(w, k, t, x) for w, k, t, x in SWEEPS
              if any(r["workload"] == w and r["speedup_vs_imperative"] for r in doc["results"])]
    if not panels:
        raise ValueError("nothing to plot: the run has no speedups for mlp, chain or train")
    from matplotlib.ticker import FuncFormatter, NullFormatter
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, (workload, key, title, xlabel) in zip(axes[0], panels):
        lines: dict = {}
        for row in doc["results"]:
            if row["workload"] == workload and row["speedup_vs_imperative"] and row["mode"] != "imperative":
                lines.setdefault(row["name"], []).append((row["params"][key], row["speedup_vs_imperative"]))
        ax.axhline(1.0, color="grey", linewidth=1, label="gpuhybrid imperative (1x)")
        for name, points in lines.items():
            xs, ys = zip(*sorted(points))
            ax.plot(xs, ys, marker="o", label=name, linestyle="-" if name.startswith("gpuhybrid") else "--")
        sizes = sorted({x for points in lines.values() for x, _ in points})
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(x) for x in sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}x" if f"{v:.0e}"[0] in "25" else ""))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("speedup over gpuhybrid imperative")
        ax.grid(True, which="both", alpha=0.3)
    legend: dict = {}                     # one legend for all panels, below them
    for ax in axes[0]:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(name, handle)
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=min(len(legend), 7), fontsize=8)
    fig.suptitle(f"{doc['device']['name']} ({doc['device']['model']}), {doc['created'][:10]}", fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_notes(notes: list) -> None:
    for note in notes:
        print(note, file=sys.stderr)
