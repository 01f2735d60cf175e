"""Inputs that used to reach users as raw exceptions from deep inside: hybridized blocks now behave as
imperative ones (int clips with unrepresentable bounds, dtypes generated kernels have no C type for)
or raise a GhError that names the cause (huge scalars, NaN Embedding indices, bad environment values)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.backend.environment import ConfigurationError
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.errors import GhError, OpValueError
from gpuhybrid.gluon import nn

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="fused CPU kernels need a C++ compiler")


class Lambda(nn.HybridBlock):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def hybrid_forward(self, F, x):
        return self.function(F, x)


def _both(function, x):
    """(imperative, hybridized) results of ``function(F, x)``."""
    block = Lambda(function)
    imperative = block(x).asnumpy()
    block.hybridize()
    return imperative, block(x).asnumpy()


# Bounds beyond the int range on either side; the clipped values stay representable (NumPy's cast of
# an out-of-range float to int is undefined, so no expectation could be written for those).
LOWER = st.sampled_from([-np.inf, -1e20, -2.0 ** 40, -2.0 ** 31 - 1, -3.0, 0.0])
UPPER = st.sampled_from([np.inf, 1e20, 2.0 ** 40, 2.0 ** 31, 5.0, 0.0])


@settings(max_examples=25, deadline=None)
@given(dtype=st.sampled_from(["int32", "int64"]), low=LOWER, high=UPPER, seed=st.integers(0, 2 ** 16))
def test_int_clip_with_unrepresentable_bounds_matches_numpy(dtype, low, high, seed):
    data = np.random.default_rng(seed).integers(-50, 50, size=17).astype(dtype)
    # The chain keeps the clip inside a fusible group (a tanh-free integer chain).
    imperative, hybridized = _both(lambda F, x: F.clip(x + 1, low, high) * 2, nd.array(data, dtype=dtype))
    expected = (np.clip(data.astype(np.float64) + 1, low, high) * 2).astype(dtype)
    np.testing.assert_array_equal(hybridized, imperative)
    np.testing.assert_array_equal(hybridized, expected)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "uint32", "uint64", "longdouble"])
def test_dtypes_without_a_kernel_type_run_op_by_op(dtype):
    data = np.random.default_rng(3).integers(0, 60, size=(4, 5)).astype(dtype)      # no int8 wrap-around
    with pytest.raises(GhError, match=f"{np.dtype(dtype).name}.*not a supported dtype"):
        nd.array(data, dtype=data.dtype)    # nd's creation functions refuse them at the boundary
    # An NDArray built around such an array directly still runs, hybridized as imperatively.
    imperative, hybridized = _both(lambda F, x: F.relu(x * 2) + 1, nd.NDArray(data, gh.cpu()))
    np.testing.assert_array_equal(hybridized, imperative)
    expected = np.maximum(data.astype(np.float64) * 2, 0) + 1
    np.testing.assert_array_equal(hybridized.astype(np.float64), expected)


def test_complex_input_is_refused_with_the_op_named():
    block = Lambda(lambda F, x: F.relu(x) + 1)
    block.hybridize()
    with pytest.raises(GhError, match="relu.*complex64"):
        block(nd.NDArray(np.ones(3, dtype=np.complex64), gh.cpu()))


@pytest.mark.parametrize("hybridize", [False, True])
def test_scalar_beyond_every_dtype_is_a_clear_error(hybridize):
    block = Lambda(lambda F, x: x * 10 ** 400)
    if hybridize:
        block.hybridize()
    with pytest.raises(OpValueError, match="mul_scalar.*401 digits"):
        block(nd.array([1.0, 2.0]))


@pytest.mark.parametrize("hybridize", [False, True])
def test_nan_embedding_index_is_a_clear_error(hybridize):
    embedding = nn.Embedding(5, 3)
    embedding.initialize()
    if hybridize:
        embedding.hybridize()
    with pytest.raises(OpValueError, match="Embedding.*NaN"):
        with np.errstate(invalid="ignore"):
            embedding(nd.array([0.0, float("nan"), 2.0]))


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5"])
def test_bad_max_cached_plans_is_a_clear_error_not_a_broken_import(value):
    code = ("import gpuhybrid\n"
            "from gpuhybrid.gluon import nn\n"
            "try:\n"
            "    nn.Dense(2)\n"
            "except gpuhybrid.errors.GhError as exc:\n"
            "    print(type(exc).__name__, exc)\n")
    env = {**os.environ, "GPUHYBRID_MAX_CACHED_PLANS": value}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ConfigurationError")
    assert f"GPUHYBRID_MAX_CACHED_PLANS={value!r}" in result.stdout
    assert "integer >= 1" in result.stdout


def test_max_cached_plans_from_the_environment(monkeypatch):
    monkeypatch.setenv("GPUHYBRID_MAX_CACHED_PLANS", "3")
    assert nn.Dense(2)._max_cached_plans == 3
    monkeypatch.setenv("GPUHYBRID_MAX_CACHED_PLANS", "nope")
    with pytest.raises(ConfigurationError):
        nn.Dense(2)


@pytest.mark.parametrize("name", ["GPUHYBRID_FUSE", "GPUHYBRID_VERIFY_PASSES", "GPUHYBRID_DEBUG_COMPARE"])
@pytest.mark.parametrize("value", ["yes", "2", "true"])
def test_switches_from_the_environment_are_validated(monkeypatch, name, value):
    """A switch set to anything but 0 or 1 was silently read as off (or on, for GPUHYBRID_FUSE)."""
    block = Lambda(lambda F, x: F.relu(x) * 2)
    block.hybridize()
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=f"{name}={value!r} is not allowed: use 1 .* or 0"):
        block(nd.array(np.arange(6.0).reshape(2, 3)))


@pytest.mark.parametrize("name", ["GPUHYBRID_FUSE", "GPUHYBRID_VERIFY_PASSES", "GPUHYBRID_DEBUG_COMPARE"])
@pytest.mark.parametrize("value", ["0", "1", ""])
def test_switches_on_and_off_give_the_same_results(monkeypatch, name, value):
    data = np.random.default_rng(5).standard_normal((2, 3))
    block = Lambda(lambda F, x: F.relu(x) * 2 + F.tanh(x))
    block.hybridize()
    monkeypatch.setenv(name, value)
    got = block(nd.array(data, dtype="float64")).asnumpy()
    np.testing.assert_allclose(got, np.maximum(data, 0) * 2 + np.tanh(data), rtol=1e-12)
