"""Convolution and pooling layers with MXNet 1.x Gluon's signatures (positional order included), defaults
and printed text: Conv1D/2D/3D, Conv1D/2D/3DTranspose, Max/AvgPool1D/2D/3D, GlobalMax/AvgPool1D/2D/3D,
ReflectionPad2D.

A convolution's weight is (channels, in_channels / groups, *kernel_size); ``in_channels=0`` infers it
from the first input (a transposed convolution's weight is (in_channels, channels / groups, *kernel)).
``layout`` is channel first (NCW, NCHW, NCDHW; the default) or channel last (NWC, NHWC, NDHWC), as in
MXNet: channel-last data is (N, *spatial, C), the weight (channels, *kernel, in_channels / groups) (a
transposed convolution's (in_channels, *kernel, channels / groups)), and in_channels is read from the
last axis. Channel last runs on every device (MXNet's runs only on a GPU): see docs/porting-from-mxnet.md.
Input errors (a wrong rank, a channel count that does not fit the weight) name the layer: imperatively
here, and at trace time through the hybridized block's own error wrapping.

``print(layer)`` writes MXNet 1.x's text: ``Conv2D(None -> 6, kernel_size=(5, 5), stride=(1, 1))`` (the
mapping is the weight's ``shape[1] -> shape[0]``, None while deferred) and ``MaxPool2D(size=(2, 2),
stride=(2, 2), padding=(0, 0), ceil_mode=False, global_pool=False, pool_type=max, layout=NCHW)``.
"""
from __future__ import annotations

from contextlib import contextmanager

from ...errors import GhError, OpValueError
from ...ndarray import NDArray
from ...ops.conv_layout import CHANNEL_FIRST, CHANNEL_LAST, DIMS_OF, Layout
from ..hybrid import HybridBlock
from .basic_layers import Activation


def _tuple(value, dims: int, name: str, layer: str) -> tuple:
    """An int or a tuple of ``dims`` ints, as MXNet's layers take them."""
    if isinstance(value, int):
        return (value,) * dims
    value = tuple(value)
    if len(value) != dims or not all(isinstance(v, int) for v in value):
        raise OpValueError(f"{layer}: {name}={value!r} must be an int or a tuple of {dims} ints")
    return value


def _check_layout(layout: "str | None", dims: int, layer: str) -> Layout:
    """The layout a ``dims``-D layer was given (channel first when None), or an error naming the layer."""
    if layout is None or layout == CHANNEL_FIRST[dims]:
        return Layout(dims, False)
    if layout == CHANNEL_LAST[dims]:
        return Layout(dims, True)
    fits = f"use layout={CHANNEL_FIRST[dims]!r} (channel first) or {CHANNEL_LAST[dims]!r} (channel last)"
    if layout in DIMS_OF:
        raise OpValueError(f"{layer}: layout={layout!r} is for {DIMS_OF[layout]}-D data, but this is a "
                           f"{dims}-D layer; {fits}, or a {DIMS_OF[layout]}-D layer")
    raise OpValueError(f"{layer}: layout={layout!r} is not a layout; {fits}")


def _rank_error(layer: HybridBlock, layout: Layout, shape: tuple) -> GhError:
    axes = f"{layout.dims} spatial axes, channels" if layout.last else f"channels, {layout.dims} spatial axes"
    other = len(shape) - 2
    fix = f" or use a {other}-D layer" if 1 <= other <= 3 else ""
    return GhError(f"{layer.name} ({type(layer).__name__}): needs {layout.dims + 2}-d input ({layout.name}: "
                   f"batch, {axes}), got shape {shape}; add a batch axis with expand_dims(axis=0){fix}")


def _check_at_least(kwargs: dict, checks: tuple, dims: int, layer: str) -> None:
    """Each (argument name, op attribute, lowest value) of a layer, at construction."""
    for name, key, low in checks:
        if min(kwargs[key]) < low:
            raise OpValueError(f"{layer}: {name}={kwargs[key]} must be >= {low} on every axis; "
                               f"e.g. {name}={(low,) * dims}")


