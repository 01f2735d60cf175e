"""The kernels this test run generated: conftest.py points GPUHYBRID_DUMP_KERNELS at a fresh folder, so
every generated source (``<kernel>.cu``) and its launch metadata (``<kernel>.json``) lie there by the
time the test_zz_* files (collected last, by name) run."""
from __future__ import annotations

import os
import re
from pathlib import Path


def dump_folder() -> Path:
    return Path(os.environ["GPUHYBRID_DUMP_KERNELS"])


def generated_sources() -> list:
    return sorted(dump_folder().glob("*.cu"))


def kernel_kind(name: str) -> str:
    """What wrote a dumped kernel, from its name: a fused group, a row group (softmax and LayerNorm
    included: lower_row_ops makes them row groups), an in-place fused group, or the eager single-op
    kernel of a GPU elementwise call, or a multi-tensor kernel (an optimizer's update of many tensors)."""
    if name.startswith("gh_multi_"):
        return "multi-tensor"
    if re.search(r"_o\d+i\d+$", name):
        return "in-place"
    for prefix, kind in (("gh_fused_", "fused"), ("gh_rows_", "row group")):
        if name.startswith(prefix):
            return kind
    return "eager single-op"
