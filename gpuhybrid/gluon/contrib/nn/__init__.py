"""``gluon.contrib.nn``: blocks that run several children on one input (MXNet's contrib layers)."""
from .concurrent import Concurrent, HybridConcurrent

__all__ = ["Concurrent", "HybridConcurrent"]
