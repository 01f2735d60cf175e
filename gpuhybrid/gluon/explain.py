"""``HybridBlock.explain`` / ``gh.inspect``: what hybridize() does with a block, step by step."""
from __future__ import annotations

import sys

from .. import autograd
from ..codegen.fused import render_group
from ..executor.memory import plan_memory
from ..graph.ir import FUSED, graph_launches, is_view
from ..graph.passes.conv_cudnn_fuse import describe_conv_epilogues
from ..ops.conv_cudnn import cudnn_fusion_state, explain_convolutions


def explain(block, *inputs, file=None) -> str:
    """Trace ``block`` on ``inputs`` (without touching its plan cache) and describe every stage."""
    stages: list = []
    device = inputs[0].ctx
    entry = block._trace(tuple(inputs), device, autograd.is_training(),
                         on_pass=lambda name, graph: stages.append((name, graph)))
    plan = entry.plan
    out = [f"== {block.name}: hybridize() on inputs {', '.join(str(a.spec) for a in inputs)} on {device}",
           f"-- pipeline: {' > '.join(name for name, _ in stages if name != 'traced')}"]
    previous = None
    for name, graph in stages:
        text = str(graph)
        if text == previous:
            out += ["", f"-- after {name}: unchanged"]
            continue
        out += ["", f"-- after {name} ({len(graph.compute_nodes)} ops)", text]
        previous = text
    fused = [n for n in plan.graph.nodes if n.op == FUSED]
    out += ["", f"-- fusion groups: {len(fused)}"]
    for node in fused:
        group = node.attr_dict["group"]
        out.append(f"%{node.name}: {' > '.join(line.op for line in group.lines)} over {tuple(group.shape)}, "
                   f"{len(group.input_specs)} input(s), {len(group.outputs)} output(s)")
    step_of = dict(zip((n.name for n in plan.graph.compute_nodes), plan.steps))
    for node in fused:
        step = step_of[node.name]
        source = render_group(node.attr_dict["group"], in_place=step.in_place)
        out += ["", f"-- kernel for %{node.name}", source.kernel.text]
    memory = plan_memory(plan)
    in_place = sum(len(step.in_place) for step in plan.steps)
    out += ["", f"-- memory: peak of intermediates {memory.peak_bytes / 1024:.1f} KiB "
                f"(at {memory.peak_step}); {memory.total_bytes / 1024:.1f} KiB if nothing were freed"
                + (f"; {in_place} value(s) written in place of a dying input" if in_place else "")]
    if plan.device.is_gpu and plan.static_alloc:
        # (a failed capture notes why)
        captured = plan.graph_replay is not None and plan.capture_note is None
        out.append("   CUDA graph: " + ("one launch per call (static_shape)" if captured
                                         else f"not captured ({plan.capture_note or 'static_shape is off'})"))
    if plan.buffer_plan is not None:
        buffers = plan.buffer_plan
        out.append(f"   static_alloc: {len(buffers.buffer_bytes)} buffer(s) allocated once, "
                   f"{buffers.total_bytes / 1024:.1f} KiB, holding {len(buffers.buffer_of)} value(s)"
                   + (f", {len(buffers.kept)} of them outputs (static_outputs)" if buffers.kept else ""))
        out.append("   " + _allocated_per_call(plan))
    # The final graph (printed above, after the last pass) lists every launch; the plan counts the same.
    kernels, library = graph_launches(plan.graph)
    out += ["", f"-- launches per call: {kernels + library} ({kernels} kernels, {library} library calls), "
                f"as the graph after {stages[-1][0]} lists them; steps: "
                f"{', '.join(step.name for step in plan.steps)}"]
    convolutions = explain_convolutions([node.op for node in plan.graph.compute_nodes], plan.device)
    if convolutions:      # GPU: cuDNN (a library call CUDA graphs do not capture) or im2col
        out.append(convolutions)
        # which ran after each convolution: cuDNN's fused graph or the generated epilogue, and why
        out += describe_conv_epilogues(graph_entering(stages, "fuse_conv_activation"), cudnn_fusion_state())
    text = "\n".join(out)
    print(text, file=file or sys.stdout)
    return text


def graph_entering(stages: list, pass_name: str):
    """The graph that entered the pass ``pass_name`` among the (name, graph) ``stages``; None if it did not
    run."""
    for (_, before), (name, _) in zip(stages, stages[1:]):
        if name == pass_name:
            return before
    return None


def _allocated_per_call(plan) -> str:
    """What a static_alloc plan still allocates on each call: outputs outside the static buffers, and
    the results of steps whose op makes its own arrays (library ops other than views)."""
    buffer_of = plan.buffer_plan.buffer_of
    outputs = [s for s in plan.output_slots if s not in buffer_of and s not in plan.const_slots]
    steps = [f"{step.name} ({node.op})" for step, node in zip(plan.steps, plan.graph.compute_nodes)
             if not is_view(node) and any(w not in buffer_of and w not in plan.output_slots
                                                 for w in step.writes)]
    if not outputs and not steps:
        return "allocated per call: nothing"
    parts = ([f"{len(outputs)} output(s) (fresh arrays; static_outputs=True keeps them in buffers)"]
             if outputs else [])
    if steps:
        parts.append(f"{len(steps)} step(s) whose op makes its own result: {', '.join(steps)}")
    return "allocated per call: " + "; ".join(parts)
