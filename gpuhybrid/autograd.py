"""Training and prediction modes (``train_mode``, ``predict_mode``, ``is_training``).

Ops that behave differently while training (Dropout, and BatchNorm later) read ``is_training()``; the
dispatcher passes it to them as an attribute, so a hybridized plan can key on it too.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

_training: contextvars.ContextVar[bool] = contextvars.ContextVar("gpuhybrid_training", default=False)


def is_training() -> bool:
    """True inside ``train_mode()``."""
    return _training.get()


@contextlib.contextmanager
def _mode(training: bool) -> Iterator[None]:
    token = _training.set(training)
    try:
        yield
    finally:
        _training.reset(token)


def train_mode():
    """Run ops in training mode inside the ``with`` block (Dropout drops)."""
    return _mode(True)


def predict_mode():
    """Run ops in inference mode inside the ``with`` block (Dropout is the identity)."""
    return _mode(False)
