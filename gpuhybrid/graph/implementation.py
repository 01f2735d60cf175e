"""What running a node of a final graph means, resolved from the op registry once per node, so that
the executor builds its steps from the graph alone (it never imports ``ops``); the launches a node
costs come from ``graph.ir.node_launches``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..ops import get_op
from .ir import CONST, FUSED, VAR, Node, is_plain_gemm


@dataclass(frozen=True)
class Implementation:
    """How one compute node runs. ``eager`` is None for a fused node (a generated kernel)."""
    eager: "Callable | None"          # eager(device, inputs, attrs, outs) -> output(s)
    eager_into: "Callable | None"     # eager_into(device, inputs, attrs, outputs): into given arrays
    fresh: bool                       # always new C-contiguous arrays, never views of its inputs
    plain_gemm: bool = False          # just ``in0 @ in1.T`` (OpDef.plain_gemm)

    @property
    def generated(self) -> bool:
        return self.eager is None

    @property
    def writes_into(self) -> bool:
        """Whether the node can write into preallocated arrays (generated kernels, ``out=`` paths)."""
        return self.eager is None or self.eager_into is not None


def implementation(node: Node, graph) -> Implementation:
    """The Implementation of a compute node of ``graph``."""
    if node.op in (VAR, CONST):
        raise ValueError(f"{node.name} is a {node.op}: it has no implementation to run")
    if node.op == FUSED:
        return Implementation(None, None, True)
    op = get_op(node.op)
    fresh = op.fresh_results(node.attr_dict) if callable(op.fresh_results) else op.fresh_results
    return Implementation(op.eager, op.eager_into, fresh, plain_gemm=is_plain_gemm(node, graph))


__all__ = ["Implementation", "implementation"]
