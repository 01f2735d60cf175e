"""The graph layer: the IR (``ir.py``) and the passes over it (``passes/``)."""
from .ir import CONST, VAR, Graph, Node, Ref, format_graph
from .passes import PIPELINE, optimize, verify_graph

__all__ = ["CONST", "VAR", "Graph", "Node", "Ref", "format_graph", "PIPELINE", "optimize", "verify_graph"]
