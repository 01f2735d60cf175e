"""Lowering before fusion: ops that can be written as elementwise ops and reductions become those, so
that the fusion passes put them in generated kernels with their neighbours.

- ``BatchNorm`` outside training (or with ``use_global_stats``) normalises with its moving statistics:
  ``norm_apply(x, mean, var, gamma, beta)`` with the per-channel vectors reshaped to broadcast along
  the channel axis (views, no launch); it fuses with the bias-add before it and the activation after
  it. Its other two outputs are the moving statistics, unchanged.
- ``softmax``, ``log_softmax`` and ``LayerNorm`` over the last axis (``lower_row_ops``) become their
  maths: a max-subtracted exponential over a sum, or a mean and a two-pass variance, with elementwise
  ops around them, which the row-fusion pass makes one row group (one kernel) together with what
  produces their input and what reads their result. Over another axis they stay ops.
- A bias-free FullyConnected of a matrix in one dtype (``lower_plain_gemms``) becomes the GEMM it is,
  ``dot(x, W, transpose_b=True)``, which a plan runs as one direct ``matmul(x, W.T)``.
- A small GEMM (``lower_small_gemms``, for plans captured as CUDA graphs) becomes a broadcast product
  and a row reduction.
- A sum over the leading axes of a matrix (``lower_leading_sums``, for plans captured as CUDA graphs: a
  bias gradient) becomes ``ones(1, rows) @ x``, one GEMM that a captured plan runs through cuBLAS
  (``capturable_gemm``), where the array library's reduction would allocate and cannot be captured.

The node that stands for a lowered node's (single) output takes its name, so that values keep the names
the user's graph gave them (``CompiledGraph.named_values``, ``explain()``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ...backend.dtypes import compute_dtype
from ...ops import get_op
from ...ops.reduce import reduced_axes
from ...ops.registry import TensorSpec, normalize_axis
from ..ir import CONST, Graph, Node, Ref, freeze_attrs, is_plain_gemm
from .rewrite import GraphBuilder

# Batches up to this many rows: a GEMM there is a few thin matrix-vector products, which a row group
# (one reduction per output element, bias and activation fused after it) computes in one kernel.
SMALL_GEMM_ROWS = 16


def _lower(graph: Graph, lowerable: Callable, lower: Callable) -> Graph:
    """Rebuild ``graph`` with every node that ``lowerable(node)`` accepts replaced by what
    ``lower(node, inputs, add, spec)`` adds (``add(Node) -> Ref`` of its first output;
    ``spec(Ref) -> TensorSpec``), which returns one Ref per output of the node."""
    if not any(lowerable(n) for n in graph.nodes):
        return graph
    builder = GraphBuilder(graph)

    def add(node: Node) -> Ref:
        return builder.add(node)[0]

    for node in graph.nodes:
        if lowerable(node):
            first_new = len(builder.nodes)
            refs = lower(node, builder.moved(node).inputs, add, builder.spec)
            if len(refs) == 1 and refs[0].node >= first_new:
                builder.rename(refs[0], node.name)
        else:
            refs = builder.add(builder.moved(node))
        builder.stand_for(node.id, refs)
    return builder.build()


def _attrs(op: str, **given) -> tuple:
    return freeze_attrs(get_op(op).parse_attrs(given))


def _normalises_with_moving_stats(node: Node) -> bool:
    attrs = node.attr_dict
    return node.op == "BatchNorm" and not (attrs["training"] and not attrs["use_global_stats"])


def _batch_norm_as_norm_apply(node, inputs, add, spec) -> list:
    attrs = node.attr_dict
    x, gamma, beta, mean, var = inputs
    ndim = len(spec(x).shape)
    axis = normalize_axis(attrs["axis"], ndim)
    vector = tuple(spec(x).shape[axis] if i == axis else 1 for i in range(ndim))
    if attrs["fix_gamma"]:                 # gamma taken as 1, whatever its values
        ones = np.ones(spec(gamma).shape, spec(gamma).dtype)
        gamma = add(Node(-1, CONST, f"{node.name}_ones", (), (), (spec(gamma),), value=ones))
    broadcast = [add(Node(-1, "reshape", f"{node.name}_{part}_broadcast", (ref,),
                          _attrs("reshape", shape=vector), (TensorSpec(vector, spec(ref).dtype),)))
                 for ref, part in ((mean, "mean"), (var, "var"), (gamma, "gamma"), (beta, "beta"))]
    y = add(Node(-1, "norm_apply", node.name, (x, *broadcast), _attrs("norm_apply", eps=attrs["eps"]),
                 (node.specs[0],)))
    return [y, mean, var]


def lower_batch_norm_inference(graph: Graph) -> Graph:
    return _lower(graph, _normalises_with_moving_stats, _batch_norm_as_norm_apply)


def lower_plain_gemms(graph: Graph) -> Graph:
    """Every FullyConnected that is just ``x @ W.T`` (``OpDef.plain_gemm``) as ``dot(x, W,
    transpose_b=True)``: the final graph names the GEMM a plan calls."""
    def lowerable(node: Node) -> bool:
        return node.op == "FullyConnected" and is_plain_gemm(node, graph)

    def lower(node, inputs, add, spec) -> list:
        return [add(Node(-1, "dot", node.name, inputs[:2], _attrs("dot", transpose_b=True), node.specs))]

    return _lower(graph, lowerable, lower)


def lower_small_gemms(graph: Graph) -> Graph:
    """``x @ W.T`` (a plain GEMM, ``OpDef.plain_gemm``, of a (rows, k) float32/float64 matrix, rows at
    most SMALL_GEMM_ROWS) as ``sum(x[:, None, :] * W[None, :, :], axis=-1)``: a generated kernel instead of
    a library call, for plans captured as CUDA graphs, where CuPy allows no cuBLAS call. The row group
    it becomes also takes the bias-add and activation after it (``fuse_row_reductions``). Float16
    stays with the library: the fused product would be rounded to half precision before the sum."""
    def lowerable(node: Node) -> bool:
        if not is_plain_gemm(node, graph):
            return False
        x = graph.spec(node.inputs[0])
        return x.shape[0] <= SMALL_GEMM_ROWS and x.dtype.name in ("float32", "float64")

    def lower(node, inputs, add, spec) -> list:
        (rows, k), units, dtype = spec(inputs[0]).shape, node.spec.shape[1], node.spec.dtype
        x = add(Node(-1, "expand_dims", f"{node.name}_rows", (inputs[0],), _attrs("expand_dims", axis=1),
                     (TensorSpec((rows, 1, k), dtype),)))
        w = add(Node(-1, "expand_dims", f"{node.name}_units", (inputs[1],), _attrs("expand_dims", axis=0),
                     (TensorSpec((1, units, k), dtype),)))
        products = add(Node(-1, "mul", f"{node.name}_products", (x, w), (),
                            (TensorSpec((rows, units, k), dtype),)))
        return [add(Node(-1, "sum", node.name, (products,), _attrs("sum", axis=-1), node.specs))]

    return _lower(graph, lowerable, lower)


# dtypes cuBLAS multiplies in their own precision (cublasSgemm, cublasDgemm): the captured GEMMs
GEMM_DTYPES = ("float32", "float64")


def capturable_gemm(node: Node, graph: Graph) -> bool:
    """Whether a captured plan runs ``node`` as one cuBLAS GEMM (``executor.cublas_capture``): a 2-d
    ``dot`` (either operand maybe transposed) of non-empty float32 or float64 matrices in one dtype."""
    if node.op != "dot" or len(node.specs) != 1:
        return False
    specs = [graph.spec(r) for r in node.inputs] + [node.spec]
    return (all(len(s.shape) == 2 and 0 not in s.shape for s in specs)
            and len({s.dtype for s in specs}) == 1 and node.spec.dtype.name in GEMM_DTYPES)


def lower_leading_sums(graph: Graph) -> Graph:
    """``sum(x, axis=leading axes)`` of a float32/float64 ``x`` as ``ones(1, R) @ x.reshape(R, N)``
    (reshaped to the sum's shape): a GEMM, for plans captured as CUDA graphs. CuPy's reduction may
    allocate a workspace (CUB) and its kernels are outside the plan's static buffers; a GEMM against a
    constant row of ones is one cuBLAS call into them (``capturable_gemm``). Sums over the last axis stay:
    row groups compute them in their kernels."""
    def lowerable(node: Node) -> bool:
        if node.op != "sum" or 0 in node.spec.shape:
            return False
        x = graph.spec(node.inputs[0])
        if len(x.shape) < 2 or 0 in x.shape or x.dtype != node.spec.dtype or x.dtype.name not in GEMM_DTYPES:
            return False
        axes = reduced_axes(x.shape, node.attr_dict["axis"])
        return axes == tuple(range(len(axes))) and 0 < len(axes) < len(x.shape)

    def lower(node, inputs, add, spec) -> list:
        x = spec(inputs[0])
        count = len(reduced_axes(x.shape, node.attr_dict["axis"]))
        rows, cols = int(np.prod(x.shape[:count])), int(np.prod(x.shape[count:]))
        matrix = inputs[0]
        if len(x.shape) != 2:
            matrix = add(Node(-1, "reshape", f"{node.name}_matrix", (matrix,),
                              _attrs("reshape", shape=(rows, cols)), (TensorSpec((rows, cols), x.dtype),)))
        ones = add(Node(-1, CONST, f"{node.name}_ones", (), (), (TensorSpec((1, rows), x.dtype),),
                        value=np.ones((1, rows), x.dtype)))
        total = add(Node(-1, "dot", f"{node.name}_gemm", (ones, matrix), _attrs("dot"),
                         (TensorSpec((1, cols), x.dtype),)))
        return [add(Node(-1, "reshape", node.name, (total,), _attrs("reshape", shape=node.spec.shape),
                         node.specs))]

    return _lower(graph, lowerable, lower)


# --- softmax, log_softmax and LayerNorm as reductions and elementwise ops -----------------------------

ROW_OPS = ("softmax", "log_softmax", "LayerNorm")


def _lowers_to_rows(node: Node) -> bool:
    """A registry softmax / log_softmax / LayerNorm over the last axis of a non-empty input: what a row
    group computes in one kernel. Over another axis the op keeps its own implementation (a row group
    reduces trailing axes only, and a transpose there and back costs two copies of the data); over an
    empty input ``max`` has no identity, and the op returns its empty result."""
    if node.op not in ROW_OPS or 0 in node.spec.shape:
        return False
    return node.attr_dict["axis"] in (-1, len(node.spec.shape) - 1)


def _composer(node: Node, add: Callable, spec: Callable) -> Callable:
    """``emit(op, *inputs, part=..., **attrs) -> Ref``: a node of ``op`` named ``<node>_<part>``, its
    specs inferred by the registry."""
    def emit(op: str, *inputs, part: str, **attrs) -> Ref:
        parsed = get_op(op).parse_attrs(attrs)
        specs = tuple(get_op(op).infer_specs([spec(r) for r in inputs], parsed))
        return add(Node(-1, op, f"{node.name}_{part}", tuple(inputs), freeze_attrs(parsed), specs))
    return emit


def _row_op_as_composition(node: Node, inputs: tuple, add: Callable, spec: Callable) -> list:
    """The op written with max/sum/mean and elementwise ops over its (last) axis: max-subtracted
    softmax, two-pass variance, the inverse deviation once per row; ``fuse_row_reductions`` makes it
    one row group.

    Float16 data is computed in float32 and rounded once at the end, as the op's kernels compute it
    (the compute dtype of its operands); the result has the op's dtype."""
    attrs, emit = node.attr_dict, _composer(node, add, spec)
    x = inputs[0]
    axis = len(spec(x).shape) - 1
    calc = compute_dtype(spec(x).dtype)
    if calc != spec(x).dtype:
        x = emit("cast", x, dtype=calc.name, part="compute")
    over = {"axis": (axis,), "keepdims": True}
    if node.op == "LayerNorm":
        gamma, beta = inputs[1:]           # (C,): they broadcast along the last axis as they are
        centred = emit("sub", x, emit("mean", x, part="mean", **over), part="centred")
        variance = emit("mean", emit("mul", centred, centred, part="squares"), part="variance", **over)
        inv_std = emit("rsqrt", emit("add_scalar", variance, scalar=attrs["eps"], part="variance_eps"),
                       part="inv_std")
        scaled = emit("mul", emit("mul", centred, inv_std, part="normalised"), gamma, part="scaled")
        result = emit("add", scaled, beta, part="shifted")
    else:
        if attrs["temperature"] is not None:
            x = emit("div_scalar", x, scalar=attrs["temperature"], part="tempered")
        shifted = emit("sub", x, emit("max", x, part="max", **over), part="shifted")
        exps = emit("exp", shifted, part="exp")
        total = emit("sum", exps, part="sum", **over)
        if node.op == "softmax":
            result = emit("div", exps, total, part="normalised")
        else:
            result = emit("sub", shifted, emit("log", total, part="log_sum"), part="normalised")
    if spec(result).dtype != node.spec.dtype:
        result = emit("cast", result, dtype=node.spec.dtype.name, part="result")
    return [result]


# --- pick over the rows of a softmax, its gradient, reductions over one element -------------------------
# A cross-entropy loss is log_softmax, pick, negative and a mean over one element per example: written as
# a masked row sum, a select and a view, it is one row kernel forward and one backward.

def _picks_along_rows(node: Node, graph: Graph) -> bool:
    """``pick`` along the last axis of a softmax/log_softmax that ``_lowers_to_rows``: the picked value
    is then one more row reduction of the same row group. (A pick from a plain array stays a gather,
    which reads one element per row rather than the whole row.)"""
    if node.op != "pick" or node.attr_dict["axis"] not in (-1, len(graph.spec(node.inputs[0]).shape) - 1):
        return False
    return _lowers_to_rows(graph.node(node.inputs[0].node))


def _picks_back_along_rows(node: Node) -> bool:
    """``pick_backward`` (the gradient of pick) along the last axis of a non-empty float array."""
    if node.op != "pick_backward":
        return False
    shape = tuple(node.attr_dict["shape"])
    return node.spec.dtype.kind == "f" and 0 not in shape and node.attr_dict["axis"] in (-1, len(shape) - 1)


def _picked_column(node: Node, index: Ref, shape: tuple, add: Callable, spec: Callable) -> Ref:
    """Where each row's pick lands, as ``column == position`` over ``shape`` (bool): positions clipped to
    the axis or wrapped around it, then truncated to integers, as ``ops.indexing._positions``."""
    emit, size = _composer(node, add, spec), shape[-1]
    kept = tuple(shape[:-1]) + (1,)
    if tuple(spec(index).shape) != kept:
        index = emit("reshape", index, shape=kept, part="index_rows")        # a view
    if node.attr_dict["mode"] == "wrap":
        whole = emit("cast", index, dtype="int64", part="index_whole")
        size_const = add(Node(-1, CONST, f"{node.name}_axis_size", (), (),
                              (TensorSpec((1,), np.dtype(np.int64)),), value=np.array([size], np.int64)))
        position = emit("broadcast_mod", whole, size_const, part="position")
    else:
        clipped = emit("clip", index, a_min=0, a_max=size - 1, part="index_clipped")
        position = emit("cast", clipped, dtype="int64", part="position")
    columns = add(Node(-1, CONST, f"{node.name}_columns", (), (), (TensorSpec((size,), np.dtype(np.int64)),),
                       value=np.arange(size, dtype=np.int64)))
    return emit("broadcast_equal", columns, position, part="picked_column")


def _zero_like(node: Node, dtype, add: Callable) -> Ref:
    return add(Node(-1, CONST, f"{node.name}_zero", (), (), (TensorSpec((1,), dtype),),
                    value=np.zeros((1,), dtype)))


def _pick_as_row_sum(node: Node, inputs: tuple, add: Callable, spec: Callable) -> list:
    """``pick(data, index)`` along the last axis as ``sum(where(column == position, data, 0))``: the sum
    of one value and zeros is that value (a NaN or inf elsewhere in the row is not read)."""
    data, index = inputs
    shape, emit = tuple(spec(data).shape), _composer(node, add, spec)
    chosen = emit("where", _picked_column(node, index, shape, add, spec), data,
                  _zero_like(node, spec(data).dtype, add), part="masked")
    return [emit("sum", chosen, axis=len(shape) - 1, keepdims=node.attr_dict["keepdims"], part="picked")]


def _pick_backward_as_select(node: Node, inputs: tuple, add: Callable, spec: Callable) -> list:
    """``pick_backward(grad, index)`` along the last axis as ``where(column == position, grad, 0)``."""
    grad, index = inputs
    shape, emit = tuple(node.attr_dict["shape"]), _composer(node, add, spec)
    kept = tuple(shape[:-1]) + (1,)
    rows = grad if tuple(spec(grad).shape) == kept else emit("reshape", grad, shape=kept, part="grad_rows")
    return [emit("where", _picked_column(node, index, shape, add, spec), rows,
                 _zero_like(node, node.spec.dtype, add), part="scattered")]


def _reduces_one_element(node: Node, graph: Graph) -> bool:
    """A float sum or mean over axes that all have size 1 (its value is its input, reshaped) of a value
    made from a pick along a softmax's rows by elementwise ops and views: a loss' mean over its one
    element per example. (Elsewhere such a reduction may well be part of a row group of its own.)"""
    if node.op not in ("sum", "mean") or node.spec.dtype.kind != "f" or node.attr_dict.get("exclude"):
        return False
    x = graph.spec(node.inputs[0])
    if x.dtype != node.spec.dtype or 0 in x.shape:
        return False
    if int(np.prod(x.shape, dtype=np.int64)) != int(np.prod(node.spec.shape, dtype=np.int64)):
        return False
    producer = graph.node(node.inputs[0].node)
    while producer.op != "pick":
        op = get_op(producer.op) if producer.inputs else None
        if op is None or not (op.view or op.category == "elementwise"):
            return False
        producer = graph.node(producer.inputs[0].node)
    return _picks_along_rows(producer, graph)


def lower_row_ops(graph: Graph) -> Graph:
    """Registry softmax, log_softmax and LayerNorm as compositions the row-fusion pass fuses; a pick
    along their rows as a masked row sum and pick's gradient as a select (both join the row group);
    a sum or mean over one element as a reshape (a view: it no longer splits a loss' row group)."""
    def lowerable(node: Node) -> bool:
        return (_lowers_to_rows(node) or _picks_along_rows(node, graph) or _picks_back_along_rows(node)
                or _reduces_one_element(node, graph))

    def lower(node: Node, inputs: tuple, add: Callable, spec: Callable) -> list:
        if node.op == "pick":
            return _pick_as_row_sum(node, inputs, add, spec)
        if node.op == "pick_backward":
            return _pick_backward_as_select(node, inputs, add, spec)
        if node.op in ("sum", "mean"):
            return [_composer(node, add, spec)("reshape", inputs[0], shape=tuple(node.spec.shape),
                                                part="one_element")]
        return _row_op_as_composition(node, inputs, add, spec)

    return _lower(graph, lowerable, lower)
