"""Image transforms with MXNet Gluon's names: ToTensor, Normalize, Resize, Compose, RandomFlipLeftRight.

Images are (height, width, channels) — one image, or a batch (N, H, W, C) — as NumPy arrays or NDArrays;
``ToTensor`` makes a float32 (C, H, W) NDArray in [0, 1] of them, which ``Normalize`` then standardises
per channel. Each transform is a Block, so ``Compose`` is a Sequential and any Block can join it.
Random transforms draw from gpuhybrid's CPU generator (``gh.random.seed`` makes them reproducible).
"""
from __future__ import annotations

import numbers

import numpy as np

from ....backend import cpu, rng
from ....errors import OpValueError
from ....ndarray import NDArray, array
from ...block import Block, Sequential
from ..dataset import host_array


def _image_dims(value, what: str) -> None:
    if value.ndim not in (3, 4):
        raise OpValueError(f"{what}: expects an image (H, W, C) or a batch (N, H, W, C), got shape "
                           f"{tuple(value.shape)}")


def _like_input(value: np.ndarray, like):
    """``value`` as the kind of array the transform was given (an NDArray on its device, or NumPy)."""
    return array(value, ctx=like.ctx, dtype=value.dtype.name) if isinstance(like, NDArray) else value


class Compose(Sequential):
    """The transforms one after another: ``Compose([Resize(32), ToTensor(), Normalize(0.5, 0.25)])``."""

    def __init__(self, transforms):
        super().__init__()
        self.add(*transforms)


class ToTensor(Block):
    """(H, W, C) [or (N, H, W, C)] values in [0, 255] to a float32 (C, H, W) [(N, C, H, W)] NDArray
    in [0, 1]."""

    def forward(self, x):
        value = host_array(x)
        _image_dims(value, "ToTensor")
        tensor = np.moveaxis(value, -1, -3).astype(np.float32) / np.float32(255)
        return array(np.ascontiguousarray(tensor), ctx=x.ctx if isinstance(x, NDArray) else None,
                     dtype="float32")


class Normalize(Block):
    """(x - mean) / std per channel of a (C, H, W) or (N, C, H, W) tensor; ``mean`` and ``std`` are
    numbers or one value per channel."""

    def __init__(self, mean=0.0, std=1.0):
        super().__init__()
        self._mean, self._std = mean, std

    def _per_channel(self, values, channels: int, what: str) -> np.ndarray:
        vector = np.atleast_1d(np.asarray(values, dtype=np.float64))
        if vector.size not in (1, channels):
            raise OpValueError(f"Normalize: {what} has {vector.size} values for {channels} channels; give "
                               f"one value or one per channel")
        return np.broadcast_to(vector, (channels,)).reshape(channels, 1, 1)

    def forward(self, x):
        tensor = x if isinstance(x, NDArray) else array(np.asarray(x, dtype=np.float32))
        if tensor.ndim not in (3, 4):
            raise OpValueError(f"Normalize: expects a tensor (C, H, W) or (N, C, H, W), got shape "
                               f"{tensor.shape}")
        channels = tensor.shape[-3]
        mean = self._per_channel(self._mean, channels, "mean")
        std = self._per_channel(self._std, channels, "std")
        if np.any(std == 0):
            raise OpValueError("Normalize: std must not be zero")
        shift = array(mean, ctx=tensor.ctx, dtype=tensor.dtype.name)
        scale = array(1.0 / std, ctx=tensor.ctx, dtype=tensor.dtype.name)
        return (tensor - shift) * scale


def _sample_positions(out_size: int, in_size: int, nearest: bool) -> tuple:
    """(lower index, upper index, weight of the upper) along one axis, pixel centres aligned (OpenCV's
    INTER_LINEAR); nearest takes floor(out * in / out_size), as OpenCV's INTER_NEAREST."""
    scale = in_size / out_size
    if nearest:
        index = np.minimum(np.floor(np.arange(out_size) * scale).astype(np.int64), in_size - 1)
        return index, index, np.zeros(out_size)
    source = np.clip((np.arange(out_size) + 0.5) * scale - 0.5, 0, in_size - 1)
    lower = np.floor(source).astype(np.int64)
    upper = np.minimum(lower + 1, in_size - 1)
    return lower, upper, source - lower


def resize_image(value: np.ndarray, width: int, height: int, nearest: bool = False) -> np.ndarray:
    """(..., H, W, C) resized to (..., height, width, C), in the input's dtype (integers rounded)."""
    rows = _sample_positions(height, value.shape[-3], nearest)
    cols = _sample_positions(width, value.shape[-2], nearest)
    data = value.astype(np.float64)
    top, bottom, wy = rows
    left, right, wx = cols
    wy = wy.reshape(-1, 1, 1)
    wx = wx.reshape(1, -1, 1)
    upper = data[..., top, :, :][..., left, :] * (1 - wx) + data[..., top, :, :][..., right, :] * wx
    lower = data[..., bottom, :, :][..., left, :] * (1 - wx) + data[..., bottom, :, :][..., right, :] * wx
    out = upper * (1 - wy) + lower * wy
    if value.dtype.kind in "iu":
        info = np.iinfo(value.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(value.dtype)


class Resize(Block):
    """Resize images (H, W, C) to ``size``: an int (a square, or with ``keep_ratio`` the shorter edge) or
    (width, height), as MXNet. ``interpolation``: 0 nearest, 1 bilinear (the default)."""

    def __init__(self, size, keep_ratio: bool = False, interpolation: int = 1):
        super().__init__()
        if interpolation not in (0, 1):
            raise OpValueError(f"Resize: interpolation={interpolation} is not supported; use 0 (nearest) or "
                               f"1 (bilinear)")
        if isinstance(size, numbers.Integral):
            size = int(size)
        elif len(size) != 2:
            raise OpValueError(f"Resize: size must be an int or (width, height), got {size!r}")
        self._size, self._keep_ratio, self._nearest = size, keep_ratio, interpolation == 0

    def target(self, height: int, width: int) -> tuple:
        """(width, height) of the result for an input of ``height`` x ``width``."""
        if not isinstance(self._size, int):
            return int(self._size[0]), int(self._size[1])
        if not self._keep_ratio:
            return self._size, self._size
        if height > width:
            return self._size, int(height * self._size / width)
        return int(width * self._size / height), self._size

    def forward(self, x):
        value = host_array(x)
        _image_dims(value, "Resize")
        width, height = self.target(value.shape[-3], value.shape[-2])
        return _like_input(resize_image(value, width, height, self._nearest), x)


class RandomFlipLeftRight(Block):
    """Mirror an image (H, W, C) left to right with probability 0.5."""

    def forward(self, x):
        value = host_array(x)
        _image_dims(value, "RandomFlipLeftRight")
        if rng.generator(cpu()).random() < 0.5:
            return _like_input(np.ascontiguousarray(value[..., ::-1, :]), x)
        return x


__all__ = ["Compose", "ToTensor", "Normalize", "Resize", "RandomFlipLeftRight", "resize_image"]
