"""Which GPU path runs a convolution: cuDNN (``backend/cudnn_conv.py``) or im2col + cuBLAS (``conv.py``).

``GPUHYBRID_CONV`` chooses: ``auto`` (the default) uses cuDNN where nvidia-cudnn-frontend and the cuDNN
library load and a plan builds for the configuration, im2col + cuBLAS everywhere else; ``cudnn`` makes a
missing or broken cuDNN install an error (a configuration cuDNN has no plan for still falls back, with a
warning once); ``im2col`` never calls cuDNN. The CPU always runs im2col.

The three ops map onto cuDNN's three convolutions (``problem_for``): Convolution is a forward
convolution (its bias fused into the same cuDNN graph where an engine fuses it, else added after),
Deconvolution is the data gradient (dgrad) of the convolution whose output it takes, and
``convolution_weight_backward`` is the weight gradient (wgrad). The padding after the data is chosen per axis
(``post_padding``) so that a Deconvolution's ``adj`` and a gradient shorter than the data reaches are
still exactly one cuDNN convolution; shapes that no padding >= 0 makes one stay on im2col.

The op ``convolution_activation`` (ops/conv_fused.py), which the GPU pass ``fuse_conv_activation`` makes of a
Convolution, its residual add and its relu/sigmoid/tanh, is one cuDNN graph (``gpu_fused_convolution``:
fprop -> bias -> add -> activation); ``cudnn_fusion_state`` says whether the pass runs
(``GPUHYBRID_CUDNN_FUSE``, ``GPUHYBRID_CONV`` and a cuDNN that loads).

Why a first-run check (``VerificationGate``): the cuDNN code was written without a GPU to run it on, and
a wrong stride, padding or layout would give plausible numbers, not an error. So the first result of
every configuration (device, op, shapes, dtype, attributes) is compared once with the im2col path on
the same inputs, with a tolerance per dtype (``TOLERANCE``, relative to the largest magnitude of the
reference). A configuration that agrees is trusted from then on (no second check, no synchronisation);
one that disagrees, or whose plan fails to build or run, warns once and stays on im2col for the rest of
the process (a fused configuration: compared with, and falling back to, its unfused ops). The check costs
one im2col computation and one device-to-host copy per configuration, about what building the cuDNN plan
costs anyway. ``GPUHYBRID_CUDNN_VERIFY=0`` trusts cuDNN unchecked.
"""
from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass, replace

import numpy as np

from ..backend.cudnn_conv import PLANS, ConvProblem, Unsupported, execute, frontend
from ..backend.environment import ConfigurationError, env_flag
from ..errors import GhError

MODES = ("auto", "cudnn", "im2col")
CONV_OPS = ("Convolution", "Deconvolution", "convolution_weight_backward")
FUSED_OP = "convolution_activation"     # the op (ops/conv_fused.py) that the GPU pass makes of the chain
FUSED_ACTIVATIONS = ("relu", "sigmoid", "tanh")
# Largest |cuDNN - im2col| accepted, relative to max |im2col|: the rounding of two summation orders
# (Winograd and FFT plans included) with room, far below what a wrong index gives (order 1).
TOLERANCE = {"float16": 2e-2, "float32": 2e-4, "float64": 1e-9}


def conv_mode() -> str:
    """``GPUHYBRID_CONV``: auto (default), cudnn or im2col."""
    text = os.environ.get("GPUHYBRID_CONV", "").strip().lower() or "auto"
    if text not in MODES:
        raise ConfigurationError(f"GPUHYBRID_CONV={text!r} is not allowed: use auto (cuDNN where it loads, "
                                 f"im2col + cuBLAS elsewhere), cudnn (cuDNN required) or im2col, or unset it")
    return text


def verify_enabled() -> bool:
    """``GPUHYBRID_CUDNN_VERIFY``: check each cuDNN configuration's first result against im2col (1)."""
    return env_flag("GPUHYBRID_CUDNN_VERIFY", True)


