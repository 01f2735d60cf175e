"""What passes and the executor need to know about an op is declared by the op, in the registry:
views (``OpDef.view``), identities (``OpDef.identity``), row reductions (``OpDef.row_reduction``) and
plain GEMMs (``OpDef.plain_gemm``) — aliases included, since a node may carry an alias."""
from __future__ import annotations

from dataclasses import replace

from gpuhybrid import sym
from gpuhybrid.graph.ir import ROW_REDUCTIONS, is_plain_gemm, is_view
from gpuhybrid.graph.passes import remove_noops
from gpuhybrid.ops import get_op
from gpuhybrid.ops.registry import REGISTRY, TensorSpec
from gpuhybrid.symbol.infer import typed_graph


def test_the_ops_declare_what_they_are():
    assert sorted(op.name for op in REGISTRY.values() if op.view) == [
        "expand_dims", "flatten", "reshape", "reshape_like", "squeeze"]
    assert ROW_REDUCTIONS == ("sum", "mean", "max", "min")
    assert sorted(op.name for op in REGISTRY.values() if op.plain_gemm) == ["FullyConnected", "dot"]
    assert {op.name for op in REGISTRY.values() if op.identity} == {
        "reshape", "broadcast_to", "squeeze", "cast", "transpose", "flatten", "sum_to_shape", "Dropout"}
    assert get_op("Flatten").view and get_op("Reshape").view       # aliases are the same OpDef


def test_aliases_are_views_and_identities_too():
    x = sym.var("x")
    graph = typed_graph(sym.flatten(sym.cast(x, dtype="float32")) * 2, {"x": TensorSpec((3, 4), "float32")})
    # A node may carry an alias (a graph loaded from MXNet JSON says Flatten, Cast).
    aliased = {"cast": "Cast", "flatten": "Flatten"}
    graph = graph.replace([replace(n, op=aliased.get(n.op, n.op)) for n in graph.nodes])
    assert [n.op for n in graph.compute_nodes] == ["Cast", "Flatten", "mul_scalar"]
    assert [is_view(n) for n in graph.compute_nodes] == [False, True, False]
    assert [n.op for n in remove_noops(graph).compute_nodes] == ["mul_scalar"]


def test_plain_gemm_is_a_bias_free_matrix_product_in_one_dtype():
    specs = {"x": TensorSpec((4, 3), "float32"), "w": TensorSpec((5, 3), "float32")}
    x, w = sym.var("x"), sym.var("w")
    plain = typed_graph(sym.FullyConnected(x, w, no_bias=True, num_hidden=5), specs)
    assert is_plain_gemm(plain.compute_nodes[0], plain)
    biased = typed_graph(sym.FullyConnected(x, w, sym.var("b"), num_hidden=5),
                         {**specs, "b": TensorSpec((5,), "float32")})
    assert not is_plain_gemm(biased.compute_nodes[0], biased)
    mixed = typed_graph(sym.FullyConnected(x, w, no_bias=True, num_hidden=5),
                        {**specs, "w": TensorSpec((5, 3), "float64")})
    assert not is_plain_gemm(mixed.compute_nodes[0], mixed)


def test_plain_gemms_become_the_dot_the_plan_calls():
    from gpuhybrid.graph.passes import lower_plain_gemms
    specs = {"x": TensorSpec((4, 3), "float32"), "w": TensorSpec((5, 3), "float32")}
    x, w = sym.var("x"), sym.var("w")
    fc = sym.FullyConnected(x, w, no_bias=True, num_hidden=5, name="fc")
    graph = lower_plain_gemms(typed_graph(fc, specs))
    (gemm,) = graph.compute_nodes
    assert (gemm.op, gemm.name, gemm.attr_dict["transpose_b"]) == ("dot", "fc", True)
    assert is_plain_gemm(gemm, graph)
    flat = typed_graph(sym.FullyConnected(x, w, no_bias=True, num_hidden=5, flatten=False),
                       {**specs, "x": TensorSpec((2, 4, 3), "float32")})
    assert [n.op for n in lower_plain_gemms(flat).compute_nodes] == ["FullyConnected"]   # not a matrix
