"""Shapes, widths and gradient cases of ``pad`` and ``pad_backward``, shared by tests/test_ops_pad.py and
``test_gradients.CASES``.

``pad_geometry`` draws a shape (0-d to 4-d), a mode and widths that the mode accepts: reflection widths
smaller than their axis, no edge padding of an empty axis.
"""
from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import strategies as st

MODES = ("constant", "edge", "reflect")


def widths_for(draw, shape: tuple, mode: str, most: int = 4) -> tuple:
    """MXNet's flat pad_width for ``shape`` that ``mode`` accepts."""
    widths = []
    for size in shape:
        limit = most if mode == "constant" else min(most, size - 1) if mode == "reflect" else \
            (most if size else 0)
        widths += [draw(st.integers(0, max(limit, 0))) for _ in range(2)]
    return tuple(widths)


@st.composite
def pad_geometry(draw, min_side: int = 0, max_dims: int = 4, modes=MODES):
    """(shape, mode, pad_width)."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=min_side, max_side=5))
    mode = draw(st.sampled_from(modes))
    return shape, mode, widths_for(draw, shape, mode)


def padded_shape(shape: tuple, pad_width: tuple) -> tuple:
    return tuple(d + pad_width[2 * i] + pad_width[2 * i + 1] for i, d in enumerate(shape))


def _values(shape):
    return hnp.arrays(np.float64, shape, elements=st.floats(-3.0, 3.0, allow_nan=False, width=64))


@st.composite
def pad_case(draw):
    shape, mode, widths = draw(pad_geometry(min_side=1, max_dims=3))
    value = draw(st.floats(-2.0, 2.0, allow_nan=False))
    fn = lambda F, x: F.pad(x, mode=mode, pad_width=widths, constant_value=value)  # noqa: E731
    return fn, [draw(_values(shape))], {}


@st.composite
def pad_backward_case(draw):
    shape, mode, widths = draw(pad_geometry(min_side=1, max_dims=3, modes=("edge", "reflect")))
    grad = draw(_values(padded_shape(shape, widths)))
    return (lambda F, g: F.pad_backward(g, mode=mode, pad_width=widths)), [grad], {}


PAD_CASES = {"pad": pad_case(), "pad_backward": pad_backward_case()}
