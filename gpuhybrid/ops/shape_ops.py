"""Ops that move or view data without arithmetic: reshape, transpose, expand_dims, squeeze, flatten,
concat, stack, split, slice, slice_axis, basic indexing, broadcast_to, tile.

Views cost no launch; ops that must copy (concat, stack, tile) cost one kernel.
"""
from __future__ import annotations

import numpy as np

from ..errors import OpValueError, ShapeError
from .attrs import Attr
from .registry import OpDef, TensorSpec, normalize_axis, register, same_spec
from .shapes import broadcast_shapes, promote


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def mxnet_reshape(src: tuple, spec: tuple) -> tuple:
    """MXNet reshape codes: 0 copies a dim, -1 infers one, -2 copies the rest, -3 merges two dims,
    -4 splits one dim into the next two values (one of which may be -1)."""
    out, i, k, infer_at = [], 0, 0, None
    while k < len(spec):
        code = spec[k]
        if code > 0:
            out.append(code); i += 1
        elif code == 0:
            if i >= len(src):
                raise ShapeError(f"code 0 at position {k} copies input axis {i}, "
                                 f"but the input has {len(src)} axes")
            out.append(src[i]); i += 1
        elif code == -1:
            if infer_at is not None:
                raise ShapeError("only one -1 is allowed in a shape")
            infer_at = len(out); out.append(-1); i += 1
        elif code == -2:
            out.extend(src[i:]); i = len(src)
        elif code == -3:
            if i + 1 >= len(src):
                raise ShapeError(f"code -3 merges input axes {i} and {i + 1}, "
                                 f"but the input has {len(src)} axes")
            out.append(src[i] * src[i + 1]); i += 2
        elif code == -4:
            if k + 2 >= len(spec):
                raise ShapeError("code -4 must be followed by two values")
            d1, d2 = spec[k + 1], spec[k + 2]
            if i >= len(src):
                raise ShapeError(f"code -4 splits input axis {i}, but the input has {len(src)} axes")
            whole = src[i]
            if d1 < -1 or d2 < -1 or d1 == d2 == -1:
                raise ShapeError(f"code -4 must be followed by two sizes, at most one of them -1; "
                                 f"got {d1}, {d2}")
            if d1 == -1:
                d1 = whole // d2 if d2 else 0
            if d2 == -1:
                d2 = whole // d1 if d1 else 0
            if d1 * d2 != whole:
                raise ShapeError(f"code -4 cannot split an axis of size {whole} "
                                 f"into {spec[k + 1]} x {spec[k + 2]}")
            out.extend((d1, d2)); i += 1; k += 2
        else:
            raise ShapeError(f"{code} is not a valid reshape code (use positive sizes, 0, -1, -2, -3 or -4)")
        k += 1
    if infer_at is not None:
        known = _size([d for j, d in enumerate(out) if j != infer_at])
        if known == 0 or _size(src) % known:
            raise ShapeError(f"cannot infer the -1 in {spec}: "
                             f"{_size(src)} elements do not divide into {known}")
        out[infer_at] = _size(src) // known
    if _size(out) != _size(src):
        raise ShapeError(f"cannot reshape {src} ({_size(src)} elements) "
                         f"to {tuple(out)} ({_size(out)} elements)")
    return tuple(out)


def _view(fn):
    """A shape op implemented as an array-module call that returns a view when it can."""
    return lambda device, inputs, attrs, outs: fn(device.xp, *inputs, **attrs)


def _shape_op(name, infer, eager, attrs=(), inputs=("data",), kernels=0, aliases=(), doc="", num_outputs=1,
              view=False, identity=None):
    register(OpDef(name=name, category="shape", inputs=inputs, attrs=attrs, infer=infer, eager=eager,
                   kernels=kernels, aliases=aliases, doc=doc, num_outputs=num_outputs, view=view,
                   identity=identity))


_shape_op("reshape",
          lambda s, a: TensorSpec(mxnet_reshape(s[0].shape, a["shape"]), s[0].dtype),
          lambda device, inputs, attrs, outs: inputs[0].reshape(outs[0].shape),
          attrs=(Attr("shape", "shape", doc="target shape; MXNet codes 0, -1, -2, -3, -4"),),
          aliases=("Reshape",), view=True, identity=same_spec,
          doc="Same data, new shape (a view when the input is contiguous).")


