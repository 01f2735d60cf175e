"""The hot path of a plan as generated Python: one straight-line function per CompiledGraph.

Instead of looping over steps and indexing a slot list, the plan's steps become plain statements over
local variables (as torch.fx does for its GraphModules), e.g.::

    def run(inputs):
        s0, s1, s2 = inputs
        s3 = f0(device, [s0, s1], a0, o0)    # fullyconnected0_gemm
        s4 = f1(device, [s3, s2], a1, o1)    # fused_fullyconnected0_activation0
        del s3
        ...
        return [s9], []

Every name a statement uses (implementations, attributes, output specs, constants) is bound once
when the function is made. The text is kept on the plan (``runner_source``) for reading.
"""
from __future__ import annotations


def make_runner(plan) -> tuple:
    """(function, source) running ``plan`` on raw arrays given in ``plan.input_names`` order."""
    names: dict = {"device": plan.device, "record_launches": _record}
    lines = ["def run(inputs):"]
    if plan.input_slots:
        lines.append(f"    {', '.join(f's{i}' for i in plan.input_slots)}, = inputs")
    for slot in sorted(plan.const_slots):
        names[f"c{slot}"] = plan.template[slot]
        lines.append(f"    s{slot} = c{slot}")
    body = []
    for k, step in enumerate(plan.steps):
        names[f"f{k}"], names[f"a{k}"], names[f"o{k}"] = step.eager, step.attrs, step.outs
        targets = ", ".join(f"s{w}" for w in step.writes) + ("," if len(step.writes) > 1 else "")
        reads = ", ".join(f"s{r}" for r in step.reads)
        body.append(f"{targets} = f{k}(device, [{reads}], a{k}, o{k})  # {step.name!r}")
        if step.frees:
            body.append(f"del {', '.join(f's{s}' for s in step.frees)}")
    lines.append("    with device.activate():")
    lines += [f"        {line}" for line in body] or ["        pass"]
    lines.append(f"    record_launches(device, {plan.kernels_per_call}, {plan.library_calls_per_call})")
    outputs = ", ".join(f"s{i}.copy()" if i in plan.const_slots else f"s{i}" for i in plan.output_slots)
    aux = ", ".join(f"({name!r}, s{i}.copy())" if i in plan.const_slots else f"({name!r}, s{i})"
                    for name, i in plan.aux_slots)
    lines.append(f"    return [{outputs}], [{aux}]")
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<gpuhybrid plan {id(plan):x}>", "exec"), names)  # noqa: S102 (our own text)
    return names["run"], source


def _record(device, kernels: int, library: int) -> None:
    from ..backend import record_launches
    record_launches(device, kernels, "kernel")
    record_launches(device, library, "library")
