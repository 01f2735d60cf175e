"""A fused kernel takes at most MAX_KERNEL_ARRAYS arrays (the CPU launcher's limit): groups whose values
are read from outside — every intermediate an output, or the saved values of a recorded forward — are cut
into several kernels instead of failing at the first call with the launcher's ValueError."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhybrid import autograd, nd, sym
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.graph import optimize, verify_graph
from gpuhybrid.graph.ir import FUSED
from gpuhybrid.graph.passes import PIPELINE, fusion_passes
from gpuhybrid.graph.passes.fuse import MAX_KERNEL_ARRAYS
from gpuhybrid.gluon import nn
from gpuhybrid.ops.registry import TensorSpec
from gpuhybrid.symbol.infer import typed_graph

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="fused CPU kernels need a C++ compiler")


def _kernel_arrays(graph) -> list:
    return [len(n.inputs) + len(n.specs) for n in graph.nodes if n.op == FUSED]


@settings(max_examples=8, deadline=None)
@given(length=st.integers(MAX_KERNEL_ARRAYS // 2, 3 * MAX_KERNEL_ARRAYS), every=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_a_chain_with_many_outputs_runs_in_kernels_of_bounded_width(length, every, seed):
    x = sym.var("x")
    value, outputs, expected = x, [], []
    data = np.random.default_rng(seed).standard_normal((3, 5))
    reference = data.copy()
    for i in range(length):
        value = sym.tanh(value) * 0.75 + 0.25 if i % 2 else sym.sin(value) + value * 0.5
        reference = np.tanh(reference) * 0.75 + 0.25 if i % 2 else np.sin(reference) + reference * 0.5
        if i % every == 0:
            outputs.append(value)
            expected.append(reference.copy())
    graph = optimize(typed_graph(sym.Group(outputs), {"x": TensorSpec((3, 5), "float64")}),
                     passes=PIPELINE + fusion_passes())
    verify_graph(graph)
    assert max(_kernel_arrays(graph)) <= MAX_KERNEL_ARRAYS
    got = sym.Group(outputs).eval(x=nd.array(data, dtype="float64"))
    for value, want in zip(got, expected):
        np.testing.assert_allclose(value.asnumpy(), want, rtol=1e-12, atol=1e-12)


class _DeepBlock(nn.HybridBlock):
    """Many elementwise layers and a row normalisation every few: the recorded forward saves a value of
    almost every op for the backward plan."""

    def __init__(self, depth: int):
        super().__init__()
        self.depth = depth

    def hybrid_forward(self, F, x):
        for i in range(self.depth):
            x = F.tanh(x) + F.sigmoid(x) * 0.5 if i % 2 else F.tanh(x) * 0.9 + x * 0.1
            if i % 7 == 0:
                centred = F.broadcast_sub(x, F.mean(x, axis=-1, keepdims=True))
                x = F.broadcast_mul(centred, F.rsqrt(F.mean(F.square(centred), axis=-1, keepdims=True) + 1.0))
        return x


@pytest.mark.parametrize("depth", [40, 150])
def test_a_deep_recorded_block_trains_hybridized_as_imperatively(depth):
    data = np.random.default_rng(depth).standard_normal((4, 8))
    grads, outputs = [], []
    for hybridize in (False, True):
        block = _DeepBlock(depth)
        if hybridize:
            block.hybridize()
        x = nd.array(data, dtype="float64")
        x.attach_grad()
        with autograd.record():
            y = block(x)
        y.backward()
        outputs.append(y.asnumpy())
        grads.append(x.grad.asnumpy())
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-10, atol=1e-10)
