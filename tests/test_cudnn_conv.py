"""The cuDNN convolution path without a GPU: how MXNet attributes become cuDNN problems (checked against
a float64 reference of cuDNN's own definitions and against the ops' CPU results), dims and strides of
channel-first and channel-last tensors, the graph description (a recording stand-in for the ``cudnn``
module, and the real nvidia-cudnn-frontend where it is installed: describing a graph needs no GPU), the
plan cache, GPUHYBRID_CONV, and the first-run check's decisions. The GPU twins: test_cudnn_conv_gpu.py.
"""
from __future__ import annotations

import types
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuhybrid import nd
from gpuhybrid.backend import cudnn_conv
from gpuhybrid.backend.cudnn_conv import ConvProblem, PlanCache, Unsupported, dims_and_strides
from gpuhybrid.backend.environment import ConfigurationError
from gpuhybrid.errors import GhError
from gpuhybrid.ops import conv_cudnn
from gpuhybrid.ops.conv import deconv_geometry, geometry
from gpuhybrid.ops.conv_cudnn import VerificationGate, compare, conv_mode, problem_for
from cudnn_reference import random_inputs, run_reference
from helpers import SETTINGS

EAGER = nd.NDArray.F


# --- dims and strides ----------------------------------------------------------------------------------

@SETTINGS
@given(st.integers(1, 3), st.data())
def test_dims_and_strides_describe_the_memory_of_both_layouts(spatial, data):
    shape = tuple(data.draw(st.lists(st.integers(1, 5), min_size=spatial + 2, max_size=spatial + 2)))
    dims, strides = dims_and_strides(shape, channel_last=False)
    assert dims == list(shape)
    assert strides == [s // 8 for s in np.empty(shape).strides]
    # channel-last: the memory is (N, *spatial, C); cuDNN's dims stay (N, C, *spatial)
    memory = np.empty((shape[0],) + shape[2:] + (shape[1],))
    logical = np.moveaxis(memory, -1, 1)
    dims, strides = dims_and_strides(shape, channel_last=True)
    assert dims == list(logical.shape)
    ours = [s for s, d in zip(strides, dims) if d > 1]
    assert ours == [s // 8 for s, d in zip(logical.strides, dims) if d > 1]


def test_nhwc_strides_spelled_out():
    assert dims_and_strides((2, 3, 4, 5), True) == ([2, 3, 4, 5], [60, 1, 15, 3])
    assert dims_and_strides((2, 3, 4, 5), False) == ([2, 3, 4, 5], [60, 20, 5, 1])
    assert dims_and_strides((8, 2, 3, 3), True) == ([8, 2, 3, 3], [18, 1, 6, 2])      # a KRSC filter


# --- attributes -> cuDNN problems, checked against cuDNN's definitions ----------------------------------

def _random_case(data, dims):
    """A random MXNet convolution: (data shape, kernel, stride, dilate, pad, groups, filters)."""
    draw = data.draw
    groups = draw(st.sampled_from([1, 2, 3]))
    depthwise = draw(st.booleans())
    channels = groups * draw(st.integers(1, 2))
    filters = channels if depthwise and groups > 1 else groups * draw(st.integers(1, 2))
    if depthwise and groups > 1:
        groups = channels
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    dilate = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(dims))
    spatial = tuple(draw(st.integers(d * (k - 1) + 1, 7)) for k, d in zip(kernel, dilate))
    return (draw(st.integers(1, 2)), channels) + spatial, kernel, stride, dilate, pad, groups, filters


def _fits(x, y, pad, kernel, dilate, stride) -> bool:
    """Whether some padding >= 0 after ``x`` elements (``pad`` before) makes the forward reach ``y``."""
    return any((x + pad + q - dilate * (kernel - 1) - 1) // stride + 1 == y for q in range(40))


def _attrs(kernel, stride, dilate, pad, groups, filters, no_bias=True):
    return dict(kernel=kernel, stride=stride, dilate=dilate, pad=pad, num_group=groups, num_filter=filters,
                no_bias=no_bias)


@SETTINGS
@given(st.integers(1, 3), st.data())
def test_a_convolution_maps_to_the_fprop_that_gives_the_ops_result(dims, data):
    shape, kernel, stride, dilate, pad, groups, filters = _random_case(data, dims)
    attrs = _attrs(kernel, stride, dilate, pad, groups, filters, no_bias=False)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((filters, shape[1] // groups) + kernel)
    b = rng.standard_normal(filters)
    y = EAGER.Convolution(nd.array(x, dtype="float64"), nd.array(w, dtype="float64"),
                          nd.array(b, dtype="float64"), **attrs).asnumpy()
    problem = problem_for("Convolution", [x.shape, w.shape, b.shape], y.shape, geometry(attrs), groups,
                          "float64", bias=True)
    assert problem is not None and problem.kind == "fprop" and problem.groups == groups
    assert problem.reaches() == y.shape[2:]
    np.testing.assert_allclose(run_reference(problem, {"x": x, "w": w, "bias": b}), y, rtol=1e-10, atol=1e-10)


@SETTINGS
@given(st.integers(1, 3), st.data())
def test_a_deconvolution_maps_to_the_dgrad_that_gives_the_ops_result(dims, data):
    shape, kernel, stride, dilate, pad, groups, filters = _random_case(data, dims)
    adj = tuple(data.draw(st.integers(0, s + 1)) for s in stride)        # adj >= stride included
    attrs = dict(_attrs(kernel, stride, dilate, pad, groups, filters), adj=adj, target_shape=())
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((shape[1], filters // groups) + kernel)
    geom, out_spatial = deconv_geometry(attrs, shape[2:])
    if min(out_spatial) < 1:
        return
    y = EAGER.Deconvolution(nd.array(x, dtype="float64"), nd.array(w, dtype="float64"), **attrs).asnumpy()
    problem = problem_for("Deconvolution", [x.shape, w.shape], y.shape, geom, groups, "float64")
    if problem is None:       # only where no padding >= 0 after the data makes it one dgrad
        assert not all(_fits(*axis) for axis in zip(y.shape[2:], shape[2:], geom.pad, kernel, dilate, stride))
        return
    assert problem.kind == "dgrad"
    np.testing.assert_allclose(run_reference(problem, {"y": x, "w": w}), y, rtol=1e-10, atol=1e-10)


@SETTINGS
@given(st.integers(1, 3), st.data())
def test_the_weight_gradient_maps_to_the_wgrad_that_gives_the_ops_result(dims, data):
    shape, kernel, stride, dilate, pad, groups, filters = _random_case(data, dims)
    attrs = dict(kernel=kernel, stride=stride, dilate=dilate, pad=pad, num_group=groups)
    geom = geometry(attrs)
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape)
    short = tuple(data.draw(st.integers(0, o - 1)) for o in geom.out_spatial(shape[2:]))
    g = rng.standard_normal((shape[0], filters) + tuple(o - c for o, c in zip(geom.out_spatial(shape[2:]),
                                                                                short)))
    dw = EAGER.convolution_weight_backward(nd.array(x, dtype="float64"), nd.array(g, dtype="float64"),
                                           **attrs).asnumpy()
    problem = problem_for("convolution_weight_backward", [x.shape, g.shape], dw.shape, geom, groups,
                          "float64")
    if problem is None:       # only where no padding >= 0 after the data makes it one wgrad
        assert not all(_fits(*axis) for axis in zip(shape[2:], g.shape[2:], pad, kernel, dilate, stride))
        return
    assert problem.kind == "wgrad" and problem.w_shape == dw.shape
    np.testing.assert_allclose(run_reference(problem, {"x": x, "y": g}), dw, rtol=1e-10, atol=1e-10)


def test_adj_and_short_gradients_become_less_padding_after_the_data():
    attrs = dict(kernel=(3,), stride=(2,), dilate=(1,), pad=(1,), num_group=1)
    geom = geometry(attrs)
    # a gradient shorter than the data reaches (the op allows it): the same wgrad with post padding 0
    problem = problem_for("convolution_weight_backward", [(1, 2, 9), (1, 3, 4)], (3, 2, 3), geom, 1,
                          "float32")
    assert (problem.pre_padding, problem.post_padding) == ((1,), (0,))
    # an adj of a whole stride: the dgrad whose forward ends one element early
    problem = problem_for("Deconvolution", [(1, 2, 5), (2, 3, 3)], (1, 3, 11), geom, 1, "float32")
    assert (problem.pre_padding, problem.post_padding) == ((1,), (0,))
    assert problem_for("Deconvolution", [(1, 2, 5), (2, 3, 3)], (1, 3, 10), geom, 1,
                       "float32").post_padding == (1,)


def test_shapes_that_are_not_one_cudnn_convolution_stay_on_im2col():
    geom = geometry(dict(kernel=(3,), stride=(1,), dilate=(1,), pad=(0,), num_group=1))
    # stride 1 without padding: an adj of 1 would need padding -1 after the data
    assert problem_for("Deconvolution", [(1, 2, 5), (2, 3, 3)], (1, 3, 8), geom, 1, "float32") is None
    geom = geometry(dict(kernel=(3,), stride=(2,), dilate=(1,), pad=(1,), num_group=1))
    # empty batches, integers and mismatched groups
    assert problem_for("Convolution", [(0, 2, 9), (3, 2, 3)], (0, 3, 5), geom, 1, "float32") is None
    assert problem_for("Convolution", [(1, 2, 9), (3, 2, 3)], (1, 3, 5), geom, 1, "int32") is None
    assert problem_for("Convolution", [(1, 2, 9), (3, 2, 3)], (1, 3, 5), geom, 2, "float32") is None
    with pytest.raises(ValueError, match="not a convolution op"):
        problem_for("Pooling", [(1, 2, 9)], (1, 2, 5), geom, 1, "float32")


@SETTINGS
@given(st.integers(0, 6), st.integers(0, 4), st.integers(1, 4), st.integers(1, 3), st.integers(1, 2),
       st.integers(1, 9))
def test_post_padding_makes_the_forward_reach_exactly_the_result(y_minus, pad, kernel, stride, dilate, x):
    reach = (x + 2 * pad - dilate * (kernel - 1) - 1) // stride + 1
    y = reach - y_minus
    if reach < 1 or y < 1:
        return
    post = conv_cudnn.post_padding(x, y, pad, kernel, dilate, stride)
    fits = [q for q in range(0, 40) if (x + pad + q - dilate * (kernel - 1) - 1) // stride + 1 == y]
    if not fits:
        assert post is None
    else:
        assert post == (pad if pad in fits else min(fits))


def test_asymmetric_geometry_and_channel_last_data_map_per_axis():
    attrs = dict(kernel=(3, 2), stride=(2, 1), dilate=(1, 2), pad=(1, 0), num_group=2)
    # NHWC data (N, H, W, C) and an (F, kh, kw, C/groups) filter: cuDNN gets channel-first dims
    problem = problem_for("Convolution", [(2, 9, 7, 4), (6, 3, 2, 2)], (2, 5, 5, 6), geometry(attrs), 2,
                          "float16", layout="NHWC")
    assert problem.channel_last and problem.x_shape == (2, 4, 9, 7) and problem.w_shape == (6, 2, 3, 2)
    assert (problem.pre_padding, problem.post_padding, problem.stride, problem.dilation) == \
        ((1, 0), (1, 0), (2, 1), (1, 2))
    assert problem.memory_shape("y") == (2, 5, 5, 6)
    rng = np.random.default_rng(3)
    arrays = random_inputs(problem, rng, "float64")
    logical = run_reference(ConvProblem(**{**problem.__dict__, "channel_last": False}),
                            {"x": np.moveaxis(arrays["x"], -1, 1), "w": np.moveaxis(arrays["w"], -1, 1)})
    np.testing.assert_allclose(run_reference(problem, arrays), np.moveaxis(logical, 1, -1), rtol=1e-12)


def test_a_problem_refuses_what_cudnn_cannot_be_asked():
    common = dict(pre_padding=(0,), post_padding=(0,), stride=(1,), dilation=(1,), dtype="float32")
    with pytest.raises(ValueError, match="forward convolution"):
        ConvProblem("wgrad", (1, 2, 5), (3, 2, 3), (1, 3, 3), bias=True, **common)
    with pytest.raises(ValueError, match="kind"):
        ConvProblem("bprop", (1, 2, 5), (3, 2, 3), (1, 3, 3), **common)
    with pytest.raises(ValueError, match="one entry per spatial axis"):
        ConvProblem("fprop", (1, 2, 5, 5), (3, 2, 3, 3), (1, 3, 3, 3), **common)
    assert not ConvProblem("fprop", (1, 2, 5), (3, 2, 3), (1, 3, 4), **common).consistent()


# --- the graph description -----------------------------------------------------------------------------

class RecordingTensor:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def __getattr__(self, method):
        def record(*args):
            self.log.append((self.name, method) + args)
            return self
        return record


class RecordingGraph:
    """Stands in for cudnn.pygraph: records every call with its keyword arguments."""

    def __init__(self, **kwargs):
        self.calls = [("pygraph", kwargs)]
        self.tensor_log = []

    def __getattr__(self, method):
        def record(**kwargs):
            self.calls.append((method, kwargs))
            return RecordingTensor(self.tensor_log, kwargs.get("name", method))
        return record


def _recording_cudnn():
    enum = types.SimpleNamespace
    return types.SimpleNamespace(
        data_type=enum(HALF="HALF", FLOAT="FLOAT", DOUBLE="DOUBLE"),
        heur_mode=enum(A="A", FALLBACK="FALLBACK"),
        numerical_note=enum(DOWN_CONVERT_INPUTS="DOWN_CONVERT_INPUTS", NONDETERMINISTIC="NONDETERMINISTIC",
                            REDUCED_PRECISION_REDUCTION="REDUCED_PRECISION_REDUCTION",
                            TENSOR_CORE="TENSOR_CORE"),
        pygraph=RecordingGraph)


FPROP = ConvProblem("fprop", (2, 4, 9, 7), (6, 2, 3, 3), (2, 6, 5, 3), (1, 0), (1, 0), (2, 1), (1, 2),
                    "float16", bias=True, activation="relu")


def test_the_description_chains_conv_bias_and_relu_and_pins_the_output():
    graph, tensors = cudnn_conv.describe_graph(_recording_cudnn(), FPROP, handle="H")
    methods = [name for name, _ in graph.calls]
    assert methods == ["pygraph", "tensor", "tensor", "tensor", "conv_fprop", "bias", "relu"]
    assert graph.calls[0][1]["io_data_type"] == "HALF" and graph.calls[0][1]["compute_data_type"] == "FLOAT"
    assert graph.calls[0][1]["handle"] == "H"
    x, w, b = (kwargs for name, kwargs in graph.calls if name == "tensor")
    assert (x["dim"], x["stride"]) == ([2, 4, 9, 7], [252, 63, 7, 1])
    assert (w["dim"], b["dim"], b["stride"]) == ([6, 2, 3, 3], [1, 6, 1, 1], [6, 1, 1, 1])
    conv = dict(graph.calls)["conv_fprop"]
    assert (conv["pre_padding"], conv["post_padding"], conv["stride"], conv["dilation"]) == \
        ([1, 0], [1, 0], [2, 1], [1, 2])
    assert conv["compute_data_type"] == "FLOAT"
    assert graph.tensor_log == [("relu", "set_output", True), ("relu", "set_dim", [2, 6, 5, 3]),
                                ("relu", "set_stride", [90, 15, 3, 1]), ("relu", "set_data_type", "HALF")]
    assert set(tensors) == {"x", "w", "bias", "y"}


@pytest.mark.parametrize("kind, method, ports", [("dgrad", "conv_dgrad", ("loss", "filter")),
                                                 ("wgrad", "conv_wgrad", ("image", "loss"))])
def test_gradients_are_described_with_their_output_dims_in_double(kind, method, ports):
    problem = ConvProblem(kind, (1, 2, 5, 5), (3, 2, 3, 3), (1, 3, 3, 3), (0, 0), (0, 0), (1, 1), (1, 1),
                          "float64", channel_last=True)
    graph, tensors = cudnn_conv.describe_graph(_recording_cudnn(), problem)
    call = dict(graph.calls)[method]
    assert set(ports) <= set(call) and call["compute_data_type"] == "DOUBLE"
    out = problem.shape_of(problem.output_role)
    assert ("conv" if False else method.split("_")[1], "set_dim", list(out)) in graph.tensor_log
    assert (method.split("_")[1], "set_stride", dims_and_strides(out, True)[1]) in graph.tensor_log


class PlanListGraph:
    """Stands in for a described pygraph whose plans ``refused`` do not build (deselected by a note)."""

    def __init__(self, count, refused):
        self.log, self.count, self.refused, self.selected = [], count, refused, None

    def __getattr__(self, name):
        return lambda *args: self.log.append((name,) + args)

    def get_execution_plan_count(self):
        return self.count

    def build_plan_at_index(self, index):
        self.log.append(("build_plan_at_index", index))
        if index in self.refused:
            raise RuntimeError("Deselecting execution plan")
        self.selected = index

    def get_workspace_size(self):
        return 1000 + self.selected


@pytest.mark.parametrize("dtype, tensor_core", [("float32", True), ("float16", False), ("float64", False)])
def test_building_a_plan_excludes_tf32_half_sums_and_nondeterministic_plans(dtype, tensor_core):
    graph = PlanListGraph(3, refused={0})
    assert cudnn_conv.build_plan(_recording_cudnn(), graph, dtype) == 1001
    assert [entry[0] for entry in graph.log] == [
        "validate", "build_operation_graph", "create_execution_plans", "deselect_numeric_notes",
        "check_support", "build_plan_at_index", "build_plan_at_index"]
    assert graph.log[2][1] == ["A", "FALLBACK"]
    assert graph.log[3][1] == ["DOWN_CONVERT_INPUTS", "REDUCED_PRECISION_REDUCTION", "NONDETERMINISTIC"] + \
        ["TENSOR_CORE"] * tensor_core


def test_a_plan_list_that_builds_nowhere_says_why_each_plan_failed():
    with pytest.raises(RuntimeError, match=r"no cuDNN execution plan builds: \[0\] RuntimeError: Deselect"):
        cudnn_conv.build_plan(_recording_cudnn(), PlanListGraph(2, refused={0, 1}), "float32")


def test_the_real_frontends_walk_stops_at_a_deselected_backend_plan_so_plans_are_built_by_index():
    """Why build_plan builds by index: nvidia-cudnn-frontend's pygraph.build_plans() takes only
    NotImplementedError/cudnnGraphNotSupportedError for a decline, while the backend refuses a plan that a
    note filter deselected with a RuntimeError ("Deselecting execution plan"). A stand-in for the lowered
    C++ graph (no cuDNN library here) refuses plan 0 as the backend does."""
    cudnn = pytest.importorskip("cudnn", reason="nvidia-cudnn-frontend is not installed")
    from cudnn.engines.base import PlanConfig

    class Lowered:
        built = []

        def build_plan_at_index(self, index):
            if index == 0:
                raise RuntimeError("Deselecting execution plan")
            self.built.append(index)

        def get_workspace_size_plan_at_index(self, index):
            return 4096 * index

        def __getattr__(self, name):
            raise AttributeError(name)

    def planned_graph():
        graph, _ = cudnn_conv.describe_graph(cudnn, FPROP)
        graph._plans = [PlanConfig(7, {}, cpp_index=0), PlanConfig(8, {}, cpp_index=1)]
        graph._planning_done = graph._is_validated = graph._cpp_bog_done = graph._cpp_plans_created = True
        graph._lowered_graph = Lowered()
        graph._backend_guard_reason = lambda: None
        return graph

    with pytest.raises(RuntimeError, match="Deselecting"):
        planned_graph().build_plans()
    graph = planned_graph()
    graph.build_plan_at_index(1)
    assert Lowered.built == [1] and graph.get_workspace_size() == 4096
    # and build_plan names only heuristics modes and numerical notes the installed frontend has
    stand_in = PlanListGraph(2, refused={0})
    assert cudnn_conv.build_plan(cudnn, stand_in, "float32") == 1001
    assert stand_in.log[3][1][-1] == cudnn.numerical_note.TENSOR_CORE


def test_the_real_frontend_describes_the_graphs_without_a_gpu():
    """nvidia-cudnn-frontend's own builders accept every call (unknown keywords raise there) and infer
    the same forward extents; skipped where the package is not installed."""
    cudnn = pytest.importorskip("cudnn", reason="nvidia-cudnn-frontend is not installed")
    graph, tensors = cudnn_conv.describe_graph(cudnn, FPROP)
    report = graph.inspect()
    assert [node["type"] for node in report["nodes"]] == ["CONV_FPROP", "POINTWISE", "POINTWISE"]
    conv = report["nodes"][0]
    assert conv["params"] == {"pre_padding": [1, 0], "post_padding": [1, 0], "stride": [2, 1],
                              "dilation": [1, 2], "compute_data_type": None} or \
        {k: conv["params"][k] for k in ("pre_padding", "post_padding", "stride", "dilation")} == \
        {"pre_padding": [1, 0], "post_padding": [1, 0], "stride": [2, 1], "dilation": [1, 2]}
    # the frontend's own inference of the virtual conv output agrees with ours
    assert list(report["tensors"][conv["outputs"]["Y"]]["dim"]) == list(FPROP.y_shape)
    assert list(tensors["y"].dim) == list(FPROP.y_shape) and not tensors["y"].is_virtual
    for kind in ("dgrad", "wgrad"):
        problem = ConvProblem(kind, (2, 4, 9, 7), (6, 2, 3, 3), (2, 6, 5, 3), (1, 0), (1, 0), (2, 1),
                              (1, 2), "float32", channel_last=True)
        graph, tensors = cudnn_conv.describe_graph(cudnn, problem)
        out = tensors[problem.output_role]
        assert list(out.dim) == list(problem.shape_of(problem.output_role))
        assert list(out.stride) == dims_and_strides(problem.shape_of(problem.output_role), True)[1]


def test_execute_hands_the_real_frontend_a_handle_stream_and_a_pack_of_its_own_tensors(monkeypatch):
    """execute()'s calls as the installed frontend receives them: a cudnn.Handle (a raw int is refused
    there) set to CuPy's current stream, a variant pack keyed by the graph's tensors with every input and
    the output as integer device addresses, and a workspace of the plan's size (a stand-in CuPy over
    host memory; the graph's execute records its arguments instead of calling the backend)."""
    cudnn = pytest.importorskip("cudnn", reason="nvidia-cudnn-frontend is not installed")
    graph, tensors = cudnn_conv.describe_graph(cudnn, FPROP)
    handle = cudnn.Handle(None, 0, 0)        # no backend handle: set_stream only records the stream
    monkeypatch.setattr(cudnn_conv.PLANS, "handles", {})
    monkeypatch.setattr(cudnn, "create_handle", lambda: handle)
    executed = []
    graph.execute = lambda pack, workspace, handle=None: executed.append((pack, workspace, handle))
    host = types.SimpleNamespace(
        empty=lambda shape, dtype: HostArray(np.empty(shape, dtype)),
        cuda=types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(ptr=0x5EED)))
    plan = cudnn_conv.ConvPlan(FPROP, graph, tensors, workspace_bytes=640)
    arrays = {role: HostArray(np.zeros(FPROP.memory_shape(role), FPROP.dtype)) for role in FPROP.input_roles}
    out = cudnn_conv.execute(cudnn, host, 0, plan, arrays)
    (pack, workspace, used), = executed
    assert used is handle and cudnn.get_stream(handle) == 0x5EED
    want = {tensors[role].uid: arrays[role].data.ptr for role in FPROP.input_roles}
    assert graph._uid_to_data(pack) == {**want, tensors["y"].uid: out.data.ptr}
    assert all(type(pointer) is int for pointer in pack.values()) and type(workspace) is int
    assert out.shape == FPROP.memory_shape("y") and out.dtype == np.float16 and plan.runs == 1


class HostArray:
    """A NumPy array dressed as a CuPy one: ``data.ptr`` is its first element's address."""

    def __init__(self, array):
        self.array, self.shape, self.dtype = array, array.shape, array.dtype
        self.data = types.SimpleNamespace(ptr=array.ctypes.data)


@SETTINGS
@given(st.data(), st.sampled_from(["fprop", "dgrad", "wgrad"]), st.booleans())
def test_a_1d_convolution_is_described_as_the_2d_one_with_a_unit_axis_over_the_same_memory(data, kind,
                                                                                            channel_last):
    """cuDNN convolves 2-D and 3-D data only: a 1-D problem goes to it as 2-D (H = 1). The 2-D view
    computes the same numbers (cudnn_reference.py) on the same arrays, merely reshaped."""
    x, w, y, pad, post, stride, dilate = _random_1d_problem(data)
    problem = ConvProblem(kind, x, w, y, pad, post, stride, dilate, "float64", channel_last)
    lifted = cudnn_conv.as_two_dimensional(problem)
    assert lifted.consistent() and lifted.spatial_dims == 2 and lifted.groups == problem.groups
    arrays = random_inputs(problem, np.random.default_rng(len(kind)))
    want = run_reference(problem, arrays)
    got = run_reference(lifted, {role: a.reshape(lifted.memory_shape(role)) for role, a in arrays.items()})
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-12, atol=1e-12)
    graph, tensors = cudnn_conv.describe_graph(_recording_cudnn(), problem)
    for role in problem.input_roles + (problem.output_role,):
        calls = [c for name, c in graph.calls if name == "tensor" and c["name"] == role]
        dims, strides = (calls[0]["dim"], calls[0]["stride"]) if calls else \
            [entry[2] for entry in graph.tensor_log if entry[1] in ("set_dim", "set_stride")]
        assert [dims, strides] == list(dims_and_strides(lifted.shape_of(role), channel_last))
    assert cudnn_conv.as_two_dimensional(lifted) is lifted


def _random_1d_problem(data):
    """(data, filter, result shapes, pre and post padding, stride, dilation) of a consistent 1-D case."""
    groups = data.draw(st.integers(1, 2))
    channels, filters = groups * data.draw(st.integers(1, 3)), groups * data.draw(st.integers(1, 3))
    kernel, stride = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    dilate = data.draw(st.integers(1, 2))
    pad = data.draw(st.integers(0, 2))
    extent = data.draw(st.integers(max(1, dilate * (kernel - 1) + 1 - 2 * pad), 9))
    out = (extent + 2 * pad - dilate * (kernel - 1) - 1) // stride + 1
    return ((2, channels, extent), (filters, channels // groups, kernel), (2, filters, out), (pad,), (pad,),
            (stride,), (dilate,))


def test_the_real_frontend_gets_1d_convolutions_as_2d():
    cudnn = pytest.importorskip("cudnn", reason="nvidia-cudnn-frontend is not installed")
    problem = ConvProblem("fprop", (2, 4, 11), (6, 2, 3), (2, 6, 6), (1,), (1,), (2,), (1,), "float32",
                          channel_last=True, bias=True, activation="tanh")
    graph, tensors = cudnn_conv.describe_graph(cudnn, problem)
    conv = graph.inspect()["nodes"][0]
    assert {k: list(conv["params"][k]) for k in ("pre_padding", "post_padding", "stride", "dilation")} == \
        {"pre_padding": [0, 1], "post_padding": [0, 1], "stride": [1, 2], "dilation": [1, 1]}
    assert list(tensors["x"].dim) == [2, 4, 1, 11] and list(tensors["x"].stride) == [44, 1, 44, 4]
    assert problem.consistent()
    assert list(graph.inspect()["tensors"][conv["outputs"]["Y"]]["dim"]) == [2, 6, 1, 6]
    assert list(tensors["y"].dim) == [2, 6, 1, 6] and list(tensors["y"].stride) == [36, 1, 36, 6]


# --- the plan cache ------------------------------------------------------------------------------------

def test_the_plan_cache_builds_once_remembers_refusals_and_drops_the_oldest(monkeypatch):
    built = []

    def describe(cudnn, problem, handle):
        built.append(problem)
        if problem.dtype == "float16":
            raise RuntimeError("no engine")
        return "graph", {}

    monkeypatch.setattr(cudnn_conv, "describe_graph", describe)
    monkeypatch.setattr(cudnn_conv, "build_plan", lambda cudnn, graph, dtype="": 0)
    cache = PlanCache(capacity=2)
    fake = types.SimpleNamespace(create_handle=lambda: "handle")
    problems = [ConvProblem("fprop", (1, 1, 4), (1, 1, k), (1, 1, 5 - k), (0,), (0,), (1,), (1,), "float32")
                for k in (1, 2, 3)]
    assert cache.plan(fake, 0, problems[0]) is cache.plan(fake, 0, problems[0])
    assert built == problems[:1]
    half = ConvProblem("fprop", (1, 1, 4), (1, 1, 1), (1, 1, 4), (0,), (0,), (1,), (1,), "float16")
    for _ in range(2):
        with pytest.raises(Unsupported, match="no engine"):
            cache.plan(fake, 0, half)
    assert built.count(half) == 1
    cache.plan(fake, 0, problems[1])
    cache.plan(fake, 0, problems[2])
    assert len(cache) == 2
    inconsistent = ConvProblem("fprop", (1, 1, 4), (1, 1, 3), (1, 1, 9), (0,), (0,), (1,), (1,), "float32")
    with pytest.raises(Unsupported, match="not one convolution"):
        cache.plan(fake, 0, inconsistent)
    assert inconsistent not in built


# --- GPUHYBRID_CONV, the selection and the first-run check -------------------------------------------

def test_the_switch_reads_auto_cudnn_and_im2col(monkeypatch):
    monkeypatch.delenv("GPUHYBRID_CONV", raising=False)
    assert conv_mode() == "auto"
    for value in ("cudnn", "IM2COL", " auto "):
        monkeypatch.setenv("GPUHYBRID_CONV", value)
        assert conv_mode() == value.strip().lower()
    monkeypatch.setenv("GPUHYBRID_CONV", "winograd")
    with pytest.raises(ConfigurationError, match="GPUHYBRID_CONV='winograd'.*auto.*cudnn.*im2col"):
        conv_mode()


def test_the_check_accepts_rounding_and_rejects_wrong_numbers():
    rng = np.random.default_rng(4)
    want = rng.standard_normal((2, 3, 5, 5))
    assert compare(want + 1e-7 * want, want, "float32").agrees
    assert not compare(want + 1e-7 * want, want, "float64").agrees
    assert compare(want.astype(np.float16), want, "float16").agrees
    assert not compare(np.roll(want, 1, axis=-1), want, "float32").agrees              # an off-by-one
    assert not compare(want.transpose(0, 1, 3, 2), want, "float32").agrees            # swapped strides
    assert not compare(want[:, :, :4], want, "float32").agrees
    with_nan = want.copy()
    with_nan[0, 0, 0, 0] = np.nan
    assert compare(with_nan, with_nan, "float32").agrees
    assert not compare(want, with_nan, "float32").agrees
    verdict = compare(2 * want, want, "float32")
    assert "max |cuDNN - im2col|" in verdict.why and verdict.error == pytest.approx(np.abs(want).max())


def test_the_gate_warns_once_per_rejected_configuration():
    gate = VerificationGate()
    key = (0, "Convolution", FPROP)
    with pytest.warns(RuntimeWarning, match="cuDNN is not used for Convolution on gpu\\(0\\).*disagrees"):
        gate.judge(key, np.ones(3), np.zeros(3) + 2, "float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gate.reject(key, "again")
    assert gate.state(key) == "rejected"
    gate.judge((1, "Convolution", FPROP), np.ones(3), np.ones(3), "float32")
    assert gate.state((1, "Convolution", FPROP)) == "trusted"


class FakeDevice:
    """A GPU as gpu_convolution sees it, over NumPy arrays."""
    is_gpu = True
    device_id = 0
    xp = types.SimpleNamespace(ascontiguousarray=np.ascontiguousarray, asnumpy=np.asarray)


@pytest.fixture
def fake_cudnn(monkeypatch):
    """gpu_convolution with a stand-in frontend: ``state.result`` makes what 'cuDNN' returns."""
    state = types.SimpleNamespace(built=[], executed=0, im2col_calls=0, fail_build=False,
                                  result=lambda problem, arrays: run_reference(problem, arrays))

    def plan(cudnn, device_id, problem):
        state.built.append(problem)
        if state.fail_build:
            raise Unsupported("no engine for this")
        return types.SimpleNamespace(problem=problem)

    def execute(cudnn, xp, device_id, plan, arrays):
        state.executed += 1
        return state.result(plan.problem, arrays)

    monkeypatch.setattr(conv_cudnn, "frontend", lambda: ("cudnn", "cuDNN 9"))
    monkeypatch.setattr(conv_cudnn.PLANS, "plan", plan)
    monkeypatch.setattr(conv_cudnn, "execute", execute)
    monkeypatch.setattr(conv_cudnn, "GATE", VerificationGate())
    monkeypatch.delenv("GPUHYBRID_CUDNN_VERIFY", raising=False)
    return state


def _run_conv(state, attrs=None):
    attrs = attrs or _attrs((3, 3), (1, 2), (1, 1), (1, 0), 1, 3, no_bias=False)
    rng = np.random.default_rng(5)
    inputs = [rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)]
    spec = nd.NDArray.F.Convolution(*(nd.array(a, dtype="float64") for a in inputs), **attrs)

    def im2col():
        state.im2col_calls += 1
        return spec.asnumpy()

    out_spec = types.SimpleNamespace(shape=spec.shape, dtype=np.dtype("float64"))
    return conv_cudnn.gpu_convolution(FakeDevice(), "Convolution", inputs, attrs, out_spec,
                                      geometry(attrs), im2col), spec.asnumpy()


def test_a_configuration_is_checked_once_then_trusted(fake_cudnn, monkeypatch):
    monkeypatch.setenv("GPUHYBRID_CONV", "auto")
    for call in range(3):
        got, want = _run_conv(fake_cudnn)
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert fake_cudnn.executed == 3 and fake_cudnn.im2col_calls == 1
    assert fake_cudnn.built[0].bias and fake_cudnn.built[0].kind == "fprop"


def test_a_wrong_first_result_warns_and_the_configuration_stays_on_im2col(fake_cudnn, monkeypatch):
    monkeypatch.setenv("GPUHYBRID_CONV", "cudnn")
    fake_cudnn.result = lambda problem, arrays: run_reference(problem, arrays)[..., ::-1].copy()
    with pytest.warns(RuntimeWarning, match="disagrees with im2col"):
        got, want = _run_conv(fake_cudnn)
    np.testing.assert_array_equal(got, want)          # the reference, not the wrong result
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, want = _run_conv(fake_cudnn)
    np.testing.assert_array_equal(got, want)
    assert fake_cudnn.executed == 1 and fake_cudnn.im2col_calls == 2


def test_no_plan_falls_back_quietly_under_auto_and_with_a_warning_under_cudnn(fake_cudnn, monkeypatch):
    fake_cudnn.fail_build = True
    monkeypatch.setenv("GPUHYBRID_CONV", "auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run_conv(fake_cudnn)
    monkeypatch.setattr(conv_cudnn, "GATE", VerificationGate())
    monkeypatch.setenv("GPUHYBRID_CONV", "cudnn")
    with pytest.warns(RuntimeWarning, match="no cuDNN plan"):
        _run_conv(fake_cudnn)
    assert fake_cudnn.executed == 0


def test_a_bias_no_engine_fuses_is_added_after_the_cudnn_convolution(fake_cudnn, monkeypatch):
    """cuDNN's plain convolution engines take double and float32 without TF32; those that fuse a bias may
    not: the convolution then still runs through cuDNN, the bias added after it (not im2col)."""
    built, plain_plan = [], conv_cudnn.PLANS.plan

    def plan(cudnn, device_id, problem):
        built.append(problem)
        if problem.bias:
            raise Unsupported("no engine fuses the bias")
        return plain_plan(cudnn, device_id, problem)
    monkeypatch.setattr(conv_cudnn.PLANS, "plan", plan)
    monkeypatch.setenv("GPUHYBRID_CONV", "cudnn")
    rng = np.random.default_rng(6)
    first = [rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)]
    for layout in ("NCHW", "NHWC"):
        attrs = {**_attrs((3, 3), (1, 2), (1, 1), (1, 0), 1, 3, no_bias=False), "layout": layout}
        inputs = first if layout == "NCHW" else [np.moveaxis(a, 1, -1).copy() for a in first[:2]] + first[2:]
        want = EAGER.Convolution(*(nd.array(a, dtype="float64") for a in inputs), **attrs).asnumpy()
        out_spec = types.SimpleNamespace(shape=want.shape, dtype=np.dtype("float64"))
        with warnings.catch_warnings():
            warnings.simplefilter("error")            # no "no cuDNN plan" warning: cuDNN runs it
            got = conv_cudnn.gpu_convolution(FakeDevice(), "Convolution", inputs, attrs, out_spec,
                                             geometry(attrs), lambda: want)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert [p.bias for p in built] == [True, False, True, False] and built[3].channel_last
    assert fake_cudnn.executed == 2 and not conv_cudnn.GATE.rejected
    assert all(not key[2].bias for key in conv_cudnn.GATE.trusted)


def test_a_cudnn_that_fails_outright_still_leaves_a_biased_convolution_to_im2col(fake_cudnn, monkeypatch):
    def plan(cudnn, device_id, problem):
        raise RuntimeError("cudnnCreate failed: CUDNN_STATUS_NOT_INITIALIZED")
    monkeypatch.setattr(conv_cudnn.PLANS, "plan", plan)
    monkeypatch.setenv("GPUHYBRID_CONV", "auto")
    with pytest.warns(RuntimeWarning, match="the cuDNN call failed .RuntimeError: cudnnCreate failed"):
        got, want = _run_conv(fake_cudnn)
    np.testing.assert_array_equal(got, want)
    assert fake_cudnn.im2col_calls == 1


def test_unchecked_mode_and_im2col_mode(fake_cudnn, monkeypatch):
    monkeypatch.setenv("GPUHYBRID_CUDNN_VERIFY", "0")
    _run_conv(fake_cudnn)
    assert (fake_cudnn.executed, fake_cudnn.im2col_calls) == (1, 0)
    monkeypatch.setenv("GPUHYBRID_CONV", "im2col")
    _run_conv(fake_cudnn)
    assert (fake_cudnn.executed, fake_cudnn.im2col_calls) == (1, 1)


def test_mixed_dtypes_and_unmappable_shapes_take_im2col(fake_cudnn, monkeypatch):
    monkeypatch.setenv("GPUHYBRID_CONV", "auto")
    rng = np.random.default_rng(6)
    attrs = dict(kernel=(3,), stride=(1,), dilate=(1,), pad=(0,), num_group=1)
    x, g = rng.standard_normal((1, 2, 9)), rng.standard_normal((1, 3, 6))     # one short at stride 1
    calls = []
    out_spec = types.SimpleNamespace(shape=(3, 2, 3), dtype=np.dtype("float64"))
    conv_cudnn.gpu_convolution(FakeDevice(), "convolution_weight_backward", [x, g], attrs, out_spec,
                               geometry(attrs), lambda: calls.append(1))
    conv_cudnn.gpu_convolution(FakeDevice(), "convolution_weight_backward", [x.astype("float32"), g],
                               attrs, out_spec, geometry(attrs), lambda: calls.append(1))
    assert calls == [1, 1] and fake_cudnn.built == []


def test_requiring_cudnn_where_it_is_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(conv_cudnn, "frontend", lambda: (None, "nvidia-cudnn-frontend is not importable"))
    monkeypatch.setenv("GPUHYBRID_CONV", "cudnn")
    with pytest.raises(GhError, match="GPUHYBRID_CONV=cudnn, but cuDNN cannot be used: nvidia-cudnn-frontend "
                                      "is not importable.*GPUHYBRID_CONV=auto"):
        _run_conv(types.SimpleNamespace(im2col_calls=0))
    monkeypatch.setenv("GPUHYBRID_CONV", "auto")
    state = types.SimpleNamespace(im2col_calls=0)
    _run_conv(state)
    assert state.im2col_calls == 1


def test_the_probe_says_why_cudnn_is_not_usable_here():
    cudnn_conv.reset_frontend_probe()
    module, why = cudnn_conv.frontend()
    if module is None:        # no package, or (on this machine) no libcudnn behind it
        assert "nvidia-cudnn-frontend" in why and ("pip install" in why)
    cudnn_conv.reset_frontend_probe()


def test_explain_names_the_convolution_path(monkeypatch):
    gpu = types.SimpleNamespace(is_gpu=True)
    assert conv_cudnn.explain_convolutions(["dot", "relu"], gpu) is None
    assert conv_cudnn.explain_convolutions(["Convolution"], types.SimpleNamespace(is_gpu=False)) is None
    monkeypatch.setenv("GPUHYBRID_CONV", "im2col")
    assert "2 step(s) run as im2col + cuBLAS (cuDNN not used: GPUHYBRID_CONV=im2col)" in \
        conv_cudnn.explain_convolutions(["Convolution", "convolution_weight_backward"], gpu)
    monkeypatch.setenv("GPUHYBRID_CONV", "auto")
    monkeypatch.setattr(conv_cudnn, "frontend", lambda: (types.SimpleNamespace(__version__="1.32.0"),
                                                         "cuDNN 92700"))
    text = conv_cudnn.explain_convolutions(["Deconvolution"], gpu)
    assert "through cuDNN (cuDNN 92700, nvidia-cudnn-frontend 1.32.0)" in text
    assert "library call that a CUDA graph does not capture" in text


def test_the_gpu_twins_ask_for_consistent_problems():
    from test_cudnn_conv_gpu import CASES
    for kind, x, w, y, pre, post, stride, dilation, dtype, channel_last in CASES:
        problem = ConvProblem(kind, x, w, y, pre, post, stride, dilation, dtype, channel_last)
        assert problem.consistent(), problem


class NumpyAsCupy:
    """NumPy under CuPy's name for the one function the GPU path adds (asnumpy)."""
    asnumpy = staticmethod(np.asarray)

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.mark.parametrize("op", ["Convolution", "Deconvolution", "convolution_weight_backward"])
def test_the_ops_gpu_eager_paths_hand_cudnn_the_problem_that_gives_their_result(op, fake_cudnn,
                                                                                 monkeypatch):
    """ops/conv.py's GPU branch with a stand-in cuDNN that computes the reference of cuDNN's definitions:
    the first-run check finds it equal to the im2col result, so the mapping each op hands over is right
    (Deconvolution with target_shape and a bias, grouped, strided, dilated)."""
    from gpuhybrid.ops import get_op
    monkeypatch.setenv("GPUHYBRID_CONV", "cudnn")
    device = types.SimpleNamespace(is_gpu=True, device_id=0, xp=NumpyAsCupy())
    rng = np.random.default_rng(7)
    geometry_attrs = dict(kernel=(3, 2), stride=(2, 1), dilate=(1, 2), pad=(1, 1), num_group=2)
    attrs = dict(geometry_attrs, num_filter=6, no_bias=False, layout=None)
    x = rng.standard_normal((2, 4, 7, 6))
    if op == "Convolution":
        inputs = [x, rng.standard_normal((6, 2, 3, 2)), rng.standard_normal(6)]
    elif op == "Deconvolution":
        attrs.update(adj=(), target_shape=(14, 5))
        inputs = [x, rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(6)]
    else:
        attrs = geometry_attrs
        inputs = [x, rng.standard_normal((2, 6, 4, 5))]          # one short of what x reaches
    want = get_op(op).eager(types.SimpleNamespace(is_gpu=False, xp=np), inputs, attrs,
                            _out_specs(op, inputs, attrs))
    got = get_op(op).eager(device, inputs, attrs, _out_specs(op, inputs, attrs))
    assert fake_cudnn.executed == 1
    assert len(conv_cudnn.GATE.trusted) == 1 and not conv_cudnn.GATE.rejected
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _out_specs(op, inputs, attrs):
    from gpuhybrid.ops import get_op
    from gpuhybrid.ops.registry import TensorSpec
    specs = [TensorSpec(a.shape, a.dtype) for a in inputs]
    return [get_op(op).infer(specs, attrs)]
