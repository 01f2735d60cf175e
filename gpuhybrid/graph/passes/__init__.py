"""Graph passes: plain functions ``Graph -> Graph``, run in order by ``optimize``.

Set ``GPUHYBRID_VERIFY_PASSES=1`` (or pass ``verify=True``) to check the graph after every pass.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ...backend.environment import env_flag
from ...ops.conv_cudnn import cudnn_reads_channel_last
from ...errors import GhError
from ..ir import CONST, VAR, Graph
from .channel_last import lower_channel_last
from .conv_cudnn_fuse import fuse_conv_activation
from .conv_epilogue import split_bias_add
from .conv_lower import lower_convolutions
from .cse import eliminate_common_subexpressions
from .dce import eliminate_dead_code
from .fold import fold_constants
from .fuse import fuse_elementwise, split_bias_epilogue
from .fuse_rows import fuse_row_reductions, fuse_row_reductions_gpu
from .lower import lower_batch_norm_inference, lower_plain_gemms, lower_row_ops, lower_small_gemms
from .lower import lower_leading_sums
from .in_place import store_in_place
from .infer import infer_shapes
from .noop import remove_noops
from .unit_extent import lower_unit_contractions, lower_unit_sums

# Graphs arrive typed (symbol.infer.typed_graph infers every spec once, as they are built): no pass
# re-infers them; verify_graph does, to check that each pass kept the specs true.
PIPELINE: list = [
    ("remove_noops", remove_noops),
    ("fold_constants", fold_constants),
    ("eliminate_common_subexpressions", eliminate_common_subexpressions),
    ("eliminate_dead_code", eliminate_dead_code),
]


def _channel_last_pass(gpu: bool):
    """Channel-last convolutions and poolings between transposes, except the convolutions that a GPU
    runs through cuDNN, which reads channel-last data as it lies."""
    keep = gpu and cudnn_reads_channel_last()
    return lambda graph: lower_channel_last(graph, keep_convolutions=keep)


def fusion_passes(gpu: bool = False, graph_capture: bool = False, static_alloc: bool = False) -> list:
    """The passes appended when the device can run generated kernels (executor.fused.can_fuse_on).

    On a GPU a few very long rows stay with the array library's reduction; a plan to be captured as a
    CUDA graph (``graph_capture``) also turns small GEMMs into generated kernels and sums over leading
    axes into GEMMs (which such a plan runs through cuBLAS). The last pass decides
    the in-place stores, for a plan with static buffers (``static_alloc``, implied by
    ``graph_capture``) or without: the CompiledGraph must be of the same kind.
    """
    passes = [("lower_batch_norm_inference", lower_batch_norm_inference),
              ("lower_row_ops", lower_row_ops),
              ("split_bias_epilogue", split_bias_epilogue),
              ("lower_channel_last", _channel_last_pass(gpu)),
              *([("fuse_conv_activation", fuse_conv_activation)] if gpu else []),   # cuDNN: before the split
              ("split_bias_add", split_bias_add),
              ("lower_plain_gemms", lower_plain_gemms),
              ("lower_unit_contractions", lower_unit_contractions),
              ("lower_unit_sums", lower_unit_sums)]
    if not gpu:     # im2col + GEMM as steps whose workspaces the memory plan sees (GPU: the ops whole)
        passes.append(("lower_convolutions", lower_convolutions))
    if graph_capture:
        passes.append(("lower_small_gemms", lower_small_gemms))
        passes.append(("lower_leading_sums", lower_leading_sums))
    passes.append(("fuse_elementwise", fuse_elementwise))
    passes.append(("fuse_row_reductions", fuse_row_reductions_gpu if gpu else fuse_row_reductions))
    static = static_alloc or graph_capture
    passes.append(("store_in_place", lambda graph: store_in_place(graph, static_alloc=static)))
    return passes


FUSION_PASSES: list = fusion_passes()


class GraphInvariantError(GhError, AssertionError):
    """A pass produced a malformed graph (a bug in gpuhybrid, not in user code)."""


def verify_graph(graph: Graph, after: str = "") -> None:
    """Ids dense and in order, inputs defined before use, outputs and aux updates that exist, constants
    that match their specs, specs consistent with inference."""
    def defined(ref, before: int) -> bool:
        return 0 <= ref.node < before and 0 <= ref.index < len(graph.nodes[ref.node].specs)

    for position, node in enumerate(graph.nodes):
        if node.id != position:
            raise GraphInvariantError(f"after {after}: node {node.name} has id {node.id} "
                                      f"at position {position}")
        for ref in node.inputs:
            if not defined(ref, node.id):
                raise GraphInvariantError(f"after {after}: node {node.name} reads undefined value {ref}")
        if node.op == CONST:
            value = np.asarray(node.value)
            if len(node.specs) != 1 or (value.shape, value.dtype) != (node.spec.shape, node.spec.dtype):
                raise GraphInvariantError(f"after {after}: constant {node.name} holds {value.dtype.name}"
                                          f"{list(value.shape)} but claims {node.spec}")
    for ref in (*graph.outputs, *(r for _, r in graph.aux_updates)):
        if not defined(ref, len(graph.nodes)):
            raise GraphInvariantError(f"after {after}: output {ref} does not exist")
    reinferred = infer_shapes(graph)
    for old, new in zip(graph.nodes, reinferred.nodes):
        if old.op not in (VAR, CONST) and old.specs != new.specs:
            raise GraphInvariantError(f"after {after}: node {old.name} claims {old.specs} "
                                      f"but infers {new.specs}")


def optimize(graph: Graph, passes: list | None = None, verify: bool | None = None,
             on_pass: Callable[[str, Graph], None] | None = None) -> Graph:
    """Run ``passes`` (default ``PIPELINE``) in order; ``on_pass(name, graph)`` sees each result."""
    verify = env_flag("GPUHYBRID_VERIFY_PASSES", False) if verify is None else verify
    for name, run_pass in passes if passes is not None else PIPELINE:
        graph = run_pass(graph)
        if verify:
            verify_graph(graph, after=name)
        if on_pass is not None:
            on_pass(name, graph)
    return graph


__all__ = ["PIPELINE", "FUSION_PASSES", "fusion_passes", "optimize", "verify_graph", "GraphInvariantError",
           "infer_shapes", "remove_noops", "fold_constants", "eliminate_common_subexpressions",
           "eliminate_dead_code", "lower_batch_norm_inference", "lower_row_ops", "split_bias_epilogue",
           "split_bias_add", "lower_plain_gemms", "lower_unit_contractions", "lower_unit_sums",
           "lower_channel_last",
           "lower_convolutions", "lower_small_gemms", "lower_leading_sums", "fuse_elementwise",
           "fuse_row_reductions",
           "store_in_place"]
