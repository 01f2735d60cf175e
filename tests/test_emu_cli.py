"""GPUHYBRID_DUMP_KERNELS writes each kernel's launch metadata (<kernel>.json), and
``python -m gpuhybrid.emu DIR [--check] [--include HEADERS_DIR]`` runs every dumped kernel's CUDA branch
against its CPU branch: one line per kernel, a summary, exit status 1 on any mismatch or report."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import sym
from gpuhybrid.backend.cuda_elementwise import dump_kernel, eager_kernel
from gpuhybrid.backend.gpu_launch import REFERENCE_SM_COUNT, launch_dims
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.backend.kernel_files import kernel_dir
from gpuhybrid.emu.__main__ import main
from gpuhybrid.ops import get_op
from gpuhybrid.ops.registry import TensorSpec

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="no host C++ compiler")


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    """A folder of real dumps: a fused chain with a scalar, a row group, an in-place epilogue, and an
    eager kernel over a reversed, strided view."""
    folder = tmp_path_factory.mktemp("dump")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("GPUHYBRID_DUMP_KERNELS", str(folder))
        x, y, w, b = sym.var("x"), sym.var("y"), sym.var("w"), sym.var("b")
        halves = {"x": TensorSpec((3, 40), "float16"), "y": TensorSpec((40,), "float16")}
        sym.compile_symbol(sym.tanh(x * 2.5 + y) - y, halves, gh.cpu(), fuse=True)
        e = sym.exp(x - sym.max(x, axis=-1, keepdims=True))
        sym.compile_symbol(e / sym.sum(e, axis=-1, keepdims=True), {"x": TensorSpec((6, 70), "float32")},
                           gh.cpu(), fuse=True)
        sym.compile_symbol(sym.tanh(sym.FullyConnected(x, w, b, num_hidden=6) * 0.5),
                           {"x": TensorSpec((5, 7), "float64"), "w": TensorSpec((6, 7), "float64"),
                            "b": TensorSpec((6,), "float64")}, gh.cpu())
        view = np.random.default_rng(0).uniform(-1, 1, (6, 10)).astype(np.float32)[::-1, 1::2]
        op = get_op("LeakyReLU")
        attrs = {"act_type": "leaky", "slope": 0.25}
        plan = eager_kernel(op.name, op.scalar_expr(attrs), [view], attrs, TensorSpec(view.shape, "float32"))
        dump_kernel(plan, [view], view.shape)
    return folder


def _metadata(folder, prefix: str) -> dict:
    (path,) = [p for p in folder.glob(f"{prefix}*.json")]
    return json.loads(path.read_text())


def test_dumps_carry_the_launch_metadata(dump):
    fused = _metadata(dump, "gh_fused_mul_scalar")
    assert fused["n"] == 120 and fused["row_length"] == 0 and fused["index_32"]
    assert [(a["name"], a["dtype"], a["shape"], a["output"]) for a in fused["arrays"]] == [
        ("out0", "float16", [3, 40], True), ("in0", "float16", [3, 40], False),
        ("in1", "float16", [40], False)]
    assert [s["value"] for s in fused["scalars"]] == [2.5]
    assert (fused["launch"]["reference_grid"], fused["launch"]["reference_block"]) == launch_dims(120, 0, 132)
    assert fused["launch"]["reference_sm_count"] == REFERENCE_SM_COUNT and "SMs" in fused["launch"]["grid"]
    rows = _metadata(dump, "gh_rows_")
    assert (rows["n"], rows["row_length"]) == (6, 70)
    assert (rows["launch"]["reference_grid"], rows["launch"]["reference_block"]) == (6, 96)
    in_place = _metadata(dump, "gh_fused_add_")      # the GEMM's epilogue, over its result
    assert in_place["in_place"] == [[0, 0]]
    eager = _metadata(dump, "gh_LeakyReLU")
    assert eager["arrays"][1]["shape"] == [6, 5] and eager["arrays"][1]["strides"] == [-10, 2]
    assert eager["scalars"] == [{"name": "s0_slope", "dtype": "float32", "value": 0.25}]


def test_the_command_runs_every_dumped_kernel(dump, capsys):
    assert main([str(dump), "--check"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(list(dump.glob("*.cu"))) + 1
    assert all(line.startswith("OK ") for line in lines[:-1])
    assert lines[-1].startswith("4 kernels") and "4 ok, 0 mismatch, 0 report" in lines[-1]


def test_the_command_fails_on_headers_that_compute_wrong_values(dump, tmp_path, capsys):
    headers = tmp_path / "kernels"
    shutil.copytree(kernel_dir(), headers)
    text = (headers / "gh_kernel.h").read_text()
    (headers / "gh_kernel.h").write_text(text.replace('"cvt.rn.f16.f32"', '"cvt.rz.f16.f32"'))
    assert main([str(dump), "--include", str(headers)]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH gh_fused_mul_scalar_add" in out and "not bit-identical" in out


def test_the_command_reports_races_in_check_mode(dump, tmp_path, capsys):
    headers = tmp_path / "kernels"
    shutil.copytree(kernel_dir(), headers)
    text = (headers / "gh_row.h").read_text()
    barrier = "  if (lane == 0) partial[warp] = v;\n  __syncthreads();\n"
    (headers / "gh_row.h").write_text(text.replace(barrier, "  if (lane == 0) partial[warp] = v;\n"))
    assert main([str(dump), "--check", "--include", str(headers), "--only", "gh_rows_*"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("REPORT   gh_rows_") and "RACECHECK" in out and "gh_row.h:" in out


def test_the_command_names_kernels_it_cannot_run(dump, tmp_path, capsys):
    folder = tmp_path / "partial"
    shutil.copytree(dump, folder)
    (victim,) = list(folder.glob("gh_rows_*.json"))
    victim.unlink()
    assert main([str(folder)]) == 1
    assert f"ERROR    {victim.stem}" in capsys.readouterr().out
    assert main([str(tmp_path / "nowhere")]) == 2
