"""``gh.viz``: pictures and tables of what ``hybridize()`` makes of a block or a symbol.

    gh.viz.plot_network(net, x, "mlp.png")       # or (1, 512) for x; or a Symbol with shapes
    gh.viz.print_summary(net, x)

The graph drawn is the one a hybridized call runs: after shape inference and the graph passes, with
the ops of every fused kernel inside one coloured frame and the shape of each value on its arrow.
Graphviz's ``dot`` draws it when installed; otherwise a layered layout drawn with matplotlib does.
"""
from __future__ import annotations

from pathlib import Path

from .network import Network, network_of, shape_text, without_weights
from .render import dot_available, render_with_dot, render_with_matplotlib, to_dot

NOT_OPS = ("data", "output", "param", "aux", "const")


def plot_network(block_or_symbol, inputs=None, path="network.svg", engine: str = "auto", rankdir: str = "TB",
                 fuse: bool = True, hide_weights: bool = True) -> Path:
    """Draw the graph of ``block_or_symbol`` to ``path`` (.svg or .png) and return the path.

    ``inputs``: for a HybridBlock, its input NDArrays or shapes (``(1, 512)``, or a list of them); for a
    Symbol, a dict ``{name: shape}`` (or shapes in ``list_arguments()`` order). ``engine``: ``"dot"``,
    ``"matplotlib"`` or ``"auto"`` (dot when installed). ``fuse=False`` draws the plan without fusion.
    ``hide_weights`` (as in MXNet): parameters get no boxes of their own; each op names those it reads.
    """
    path = Path(path)
    if path.suffix.lower() not in (".svg", ".png", ".pdf"):
        raise ValueError(f"plot_network writes .svg, .png or .pdf, not {path.suffix or 'no suffix'} ({path})")
    if engine not in ("auto", "dot", "matplotlib"):
        raise ValueError(f"engine must be auto, dot or matplotlib, not {engine!r}")
    net = network_of(block_or_symbol, inputs, fuse=fuse)
    if hide_weights:
        net = without_weights(net)
    path.parent.mkdir(parents=True, exist_ok=True)
    if engine == "dot" or (engine == "auto" and dot_available()):
        if not dot_available():
            raise RuntimeError("graphviz's dot is not installed (apt-get install graphviz); "
                               "use engine='matplotlib'")
        return render_with_dot(net, path, rankdir)
    return render_with_matplotlib(net, path)


def summary_text(block_or_symbol, inputs=None, fuse: bool = True) -> str:
    """The table that ``print_summary`` prints."""
    net = network_of(block_or_symbol, inputs, fuse=fuse)
    names = {b.id: b.name for b in net.boxes}
    sources: dict = {}
    for source, target, _ in net.arrows:
        sources.setdefault(target, []).append(names[source])
    rows = [("Op (name)", "Output shape", "Params", "Inputs", "Runs in")]
    for box in net.boxes:
        if box.op in NOT_OPS:
            continue
        where = f"fused kernel {box.group}" if box.group is not None else "own launch"
        rows.append((f"{box.op} ({box.name})", shape_text(box.spec), str(box.params or ""),
                     ", ".join(sources.get(box.id, [])), where))
    widths = [min(max(len(r[i]) for r in rows), 40) for i in range(len(rows[0]))]
    rule = "=" * (sum(widths) + 2 * (len(widths) - 1))

    def line(row):
        return "  ".join(cell[:w].ljust(w) for cell, w in zip(row, widths)).rstrip()
    params = sum(int(_size(b)) for b in net.boxes if b.op in ("param", "aux"))
    alone = sum(1 for b in net.boxes if b.group is None and b.op not in NOT_OPS)
    out = [line(rows[0]), rule, *(line(r) for r in rows[1:]), rule,
           f"Total params: {params}",
           f"Ops traced: {net.ops_traced}; after the passes: {len(rows) - 1} ops in "
           f"{len(net.groups)} fused kernel(s) + {alone} own launches",
           f"Launches per call: {net.kernels_per_call + net.library_calls_per_call} "
           f"({net.kernels_per_call} kernels + {net.library_calls_per_call} library calls)"]
    return "\n".join(out)


def _size(box) -> int:
    size = 1
    for d in box.spec.shape:
        size *= d
    return size


def print_summary(block_or_symbol, inputs=None, fuse: bool = True) -> str:
    """Print (and return) the table form of ``plot_network``: every op after the passes, its output
    shape, the parameter values it reads, its inputs and the kernel it runs in (MXNet's print_summary)."""
    text = summary_text(block_or_symbol, inputs, fuse)
    print(text)
    return text


__all__ = ["plot_network", "print_summary", "summary_text", "to_dot", "network_of", "Network",
           "dot_available"]