def _transpose_rule(specs, attrs):
    shape, axes = specs[0].shape, attrs["axes"]
    if axes is None:
        return TensorSpec(shape[::-1], specs[0].dtype)
    norm = [normalize_axis(a, len(shape)) for a in axes]
    if sorted(norm) != list(range(len(shape))):
        raise ShapeError(f"axes {axes} is not a permutation of the {len(shape)} axes of {shape}")
    return TensorSpec(tuple(shape[a] for a in norm), specs[0].dtype)


def _identity_permutation(attrs: dict, data: TensorSpec, out: TensorSpec) -> bool:
    """A transpose that keeps every axis where it is."""
    ndim, axes = len(out.shape), attrs["axes"]
    return data == out and (ndim <= 1 or (axes is not None and [a % ndim for a in axes] == list(range(ndim))))


_shape_op("transpose", _transpose_rule, _view(lambda xp, x, axes: xp.transpose(x, axes)),
          attrs=(Attr("axes", "axes", None, doc="permutation; None reverses the axes"),),
          identity=_identity_permutation, doc="Permute axes (a view).")


def _expand_dims_rule(specs, attrs):
    shape = specs[0].shape
    axis = normalize_axis(attrs["axis"], len(shape) + 1)
    return TensorSpec(shape[:axis] + (1,) + shape[axis:], specs[0].dtype)


_shape_op("expand_dims", _expand_dims_rule, _view(lambda xp, x, axis: xp.expand_dims(x, axis)),
          attrs=(Attr("axis", "int"),), view=True, doc="Insert an axis of size 1.")


def _squeeze_rule(specs, attrs):
    shape = specs[0].shape
    if attrs["axis"] is None:
        return TensorSpec(tuple(d for d in shape if d != 1), specs[0].dtype)
    axes = {normalize_axis(a, len(shape)) for a in attrs["axis"]}
    bad = [a for a in sorted(axes) if shape[a] != 1]
    if bad:
        raise ShapeError(f"cannot squeeze axis {bad[0]} of {shape}: its size is {shape[bad[0]]}, not 1")
    return TensorSpec(tuple(d for i, d in enumerate(shape) if i not in axes), specs[0].dtype)


_shape_op("squeeze", _squeeze_rule,
          lambda device, inputs, attrs, outs: inputs[0].reshape(outs[0].shape),
          attrs=(Attr("axis", "axes", None, doc="axes of size 1 to drop; None drops all"),),
          view=True, identity=same_spec, doc="Drop axes of size 1.")


def _flatten_rule(specs, attrs):
    shape = specs[0].shape
    lead = shape[0] if shape else 1
    return TensorSpec((lead, _size(shape[1:])), specs[0].dtype)


_shape_op("flatten", _flatten_rule, lambda device, inputs, attrs, outs: inputs[0].reshape(outs[0].shape),
          aliases=("Flatten",), view=True, identity=same_spec,
          doc="Collapse all but the first axis: (N, ...) -> (N, prod(...)).")


def _concat_rule(specs, attrs):
    first = specs[0].shape
    if not first:
        raise ShapeError("cannot concatenate 0-d arrays; use stack")
    axis = normalize_axis(attrs["dim"], len(first))
    for s in specs[1:]:
        if len(s.shape) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s.shape, first))
                                             if i != axis):
            raise ShapeError(f"shapes {', '.join(str(x.shape) for x in specs)} "
                             f"must agree on every axis but {axis}")
    total = sum(s.shape[axis] for s in specs)
    return TensorSpec(first[:axis] + (total,) + first[axis + 1:], promote(*(s.dtype for s in specs)))


_shape_op("concat", _concat_rule,
          lambda device, inputs, attrs, outs: device.xp.concatenate(inputs, axis=attrs["dim"]).astype(
              outs[0].dtype, copy=False),
          attrs=(Attr("dim", "int", 1, doc="axis to join along (MXNet's default is 1)"),),
          inputs=("*data",), kernels=1, aliases=("Concat",), doc="Join arrays along an existing axis.")


