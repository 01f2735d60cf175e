"""Hybridized calls with ``None`` for optional inputs (MXNet 1.x allows them: hybrid_forward gets None
there), and tuple-unpacking a multi-output Symbol while tracing; compared with the same block run
imperatively and with NumPy float64."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhybrid import autograd, nd
from gpuhybrid.gluon import nn
from gpuhybrid.sym import TraceError


class OptionalScaleShift(nn.HybridBlock):
    """y = x * scale + shift, either factor optional."""

    def hybrid_forward(self, F, x, scale=None, shift=None):
        y = F.tanh(x)
        if scale is not None:
            y = y * scale
        if shift is not None:
            y = y + shift
        return y


def _reference(x, scale, shift):
    y = np.tanh(x)
    return (y if scale is None else y * scale) + (0 if shift is None else shift)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), use_scale=st.booleans(), use_shift=st.booleans())
def test_none_inputs_trace_and_run_like_numpy(seed, use_scale, use_shift):
    rng = np.random.default_rng(seed)
    x, scale, shift = (rng.standard_normal((3, 4)) for _ in range(3))
    net = OptionalScaleShift()
    net.hybridize()
    args = [nd.array(scale, dtype="float64") if use_scale else None,
            nd.array(shift, dtype="float64") if use_shift else None]
    for _ in range(2):                        # the second call runs the cached plan
        got = net(nd.array(x, dtype="float64"), *args)
        want = _reference(x, scale if use_scale else None, shift if use_shift else None)
        np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-12)
    assert net.cached_plans == 1


def test_each_pattern_of_none_gets_its_own_plan_and_gradients_reach_the_given_inputs():
    rng = np.random.default_rng(0)
    x, shift = nd.array(rng.standard_normal((2, 3))), nd.array(rng.standard_normal((2, 3)))
    net = OptionalScaleShift()
    net.hybridize()
    net(x)
    net(x, None, shift)
    net(x, shift, None)
    assert net.cached_plans == 3
    x.attach_grad()
    shift.attach_grad()
    with autograd.record():
        y = net(x, None, shift)
    y.backward()
    np.testing.assert_allclose(x.grad.asnumpy(), 1 - np.tanh(x.asnumpy()) ** 2, rtol=1e-5)
    np.testing.assert_allclose(shift.grad.asnumpy(), np.ones((2, 3)), rtol=1e-6)


def test_deferred_shapes_are_inferred_with_a_none_input():
    class DenseWithOptionalBias(nn.HybridBlock):
        def __init__(self):
            super().__init__()
            self.dense = nn.Dense(5)

        def hybrid_forward(self, F, x, bias=None):
            y = self.dense(x)
            return y if bias is None else y + bias

    host = np.random.default_rng(1).standard_normal((4, 7)).astype(np.float32)
    imperative = DenseWithOptionalBias()
    imperative.initialize()
    want = imperative(nd.array(host), None).asnumpy()
    imperative.hybridize()
    np.testing.assert_allclose(imperative(nd.array(host), None).asnumpy(), want, rtol=1e-5)
    weight, bias = imperative.dense.weight.data().asnumpy(), imperative.dense.bias.data().asnumpy()
    np.testing.assert_allclose(want, host @ weight.T + bias, rtol=1e-5)


class SplitHalves(nn.HybridBlock):
    def hybrid_forward(self, F, x):
        left, right = F.split(x, num_outputs=2, axis=1)
        return left * F.sigmoid(right)           # a gated linear unit


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_unpacking_a_split_while_tracing(seed):
    host = np.random.default_rng(seed).standard_normal((3, 8))
    net = SplitHalves()
    want = host[:, :4] / (1 + np.exp(-host[:, 4:]))
    np.testing.assert_allclose(net(nd.array(host, dtype="float64")).asnumpy(), want, rtol=1e-12)
    net.hybridize()
    np.testing.assert_allclose(net(nd.array(host, dtype="float64")).asnumpy(), want, rtol=1e-12)


@pytest.mark.parametrize("body, fix", [
    (lambda F, x: [v for v in x], "F.split"),
    (lambda F, x: x.__setitem__(0, 1.0), "F.where(mask, v, x)"),
    (lambda F, x: x.asnumpy(), "after the call"),
], ids=["iterate", "setitem", "asnumpy"])
def test_trace_errors_name_the_block_and_fit_the_cause(body, fix):
    class Misused(nn.HybridBlock):
        def hybrid_forward(self, F, x):
            body(F, x)
            return x

    net = Misused()
    net.hybridize()
    with pytest.raises(TraceError) as info:
        net(nd.ones((2, 2)))
    assert net.name in str(info.value) and fix in str(info.value)
