"""MXNet's ``pad`` (alias ``Pad``): widen each axis by ``pad_width`` values before and after it, filled with
a constant, the edge value repeated (``edge``) or the data mirrored about its edge value (``reflect``, the
edge value not repeated: NumPy's ``np.pad(mode='reflect')``), and ``pad_backward``, its gradient for the
edge and reflect modes (each padded position's gradient added back to the input position it copies).

MXNet's rules: ``pad_width`` holds 2 values per axis, ``(before_0, after_0, before_1, after_1, ...)``;
reflect needs each width smaller than its axis. MXNet's own kernel only pads axes 2 and later of a 4-d or
5-d array; gpuhybrid pads any axis of any rank (a superset, see docs/porting-from-mxnet.md).

Both ops copy with array slices (NumPy on the CPU, CuPy on a GPU): the result is allocated, the data copied
into its centre, then each padded side of each axis filled from what is already there, one axis after the
other, so the corners come out as ``np.pad``'s. A hybridized plan runs them as such a step.
"""
from __future__ import annotations

from ..errors import ShapeError
from .attrs import Attr
from .gradients import gradient
from .registry import OpDef, TensorSpec, into_by_copy, register

MODES = ("constant", "edge", "reflect")


def pad_pairs(pad_width: tuple) -> list:
    """``(before, after)`` per axis from MXNet's flat ``pad_width``."""
    return [(pad_width[2 * i], pad_width[2 * i + 1]) for i in range(len(pad_width) // 2)]


def check_pad_width(shape: tuple, pad_width: tuple, mode: str) -> None:
    """Raise a ShapeError that says how to fix it when ``pad_width`` cannot pad ``shape`` in ``mode``."""
    ndim = len(shape)
    if len(pad_width) != 2 * ndim:
        implied = f" (the widths of a {len(pad_width) // 2}-d input)" if len(pad_width) % 2 == 0 else ""
        raise ShapeError(f"pad_width={pad_width} has {len(pad_width)} values{implied}, but the input {shape} "
                         f"is {ndim}-d and needs {2 * ndim}: (before, after) for each axis, 0 for the axes "
                         f"not padded; give the input the rank the widths are for, or {2 * ndim} widths")
    if any(w < 0 for w in pad_width):
        raise ShapeError(f"pad_width={pad_width} has a negative width; widths are >= 0 (use slice to crop)")
    for axis, ((before, after), size) in enumerate(zip(pad_pairs(pad_width), shape)):
        if mode == "reflect" and max(before, after) >= size and (before or after):
            raise ShapeError(f"mode='reflect' with pad_width={pad_width} pads axis {axis} (size {size}) "
                             f"by {max(before, after)}, but reflection needs widths smaller than the axis "
                             f"(at most {size - 1}); pad less, or use mode='edge' or 'constant'")
        if mode == "edge" and size == 0 and (before or after):
            raise ShapeError(f"mode='edge' with pad_width={pad_width} cannot pad axis {axis}: it is empty, "
                             f"so it has no edge value; use mode='constant'")


def _pad_rule(specs, attrs):
    shape, pad_width = specs[0].shape, attrs["pad_width"]
    check_pad_width(shape, pad_width, attrs["mode"])
    return TensorSpec(tuple(d + b + a for d, (b, a) in zip(shape, pad_pairs(pad_width))), specs[0].dtype)


def _region(ndim: int, axis: int, along, pairs: list, sizes: tuple) -> tuple:
    """The index of ``along`` on ``axis``: axes before it whole (already padded), axes after it their
    centre (not padded yet)."""
    key = []
    for k in range(ndim):
        if k < axis:
            key.append(slice(None))
        elif k == axis:
            key.append(along)
        else:
            key.append(slice(pairs[k][0], pairs[k][0] + sizes[k]))
    return tuple(key)


def _pad_into(device, inputs, attrs, outputs):
    """The padded data written into ``outputs[0]``: the data in its centre, then each padded side filled."""
    x, out = inputs[0], outputs[0]
    pairs, mode, ndim = pad_pairs(attrs["pad_width"]), attrs["mode"], x.ndim
    if mode == "constant" and any(b or a for b, a in pairs):
        out[...] = attrs["constant_value"]
    out[tuple(slice(b, b + d) for (b, _), d in zip(pairs, x.shape))] = x
    if mode == "constant":
        return out
    for axis, ((before, after), size) in enumerate(zip(pairs, x.shape)):
        end = before + size                     # one past the data's last position on this axis
        if mode == "edge":
            first, last = slice(before, before + 1), slice(end - 1, end)
        else:                                   # mirror positions before+1.. and ..end-2, edges not repeated
            first = slice(2 * before, before, -1)
            stop = end - 2 - after
            last = slice(end - 2, stop if stop >= 0 else None, -1)
        if before:
            out[_region(ndim, axis, slice(0, before), pairs, x.shape)] = \
                out[_region(ndim, axis, first, pairs, x.shape)]
        if after:
            out[_region(ndim, axis, slice(end, end + after), pairs, x.shape)] = \
                out[_region(ndim, axis, last, pairs, x.shape)]
    return out


def _pad_eager(device, inputs, attrs, outs):
    out = device.xp.empty(outs[0].shape, dtype=outs[0].dtype)
    return _pad_into(device, inputs, attrs, [out])


def _pad_kernels(attrs, specs) -> int:
    """One copy of the data, then a fill (constant) or one copy per padded side (edge, reflect)."""
    sides = sum(1 for w in attrs["pad_width"] if w)
    if attrs["mode"] == "constant":
        return 1 + (sides > 0)
    return 1 + sides


PAD_ATTRS = (Attr("mode", "str", "constant", choices=MODES,
                  doc="'constant' (constant_value), 'edge' (the edge value repeated) or 'reflect' (the data "
                      "mirrored about its edge value)"),
             Attr("pad_width", "shape",
                  doc="(before_0, after_0, before_1, after_1, ...): two widths per axis"),
             Attr("constant_value", "float", 0.0, doc="the value of the padding in mode 'constant'"))

register(OpDef(name="pad", category="shape", inputs=("data",), attrs=PAD_ATTRS, infer=_pad_rule,
               eager=_pad_eager, eager_into=_pad_into, fresh_results=True, kernels=_pad_kernels,
               aliases=("Pad",),
               doc="Pad every axis by pad_width: a constant, the edge values, or a reflection of the data."))


# --- pad_backward: the gradient of edge and reflect padding --------------------------------------------

def _pad_backward_rule(specs, attrs):
    shape, pad_width = specs[0].shape, attrs["pad_width"]
    if len(pad_width) != 2 * len(shape):
        raise ShapeError(f"pad_width={pad_width} has {len(pad_width)} values, but the gradient "
                         f"{shape} is {len(shape)}-d: it needs {2 * len(shape)}")
    inner = tuple(d - b - a for d, (b, a) in zip(shape, pad_pairs(pad_width)))
    if any(d < 0 for d in inner):
        raise ShapeError(f"pad_width={pad_width} is wider than the padded gradient {shape}")
    check_pad_width(inner, pad_width, attrs["mode"])
    return TensorSpec(inner, specs[0].dtype)


def _axis_key(ndim: int, axis: int, along) -> tuple:
    return (slice(None),) * axis + (along,) + (slice(None),) * (ndim - axis - 1)


def _add_into(xp, target, value) -> None:
    """``target += value`` as one kernel (CuPy's ``a[key] += b`` adds, then copies the view onto itself)."""
    xp.add(target, value, out=target)


def _pad_backward_eager(device, inputs, attrs, outs):
    """Fold each padded axis back onto the data, one axis after the other (padding is separable)."""
    xp, grad, mode = device.xp, inputs[0], attrs["mode"]
    ndim = grad.ndim
    if not any(attrs["pad_width"]):
        return grad.copy()
    for axis, (before, after) in enumerate(pad_pairs(attrs["pad_width"])):
        if not (before or after):
            continue
        size = grad.shape[axis] - before - after
        end = before + size

        def part(array, along):
            return array[_axis_key(ndim, axis, along)]

        folded = part(grad, slice(before, end)).copy()
        if mode == "edge":
            if before:
                _add_into(xp, part(folded, slice(0, 1)),
                          part(grad, slice(0, before)).sum(axis, keepdims=True))
            if after:
                _add_into(xp, part(folded, slice(size - 1, size)),
                          part(grad, slice(end, end + after)).sum(axis, keepdims=True))
        else:               # reflect: padded position j before the data copied position before - j
            if before:
                _add_into(xp, part(folded, slice(1, before + 1)), part(grad, slice(before - 1, None, -1)))
            if after:
                _add_into(xp, part(folded, slice(size - 1 - after, size - 1)),
                          part(grad, slice(end + after - 1, end - 1, -1)))
        grad = folded
    return grad


def _pad_backward_kernels(attrs, specs) -> int:
    """Per padded axis a copy of its centre, then per padded side an add (edge: a sum and an add)."""
    if not any(attrs["pad_width"]):
        return 1
    per_side = 2 if attrs["mode"] == "edge" else 1
    return sum(1 + per_side * ((b > 0) + (a > 0)) for b, a in pad_pairs(attrs["pad_width"]) if b or a)


register(OpDef(name="pad_backward", category="shape", inputs=("data",),
               attrs=(Attr("mode", "str", "reflect", choices=("edge", "reflect"),
                           doc="the mode of the pad whose gradient this is"), PAD_ATTRS[1]),
               infer=_pad_backward_rule, eager=_pad_backward_eager, kernels=_pad_backward_kernels,
               eager_into=lambda device, inputs, attrs, outputs: into_by_copy(
                   _pad_backward_eager, device, inputs, attrs, outputs),
               doc="The gradient of pad in mode 'edge' or 'reflect': each padded position's gradient "
                   "added back to the position it copies."))


@gradient("pad")
def _pad_gradient(F, c):
    pairs = pad_pairs(c.attrs["pad_width"])
    if c.attrs["mode"] == "constant":
        shape = c.in_specs[0].shape
        return [F.slice(c.g, begin=tuple(b for b, _ in pairs),
                        end=tuple(b + d for (b, _), d in zip(pairs, shape)))]
    return [F.pad_backward(c.g, mode=c.attrs["mode"], pad_width=c.attrs["pad_width"])]


# pad_backward is the transpose of the linear map pad: its gradient is that pad.
gradient("pad_backward")(lambda F, c: [F.pad(c.g, mode=c.attrs["mode"], pad_width=c.attrs["pad_width"])])