@contextmanager
def _named_errors(layer: HybridBlock, x):
    """Op errors of an imperative call prefixed with the layer (a trace names the node, ``<layer>_fwd``)."""
    try:
        yield
    except GhError as exc:
        if not isinstance(x, NDArray):
            raise
        raise type(exc)(f"{layer.name} ({type(layer).__name__}): {exc}") from None


class _Conv(HybridBlock):
    """The shared body of the convolution layers (``op_name`` Convolution or Deconvolution); with a
    channel-last ``layout`` the data is (N, *spatial, C) and the kernel axes precede the weight's last."""

    _dims = 2
    _op_name = "Convolution"

    def _alias(self) -> str:
        return "conv"         # MXNet names every convolution layer conv0, conv1, ... (d2l prints them)

    def __init__(self, channels: int, kernel_size, strides=1, padding=0, dilation=1, groups: int = 1,
                 layout: str | None = None, activation: str | None = None, use_bias: bool = True,
                 weight_initializer=None, bias_initializer="zeros", in_channels: int = 0,
                 dtype="float32", prefix: str | None = None, params=None, *, output_padding=None):
        super().__init__(prefix, params)
        dims, kind = self._dims, f"{self.name} ({type(self).__name__})"
        if output_padding is not None and self._op_name != "Deconvolution":
            raise OpValueError(f"{kind}: output_padding is an argument of the transposed convolutions "
                               f"({type(self).__name__}Transpose), not of {type(self).__name__}")
        if channels <= 0 or groups <= 0 or in_channels < 0:
            raise OpValueError(f"{kind}: channels={channels} and groups={groups} must be positive and "
                               f"in_channels={in_channels} >= 0 (0 infers it)")
        if channels % groups or in_channels % groups:
            raise OpValueError(f"{kind}: groups={groups} must divide channels={channels} and "
                               f"in_channels={in_channels}")
        self._channels, self._in_channels, self._groups = channels, in_channels, groups
        self._layout = _check_layout(layout, dims, kind)
        self._kwargs = {"kernel": _tuple(kernel_size, dims, "kernel_size", kind),
                        "stride": _tuple(strides, dims, "strides", kind),
                        "dilate": _tuple(dilation, dims, "dilation", kind),
                        "pad": _tuple(padding, dims, "padding", kind), "num_filter": channels,
                        "num_group": groups, "no_bias": not use_bias, "layout": self._layout.name}
        _check_at_least(self._kwargs, (("kernel_size", "kernel", 1), ("strides", "stride", 1),
                                       ("dilation", "dilate", 1), ("padding", "pad", 0)), dims, kind)
        if self._op_name == "Deconvolution":
            self._kwargs["adj"] = _tuple(output_padding or 0, dims, "output_padding", kind)
        self.weight = self.params_create("weight", shape=self._weight_shape(in_channels), dtype=dtype,
                                         init=weight_initializer)
        self.bias = (self.params_create("bias", shape=(channels,), dtype=dtype, init=bias_initializer)
                     if use_bias else None)
        with self.name_scope():
            self.act = Activation(activation, prefix=f"{activation}_") if activation else None

    def _weight_shape(self, in_channels: int) -> tuple:
        """MXNet's weight shape in the layer's layout (channel last: the kernel before the last axis)."""
        kernel = self._kwargs["kernel"]
        if self._op_name == "Deconvolution":
            return self._layout.own_shape((in_channels, self._channels // self._groups) + kernel)
        return self._layout.own_shape((self._channels, in_channels // self._groups) + kernel)

    def _check_input(self, x) -> None:
        """Rank and channels of an NDArray input, in the layer's words (symbols: checked at trace time)."""
        kind = type(self).__name__
        if len(x.shape) != self._dims + 2:
            raise _rank_error(self, self._layout, x.shape)
        channels = self._layout.channels(x.shape)
        expected = self._known_in_channels()
        if expected and channels != expected:
            raise GhError(f"{self.name} ({kind}): input {x.shape} has {channels} channels but the layer's "
                          f"weight {self.weight.shape} expects {expected}; feed {expected}-channel data or "
                          f"create the layer with in_channels={channels} (or 0 to infer it)")
        if channels % self._groups:
            raise GhError(f"{self.name} ({kind}): input {x.shape} has {channels} channels, which groups="
                          f"{self._groups} does not divide; use a groups that divides the channels")

    def _known_in_channels(self) -> int:
        shape = self.weight.shape
        if self._op_name == "Deconvolution":
            return shape[0]
        per_group = self._layout.first_shape(shape)[1]
        return per_group * self._groups if per_group else 0

    def infer_shape(self, x, *args) -> None:
        self._check_input(x)
        self.weight.shape = self._weight_shape(self._layout.channels(x.shape))

    def hybrid_forward(self, F, x, weight, bias=None):
        if isinstance(x, NDArray):
            self._check_input(x)
        op, named = getattr(F, self._op_name), {**self._kwargs, "name": "fwd"}
        with _named_errors(self, x):
            out = op(x, weight, bias, **named) if bias is not None else op(x, weight, **named)
        return self.act(out) if self.act is not None else out

    def _repr_args(self) -> str:
        # MXNet 1.x's text: the weight's axes 1 -> 0 (in_channels / groups -> channels here; a transposed
        # layer's channels / groups -> in_channels, a channel-last one's kernel[0] -> channels, as MXNet's),
        # no output_padding and no layout
        k, shape = self._kwargs, self.weight.shape
        text = f"{shape[1] or None} -> {shape[0]}, kernel_size={k['kernel']}, stride={k['stride']}"
        if any(k["pad"]):
            text += f", padding={k['pad']}"
        if any(d != 1 for d in k["dilate"]):
            text += f", dilation={k['dilate']}"
        if self._groups != 1:
            text += f", groups={self._groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.act is not None:
            text += f", {self.act!r}"
        return text


class Conv1D(_Conv):
    """1-D convolution over (N, C, W); weight (channels, in_channels / groups, k)."""
    _dims = 1


class Conv2D(_Conv):
    """2-D convolution over (N, C, H, W); weight (channels, in_channels / groups, kh, kw)."""
    _dims = 2


class Conv3D(_Conv):
    """3-D convolution over (N, C, D, H, W); weight (channels, in_channels / groups, kd, kh, kw)."""
    _dims = 3


class _ConvTranspose(_Conv):
    """The transposed convolutions take MXNet's arguments in MXNet's order: ``output_padding`` fifth."""
    _op_name = "Deconvolution"

    def __init__(self, channels: int, kernel_size, strides=1, padding=0, output_padding=0, dilation=1,
                 groups: int = 1, layout: str | None = None, activation: str | None = None,
                 use_bias: bool = True, weight_initializer=None, bias_initializer="zeros",
                 in_channels: int = 0, dtype="float32", prefix: str | None = None, params=None):
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, layout, activation,
                         use_bias, weight_initializer, bias_initializer, in_channels, dtype, prefix, params,
                         output_padding=output_padding)


class Conv1DTranspose(_ConvTranspose):
    """1-D transposed convolution (``output_padding`` is MXNet's adj); weight (in_channels,
    channels / groups, k)."""
    _dims = 1


class Conv2DTranspose(_ConvTranspose):
    """2-D transposed convolution (``output_padding`` is MXNet's adj); weight (in_channels, channels / groups,
    kh, kw)."""
    _dims = 2


class Conv3DTranspose(_ConvTranspose):
    """3-D transposed convolution (``output_padding`` is MXNet's adj); weight (in_channels, channels / groups,
    kd, kh, kw)."""
    _dims = 3


class _Pool(HybridBlock):
    """The shared body of the pooling layers (channel first, or channel last with ``layout``: (N, *spatial,
    C) in and out). Its arguments come in AvgPool2D's order; each layer's own ``__init__`` has MXNet's."""

    _dims, _pool_type, _global = 2, "max", False

    def _alias(self) -> str:
        return "pool"         # MXNet names every pooling layer pool0, pool1, ...

    def __init__(self, pool_size=2, strides=None, padding=0, ceil_mode: bool = False,
                 layout: str | None = None, count_include_pad: bool = True, prefix: str | None = None,
                 params=None):
        super().__init__(prefix, params)
        dims, kind = self._dims, f"{self.name} ({type(self).__name__})"
        self._layout = _check_layout(layout, dims, kind)
        self._kwargs = {"pool_type": self._pool_type, "global_pool": self._global,
                        "layout": self._layout.name}
        kernel = _tuple(pool_size, dims, "pool_size", kind)
        # what MXNet prints; its global layers pass pool_size 1 and ceil_mode=True to the shared body
        self._window = {"kernel": kernel, "stride": _tuple(kernel if strides is None else strides, dims,
                                                           "strides", kind),
                        "pad": _tuple(padding, dims, "padding", kind),
                        "pooling_convention": "full" if ceil_mode else "valid"}
        if not self._global:
            self._kwargs.update(self._window)
            _check_at_least(self._kwargs, (("pool_size", "kernel", 1), ("strides", "stride", 1),
                                           ("padding", "pad", 0)), dims, kind)
            if self._pool_type == "avg":
                self._kwargs["count_include_pad"] = count_include_pad

    def hybrid_forward(self, F, x):
        if isinstance(x, NDArray) and len(x.shape) != self._dims + 2:
            raise _rank_error(self, self._layout, x.shape)
        with _named_errors(self, x):
            return F.Pooling(x, name="fwd", **self._kwargs)

    def _repr_args(self) -> str:
        w = self._window
        return (f"size={w['kernel']}, stride={w['stride']}, padding={w['pad']}, "
                f"ceil_mode={w['pooling_convention'] == 'full'}, global_pool={self._global}, "
                f"pool_type={self._pool_type}, layout={self._layout.name}")


# MXNet 1.x's positional orders differ between the layers: MaxPool1D/2D and AvgPool1D take layout before
# ceil_mode, MaxPool3D and AvgPool2D/3D ceil_mode before layout; the average ones end with
# count_include_pad; the global ones take only layout.
# A max pooling layer takes count_include_pad as MXNet's does (by keyword) and, as MXNet's op, ignores it.
class _MaxPoolLayoutFirst(_Pool):
    def __init__(self, pool_size=2, strides=None, padding=0, layout: str | None = None,
                 ceil_mode: bool = False, prefix: str | None = None, params=None, *,
                 count_include_pad: bool | None = None):
        super().__init__(pool_size, strides, padding, ceil_mode, layout, prefix=prefix, params=params)


class _MaxPoolCeilFirst(_Pool):
    def __init__(self, pool_size=2, strides=None, padding=0, ceil_mode: bool = False,
                 layout: str | None = None, prefix: str | None = None, params=None, *,
                 count_include_pad: bool | None = None):
        super().__init__(pool_size, strides, padding, ceil_mode, layout, prefix=prefix, params=params)


class _AvgPoolLayoutFirst(_Pool):
    def __init__(self, pool_size=2, strides=None, padding=0, layout: str | None = None,
                 ceil_mode: bool = False, count_include_pad: bool = True, prefix: str | None = None,
                 params=None):
        super().__init__(pool_size, strides, padding, ceil_mode, layout, count_include_pad, prefix, params)


class _GlobalPool(_Pool):
    _global = True

    def __init__(self, layout: str | None = None, prefix: str | None = None, params=None):
        super().__init__(1, None, 0, True, layout, prefix=prefix, params=params)


class MaxPool1D(_MaxPoolLayoutFirst):
    """Max pooling over (N, C, W); strides default to pool_size. MXNet's order: layout, then ceil_mode."""
    _dims, _pool_type = 1, "max"


class MaxPool2D(_MaxPoolLayoutFirst):
    """Max pooling over (N, C, H, W); strides default to pool_size. MXNet's order: layout, then ceil_mode."""
    _dims, _pool_type = 2, "max"


class MaxPool3D(_MaxPoolCeilFirst):
    """Max pooling over (N, C, D, H, W); strides default to pool_size. MXNet's order: ceil_mode, layout."""
    _dims, _pool_type = 3, "max"


class AvgPool1D(_AvgPoolLayoutFirst):
    """Average pooling over (N, C, W). MXNet's order: layout, ceil_mode, count_include_pad."""
    _dims, _pool_type = 1, "avg"


class AvgPool2D(_Pool):
    """Average pooling over (N, C, H, W). MXNet's order: ceil_mode, layout, count_include_pad."""
    _dims, _pool_type = 2, "avg"


class AvgPool3D(_Pool):
    """Average pooling over (N, C, D, H, W). MXNet's order: ceil_mode, layout, count_include_pad."""
    _dims, _pool_type = 3, "avg"


class GlobalMaxPool1D(_GlobalPool):
    """Max over the whole width: (N, C, 1)."""
    _dims, _pool_type = 1, "max"


class GlobalMaxPool2D(_GlobalPool):
    """Max over each feature map: (N, C, 1, 1)."""
    _dims, _pool_type = 2, "max"


class GlobalMaxPool3D(_GlobalPool):
    """Max over each volume: (N, C, 1, 1, 1)."""
    _dims, _pool_type = 3, "max"


class GlobalAvgPool1D(_GlobalPool):
    """Mean over the whole width: (N, C, 1)."""
    _dims, _pool_type = 1, "avg"


class GlobalAvgPool2D(_GlobalPool):
    """Mean over each feature map: (N, C, 1, 1)."""
    _dims, _pool_type = 2, "avg"


class GlobalAvgPool3D(_GlobalPool):
    """Mean over each volume: (N, C, 1, 1, 1)."""
    _dims, _pool_type = 3, "avg"


class ReflectionPad2D(HybridBlock):
    """Pad the two spatial axes of (N, C, H, W) by mirroring the data at its edges (the edge row itself not
    repeated); ``padding`` an int, or MXNet's 8-tuple pad_width (zeros for N and C, then before/after per
    axis). Runs the ``pad`` op (``mode='reflect'``), as MXNet's layer does: a padding not smaller than its
    axis raises the op's error, imperatively and at trace time (the node ``<layer>_fwd``)."""

    def __init__(self, padding=0, prefix: str | None = None, params=None):
        super().__init__(prefix, params)
        if isinstance(padding, int):
            padding = (0, 0, 0, 0, padding, padding, padding, padding)
        padding = tuple(padding)
        if len(padding) != 8 or any(padding[:4]) or min(padding) < 0:
            raise OpValueError(f"ReflectionPad2D: padding={padding!r} must be an int >= 0 or an 8-tuple "
                               f"(0, 0, 0, 0, top, bottom, left, right)")
        self._padding = padding

    def hybrid_forward(self, F, x):
        # a Symbol's rank is known only at trace time: there the pad op's own check (8 widths need a 4-d
        # input) raises, in the node this layer names
        if isinstance(x, NDArray) and len(x.shape) != 4:
            raise GhError(f"{self.name} (ReflectionPad2D): needs 4-d input (NCHW), got shape {x.shape}; "
                          f"add a batch axis with expand_dims(axis=0)")
        with _named_errors(self, x):
            return F.pad(x, mode="reflect", pad_width=self._padding, name="fwd")

    def _repr_args(self) -> str:
        return f"padding={self._padding}"
