"""``convolution_activation``: act(Convolution(data, weight, bias) + residual) as one op.

The GPU pass ``fuse_conv_activation`` (graph/passes/conv_cudnn_fuse.py) makes one of a Convolution, the
residual ``add`` after it (if any) and the activation after that, so that cuDNN computes them as one graph
(conv fprop -> bias -> add -> activation, ``ops/conv_cudnn.gpu_fused_convolution``; docs/cudnn.md). The
activations are those whose cuDNN pointwise mode is the same function as gpuhybrid's op (relu, sigmoid,
tanh) and whose gradient reads the result alone, so that a hybridized backward needs nothing the fused op
does not return.

Everywhere but a GPU with cuDNN, and as the first-run check's reference there, it computes what the graph
computed before the pass: the Convolution op, then the registry's ``add`` and activation ops
(``unfused_convolution_activation``). Its launch counts are the cuDNN path's: one library call.
"""
from __future__ import annotations

from ..errors import DTypeError, ShapeError
from .attrs import Attr
from .conv import CONV_ATTRS, geometry
from .conv_cudnn import FUSED_ACTIVATIONS, FUSED_OP, gpu_fused_convolution
from .gradients import GRADIENTS, UNARY, GradCall, gradient
from .registry import OpDef, get_op, register

CONV_ATTR_NAMES = tuple(a.name for a in CONV_ATTRS)


def convolution_attrs(attrs: dict) -> dict:
    """The Convolution's own attributes among those of ``convolution_activation``."""
    return {name: attrs[name] for name in CONV_ATTR_NAMES}


def convolution_input_count(attrs: dict) -> int:
    """How many of the op's inputs are the Convolution's (data, weight and the bias unless no_bias)."""
    return 2 + (not attrs["no_bias"])


def _rule(specs, attrs):
    count = convolution_input_count(attrs)
    out = get_op("Convolution").infer(list(specs[:count]), convolution_attrs(attrs))
    if attrs["has_residual"]:
        residual = specs[count]
        if residual.shape != out.shape:
            raise ShapeError(f"the residual {residual.shape} must have the convolution's result shape "
                             f"{out.shape} (no broadcasting: the add fuses into cuDNN's graph)")
        if residual.dtype != out.dtype:
            raise DTypeError(f"the residual is {residual.dtype.name} but the convolution gives "
                             f"{out.dtype.name}; cast one of them")
    return out


def unfused_convolution_activation(device, inputs: list, attrs: dict, out):
    """What the op computes, by the ops the graph had before the pass: Convolution, add, activation."""
    count = convolution_input_count(attrs)
    value = get_op("Convolution").eager(device, list(inputs[:count]), convolution_attrs(attrs), [out])
    if attrs["has_residual"]:
        value = get_op("add").eager(device, [value, inputs[count]], {}, [out])
    return get_op(attrs["act_type"]).eager(device, [value], {}, [out])


def _eager(device, inputs, attrs, outs):
    def unfused():
        return unfused_convolution_activation(device, inputs, attrs, outs[0])
    if device.is_gpu:        # one cuDNN graph where it runs and is trusted (ops/conv_cudnn.py)
        return gpu_fused_convolution(device, inputs, attrs, outs[0], geometry(attrs), unfused)
    return unfused()


register(OpDef(name=FUSED_OP, category="nn", inputs=("data", "weight", "bias", "residual"),
               attrs=CONV_ATTRS + (Attr("act_type", "str", choices=FUSED_ACTIVATIONS,
                                        doc="the activation after the (biased) convolution and residual"),
                                   Attr("has_residual", "bool", False,
                                        doc="add a last input of the result's shape before the activation")),
               infer=_rule, eager=_eager, fresh_results=True,
               input_count=lambda attrs: convolution_input_count(attrs) + bool(attrs["has_residual"]),
               kernels=0, library_calls=1,
               doc="act_type(Convolution(data, weight, bias) + residual), one cuDNN graph on a GPU (what "
                   "the GPU pass fuse_conv_activation makes of a convolution and its activation)."))


@gradient(FUSED_OP)
def _convolution_activation(F, c):
    # relu, sigmoid and tanh have their derivative in their output: the fused op's result is all it needs
    pre = UNARY[c.attrs["act_type"]](F, None, c.y, c.g)
    count = convolution_input_count(c.attrs)
    wants = tuple(c.wants[:count]) if c.wants else ()
    conv = GradCall(list(c.inputs[:count]), [None], [pre], convolution_attrs(c.attrs),
                    list(c.in_specs[:count]), list(c.out_specs), wants)
    grads = list(GRADIENTS["Convolution"](F, conv))
    if c.attrs["has_residual"]:
        grads.append(pre if c.want(count) else None)
    return grads
