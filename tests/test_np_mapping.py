"""np and npx are generated from the op registry: every np/npx name is a registry op (or made of them),
every registry op that MXNet's np/npx expose is reachable, and each exists eagerly, traced, in nd and sym."""
from __future__ import annotations

import pytest

from gpuhybrid import nd, np, npx, sym
from gpuhybrid.numpy import NumpySymbol
from gpuhybrid.numpy.mapping import NOT_IN_NP, NP_LINALG_OPS, NP_OPS, NP_RANDOM_OPS, NPX_OPS
from gpuhybrid.numpy_extension.gluon_support import SYMBOLIC_NPX
from gpuhybrid.ops.registry import REGISTRY

# MXNet 1.9's mx.np / mx.npx names whose work is one of our registry ops (from MXNet's API reference).
MXNET_NP = {
    "add", "subtract", "multiply", "divide", "true_divide", "power", "mod", "remainder", "maximum",
    "minimum", "hypot", "equal", "not_equal", "greater", "greater_equal", "less", "less_equal",
    "logical_and", "logical_or", "logical_xor", "logical_not", "abs", "absolute", "negative", "exp", "expm1",
    "log", "log1p", "log2", "log10", "sqrt", "square", "reciprocal", "sin", "cos", "tan", "tanh", "sinh",
    "cosh", "sign", "ceil", "floor", "round", "around", "trunc", "fix", "clip", "where", "sum", "mean", "max",
    "amax", "min", "amin", "prod", "argmax", "argmin", "std", "var", "all", "any", "cumsum", "sort",
    "argsort", "reshape", "transpose", "swapaxes", "expand_dims", "squeeze", "ravel", "concatenate", "stack",
    "split", "vstack", "hstack", "broadcast_to", "tile", "take", "dot", "matmul", "outer", "zeros", "ones",
    "full", "empty", "arange", "linspace", "eye", "zeros_like", "ones_like", "full_like", "empty_like",
}
MXNET_NP_RANDOM = {"normal", "uniform", "randint", "choice", "shuffle", "seed", "rand", "randn"}
MXNET_NPX = {
    "relu", "sigmoid", "softmax", "log_softmax", "batch_flatten", "activation", "fully_connected", "pick",
    "one_hot", "dropout", "batch_norm", "layer_norm", "instance_norm", "convolution", "deconvolution",
    "pooling", "embedding", "leaky_relu", "sequence_mask", "topk", "batch_dot", "reshape_like",
    "broadcast_like", "smooth_l1", "erf", "gelu", "rsqrt", "slice", "slice_axis", "upsampling",
    "set_np", "reset_np", "is_np_array", "cpu", "gpu", "num_gpus", "waitall",
}


def test_every_registry_op_is_reachable_from_np_or_npx_or_left_out_with_a_reason():
    reached = (set(NP_OPS.values()) | {op for op, _ in NPX_OPS.values()} | set(NP_RANDOM_OPS.values())
               | set(NP_LINALG_OPS.values()))
    unaccounted = sorted(name for name in REGISTRY
                         if name not in reached and name not in NOT_IN_NP and not name.endswith("_scalar"))
    assert not unaccounted, (f"registry ops neither np nor npx offers: {unaccounted}; map them in "
                             f"gpuhybrid/numpy/mapping.py (or say in NOT_IN_NP why not)")
    for name, op in NP_OPS.items():
        if op.endswith("_scalar"):
            assert op[:-len("_scalar")] in REGISTRY, name
    assert not set(NOT_IN_NP) & {op for op, _ in NPX_OPS.values()}


@pytest.mark.parametrize("name", sorted(MXNET_NP))
def test_mxnet_np_names_exist_eagerly_and_traced(name):
    assert callable(getattr(np, name))
    assert callable(getattr(NumpySymbol._ns, name))
    assert name in NP_OPS


@pytest.mark.parametrize("name", sorted(MXNET_NPX))
def test_mxnet_npx_names_exist_eagerly_and_traced(name):
    assert callable(getattr(npx, name))
    if name in NPX_OPS:
        assert callable(getattr(SYMBOLIC_NPX, name))


def test_mxnet_np_random_and_linalg():
    assert all(callable(getattr(np.random, name)) for name in MXNET_NP_RANDOM)
    assert callable(np.linalg.norm)


@pytest.mark.parametrize("name", sorted(NP_OPS) + sorted(NPX_OPS))
def test_the_registry_op_behind_each_name_is_in_nd_and_sym_too(name):
    op = NPX_OPS[name][0] if name in NPX_OPS else NP_OPS[name]
    base = op[:-len("_scalar")] if op.endswith("_scalar") else op
    assert base in REGISTRY
    assert callable(getattr(nd, op)) and callable(getattr(sym, op))


def test_npx_docstrings_come_from_the_registry():
    assert npx.fully_connected.__doc__.startswith(REGISTRY["FullyConnected"].doc)
    assert "running_mean" in npx.batch_norm.__doc__
