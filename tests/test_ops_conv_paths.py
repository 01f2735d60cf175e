"""The special paths of the convolution kernels, each pinned by a case that takes it (random hypothesis
geometries reach them only now and then): pointwise (1x1, stride 1, no padding: no im2col), the batch-inside
GEMM on maps as small as ResNet's last stages (2x2, 1x1 with padding), strided 1x1 projections, groups and
depthwise. Forward, the transposed convolution (the data gradient) and the weight gradient are each
compared with the direct float64 references of test_ops_conv, and the gradients by their adjoint
identities <g, conv(x, w)> == <deconv(g, w), x> == <weight_backward(x, g), w>."""
from __future__ import annotations

import numpy as np
import pytest

from gpuhybrid import nd
from gpuhybrid.ndarray import NDArray
from test_ops_conv import conv_reference

EAGER = NDArray.F

# (data shape, kernel, stride, pad, groups, filters)
PATHS = [((3, 4, 5, 6), (1, 1), (1, 1), (0, 0), 1, 5),        # pointwise
         ((2, 4, 5), (1,), (1,), (0,), 2, 6),                 # pointwise, grouped, 1-D
         ((3, 4, 5, 6), (1, 1), (2, 2), (0, 0), 1, 3),        # strided 1x1 projection
         ((4, 6, 1, 1), (3, 3), (1, 1), (1, 1), 1, 7),        # 3x3 on a 1x1 map (mostly padding)
         ((4, 6, 2, 2), (3, 3), (2, 2), (1, 1), 2, 4),        # 2x2 map, stride 2, groups
         ((3, 4, 5, 5), (3, 3), (1, 1), (1, 1), 4, 4),        # depthwise
         ((2, 2, 3, 4, 3), (2, 1, 2), (1, 1, 2), (1, 0, 0), 1, 3)]


@pytest.mark.parametrize("shape, kernel, stride, pad, groups, filters", PATHS)
def test_each_conv_path_matches_the_direct_reference(shape, kernel, stride, pad, groups, filters):
    rng = np.random.default_rng(sum(shape) + filters)
    dims = len(kernel)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((filters, shape[1] // groups) + kernel)
    attrs = dict(kernel=kernel, stride=stride, pad=pad, num_group=groups)
    y = EAGER.Convolution(nd.array(x, dtype="float64"), nd.array(w, dtype="float64"), num_filter=filters,
                          no_bias=True, **attrs).asnumpy()
    want = conv_reference(x, w, None, stride, (1,) * dims, pad, groups)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10)

    g = rng.standard_normal(y.shape)
    adj = tuple(i + 2 * p - ((o - 1) * s + k)          # the input rows the last window does not reach
                for i, p, o, s, k in zip(shape[2:], pad, y.shape[2:], stride, kernel))
    dx = EAGER.Deconvolution(nd.array(g, dtype="float64"), nd.array(w, dtype="float64"), adj=adj,
                             num_filter=shape[1], no_bias=True, **attrs).asnumpy()
    dw = EAGER.convolution_weight_backward(nd.array(x, dtype="float64"), nd.array(g, dtype="float64"),
                                           **attrs).asnumpy()
    assert dx.shape == x.shape and dw.shape == w.shape
    inner = float(np.sum(g * want))
    np.testing.assert_allclose(float(np.sum(dx * x)), inner, rtol=1e-9)
    np.testing.assert_allclose(float(np.sum(dw * w)), inner, rtol=1e-9)



@pytest.mark.parametrize("stride, pad, dilate, extra", [((1, 1), (1, 1), (1, 1), (0, 0)),
                                                        ((2, 3), (0, 0), (1, 2), (1, 2)),
                                                        ((3, 1), (0, 2), (2, 1), (2, 0))])
def test_batch_inside_col2im_is_the_adjoint_of_batch_inside_columns(stride, pad, dilate, extra):
    """<im2col(x), c> == <x, col2im(c)> with groups, strides, dilation and padding; ``extra`` trailing
    rows (a Deconvolution's adj) that no window reads stay zero."""
    from gpuhybrid.ops import conv
    rng = np.random.default_rng(7)
    geom = conv.Geometry((3, 2), stride, dilate, pad)
    in_spatial = (7 + extra[0], 6 + extra[1])
    x = rng.standard_normal((3, 4) + in_spatial)
    out_spatial = geom.out_spatial((7, 6))
    cols = conv.batch_inside_columns(np, x[:, :, :7, :6], geom, out_spatial, 2)
    c = rng.standard_normal(cols.shape)
    dx = conv.batch_inside_col2im(np, c, geom, 3, in_spatial, out_spatial)
    assert dx.shape == x.shape and dx.flags.c_contiguous
    assert not dx[:, :, 7:].any() and not dx[:, :, :, 6:].any()
    np.testing.assert_allclose(float(np.sum(dx * x)), float(np.sum(cols * c)), rtol=1e-10)
