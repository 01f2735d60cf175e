"""In-place stores over views, and over values a second input of the same kernel still reads.

A kernel may store its output over a *whole view* of a dying fresh value (``Liveness.whole_views``: a
reshape, expand_dims, squeeze, flatten or reshape_like of a GEMM's or a kernel's result, all of its
memory in its order): a pointwise convolution lowers to ``matmul`` then a reshape to (N, F, H, W), and
its bias + activation epilogue now takes the product's memory instead of a new array. It must never do
so while any alias of that memory is still read — by a later step, or by another input of the same
kernel (a row sliced out of the value and broadcast: that row would be read after the kernel stored
over it). Every plan here is compared with NumPy in float64 on random inputs, with and without static
buffers, call after call.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd, sym
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.executor import CompiledGraph
from gpuhybrid.executor.memory import plan_memory
from gpuhybrid.gluon import nn
from gpuhybrid.graph import optimize
from gpuhybrid.graph.passes import PIPELINE, fusion_passes
from gpuhybrid.ops.registry import TensorSpec
from gpuhybrid.symbol.infer import typed_graph
from graph_helpers import allocation_peak

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="fused CPU kernels need a C++ compiler")


def _compile(out, specs: dict, **options):
    specs = {name: TensorSpec(shape, dtype) for name, (shape, dtype) in specs.items()}
    return sym.compile_symbol(out, specs, gh.cpu(), **options)


def _overwritten_ops(plan) -> list:
    """The op of every value some kernel of ``plan`` stores its output over."""
    compute = plan.graph.compute_nodes
    return [plan.graph.node(compute[position].inputs[j].node).op
            for position, step in enumerate(plan.steps) for _, j in step.in_place]


# --- the hazard: a second input of the kernel reads the memory stored over --------------------------

@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), rows=st.integers(2, 40), cols=st.integers(1, 40),
       through_view=st.booleans())
def test_a_row_sliced_from_the_dying_value_keeps_that_value_intact(seed, rows, cols, through_view):
    # out = 2 g + g[0] (broadcast): before the fix the kernel stored over g, so rows read g[0] after
    # row 0 held 2 g[0] + g[0] (11.2 off for a 64 x 64 product). ``through_view``: g is read as a whole
    # view (a reshape of the product), the slice taken from the product itself.
    a, b = sym.var("a"), sym.var("b")
    g = sym.dot(a, b)
    read = sym.reshape(sym.reshape(g, shape=(-1,)), shape=(rows, cols)) if through_view else g
    out = sym.broadcast_add(read * 2, sym.slice_axis(g, axis=0, begin=0, end=1))
    specs = {"a": ((rows, 5), "float64"), "b": ((5, cols), "float64")}
    plan = _compile(out, specs)
    assert not _overwritten_ops(plan)
    rng = np.random.default_rng(seed)
    a_, b_ = rng.uniform(-1, 1, (rows, 5)), rng.uniform(-1, 1, (5, cols))
    g_ = a_ @ b_
    got = plan.run([a_, b_])[0][0]
    np.testing.assert_allclose(got, 2 * g_ + g_[:1], rtol=1e-12, atol=1e-12)


def test_a_donated_input_read_again_through_a_slice_is_not_stored_over():
    # The same hazard for an input the caller donated: 0.5 * w + w[0] must read w[0] intact.
    specs = {"w": TensorSpec((6, 5), "float32")}
    w = sym.var("w")
    graph = typed_graph(sym.Group([sym.broadcast_add(0.5 * w, sym.slice_axis(w, axis=0, begin=0, end=1))]),
                        specs)
    plan = CompiledGraph(optimize(graph, passes=PIPELINE + fusion_passes()), gh.cpu(),
                         donated=frozenset({"w"}))
    assert not any(step.in_place for step in plan.steps)
    host = np.random.default_rng(4).normal(size=(6, 5)).astype(np.float32)
    want = 0.5 * host.astype(np.float64) + host[:1].astype(np.float64)
    given_up = host.copy()
    np.testing.assert_allclose(plan.run([given_up])[0][0], want, rtol=1e-6)


# --- a pointwise convolution's epilogue over its reshaped product ------------------------------------

def _pointwise_net(channels: tuple, activation="relu"):
    net = nn.HybridSequential()
    for c_in, c_out in zip(channels, channels[1:]):
        net.add(nn.Conv2D(c_out, kernel_size=1, in_channels=c_in, activation=activation))
    net.initialize(gh.init.Normal(0.3))
    return net


def _pointwise_reference(net, x: np.ndarray) -> np.ndarray:
    value = x.astype(np.float64)
    for layer in net:
        w = layer.weight.data().asnumpy().astype(np.float64)[:, :, 0, 0]
        b = layer.bias.data().asnumpy().astype(np.float64)
        value = np.maximum(np.einsum("fc,nchw->nfhw", w, value) + b[None, :, None, None], 0)
    return value


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 3), c=st.integers(1, 9), f=st.integers(1, 9),
       hw=st.tuples(st.integers(1, 6), st.integers(1, 6)), static=st.booleans())
def test_a_pointwise_convolution_epilogue_is_stored_over_its_reshaped_product(seed, n, c, f, hw, static):
    gh.random.seed(seed)
    net = _pointwise_net((c, f, 3))
    x = nd.random.normal(shape=(n, c) + hw)
    want = _pointwise_reference(net, x.asnumpy())
    net.hybridize(static_alloc=static)
    for _ in range(2):
        np.testing.assert_allclose(net(x).asnumpy(), want, rtol=1e-4, atol=1e-5)
    plan = net._last_trace.plan
    # Both epilogues go over their products (a reshape of the matmul); under static_alloc the last
    # one leaves the plan, so it gets an array of its own.
    assert _overwritten_ops(plan) == ["reshape"] * (1 if static else 2)
    if static:
        (step,) = [s for s in plan.steps if s.in_place]
        (k, j), = step.in_place
        root = plan.liveness.whole_views[step.reads[j]]
        assert plan.buffer_plan.buffer_of[step.writes[k]] == plan.buffer_plan.buffer_of[root]


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 3), hw=st.integers(1, 5))
def test_pointwise_convolution_gradients_stored_over_reshaped_products_match_numpy(seed, n, hw):
    # The backward plan stores the first layer's relu gradient over the reshaped product that carries
    # the data gradient of the second layer (a pointwise Deconvolution: matmul, then reshape).
    gh.random.seed(seed)
    net = _pointwise_net((5, 7, 3))
    x = nd.random.normal(shape=(n, 5, hw, hw))
    net.hybridize()
    with gh.autograd.record():
        loss = (net(x) ** 2).sum()
    loss.backward()
    backward = net._last_trace.backward.plan
    assert "reshape" in _overwritten_ops(backward)
    (w1, b1), (w2, b2) = ((layer.weight.data().asnumpy().astype(np.float64)[:, :, 0, 0],
                           layer.bias.data().asnumpy().astype(np.float64)) for layer in net)
    x_ = x.asnumpy().astype(np.float64)
    z1 = np.einsum("fc,nchw->nfhw", w1, x_) + b1[None, :, None, None]
    h = np.maximum(z1, 0)
    z2 = np.einsum("fc,nchw->nfhw", w2, h) + b2[None, :, None, None]
    dz2 = 2 * np.maximum(z2, 0) * (z2 > 0)
    dz1 = np.einsum("fc,nfhw->nchw", w2, dz2) * (z1 > 0)
    grads = {"w2": np.einsum("nfhw,nchw->fc", dz2, h), "b2": dz2.sum(axis=(0, 2, 3)),
             "w1": np.einsum("nfhw,nchw->fc", dz1, x_), "b1": dz1.sum(axis=(0, 2, 3))}
    for (name, want), param in zip(grads.items(), (net[1].weight, net[1].bias, net[0].weight, net[0].bias)):
        got = param.grad().asnumpy().astype(np.float64).reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * np.abs(want).max(), err_msg=name)


def test_the_planned_peak_of_a_pointwise_convolution_is_its_product_alone():
    gh.random.seed(1)
    net = _pointwise_net((16, 32))
    x = nd.random.normal(shape=(4, 16, 8, 8))
    net.hybridize()
    net(x)
    memory = plan_memory(net._last_trace.plan)
    out_bytes = 4 * 32 * 8 * 8 * 4
    # reshapes of the data, the weight and the product allocate nothing; the epilogue takes the
    # product's memory (before: 64 KiB, the product's reshape counted as memory beside the output)
    assert memory.peak_bytes == out_bytes and memory.total_bytes == out_bytes


def test_a_pointwise_convolution_call_allocates_one_output():
    gh.random.seed(2)
    net = _pointwise_net((16, 32))
    x = nd.random.normal(shape=(4, 16, 16, 16))
    net.hybridize()
    net(x)
    out_bytes = 4 * 32 * 16 * 16 * 4                  # 128 KiB
    peak = allocation_peak(lambda: net(x), attempts=3)
    # the product and the output are one array (before: two, 256 KiB at the epilogue)
    assert out_bytes <= peak < 1.5 * out_bytes, peak


# --- a view of the value still read after the kernel --------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), rows=st.integers(2, 12), cols=st.integers(1, 12), static=st.booleans())
def test_a_view_read_after_the_kernel_keeps_its_memory(seed, rows, cols, static):
    # The epilogue reads the product through one reshape; a second reshape of the same product is
    # read by a GEMM after it. Storing over the first view would change what the GEMM reads.
    a, b, c = sym.var("a"), sym.var("b"), sym.var("c")
    g = sym.dot(a, b)                                       # (rows, cols)
    seen = sym.reshape(sym.reshape(g, shape=(-1,)), shape=(rows, cols))
    epilogue = sym.tanh(seen * 0.5 + 1)
    later = sym.dot(sym.reshape(g, shape=(cols, rows)), c)          # (cols, 3), after the kernel
    specs = {"a": ((rows, 4), "float64"), "b": ((4, cols), "float64"), "c": ((rows, 3), "float64")}
    plan = _compile(sym.Group([sym.dot(epilogue, sym.transpose(epilogue)), later]), specs,
                    static_alloc=static)
    order = [node.name for node in plan.graph.compute_nodes]
    assert order.index(later.name) > min(i for i, n in enumerate(order) if n.startswith("fused"))
    assert "reshape" not in _overwritten_ops(plan)
    rng = np.random.default_rng(seed)
    for _ in range(2):
        a_, b_, c_ = (rng.uniform(-1, 1, spec[0]) for spec in specs.values())
        g_ = a_ @ b_
        e_ = np.tanh(g_ * 0.5 + 1)
        got = plan.run([a_, b_, c_])[0]
        np.testing.assert_allclose(got[0], e_ @ e_.T, rtol=1e-12)
        np.testing.assert_allclose(got[1], g_.reshape(cols, rows) @ c_, rtol=1e-12)


def test_a_chain_of_views_is_a_whole_view_and_a_transpose_is_not():
    a, b = sym.var("a"), sym.var("b")
    g = sym.dot(a, b)                                                   # (4, 6)
    chained = sym.squeeze(sym.expand_dims(sym.reshape(g, shape=(6, 4)), axis=0), axis=0)
    turned = sym.transpose(sym.dot(sym.transpose(b), sym.transpose(a)))   # (4, 6) = g, not a whole view
    plan = _compile(sym.Group([sym.relu(chained - 0.2) * 3, sym.relu(turned - 0.2) * 3]),
                    {"a": ((4, 5), "float64"), "b": ((5, 6), "float64")})
    assert sorted(_overwritten_ops(plan)) == ["squeeze"]
    slot = {node.name: plan.liveness.slot_of[(node.id, 0)] for node in plan.graph.nodes}
    assert plan.liveness.whole_views[slot[chained.name]] == slot[g.name]
    assert slot[turned.name] not in plan.liveness.whole_views
    rng = np.random.default_rng(9)
    a_, b_ = rng.uniform(-1, 1, (4, 5)), rng.uniform(-1, 1, (5, 6))
    g_ = a_ @ b_
    got = plan.run([a_, b_])[0]
    np.testing.assert_allclose(got[0], np.maximum(g_.reshape(6, 4) - 0.2, 0) * 3, rtol=1e-12)
    np.testing.assert_allclose(got[1], np.maximum(g_ - 0.2, 0) * 3, rtol=1e-12)


# --- random graphs of GEMMs, views and aliases ----------------------------------------------------------

STEPS = ("dense", "reshaped_dense", "view_chain", "epilogue", "tanh", "slice_row", "keep_view",
         "add_kept")


@st.composite
def view_graphs(draw):
    rows, cols = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    steps = draw(st.lists(st.sampled_from(STEPS), min_size=1, max_size=9))
    widths = [draw(st.integers(1, 6)) for _ in steps]
    return rows, cols, steps, widths


def _build(rows, cols, steps, widths, F, weights):
    """The graph's outputs with ``F`` = a small op table, for sym and for NumPy alike."""
    value, kept, outputs = F["x"], [], []
    shape = (rows, cols)
    for k, (step, width) in enumerate(zip(steps, widths)):
        if step in ("dense", "reshaped_dense"):
            value = F["dot"](value, weights(k, (shape[1], width)))
            shape = (shape[0], width)
            if step == "reshaped_dense":      # through a flat view and back: a whole view of the GEMM
                value = F["reshape"](F["reshape"](value, (-1,)), shape)
        elif step == "view_chain":
            value = F["reshape"](F["expand_dims"](value), shape)
        elif step == "epilogue":               # a bias row and relu: stored over its input when it dies
            value = F["relu"](F["add"](value, weights(k, (1, shape[1]))))
        elif step == "tanh":
            value = F["tanh"](value * 0.5)
        elif step == "slice_row":              # the value and a broadcast row of it in one kernel
            value = F["add"](value * 0.5, F["row0"](value))
        elif step == "keep_view":              # a view of the value read again at the end
            kept.append((F["reshape"](value, (-1,)), shape))
        elif kept and kept[0][1] == shape:     # add_kept: the oldest kept view of this shape, read now
            value = F["add"](value, F["reshape"](kept.pop(0)[0], shape))
    outputs.append(value)
    outputs.extend(F["sum"](view) for view, _ in kept)
    return outputs


