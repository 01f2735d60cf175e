"""Channel-last layouts (NWC, NHWC, NDHWC) of the convolution and pooling ops, with MXNet's semantics.

Channel-last data is (N, *spatial, C) and so is the result. A channel-last Convolution's weight is
(num_filter, *kernel, C / num_group) and a Deconvolution's (C, *kernel, num_filter / num_group): MXNet's
shape rules convert the channel-first weight shape to the layout (``ConvertLayout`` in convolution.cc and
deconvolution.cc), which moves axis 1 last, exactly as for the data. So one permutation of axes,
``Layout.to_first``, turns every operand of such an op (data, weight, output gradient) into its
channel-first counterpart, and ``Layout.to_own`` turns the channel-first result back; the bias (one per
filter) stays as it is.

This is how channel-last runs where no kernel reads it natively (the CPU; a GPU without cuDNN): eagerly
the ops transpose around their channel-first implementation (``channel_first_eager``), and in hybridized
plans the pass ``lower_channel_last`` writes the same transposes into the graph as ``layout_transpose``
nodes (one copy kernel each), which ``explain()`` lists and the memory plan sizes. MXNet itself refuses
channel-last convolutions on the CPU; a program that runs on a GPU must stay debuggable on the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import OpValueError, ShapeError
from .attrs import Attr
from .registry import OpDef, TensorSpec, register

CHANNEL_FIRST = {1: "NCW", 2: "NCHW", 3: "NCDHW"}
CHANNEL_LAST = {1: "NWC", 2: "NHWC", 3: "NDHWC"}
LAYOUTS = tuple(CHANNEL_FIRST.values()) + tuple(CHANNEL_LAST.values())
DIMS_OF = {name: dims for table in (CHANNEL_FIRST, CHANNEL_LAST) for dims, name in table.items()}


@dataclass(frozen=True)
class Layout:
    """The layout of a convolution's or pooling's operands: ``dims`` spatial axes, channels first or last."""
    dims: int
    last: bool

    @property
    def name(self) -> str:
        return (CHANNEL_LAST if self.last else CHANNEL_FIRST)[self.dims]

    @property
    def channel_axis(self) -> int:
        return self.dims + 1 if self.last else 1

    @property
    def to_first(self) -> tuple:
        """Axes that permute an operand in this layout to channel first (the identity if it is)."""
        ndim = self.dims + 2
        return (0, ndim - 1) + tuple(range(1, ndim - 1)) if self.last else tuple(range(ndim))

    @property
    def to_own(self) -> tuple:
        """Axes that permute a channel-first operand to this layout."""
        ndim = self.dims + 2
        return (0,) + tuple(range(2, ndim)) + (1,) if self.last else tuple(range(ndim))

    def first_shape(self, shape: tuple) -> tuple:
        """``shape`` (of an operand in this layout) in channel-first order."""
        return tuple(shape[a] for a in self.to_first) if len(shape) == self.dims + 2 else tuple(shape)

    def own_shape(self, shape: tuple) -> tuple:
        """A channel-first ``shape`` in this layout's order."""
        return tuple(shape[a] for a in self.to_own) if len(shape) == self.dims + 2 else tuple(shape)

    def spatial(self, shape: tuple) -> tuple:
        return self.first_shape(shape)[2:]

    def channels(self, shape: tuple) -> int:
        return shape[self.channel_axis]


def layout_of(attrs: dict, dims: int, what: str = "kernel") -> Layout:
    """The checked layout of ``attrs`` for a ``dims``-D window (None is channel first)."""
    name = attrs.get("layout")
    if name is None or name == CHANNEL_FIRST[dims]:
        return Layout(dims, False)
    if name == CHANNEL_LAST[dims]:
        return Layout(dims, True)
    if name not in DIMS_OF:
        raise OpValueError(f"layout={name!r} is not a layout; use one of {', '.join(map(repr, LAYOUTS))}")
    raise OpValueError(f"layout={name!r} is for {DIMS_OF[name]}-D data but the {what} is {dims}-D; use "
                       f"{CHANNEL_FIRST[dims]!r} (channel first) or {CHANNEL_LAST[dims]!r} (channel last)")


