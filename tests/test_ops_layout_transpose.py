"""``layout_transpose``, the copying transpose that the channel-last lowering (graph/passes/channel_last.py)
puts around convolutions and poolings, against NumPy: eagerly, through a compiled plan (its own node) and
into given arrays (``eager_into``, what static_alloc plans call); the result is a fresh C-contiguous copy."""
from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd, sym
from gpuhybrid.errors import GhError
from gpuhybrid.ops import get_op
from gpuhybrid.ops.registry import TensorSpec
from helpers import SETTINGS

COVERS = {"layout_transpose"}
EAGER = nd.NDArray.F


@st.composite
def arrays_and_axes(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=5)))
    dtype = draw(st.sampled_from(["float16", "float32", "float64", "int32"]))
    x = draw(hnp.arrays(dtype, shape, elements=st.integers(-100, 100)))
    return x, tuple(draw(st.permutations(range(len(shape)))))


@SETTINGS
@given(case=arrays_and_axes())
def test_layout_transpose_is_numpys_transpose_as_a_fresh_copy(case):
    x, axes = case
    want = np.transpose(x, axes)
    got = EAGER.layout_transpose(nd.array(x, dtype=x.dtype), axes=axes).asnumpy()
    assert got.dtype == x.dtype and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)
    plan = sym.compile_symbol(sym.layout_transpose(sym.var("x"), axes=axes),
                              {"x": TensorSpec(x.shape, x.dtype)}, gh.cpu(), fuse=True)
    np.testing.assert_array_equal(plan.run([x])[0][0], want)
    into = np.empty(want.shape, x.dtype)
    device = gh.cpu()
    assert get_op("layout_transpose").eager_into(device, [x], {"axes": axes}, [into]) is into
    np.testing.assert_array_equal(into, want)


def test_axes_that_are_not_a_permutation_raise():
    with pytest.raises(GhError, match=r"axes \(0, 0, 1\) is not a permutation of the 3 axes"):
        EAGER.layout_transpose(nd.zeros((1, 2, 3)), axes=(0, 0, 1))