SYM_OPS = {"dot": lambda v, w: sym.dot(v, w), "reshape": lambda v, s: sym.reshape(v, shape=s),
           "expand_dims": lambda v: sym.expand_dims(v, axis=0), "relu": sym.relu, "tanh": sym.tanh,
           "add": sym.broadcast_add, "row0": lambda v: sym.slice_axis(v, axis=0, begin=0, end=1),
           "sum": lambda v: sym.sum(v * v)}
NUMPY_OPS = {"dot": lambda v, w: v @ w, "reshape": lambda v, s: v.reshape(s),
             "expand_dims": lambda v: v[None], "relu": lambda v: np.maximum(v, 0), "tanh": np.tanh,
             "add": np.add, "row0": lambda v: v[:1], "sum": lambda v: (v * v).sum()}


@settings(max_examples=60, deadline=None)
@given(graph=view_graphs(), static=st.booleans(), seed=st.integers(0, 999))
@example(graph=(3, 4, ["dense", "slice_row"], [5, 1]), static=False, seed=0)    # wrong before the fix
@example(graph=(3, 4, ["reshaped_dense", "epilogue", "dense"], [5, 1, 2]), static=True, seed=1)
@example(graph=(3, 4, ["reshaped_dense", "keep_view", "epilogue", "add_kept"], [5, 1, 1, 1]), static=False,
         seed=2)
def test_random_graphs_of_views_match_numpy(graph, static, seed):
    rows, cols, steps, widths = graph
    specs, names = {"x": ((rows, cols), "float64")}, {}

    def weight_var(k, shape):
        names[k] = f"w{k}"
        specs[f"w{k}"] = (shape, "float64")
        return sym.var(f"w{k}")

    outputs = _build(rows, cols, steps, widths, dict(SYM_OPS, x=sym.var("x")), weight_var)
    plan = _compile(sym.Group(outputs), specs, static_alloc=static)
    rng = np.random.default_rng(seed)
    for _ in range(2):                          # the second call runs over the first call's buffers
        feed = {name: rng.uniform(-1, 1, shape) for name, (shape, _) in specs.items()}
        want = _build(rows, cols, steps, widths, dict(NUMPY_OPS, x=feed["x"]),
                      lambda k, shape: feed[names[k]])
        got, _ = plan.run([feed[name] for name in plan.input_names])
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
