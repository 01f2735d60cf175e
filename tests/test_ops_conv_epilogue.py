"""The convolution epilogue (``split_bias_add``): a Convolution's bias-add, and the activation, residual add
and inference BatchNorm after it, run as one generated kernel after the im2col GEMM; values equal the
unfused plan's and NumPy's, and the final graph lists every launch a call makes."""
from __future__ import annotations

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import autograd, nd, sym
from gpuhybrid.backend import columns as column_kernels
from gpuhybrid.gluon import nn
from gpuhybrid.graph.passes import split_bias_add, verify_graph
from gpuhybrid.ops import REGISTRY
from gpuhybrid.ops.registry import TensorSpec
from gpuhybrid.symbol.infer import typed_graph
from launch_listing import listed_launches
from test_ops_conv import conv_reference

SPECS = {"x": TensorSpec((2, 4, 6, 5), "float64"), "w": TensorSpec((4, 4, 3, 3), "float64"),
         "b": TensorSpec((4,), "float64")}


def _residual_block():
    x = sym.var("x")
    conv = sym.Convolution(x, sym.var("w"), sym.var("b"), kernel=(3, 3), pad=(1, 1), num_filter=4,
                           name="conv0")
    return sym.relu(conv + x, name="out")


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(spec.shape) for name, spec in SPECS.items()}


def test_only_convolutions_declare_a_bias_axis():
    assert sorted(name for name, op in REGISTRY.items() if op.bias_axis is not None) == [
        "Convolution", "Deconvolution"]


def test_the_pass_splits_the_bias_off_and_keeps_the_name():
    graph = split_bias_add(typed_graph(_residual_block(), SPECS))
    verify_graph(graph, after="split_bias_add")
    ops = {node.name: node.op for node in graph.nodes}
    assert ops["conv0_product"] == "Convolution" and ops["conv0_bias_broadcast"] == "reshape"
    assert ops["conv0"] == "add"
    assert graph.nodes[[n.name for n in graph.nodes].index("conv0_product")].attr_dict["no_bias"]


def test_bias_residual_and_activation_fuse_into_one_kernel_after_the_gemm():
    plan = sym.compile_symbol(_residual_block(), SPECS, gh.cpu(), fuse=True)
    text = str(plan.graph)
    # the bias-free convolution, lowered on the CPU (conv_lower.py): im2col, the GEMM, the copy to NCHW
    assert "convolution_columns(%x," in text and "batch_dot(%conv0_product_weight_matrix" in text
    assert "%conv0_product : float64[2, 4, 6, 5] = swap_leading_axes(" in text
    fused = [line for line in text.splitlines() if "= fused(" in line]
    assert len(fused) == 1 and "%conv0_product" in fused[0]
    # im2col (one kernel from the unpadded data; NumPy without a compiler: zero fill, copy into the
    # padding, window copy), the GEMM over the batch and its copy to NCHW, then one epilogue kernel
    assert listed_launches(text) == plan.launches_per_call == (4 if column_kernels.available() else 6)
    values = _inputs()
    fused_out = plan.run([values[n] for n in plan.input_names])[0][0]
    unfused = sym.compile_symbol(_residual_block(), SPECS, gh.cpu(), fuse=False)
    reference = np.maximum(conv_reference(values["x"], values["w"], values["b"], (1, 1), (1, 1), (1, 1), 1)
                           + values["x"], 0)
    np.testing.assert_allclose(fused_out, reference, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(unfused.run([values[n] for n in unfused.input_names])[0][0], reference,
                               rtol=1e-12, atol=1e-12)


def test_inference_batch_norm_after_a_conv_joins_the_epilogue():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, padding=1), nn.BatchNorm(), nn.Activation("relu"))
    net.initialize(gh.init.Xavier())
    x = nd.array(np.random.default_rng(1).standard_normal((2, 3, 5, 5)))
    with autograd.train_mode():       # move the running statistics away from 0 and 1
        net(x)
    with autograd.record(), autograd.train_mode():
        net(x)
    expected = net(x).asnumpy()
    net.hybridize()
    got = net(x).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    text = net.explain(x)
    # im2col (one kernel; NumPy: zero fill, copy into the padding, window copy), GEMM, copy to NCHW,
    # then bias-add, BatchNorm and ReLU in one generated kernel
    kernels = 3 if column_kernels.available() else 5
    assert f"launches per call: {kernels + 1} ({kernels} kernels, 1 library calls)" in text, text
    assert "gh_fused_add_norm_apply_activation" in text


@pytest.mark.parametrize("op", ["Convolution", "Deconvolution"])
def test_training_gradients_through_the_split_bias_match_unfused(op):
    from grad_helpers import check_op_gradients
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((2, 2, 3, 3)), rng.standard_normal(2)
    check_op_gradients(lambda F, *v: F.tanh(getattr(F, op)(*v, kernel=(3, 3), pad=(1, 1), num_filter=2)),
                       [x, w, b], fuse=True)
