"""The executor layer: compiled plans (``CompiledGraph``) that replay a graph without Python per op."""
from .plan import CompiledGraph, Step

__all__ = ["CompiledGraph", "Step"]
