"""``gpuhybrid-bench``: imperative vs hybridized, side by side with the libraries people already use.

    workloads.py  what is computed (the math written once), on which sizes, the float64 reference
    modes.py      gpuhybrid imperative / hybridized / hybridized with static_alloc+static_shape
    training.py   the train workload (one SGD step) and its hand-written NumPy reference
    peers.py      NumPy, PyTorch eager and torch.compile, JAX jit, CuPy eager and cupy.fuse
    timing.py     warm-up, interleaved repeats, median and spread, copy bandwidth
    suite.py      check every runner against the reference, count launches, time, make result rows
    standalone.py --standalone-check: each row's runner timed again in a fresh process, alternately
                  (standalone_child.py is that process)
    report.py     the table, the JSON document (docs/bench.md) and the speedup plot
    cli.py        the command line
"""


def main(argv=None):
    """The command line (``cli.main``), imported when called: importing the package imports no module
    of it, so ``python -m gpuhybrid.bench.training`` runs its module once (no runpy warning)."""
    from .cli import main as cli_main
    return cli_main(argv)


__all__ = ["main"]