def cudnn_reads_channel_last() -> bool:
    """Whether a GPU's convolutions go to cuDNN here (GPUHYBRID_CONV and the install allow it), which
    reads channel-last operands through their strides: hybridized plans then keep them channel last
    (``graph.passes.lower_channel_last``) instead of transposing around im2col."""
    return conv_mode() != "im2col" and frontend()[0] is not None


def _channel_last(layout) -> bool:
    return bool(layout) and layout[-1] == "C"


def problem_for(op: str, in_shapes: list, out_shape: tuple, geom, groups: int, dtype,
                layout=None, bias: bool = False) -> "ConvProblem | None":
    """The cuDNN convolution that computes ``op`` (see ``_problem_for``), remembered per arguments: an
    eager call then costs one dictionary lookup here."""
    return _problem_for(op, tuple(tuple(int(d) for d in s) for s in in_shapes), tuple(out_shape), geom,
                        groups, np.dtype(dtype).name, layout, bias)


@functools.lru_cache(maxsize=4096)
def _problem_for(op: str, in_shapes: tuple, out_shape: tuple, geom, groups: int, dtype: str,
                 layout, bias: bool) -> "ConvProblem | None":
    """The cuDNN convolution that computes ``op`` (one of CONV_OPS) on inputs of ``in_shapes`` with the
    result ``out_shape``, or None where it is not exactly one (then im2col runs it). ``geom`` holds
    kernel, stride, dilate and pad (a Deconvolution's effective pad, after ``target_shape``); shapes are
    those of the arrays (channel-last ones, ``layout`` ending in C, go to cuDNN's channel-first dims);
    ``bias`` fuses a Convolution's bias."""
    dtype = np.dtype(dtype).name
    if dtype not in TOLERANCE or 0 in tuple(out_shape) or any(0 in tuple(s) for s in in_shapes):
        return None              # integers, and empty arrays (nothing for cuDNN to do)
    channel_last = _channel_last(layout)

    def logical(shape):          # a channel-last array's shape in cuDNN's channel-first dims
        shape = tuple(int(d) for d in shape)
        return (shape[0], shape[-1]) + shape[1:-1] if channel_last else shape

    # the forward convolution's data extent (x) and result extent (y) per spatial axis
    if op == "Convolution":
        x_extent, y_extent = logical(in_shapes[0])[2:], logical(out_shape)[2:]
    elif op == "Deconvolution":
        x_extent, y_extent = logical(out_shape)[2:], logical(in_shapes[0])[2:]
    elif op == "convolution_weight_backward":
        x_extent, y_extent = logical(in_shapes[0])[2:], logical(in_shapes[1])[2:]
    else:
        raise ValueError(f"{op} is not a convolution op ({CONV_OPS})")
    post = tuple(post_padding(*axis) for axis in zip(x_extent, y_extent, geom.pad, geom.kernel,
                                                     geom.dilate, geom.stride))
    if None in post:
        return None
    common = dict(pre_padding=tuple(geom.pad), post_padding=post, stride=tuple(geom.stride),
                  dilation=tuple(geom.dilate), dtype=dtype, channel_last=channel_last)
    if op == "Convolution":
        problem = ConvProblem("fprop", logical(in_shapes[0]), logical(in_shapes[1]), logical(out_shape),
                              bias=bias, **common)
    elif op == "Deconvolution":
        # the data gradient of the convolution from the deconvolution's output to its input
        problem = ConvProblem("dgrad", logical(out_shape), logical(in_shapes[1]), logical(in_shapes[0]),
                              **common)
    else:
        problem = ConvProblem("wgrad", logical(in_shapes[0]), logical(out_shape), logical(in_shapes[1]),
                              **common)
    if problem.groups != groups or not problem.consistent():
        return None
    return problem


def post_padding(x_extent: int, y_extent: int, pad: int, kernel: int, dilate: int, stride: int):
    """The padding after the data that makes a forward convolution of ``x_extent`` (``pad`` before it)
    reach exactly ``y_extent``: ``pad`` itself where it does, else the smallest >= 0 that does, else None.

    Only the padding before the data decides which tap meets which element; the padding after it only
    ends the last window. So a Deconvolution's ``adj`` and a gradient shorter than the data reaches are
    still one cuDNN dgrad or wgrad, with less padding after (``adj`` of a stride or more included)."""
    reach = dilate * (kernel - 1) + 1
    lowest = stride * (y_extent - 1) + reach - x_extent - pad        # the last window just fits
    highest = lowest + stride - 1                                    # one more would start a window
    if lowest <= pad <= highest:
        return pad
    post = max(lowest, 0)
    return post if post <= highest else None


