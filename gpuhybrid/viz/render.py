"""Drawing a Network: through graphviz ``dot`` when it is installed, else a layered layout drawn with
matplotlib. Both draw the same things: data and outputs as ovals, parameters and constants small and
grey, ops as boxes, every fused kernel's ops inside one coloured frame, shapes on the arrows."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .network import Network

# (frame, fill) per kernel, cycling: colour-blind friendly hues.
PALETTE = (("#1f77b4", "#d6e6f5"), ("#d62728", "#f8d7d7"), ("#2ca02c", "#d9f0d9"), ("#9467bd", "#e8ddf2"),
           ("#ff7f0e", "#ffe6cc"), ("#17becf", "#d1f2f6"), ("#8c564b", "#eadbd6"), ("#e377c2", "#f9e0f1"))
QUIET = {"param", "aux", "const"}
INCH = 0.8          # inches per data unit in the matplotlib drawing


def label(box, show_reads: bool = False) -> str:
    """The text in a box; ``show_reads`` names the parameters an op reads (when they have no boxes)."""
    if box.op in ("data", "output"):
        return box.name
    if box.op in QUIET:
        return box.name
    text = f"{box.op} {box.detail}".strip()
    return f"{text} · {', '.join(box.reads)}" if box.reads and show_reads else text


# --- graphviz --------------------------------------------------------------------------------------------
def to_dot(net: Network, rankdir: str = "TB") -> str:
    """The DOT text of ``net``: one cluster per fused kernel."""
    show_reads = not any(b.op in QUIET for b in net.boxes)
    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"digraph {quote(net.name)} {{", f"  rankdir={rankdir}; nodesep=0.25; ranksep=0.35;",
             '  node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=8, color="#555555"];']

    def node_line(box, indent="  ") -> str:
        if box.op in ("data", "output"):
            style = 'shape=ellipse, style=filled, fillcolor="#fff2b3"'
        elif box.op in QUIET:
            style = 'shape=box, style="rounded,filled", fillcolor="#eeeeee", fontcolor="#666666", fontsize=8'
        else:
            fill = "#ffffff" if box.group is None else PALETTE[box.group % len(PALETTE)][1]
            style = f'shape=box, style="rounded,filled", fillcolor="{fill}"'
        return f"{indent}{box.id} [label={quote(label(box, show_reads))}, {style}];"

    for box in net.boxes:
        if box.group is None:
            lines.append(node_line(box))
    for number, ops in enumerate(net.groups):
        frame, fill = PALETTE[number % len(PALETTE)]
        lines += [f"  subgraph cluster_kernel{number} {{",
                  f'    label={quote(f"fused kernel {number}")}; fontsize=9; fontcolor="{frame}";',
                  f'    style="rounded,dashed"; color="{frame}"; penwidth=1.5;']
        lines += [node_line(b, "    ") for b in net.boxes if b.group == number]
        lines.append("  }")
    for source, target, shape in net.arrows:
        lines.append(f"  {source} -> {target} [label={quote(' ' + shape)}];")
    lines.append("}")
    return "\n".join(lines)


def dot_available() -> bool:
    return shutil.which("dot") is not None


def render_with_dot(net: Network, path: Path, rankdir: str = "TB") -> Path:
    fmt = path.suffix.lstrip(".").lower() or "svg"
    done = subprocess.run(["dot", f"-T{fmt}", "-o", str(path)], input=to_dot(net, rankdir), text=True,
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"graphviz dot failed ({done.returncode}): {done.stderr.strip()}")
    return path


# --- the pure-Python fallback: layered layout, drawn with matplotlib --------------------------------------
def layout(net: Network) -> tuple:
    """(box id -> (layer, x), one list of (layer, x) waypoints per arrow): layers by longest path from
    the inputs, arrows that skip layers routed through placeholder points (so they go around boxes,
    not through them), then barycentre sweeps down and up to untangle crossings, keeping the ops of
    each kernel side by side."""
    preds: dict = {b.id: [] for b in net.boxes}
    for source, target, _ in net.arrows:
        preds[target].append(source)
    layer: dict = {}
    for box in net.boxes:                                  # boxes come in topological order
        layer[box.id] = 1 + max((layer[p] for p in preds[box.id]), default=-1)
    for box in net.boxes:                                  # parameters sit just above their reader
        readers = [t for s, t, _ in net.arrows if s == box.id]
        if box.op in QUIET and readers:
            layer[box.id] = max(0, min(layer[t] for t in readers) - 1)
    group = {b.id: b.group for b in net.boxes}
    ups: dict = {b.id: [] for b in net.boxes}
    downs: dict = {b.id: [] for b in net.boxes}
    routes = []
    for k, (source, target, _) in enumerate(net.arrows):
        chain = [source] + [f"via{k}_{d}" for d in range(layer[source] + 1, layer[target])] + [target]
        for d, point in enumerate(chain[1:-1], layer[source] + 1):
            layer[point], group[point] = d, None
            ups[point], downs[point] = [], []
        for a, b in zip(chain, chain[1:]):
            ups[b].append(a)
            downs[a].append(b)
        routes.append(chain)
    rows: dict = {}
    for node in layer:
        rows.setdefault(layer[node], []).append(node)
    position = {n: i for row in rows.values() for i, n in enumerate(row)}
    for sweep in range(8):
        neighbours = ups if sweep % 2 == 0 else downs
        for depth in sorted(rows, reverse=sweep % 2 == 1):
            def centre(n):
                ps = [position[p] for p in neighbours[n]]
                return sum(ps) / len(ps) if ps else position[n]
            row = sorted(rows[depth], key=centre)
            index = {n: i for i, n in enumerate(row)}
            spot: dict = {}                                # kernel members next to each other
            for n in row:
                spot.setdefault(group[n], []).append(index[n])
            row.sort(key=lambda n: (sum(spot[group[n]]) / len(spot[group[n]]) if group[n] is not None
                                    else index[n], index[n]))
            rows[depth] = row
            position.update({n: i - (len(row) - 1) / 2 for i, n in enumerate(row)})
    places = {b.id: (layer[b.id], position[b.id]) for b in net.boxes}
    return places, [[(layer[n], position[n]) for n in chain] for chain in routes]


def render_with_matplotlib(net: Network, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch
    show_reads = not any(b.op in QUIET for b in net.boxes)
    places, routes = layout(net)
    depth = max(layer for layer, _ in places.values()) + 1
    half = {}                                   # half widths of the boxes, in data units
    for box in net.boxes:
        per_char = 0.068 if box.op in QUIET else 0.08
        half[box.id] = (max(0.5, per_char * len(label(box, show_reads))) + 0.2) / 2
    xstep, ystep = max(2.3, 2 * max(half.values()) + 0.5), 1.05
    centre = {bid: (x * xstep, -layer * ystep) for bid, (layer, x) in places.items()}
    # One data unit is INCH inches both ways, so that text (sized in points) fits the boxes sized for it.
    xs = [centre[b][0] + s * half[b] for b in centre for s in (-1, 1)]
    xs += [x * xstep for route in routes for _, x in route]
    left, right, bottom, top = min(xs) - 0.4, max(xs) + 0.4, -(depth - 1) * ystep - 0.55, 0.55
    grow = max(0.0, 4.6 / INCH - (right - left)) / 2      # room for the title
    left, right = left - grow, right + grow
    title = 0.55                                # inches above the drawing
    fig = plt.figure(figsize=((right - left) * INCH, (top - bottom) * INCH + title))
    ax = fig.add_axes((0, 0, 1, 1 - title / fig.get_figheight()))
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.axis("off")
    for box in net.boxes:
        quiet = box.op in QUIET
        x, y = centre[box.id]
        if box.op in ("data", "output"):
            face, edge, style = "#fff2b3", "#806600", "round,pad=0.02,rounding_size=0.2"
        elif quiet:
            face, edge, style = "#eeeeee", "#aaaaaa", "round,pad=0.02,rounding_size=0.08"
        else:
            face = "#ffffff" if box.group is None else PALETTE[box.group % len(PALETTE)][1]
            edge, style = "#333333", "round,pad=0.02,rounding_size=0.08"
        ax.add_patch(FancyBboxPatch((x - half[box.id], y - 0.2), 2 * half[box.id], 0.4, boxstyle=style,
                                    facecolor=face, edgecolor=edge, linewidth=1, zorder=3))
        ax.text(x, y, label(box, show_reads), ha="center", va="center", fontsize=7 if quiet else 8.5,
                color="#555555" if quiet else "black", zorder=4)
    for number in range(len(net.groups)):
        members = [b.id for b in net.boxes if b.group == number]
        xs = [centre[m][0] + s * half[m] for m in members for s in (-1, 1)]
        ys = [centre[m][1] for m in members]
        frame = PALETTE[number % len(PALETTE)][0]
        ax.add_patch(FancyBboxPatch((min(xs) - 0.15, min(ys) - 0.38), max(xs) - min(xs) + 0.3,
                                    max(ys) - min(ys) + 0.76, boxstyle="round,pad=0.02,rounding_size=0.12",
                                    facecolor="none", edgecolor=frame, linestyle="--", linewidth=1.4,
                                    zorder=2))
        ax.text(max(xs) + 0.1, max(ys) + 0.38, f"fused kernel {number}", color=frame, fontsize=7.5,
                ha="right", va="center", zorder=5, bbox=dict(facecolor="white", edgecolor="none", pad=0.5))
    for (source, target, shape), route in zip(net.arrows, routes):
        points = [(x * xstep, -layer * ystep) for layer, x in route]
        points[0] = (points[0][0], points[0][1] - 0.21)
        points[-1] = (points[-1][0], points[-1][1] + 0.21)
        if len(points) > 2:
            ax.plot([p[0] for p in points[:-1]], [p[1] for p in points[:-1]], color="#666666", lw=0.9,
                    zorder=1)
        ax.annotate("", xy=points[-1], xytext=points[-2], zorder=1,
                    arrowprops=dict(arrowstyle="-|>", color="#666666", lw=0.9, shrinkA=0, shrinkB=0))
        if shape:
            (x0, y0), (x1, y1) = points[0], points[1]
            ax.text(x0 + 0.3 * (x1 - x0) + 0.06, y0 + 0.3 * (y1 - y0), shape, fontsize=6.5, color="#444444",
                    ha="left", va="center", zorder=4,
                    bbox=dict(facecolor="white", edgecolor="none", pad=0.3, alpha=0.8))
    fig.suptitle(f"{net.name}: {len(net.groups)} fused kernel(s)\n{net.kernels_per_call} kernels + "
                 f"{net.library_calls_per_call} library calls per call", fontsize=9,
                 y=1 - 0.27 / fig.get_figheight(), va="center")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
