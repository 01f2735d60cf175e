"""The error of ONNX export and import (its own module so that it loads without the onnx package)."""
from __future__ import annotations

from ..errors import GhError


class OnnxError(GhError, ValueError):
    """A model that cannot be exported to ONNX or imported from it; the message names the file, the node
    and the op, and says what to do."""