# --- the first-run check -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """Whether a cuDNN result agrees with the im2col reference, and by how much they differ."""
    agrees: bool
    error: float        # max |got - want| over the finite entries
    scale: float        # max |want| over the finite entries (1 when there are none, or all are 0)
    why: str = ""


def compare(got: np.ndarray, want: np.ndarray, dtype) -> Verdict:
    """The check's decision on host arrays: same shape, NaN and infinity where the reference has them,
    and elsewhere max |got - want| <= TOLERANCE[dtype] * max |want|."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return Verdict(False, float("inf"), 1.0, f"shape {got.shape} where im2col gives {want.shape}")
    finite = np.isfinite(want)
    if not np.array_equal(finite, np.isfinite(got)) or not np.array_equal(np.isnan(got), np.isnan(want)) \
            or not np.array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)]):
        return Verdict(False, float("inf"), 1.0, "non-finite values where im2col has others")
    if not finite.any():
        return Verdict(True, 0.0, 1.0)
    error = float(np.max(np.abs(got[finite] - want[finite])))
    scale = float(np.max(np.abs(want[finite]))) or 1.0
    tolerance = TOLERANCE[np.dtype(dtype).name]
    if error <= tolerance * scale:
        return Verdict(True, error, scale)
    return Verdict(False, error, scale, f"max |cuDNN - im2col| = {error:.3g}, over {tolerance:g} x "
                                        f"max |im2col| = {tolerance * scale:.3g}")


class VerificationGate:
    """Per configuration: unchecked, trusted (agreed once) or rejected (with the reason, warned once)."""

    def __init__(self):
        self.trusted: set = set()
        self.rejected: dict = {}

    def state(self, key) -> str:
        return "trusted" if key in self.trusted else "rejected" if key in self.rejected else "unchecked"

    def trust(self, key) -> None:
        self.trusted.add(key)

    def reject(self, key, why: str, warn: bool = True) -> None:
        """Keep ``key`` on im2col from now on; warn (once per key) when ``warn``."""
        if key in self.rejected:
            return
        self.rejected[key] = why
        self.trusted.discard(key)
        if warn:
            instead = "its unfused ops" if key[1] == FUSED_OP else "im2col + cuBLAS"
            warnings.warn(f"gpuhybrid: cuDNN is not used for {describe_key(key)}: {why}; this configuration "
                          f"runs as {instead} from now on (GPUHYBRID_CONV=im2col avoids cuDNN "
                          f"altogether)", RuntimeWarning, stacklevel=4)

    def judge(self, key, got: np.ndarray, want: np.ndarray, dtype) -> Verdict:
        """Compare a first result with its reference and record the verdict for ``key``."""
        verdict = compare(got, want, dtype)
        if verdict.agrees:
            self.trust(key)
        else:
            self.reject(key, f"its first result disagrees with im2col ({verdict.why})")
        return verdict

    def clear(self) -> None:
        self.trusted.clear()
        self.rejected.clear()


GATE = VerificationGate()


def describe_key(key) -> str:
    device_id, op, problem = key
    return (f"{op} on gpu({device_id}) ({problem.operations}, data {problem.x_shape}, filter "
            f"{problem.w_shape}, result {problem.y_shape}, {problem.dtype}, pad {problem.pre_padding}, "
            f"stride {problem.stride}, dilation {problem.dilation})")


# --- the GPU entry points ------------------------------------------------------------------------------

def gpu_convolution(device, op: str, inputs: list, attrs: dict, out_spec, geom, im2col):
    """The result of ``op`` on the GPU: cuDNN where chosen and trusted, else ``im2col()`` (the existing
    path, called without arguments). ``inputs`` are CuPy arrays in the op's input order."""
    mode = conv_mode()
    cudnn = _usable_frontend(mode)
    if cudnn is None:
        return im2col()
    has_bias = op != "convolution_weight_backward" and not attrs.get("no_bias", True) and len(inputs) > 2
    if any(a.dtype != out_spec.dtype for a in inputs):
        return im2col()               # mixed dtypes: im2col promotes them as the rule says
    problem = problem_for(op, [a.shape for a in inputs], out_spec.shape, geom, attrs["num_group"],
                          out_spec.dtype, attrs.get("layout"), bias=has_bias and op == "Convolution")
    if problem is None:
        return im2col()
    if problem.bias and not _has_plan(cudnn, device, problem):
        # no engine fuses the bias (double, or float32 once TF32 plans are left out): the convolution
        # alone through cuDNN, the bias added after it as a Deconvolution's is
        problem = replace(problem, bias=False)
    roles = dict(zip(_input_roles(op), inputs))
    finish = None
    if has_bias and not problem.bias:
        def finish(out):              # one bias per channel: axis 1, or the last when channel last
            vector = (1,) * (out.ndim - 1) + (-1,) if _channel_last(attrs.get("layout")) else (1, -1)
            out += inputs[2].reshape(vector + (1,) * (out.ndim - len(vector)))
    return _checked_cudnn_call(cudnn, mode, device, op, problem, roles, im2col, finish)


