"""``gpuhybrid.onnx``: hybridized models to ONNX and back (MXNet 1.9's ``mx.onnx``).

``export_model(block_or_symbol, ...)`` writes an ONNX model that ONNX Runtime runs; ``import_model(path)``
(or ``import_to_gluon``) makes a ``SymbolBlock`` of an ONNX model, which runs and hybridizes like any
block. The ``onnx`` package (the ``onnx`` extra) is imported on first use, so gpuhybrid imports without
it. docs/onnx.md lists the ops that export and import.
"""

from ..gluon import export as _gluon_export
from .error import OnnxError


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise OnnxError("gpuhybrid.onnx needs the onnx package: pip install 'gpuhybrid[onnx]' "
                        "(or pip install onnx onnxruntime)") from None


def export_model(sym_or_block, params=None, in_shapes=None, in_types="float32", onnx_file_path=None,
                 dynamic: bool = True, opset: int | None = None, verbose: bool = False, **mxnet_options):
    """Write a Symbol or a HybridBlock as an ONNX model (see ``gpuhybrid.onnx.export.export_model``)."""
    _require_onnx()
    from .export import export_model as export
    return export(sym_or_block, params, in_shapes, in_types, onnx_file_path, dynamic, opset, verbose,
                  **mxnet_options)


def import_model(model_file, ctx=None):
    """A ``SymbolBlock`` running the ONNX model in ``model_file`` (a path or an ``onnx.ModelProto``), its
    initializers as parameters on ``ctx``."""
    _require_onnx()
    from .importer import import_model as load
    return load(model_file, ctx)


def import_to_gluon(model_file, ctx=None):
    """MXNet's name for ``import_model``: the ONNX model as a Gluon ``SymbolBlock``."""
    return import_model(model_file, ctx)


def _export_traced_block(block, path: str, input_specs: list) -> tuple:
    _require_onnx()
    from .export import export_traced_block
    return export_traced_block(block, path, input_specs)


# HybridBlock.export(path, format="onnx") finds its writer here: gluon stands below this package.
_gluon_export.EXPORT_FORMATS["onnx"] = _export_traced_block

__all__ = ["export_model", "import_model", "import_to_gluon", "OnnxError"]
