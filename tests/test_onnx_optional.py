"""gpuhybrid imports without the onnx package (an optional extra), and gh.onnx then says what to install."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def test_gpuhybrid_imports_without_onnx_and_says_what_to_install():
    script = textwrap.dedent("""
        import sys
        sys.modules["onnx"] = None            # as if the package were not installed
        import gpuhybrid as gh
        from gpuhybrid import sym
        for call in (lambda: gh.onnx.export_model(sym.var("data"), {}, in_shapes=[(1,)]),
                     lambda: gh.onnx.import_model("model.onnx")):
            try:
                call()
            except gh.onnx.OnnxError as exc:
                assert "pip install" in str(exc), exc
            else:
                raise AssertionError("no error without onnx")
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