def is_channel_last(attrs: dict) -> bool:
    """Whether ``attrs`` name a channel-last layout (checked against the window's rank elsewhere)."""
    name = attrs.get("layout")
    return name in CHANNEL_LAST.values()


def channel_first_attrs(attrs: dict) -> dict:
    """``attrs`` of the channel-first op that a channel-last one runs as."""
    name = attrs.get("layout")
    return {**attrs, "layout": CHANNEL_FIRST[DIMS_OF[name]] if name else None}


def check_data_rank(data: TensorSpec, layout: Layout, kernel: tuple) -> None:
    """Data of ``layout``'s rank, or an error that names the layout's axes and the fix."""
    dims = layout.dims
    if len(data.shape) != dims + 2:
        axes = f"{dims} spatial axes, channels" if layout.last else f"channels, {dims} spatial axes"
        other = len(data.shape) - 2
        layer = f" or use a {other}-D layer" if 1 <= other <= 3 else ""
        raise ShapeError(f"a {dims}-D kernel {kernel} needs {dims + 2}-d data ({layout.name}: batch, {axes}),"
                         f" got data of shape {data.shape}; reshape the data (e.g. add a batch axis with "
                         f"expand_dims(axis=0)){layer}")


def channel_first_eager(first_eager, permuted: tuple):
    """The eager implementation of a channel-last op: the inputs at ``permuted`` transposed to channel
    first (one copy each), ``first_eager`` on them, and its result transposed back (one copy)."""
    def eager(device, inputs, attrs, outs):
        if not is_channel_last(attrs):
            return first_eager(device, inputs, attrs, outs)
        xp, layout = device.xp, Layout(len(outs[0].shape) - 2, True)
        inputs = [xp.ascontiguousarray(a.transpose(layout.to_first)) if i in permuted else a
                  for i, a in enumerate(inputs)]
        first_outs = [TensorSpec(layout.first_shape(o.shape), o.dtype) for o in outs]
        result = first_eager(device, inputs, channel_first_attrs(attrs), first_outs)
        return xp.ascontiguousarray(result.transpose(layout.to_own))
    return eager


def transposes(attrs: dict, permuted: int) -> int:
    """The copy kernels ``channel_first_eager`` adds for ``permuted`` inputs: one each, one for the
    result."""
    return permuted + 1 if is_channel_last(attrs) else 0


# --- layout_transpose: a transpose that copies ----------------------------------------------------------

def _layout_transpose_rule(specs, attrs):
    shape, axes = specs[0].shape, tuple(attrs["axes"])
    if sorted(axes) != list(range(len(shape))):
        raise ShapeError(f"axes {axes} is not a permutation of the {len(shape)} axes of {shape}")
    return TensorSpec(tuple(shape[a] for a in axes), specs[0].dtype)


def _layout_transpose_into(device, inputs, attrs, outputs):
    device.xp.copyto(outputs[0], inputs[0].transpose(tuple(attrs["axes"])))
    return outputs[0]


def _layout_transpose_eager(device, inputs, attrs, outs):
    return device.xp.ascontiguousarray(inputs[0].transpose(tuple(attrs["axes"])))


register(OpDef(name="layout_transpose", category="shape", inputs=("data",),
               attrs=(Attr("axes", "axes", doc="the permutation of the axes"),),
               infer=_layout_transpose_rule, eager=_layout_transpose_eager,
               eager_into=_layout_transpose_into, fresh_results=True, kernels=1,
               doc="Permute axes into a fresh C-contiguous array (one copy): the transposes around a "
                   "channel-last convolution or pooling where it runs channel first."))


__all__ = ["CHANNEL_FIRST", "CHANNEL_LAST", "DIMS_OF", "LAYOUTS", "Layout", "channel_first_attrs",
           "channel_first_eager", "check_data_rank", "is_channel_last", "layout_of", "transposes"]
