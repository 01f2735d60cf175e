"""MXNet's ``mx.base``: ``MXNetError`` is gpuhybrid's base error, so ``except mx.base.MXNetError``
in ported code catches every error gpuhybrid raises on purpose (d2l's ``try_gpu`` relies on it)."""
from .errors import GhError

MXNetError = GhError

__all__ = ["MXNetError"]
