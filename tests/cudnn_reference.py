"""A float64 NumPy reference of what cuDNN computes for a ``ConvProblem`` (backend/cudnn_conv.py), written
from cuDNN's definitions (cross-correlation with pre/post padding, stride, dilation and channel groups;
dgrad and wgrad as its adjoints), not from gpuhybrid's im2col code. Arrays are in the problem's memory
layout (channel-last when ``problem.channel_last``)."""
from __future__ import annotations

import itertools

import numpy as np


def to_logical(array: np.ndarray, channel_last: bool) -> np.ndarray:
    """(N, *spatial, C) -> (N, C, *spatial) when channel-last; as is otherwise."""
    if not channel_last:
        return array
    return np.moveaxis(array, -1, 1)


def to_memory(array: np.ndarray, channel_last: bool) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(array, 1, -1) if channel_last else array)


def _offset_slices(problem, offset):
    """The strided slice of the padded data that kernel offset ``offset`` reads over all outputs."""
    return (slice(None), slice(None)) + tuple(
        slice(r * d, r * d + (o - 1) * s + 1, s)
        for r, d, s, o in zip(offset, problem.dilation, problem.stride, problem.y_shape[2:]))


def _padded_shape(problem):
    return problem.x_shape[:2] + tuple(i + lo + hi for i, lo, hi in zip(
        problem.x_shape[2:], problem.pre_padding, problem.post_padding))


def _inside(problem):
    return (Ellipsis,) + tuple(slice(lo, lo + i) for lo, i in zip(problem.pre_padding, problem.x_shape[2:]))


def _split(problem):
    groups = problem.groups
    n, c = problem.x_shape[:2]
    k = problem.w_shape[0]
    return groups, c // groups, k // groups, n


# cuDNN's pointwise activation modes (RELU_FWD without clip or slope, SIGMOID_FWD, TANH_FWD) as functions
ACTIVATIONS = {None: lambda y: y, "relu": lambda y: np.maximum(y, 0),
               "sigmoid": lambda y: 1 / (1 + np.exp(-y)), "tanh": np.tanh}


def fprop(problem, x, w, bias=None, residual=None):
    groups, cg, kg, n = _split(problem)
    x = to_logical(np.asarray(x, np.float64), problem.channel_last)
    w = to_logical(np.asarray(w, np.float64), problem.channel_last)
    padded = np.zeros(_padded_shape(problem))
    padded[_inside(problem)] = x
    out_spatial = problem.y_shape[2:]
    y = np.zeros((n, groups, kg) + tuple(out_spatial))
    wg = w.reshape((groups, kg, cg) + tuple(problem.w_shape[2:]))
    for offset in itertools.product(*(range(k) for k in problem.w_shape[2:])):
        window = padded[_offset_slices(problem, offset)].reshape((n, groups, cg) + tuple(out_spatial))
        y += np.einsum("ngc...,gkc->ngk...", window, wg[(Ellipsis,) + offset])
    y = y.reshape(problem.y_shape)
    if bias is not None:
        y = y + np.asarray(bias, np.float64).reshape((1, -1) + (1,) * problem.spatial_dims)
    if residual is not None:        # in the result's memory layout, as the data
        y = y + to_logical(np.asarray(residual, np.float64), problem.channel_last)
    return to_memory(ACTIVATIONS[problem.activation](y), problem.channel_last)


def dgrad(problem, dy, w):
    groups, cg, kg, n = _split(problem)
    dy = to_logical(np.asarray(dy, np.float64), problem.channel_last)
    w = to_logical(np.asarray(w, np.float64), problem.channel_last)
    padded = np.zeros(_padded_shape(problem))
    out_spatial = problem.y_shape[2:]
    dyg = dy.reshape((n, groups, kg) + tuple(out_spatial))
    wg = w.reshape((groups, kg, cg) + tuple(problem.w_shape[2:]))
    for offset in itertools.product(*(range(k) for k in problem.w_shape[2:])):
        contribution = np.einsum("ngk...,gkc->ngc...", dyg, wg[(Ellipsis,) + offset])
        padded[_offset_slices(problem, offset)] += contribution.reshape((n, groups * cg) + tuple(out_spatial))
    return to_memory(padded[_inside(problem)], problem.channel_last)


def wgrad(problem, x, dy):
    groups, cg, kg, n = _split(problem)
    x = to_logical(np.asarray(x, np.float64), problem.channel_last)
    dy = to_logical(np.asarray(dy, np.float64), problem.channel_last)
    padded = np.zeros(_padded_shape(problem))
    padded[_inside(problem)] = x
    out_spatial = problem.y_shape[2:]
    dyg = dy.reshape((n, groups, kg) + tuple(out_spatial))
    dw = np.zeros((groups, kg, cg) + tuple(problem.w_shape[2:]))
    for offset in itertools.product(*(range(k) for k in problem.w_shape[2:])):
        window = padded[_offset_slices(problem, offset)].reshape((n, groups, cg) + tuple(out_spatial))
        dw[(Ellipsis,) + offset] = np.einsum("ngcp,ngkp->gkc", window.reshape(n, groups, cg, -1),
                                             dyg.reshape(n, groups, kg, -1))
    return to_memory(dw.reshape(problem.w_shape), problem.channel_last)


def run_reference(problem, arrays: dict) -> np.ndarray:
    """The problem's output from ``arrays`` ({role: memory-layout array}), in float64."""
    if problem.kind == "fprop":
        return fprop(problem, arrays["x"], arrays["w"], arrays.get("bias"), arrays.get("residual"))
    if problem.kind == "dgrad":
        return dgrad(problem, arrays["y"], arrays["w"])
    return wgrad(problem, arrays["x"], arrays["y"])


def random_inputs(problem, rng, dtype=None) -> dict:
    """Standard-normal inputs of every input role of ``problem`` in its memory layout."""
    dtype = dtype or problem.dtype
    return {role: rng.standard_normal(problem.memory_shape(role)).astype(dtype)
            for role in problem.input_roles}
