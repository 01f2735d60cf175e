"""``python -m gpuhybrid.demo``: the lecture's MLP, imperative vs hybridized, vs hand-written NumPy.

Kept for old references; it is ``gpuhybrid-bench mlp --peers numpy`` (see ``gpuhybrid/bench``), and
takes the same options (``--batch-size``, ``--device``, ``--repeats``, ...).
"""
import sys

from .bench.cli import main

if __name__ == "__main__":
    sys.exit(main(["mlp", "--peers", "numpy", *sys.argv[1:]]))