def _stack_rule(specs, attrs):
    first = specs[0].shape
    if any(s.shape != first for s in specs):
        raise ShapeError(f"stack needs equal shapes, got {', '.join(str(s.shape) for s in specs)}")
    axis = normalize_axis(attrs["axis"], len(first) + 1)
    return TensorSpec(first[:axis] + (len(specs),) + first[axis:], promote(*(s.dtype for s in specs)))


_shape_op("stack", _stack_rule,
          lambda device, inputs, attrs, outs: device.xp.stack(inputs, axis=attrs["axis"]).astype(
              outs[0].dtype, copy=False),
          attrs=(Attr("axis", "int", 0),), inputs=("*data",), kernels=1,
          doc="Join arrays along a new axis.")


def _split_rule(specs, attrs):
    shape, n = specs[0].shape, attrs["num_outputs"]
    axis = normalize_axis(attrs["axis"], len(shape))
    if n <= 0 or shape[axis] % n:
        raise ShapeError(f"cannot split axis {axis} of size {shape[axis]} into {n} equal parts")
    if attrs["squeeze_axis"] and shape[axis] != n:
        raise ShapeError(f"squeeze_axis=True needs parts of size 1, but axis {axis} has size {shape[axis]} "
                         f"and num_outputs={n}")
    part = shape[:axis] + (shape[axis] // n,) + shape[axis + 1:]
    if attrs["squeeze_axis"]:
        part = shape[:axis] + shape[axis + 1:]
    return [TensorSpec(part, specs[0].dtype)] * n


def _split_eager(device, inputs, attrs, outs):
    parts = device.xp.split(inputs[0], attrs["num_outputs"], axis=attrs["axis"])
    return [p.reshape(o.shape) for p, o in zip(parts, outs)]


_shape_op("split", _split_rule, _split_eager,
          attrs=(Attr("num_outputs", "int"), Attr("axis", "int", 1), Attr("squeeze_axis", "bool", False)),
          aliases=("SliceChannel",), num_outputs=lambda attrs: attrs["num_outputs"],
          doc="Split into num_outputs equal parts along axis (views).")


def slice_key(shape, begin, end, step):
    """The index tuple of MXNet's ``slice(begin, end, step)`` on ``shape`` (its gradient scatters to it)."""
    if not (len(begin) == len(end)) or (step and len(step) != len(begin)):
        raise ShapeError(f"begin {begin}, end {end} and step {step} must have the same length")
    if len(begin) > len(shape):
        raise ShapeError(f"begin/end have {len(begin)} entries but the input {shape} has {len(shape)} axes")
    steps = step or (None,) * len(begin)
    if any(s == 0 for s in steps):
        raise ShapeError("slice step cannot be 0")
    return tuple(slice(b, e, s) for b, e, s in zip(begin, end, steps))


def _indexed_shape(shape, key):
    """The shape of ``x[key]`` for basic indexing, computed on a zero-byte stand-in."""
    try:
        return np.broadcast_to(np.empty((), np.bool_), shape)[key].shape
    except IndexError as exc:
        raise OpValueError(f"index {key!r} is out of range for shape {shape} ({exc})") from None


def _slice_rule(specs, attrs):
    key = slice_key(specs[0].shape, attrs["begin"], attrs["end"], attrs["step"])
    return TensorSpec(_indexed_shape(specs[0].shape, key), specs[0].dtype)


_shape_op("slice", _slice_rule,
          lambda device, inputs, attrs, outs: inputs[0][slice_key(inputs[0].shape, attrs["begin"],
                                                                  attrs["end"], attrs["step"])],
          attrs=(Attr("begin", "bounds"), Attr("end", "bounds"), Attr("step", "bounds", ())),
          aliases=("crop",), doc="MXNet slice: begin/end/step tuples, None for an open end (a view).")


def slice_axis_key(shape, attrs):
    """The index tuple of ``slice_axis`` with ``attrs`` on ``shape`` (its gradient scatters through it)."""
    axis = normalize_axis(attrs["axis"], len(shape))
    return (slice(None),) * axis + (slice(attrs["begin"], attrs["end"]),)


_shape_op("slice_axis",
          lambda s, a: TensorSpec(_indexed_shape(s[0].shape, slice_axis_key(s[0].shape, a)), s[0].dtype),
          lambda device, inputs, attrs, outs: inputs[0][slice_axis_key(inputs[0].shape, attrs)],
          attrs=(Attr("axis", "int"), Attr("begin", "int"), Attr("end", "opt_int", None)),
          doc="Slice one axis: x[..., begin:end, ...] (a view).")


def decode_index(key: tuple) -> tuple:
    """The JSON-friendly index key stored as an attribute back to a Python index."""
    parts = []
    for entry in key:
        kind = entry[0]
        parts.append(slice(*entry[1:]) if kind == "slice" else entry[1] if kind == "int"
                     else None if kind == "newaxis" else Ellipsis)
    return tuple(parts)


def encode_index(key) -> tuple:
    """A basic NumPy index (ints, slices, None, ...) as a hashable, JSON-friendly attribute."""
    key = key if isinstance(key, tuple) else (key,)
    out = []
    for k in key:
        if isinstance(k, slice):
            bounds = [k.start, k.stop, k.step]
            if not all(b is None or isinstance(b, (int, np.integer)) for b in bounds):
                raise OpValueError(f"slice bounds must be ints or None, got {k}")
            out.append(("slice",) + tuple(None if b is None else int(b) for b in bounds))
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            out.append(("int", int(k)))
        elif k is None:
            out.append(("newaxis",))
        elif k is Ellipsis:
            out.append(("ellipsis",))
        else:
            raise OpValueError(f"index {k!r} ({type(k).__name__}) is not supported: only ints, slices, None "
                               f"and ... (basic indexing); use take/where or slicing for the rest")
    return tuple(out)


def _getitem_eager(device, inputs, attrs, outs):
    key = decode_index(attrs["key"])
    # With an ellipsis NumPy returns a 0-d view where an all-int key would give a bare scalar.
    return inputs[0][key if Ellipsis in key else key + (Ellipsis,)]


_shape_op("getitem",
          lambda s, a: TensorSpec(_indexed_shape(s[0].shape, decode_index(a["key"])), s[0].dtype),
          _getitem_eager,
          attrs=(Attr("key", "index", doc="encoded basic index (see encode_index)"),),
          doc="x[key] for basic indexing: ints, slices, None and ... (a view).")


def _broadcast_to_rule(specs, attrs):
    src, target = specs[0].shape, attrs["shape"]
    if len(target) < len(src):
        raise ShapeError(f"cannot broadcast {src} to the shorter shape {target}")
    offset = len(target) - len(src)
    # MXNet: 0 in the target keeps the input's size on that axis.
    full = tuple(src[i - offset] if d == 0 and i >= offset else d for i, d in enumerate(target))
    for i, d in enumerate(src):
        if d != 1 and d != full[i + offset]:
            raise ShapeError(f"cannot broadcast {src} to {full}: axis {i} has size {d}, which is neither 1 "
                             f"nor {full[i + offset]}")
    return TensorSpec(full, specs[0].dtype)


_shape_op("broadcast_to", _broadcast_to_rule,
          lambda device, inputs, attrs, outs: device.xp.broadcast_to(inputs[0], outs[0].shape),
          attrs=(Attr("shape", "shape"),), identity=same_spec,
          doc="Broadcast to a shape (0 keeps an axis) as a view.")


def _tile_rule(specs, attrs):
    shape, reps = specs[0].shape, attrs["reps"]
    if any(r < 0 for r in reps):
        raise ShapeError(f"reps {reps} must not be negative")
    n = max(len(shape), len(reps))
    shape = (1,) * (n - len(shape)) + shape
    reps = (1,) * (n - len(reps)) + reps
    return TensorSpec(tuple(d * r for d, r in zip(shape, reps)), specs[0].dtype)


_shape_op("tile", _tile_rule, _view(lambda xp, x, reps: xp.tile(x, reps)),
          attrs=(Attr("reps", "shape"),), kernels=1, doc="Repeat the whole array reps times per axis.")


def _reshape_like_rule(specs, attrs):
    data, like = specs
    if _size(data.shape) != _size(like.shape):
        raise ShapeError(f"cannot reshape {data.shape} ({_size(data.shape)} elements) like {like.shape} "
                         f"({_size(like.shape)} elements)")
    return TensorSpec(like.shape, data.dtype)


_shape_op("reshape_like", _reshape_like_rule,
          lambda device, inputs, attrs, outs: inputs[0].reshape(outs[0].shape), inputs=("lhs", "rhs"),
          view=True, doc="lhs's data in rhs's shape (a view when lhs is contiguous); "
                         "rhs is read for its shape only.")


def _getitem_backward_rule(specs, attrs):
    shape = attrs["shape"]
    expected = _indexed_shape(shape, decode_index(attrs["key"]))
    if specs[0].shape != expected:
        raise ShapeError(f"data has shape {specs[0].shape}, but indexing {shape} with this key gives "
                         f"{expected}")
    return TensorSpec(shape, specs[0].dtype)


def _getitem_backward_eager(device, inputs, attrs, outs):
    out = device.xp.zeros(outs[0].shape, dtype=outs[0].dtype)
    key = decode_index(attrs["key"])
    out[key if Ellipsis in key else key + (Ellipsis,)] = inputs[0]
    return out


_shape_op("getitem_backward", _getitem_backward_rule, _getitem_backward_eager,
          attrs=(Attr("shape", "shape", doc="shape of the array that was indexed"),
                 Attr("key", "index", doc="encoded basic index (see encode_index)")),
          kernels=2, doc="Zeros of `shape` with data written at [key]: the gradient of x[key], slice and "
                         "slice_axis.")


# --- broadcast_like, broadcast_axis ---------------------------------------------------------------------

def _stretched(shape: tuple, axes: tuple, sizes: tuple, what: str) -> tuple:
    """``shape`` with each of ``axes`` (size 1) stretched to the matching size."""
    if len(axes) != len(sizes):
        raise ShapeError(f"{what}: {len(axes)} axes but {len(sizes)} sizes")
    out = list(shape)
    for axis, size in zip(axes, sizes):
        axis = normalize_axis(axis, len(shape))
        if out[axis] != 1 and out[axis] != size:
            raise ShapeError(f"axis {axis} of {shape} has size {out[axis]}: only size-1 axes broadcast "
                             f"(to {size})")
        out[axis] = size
    return tuple(out)


def _broadcast_like_rule(specs, attrs):
    lhs, rhs = specs
    lhs_axes, rhs_axes = attrs["lhs_axes"], attrs["rhs_axes"]
    if lhs_axes is None and rhs_axes is None:
        if len(lhs.shape) > len(rhs.shape) or broadcast_shapes(lhs.shape, rhs.shape) != rhs.shape:
            raise ShapeError(f"lhs {lhs.shape} does not broadcast to rhs's shape {rhs.shape}")
        return TensorSpec(rhs.shape, lhs.dtype)
    if lhs_axes is None or rhs_axes is None:
        raise ShapeError("give both lhs_axes and rhs_axes, or neither")
    sizes = tuple(rhs.shape[normalize_axis(a, len(rhs.shape))] for a in rhs_axes)
    return TensorSpec(_stretched(lhs.shape, lhs_axes, sizes, "broadcast_like"), lhs.dtype)


_shape_op("broadcast_like", _broadcast_like_rule,
          lambda device, inputs, attrs, outs: device.xp.broadcast_to(inputs[0], outs[0].shape),
          inputs=("lhs", "rhs"),
          attrs=(Attr("lhs_axes", "axes", None, doc="axes of lhs to broadcast (default: all, NumPy rules)"),
                 Attr("rhs_axes", "axes", None, doc="the axes of rhs whose sizes they take")),
          doc="lhs broadcast to rhs's shape (or only lhs_axes to the sizes of rhs_axes), as a view.")


def _broadcast_axis_rule(specs, attrs):
    shape = specs[0].shape
    return TensorSpec(_stretched(shape, attrs["axis"], attrs["size"], "broadcast_axis"), specs[0].dtype)


_shape_op("broadcast_axis", _broadcast_axis_rule,
          lambda device, inputs, attrs, outs: device.xp.broadcast_to(inputs[0], outs[0].shape),
          attrs=(Attr("axis", "shape", (), doc="the size-1 axes to broadcast"),
                 Attr("size", "shape", (), doc="their new sizes")),
          aliases=("broadcast_axes",), doc="Size-1 axes broadcast to the given sizes, as a view.")
