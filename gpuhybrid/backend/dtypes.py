"""The dtypes gpuhybrid computes with, their C names, and the type each elementwise kernel computes in."""
from __future__ import annotations

import numpy as np

# C type of each storage dtype in generated kernels (half is stored as 16 bits, computed as float).
C_TYPES = {"float16": "gh_half", "float32": "float", "float64": "double",
           "int32": "int", "int64": "long long", "bool": "bool"}


def compute_dtype(*dtypes) -> np.dtype:
    """The dtype a kernel computes in: NumPy's promotion of its operands, with float16 raised to float32."""
    dt = np.result_type(*dtypes)
    return np.dtype("float32") if dt == np.float16 else dt
