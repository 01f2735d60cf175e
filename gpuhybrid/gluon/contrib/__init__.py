"""``gluon.contrib``: MXNet Gluon's contributed blocks (``contrib.nn``)."""
from . import nn

__all__ = ["nn"]