def _has_plan(cudnn, device, problem) -> bool:
    """Whether cuDNN has a plan for ``problem`` (built and cached now if not yet); a failure that is not
    ``Unsupported`` (no handle) counts as none, and ``_checked_cudnn_call`` then meets and reports it."""
    try:
        PLANS.plan(cudnn, device.device_id, problem)
    except Exception:            # noqa: BLE001 -- a failed cuDNN call must not fail the model
        return False
    return True


def _usable_frontend(mode: str):
    """The ``cudnn`` module when ``mode`` lets cuDNN run and it loads, else None (a GhError in ``cudnn``
    mode)."""
    if mode == "im2col":
        return None
    cudnn, why = frontend()
    if cudnn is None and mode == "cudnn":
        raise GhError(f"GPUHYBRID_CONV=cudnn, but cuDNN cannot be used: {why}; or set "
                      f"GPUHYBRID_CONV=auto to fall back to im2col + cuBLAS")
    return cudnn


def _checked_cudnn_call(cudnn, mode: str, device, op: str, problem, arrays: dict, reference, finish=None):
    """``problem`` through cuDNN on ``arrays`` ({role: array}), under the first-run check: a configuration
    that was rejected, has no plan or fails runs ``reference()`` instead; its first result is compared
    with ``reference()`` once (``finish(out)`` completes the cuDNN result in place before that)."""
    key = (device.device_id, op, problem)
    if GATE.state(key) == "rejected":
        return reference()
    xp = device.xp
    try:
        plan = PLANS.plan(cudnn, device.device_id, problem)
        out = execute(cudnn, xp, device.device_id, plan,
                      {role: xp.ascontiguousarray(arrays[role]) for role in problem.input_roles})
    except Unsupported as error:
        GATE.reject(key, f"no cuDNN plan ({error})", warn=mode == "cudnn")
        return reference()
    except Exception as error:        # noqa: BLE001 -- a failed cuDNN call must not fail the model
        GATE.reject(key, f"the cuDNN call failed ({type(error).__name__}: {error})")
        return reference()
    if finish is not None:
        finish(out)
    if GATE.state(key) == "unchecked":
        if not verify_enabled():
            GATE.trust(key)
            return out
        want = reference()
        verdict = GATE.judge(key, xp.asnumpy(out), xp.asnumpy(want), problem.dtype)
        if not verdict.agrees:
            return want
    return out


def _input_roles(op: str) -> tuple:
    """The ConvProblem role of each input of ``op``, in the op's input order."""
    return {"Convolution": ("x", "w", "bias"), "Deconvolution": ("y", "w", "bias"),
            "convolution_weight_backward": ("x", "y")}[op]


