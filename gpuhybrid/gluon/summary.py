"""``Block.summary``: a table of layers, output shapes and parameter counts from one imperative call."""
from __future__ import annotations

import numpy as np


def _shapes(out) -> str:
    if isinstance(out, (list, tuple)):
        return ", ".join(_shapes(o) for o in out)
    return str(tuple(out.shape))


def summary(block, *inputs) -> str:
    """Run ``block`` once imperatively on ``inputs`` and print (and return) the table."""
    rows = []
    blocks = list(block._walk())
    hybrid = [b for b in blocks if hasattr(b, "_active")]
    was_active = {b: b._active for b in hybrid}

    def record(layer, args, out):
        own = sum(int(np.prod(p.shape)) for p in layer._reg_params.values() if p.shape_known)
        rows.append((f"{layer.name} ({type(layer).__name__})", _shapes(out), own))

    try:
        for b in hybrid:
            b._active = False          # imperative, so that every layer's hook sees its output
        for b in blocks:
            b._forward_hooks.append(record)
        block(*inputs)
    finally:
        for b in blocks:
            b._forward_hooks.remove(record)
        for b in hybrid:
            b._active = was_active[b]
    # Hooks fire when a layer returns: leaves in call order, each container after its children.
    total = sum(p.data().size for p in block.collect_params().values() if p.is_initialized)
    width = max([len(r[0]) for r in rows] + [20])
    lines = [f"{'Layer (type)':<{width}}  {'Output Shape':<24}  {'Param #':>10}", "=" * (width + 38)]
    lines += [f"{name:<{width}}  {shape:<24}  {count:>10}" for name, shape, count in rows]
    lines += ["=" * (width + 38), f"Total params: {total}"]
    text = "\n".join(lines)
    print(text)
    return text
