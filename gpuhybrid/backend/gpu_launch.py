"""The grid and block a generated kernel is launched with on a GPU, in one place: the executor's fused
and row kernels, the eager elementwise path and the CUDA emulator (``gpuhybrid.emu``) all use it.

Elementwise kernels: 256 threads a block, enough blocks to cover ``n`` but at most 32 per SM (a
grid-stride loop does the rest). Row kernels: a block per row, enough warps to cover the row (at most
8), at most 8 blocks per SM (blocks stride over rows).
"""
from __future__ import annotations

ELEMENTWISE_BLOCK = 256
ELEMENTWISE_BLOCKS_PER_SM = 32
ROW_BLOCKS_PER_SM = 8
# The reference GPU of tests and dumps that have no device to ask: an H100 SXM has 132 SMs.
REFERENCE_SM_COUNT = 132


def launch_dims(size: int, row_length: int, sm_count: int) -> tuple:
    """(grid, block) of a kernel over ``size`` elements (rows, for a row kernel of ``row_length``)."""
    if row_length:
        block = min(256, 32 * max(1, -(-row_length // 32)))
        return max(1, min(size, sm_count * ROW_BLOCKS_PER_SM)), block
    grid = max(1, min(-(-size // ELEMENTWISE_BLOCK), sm_count * ELEMENTWISE_BLOCKS_PER_SM))
    return grid, ELEMENTWISE_BLOCK


def launch_rule(row_length: int) -> dict:
    """The rule of ``launch_dims`` in words (the dumped kernels' metadata carries it)."""
    if row_length:
        return {"grid": f"max(1, min(n, {ROW_BLOCKS_PER_SM} * SMs))",
                "block": "min(256, 32 * ceil(row_length / 32))"}
    return {"grid": f"max(1, min(ceil(n / {ELEMENTWISE_BLOCK}), {ELEMENTWISE_BLOCKS_PER_SM} * SMs))",
            "block": str(ELEMENTWISE_BLOCK)}


__all__ = ["REFERENCE_SM_COUNT", "launch_dims", "launch_rule"]