# --- conv (+ bias) (+ residual) + activation as one cuDNN graph ------------------------------------------

def cudnn_fusion_state() -> tuple:
    """(whether hybridized GPU graphs send Convolution (+ bias) (+ residual add) + activation to cuDNN as
    one graph, why or why not): on unless ``GPUHYBRID_CUDNN_FUSE=0``, ``GPUHYBRID_CONV=im2col`` or cuDNN
    does not load. Decided when a graph is compiled (the pass ``fuse_conv_activation``)."""
    if not env_flag("GPUHYBRID_CUDNN_FUSE", True):
        return False, "GPUHYBRID_CUDNN_FUSE=0"
    if conv_mode() == "im2col":
        return False, "GPUHYBRID_CONV=im2col"
    cudnn, why = frontend()
    return cudnn is not None, why


def fused_problem_for(in_shapes: list, out_shape: tuple, geom, groups: int, dtype, layout=None,
                      bias: bool = False, residual: bool = False,
                      activation: "str | None" = None) -> "ConvProblem | None":
    """The cuDNN graph conv fprop -> bias -> add residual -> activation computing act(Convolution(x, w, b)
    + residual) for inputs of ``in_shapes`` (data, weight, then the bias if ``bias``; the residual has the
    result's shape), or None where the convolution is not one cuDNN fprop (``problem_for``)."""
    problem = problem_for("Convolution", list(in_shapes)[:2 + bool(bias)], out_shape, geom, groups, dtype,
                          layout, bias=bias)
    if problem is None or activation not in FUSED_ACTIVATIONS:
        return None
    return replace(problem, residual=bool(residual), activation=activation)


def gpu_fused_convolution(device, inputs: list, attrs: dict, out_spec, geom, unfused):
    """act(Convolution(data, weight, bias) + residual) on the GPU (the op ``convolution_activation``): one
    cuDNN graph where chosen and trusted, else ``unfused()``, which computes the same with the ops the
    graph had before the pass and is the first-run check's reference."""
    mode = conv_mode()
    cudnn = _usable_frontend(mode)
    if cudnn is None or any(a.dtype != out_spec.dtype for a in inputs):
        return unfused()
    bias, residual = not attrs["no_bias"], bool(attrs["has_residual"])
    problem = fused_problem_for([a.shape for a in inputs], out_spec.shape, geom, attrs["num_group"],
                                out_spec.dtype, attrs.get("layout"), bias, residual, attrs["act_type"])
    if problem is None:
        return unfused()
    return _checked_cudnn_call(cudnn, mode, device, FUSED_OP, problem, dict(zip(problem.input_roles, inputs)),
                               unfused)


def explain_convolutions(ops: list, device) -> "str | None":
    """What ``explain()`` says about the convolution steps of a GPU plan (None when it has none)."""
    count = sum(op in CONV_OPS or op == FUSED_OP for op in ops)
    if not count or not device.is_gpu:
        return None
    mode = conv_mode()
    cudnn, why = (None, "GPUHYBRID_CONV=im2col") if mode == "im2col" else frontend()
    if cudnn is None:
        return (f"-- convolutions: {count} step(s) run as im2col + cuBLAS (cuDNN not used: {why})")
    return (f"-- convolutions: {count} step(s) run through cuDNN ({why}, nvidia-cudnn-frontend "
            f"{getattr(cudnn, '__version__', '?')}) where a plan builds and its first result agrees with "
            f"im2col (a fused step: with its unfused ops), else im2col + cuBLAS; each cuDNN call is a "
            f"library call that a CUDA graph does not capture (the launch counts above are those of the "
            f"im2col path; a fused step counts its one cuDNN call)")


__all__ = ["CONV_OPS", "FUSED_ACTIVATIONS", "FUSED_OP", "GATE", "MODES", "TOLERANCE", "Verdict",
           "VerificationGate", "compare", "conv_mode", "cudnn_fusion_state", "cudnn_reads_channel_last",
           "explain_convolutions", "fused_problem_for", "gpu_convolution", "gpu_fused_convolution",
           "post_padding", "problem_for", "verify_enabled"]
