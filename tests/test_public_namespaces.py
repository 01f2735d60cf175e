"""What each public namespace offers, name by name, so that an internal which leaks in fails here.

For a package (``nd``, ``sym``, ``gluon``, ...) every name its ``__init__`` makes visible counts, since
re-exporting is what it is for; for a plain module (``autograd``, ``profiler``, ...) the names it defines
count, not what it imports to do its work. ``API`` is the public API and equals ``__all__``; ``NOT_API``
names what is reachable but deliberately not API, with the reason. Adding a name to a namespace means
adding it here too, on purpose.

The second half checks the rule behind this: no module uses another module's private (``_x``) name.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.numpy.mapping import NP_OPS, NPX_OPS
from gpuhybrid.ops.registry import ALIASES, REGISTRY

PACKAGE_DIR = Path(gh.__file__).parent

# nd and sym are generated from the registry, so that an op added once exists in both: every op and alias
# but the gradient-only scatters (MXNet keeps its _backward_* ops out of nd too).
GRADIENT_ONLY_OPS = {name for name in REGISTRY if name.endswith("_backward")}
REGISTRY_NAMES = (set(REGISTRY) | set(ALIASES)) - GRADIENT_ONLY_OPS

LAYERS = {"backend", "codegen", "errors", "executor", "graph", "ops"}

API = {
    "gpuhybrid": {"inspect", "nd", "ndarray", "sym", "symbol", "gluon", "onnx", "viz", "init", "autograd",
                  "profiler", "random", "Context", "Device", "cpu", "gpu", "num_gpus", "default_device",
                  "waitall", "GhError", "ShapeError", "DTypeError", "DeviceError", "DeviceUnavailableError",
                  "OpAttributeError", "OpValueError", "__version__", "base", "context", "test_utils",
                  "MXNetError", "current_context", "set_num_threads", "get_num_threads"}
    | {"np", "numpy", "npx", "numpy_extension"},
    "gpuhybrid.ndarray": REGISTRY_NAMES | {"NDArray", "array", "arange", "empty", "from_dlpack", "full",
                                           "ones", "zeros", "random", "waitall", "save", "load",
                                           "NDArrayFileError"},
    "gpuhybrid.ndarray.random": {"normal", "uniform", "randn", "seed"},
    "gpuhybrid.random": {"seed", "normal", "uniform", "randn"},
    "gpuhybrid.symbol": REGISTRY_NAMES | {"Symbol", "var", "Variable", "Group", "load", "load_json",
                                          "Executor", "TraceError", "SymbolFileError", "compile_symbol"},
    # MXNet 1.6+'s NumPy interface: every np/npx function is a registry op or made of them (mapping.py).
    "gpuhybrid.numpy": set(NP_OPS) | {"ndarray", "NumpySymbol", "as_np", "array", "asarray", "linalg",
                                      "random", "float16", "float32", "float64", "int8", "int32", "int64",
                                      "uint8", "bool_", "dtype", "pi", "e", "inf", "nan", "newaxis"},
    "gpuhybrid.numpy.random": {"seed", "normal", "uniform", "rand", "randn", "randint", "choice", "shuffle"},
    "gpuhybrid.numpy.linalg": {"norm"},
    "gpuhybrid.numpy_extension": set(NPX_OPS) | {"set_np", "reset_np", "is_np_array", "is_np_shape", "cpu",
                                                 "gpu", "num_gpus", "waitall", "seed", "save", "load"},
    "gpuhybrid.gluon": {"init", "nn", "contrib", "loss", "data", "optimizer", "utils", "Block", "Constant",
                        "Sequential", "HybridBlock", "SymbolBlock", "Parameter", "ParameterDict",
                        "DeferredInitializationError", "Trainer",
                        "compile_step", "CompiledStep"},
    "gpuhybrid.gluon.nn": {"Block", "HybridBlock", "Sequential", "HybridSequential", "SymbolBlock", "Dense",
                           "Activation", "Dropout", "Flatten", "Lambda", "HybridLambda", "Identity",
                           "BatchNorm", "LayerNorm", "InstanceNorm", "GroupNorm", "Embedding", "LeakyReLU",
                           "PReLU", "ELU", "SELU", "GELU", "Swish", "Conv1D", "Conv2D", "Conv3D",
                           "Conv1DTranspose", "Conv2DTranspose", "MaxPool1D", "MaxPool2D", "MaxPool3D",
                           "AvgPool1D", "AvgPool2D", "AvgPool3D", "GlobalMaxPool1D", "GlobalMaxPool2D",
                           "GlobalAvgPool1D", "GlobalAvgPool2D", "ReflectionPad2D",
                           "Conv3DTranspose", "GlobalMaxPool3D", "GlobalAvgPool3D"},
    "gpuhybrid.gluon.contrib": {"nn"},
    "gpuhybrid.gluon.data": {"Dataset", "SimpleDataset", "ArrayDataset", "DataLoader", "vision"},
    "gpuhybrid.gluon.data.vision": {"datasets", "transforms", "MNIST", "FashionMNIST", "CIFAR10"},
    "gpuhybrid.gluon.data.vision.datasets": {"MNIST", "FashionMNIST", "CIFAR10", "ImageDataset", "read_idx"},
    "gpuhybrid.gluon.data.vision.transforms": {"Compose", "ToTensor", "Normalize", "Resize",
                                               "RandomFlipLeftRight", "resize_image"},
    "gpuhybrid.gluon.contrib.nn": {"Concurrent", "HybridConcurrent"},
    "gpuhybrid.autograd": {"record", "pause", "train_mode", "predict_mode", "is_recording", "is_training",
                           "backward", "grad", "mark_variables", "AutogradError"},
    "gpuhybrid.gluon.init": {"Initializer", "InitializerNotImplementedError", "Uniform", "Normal", "Xavier",
                             "MSRAPrelu", "Orthogonal", "Constant", "Zero", "One", "Mixed", "Load", "create"},
    "gpuhybrid.gluon.utils": {"split_data", "split_and_load", "clip_global_norm", "check_sha1", "download",
                              "DownloadError"},
    "gpuhybrid.base": {"MXNetError"},
    "gpuhybrid.context": {"Context", "Device", "cpu", "gpu", "cpu_pinned", "num_gpus", "current_context"},
    "gpuhybrid.test_utils": {"almost_equal", "assert_almost_equal", "same", "assert_exception",
                             "default_context", "set_default_context", "rand_ndarray", "rand_shape_2d",
                             "rand_shape_3d", "rand_shape_nd"},
    "gpuhybrid.profiler": {"LaunchCounts", "count_launches", "host_compiler",
                           "pool_counts"},
    "gpuhybrid.onnx": {"export_model", "import_model", "import_to_gluon", "OnnxError"},
    # The CUDA emulator of generated kernels (a test tool: python -m gpuhybrid.emu DIR).
    "gpuhybrid.emu": {"ArraySpec", "DumpError", "EmuBuildError", "EmulatedLibrary", "KernelOutcome",
                      "LaunchConfig", "LaunchSpec", "ReferenceLibrary", "build_emulated", "build_reference",
                      "check_kernel", "emulate", "launch_configs", "load_dump", "summary"},
}

NOT_API = {
    # The layers themselves: importable by whoever extends gpuhybrid (error messages name
    # gpuhybrid.ops.list_ops()), not re-exported. bench and demo appear once something imports them.
    "gpuhybrid": LAYERS | {"bench", "demo", "emu"},
    # The rules run with F = sym (symbol/gradient.py) call the gradient-only ops as attributes.
    "gpuhybrid.symbol": {"gradient", "infer", "limits", "run", "serialize", "symbol"} | GRADIENT_ONLY_OPS,
    # Submodules (as MXNet's gluon.block, gluon.parameter); explain/debug/... load on first use.
    "gpuhybrid.gluon": {"block", "hybrid", "parameter", "params_io", "symbol_block", "trainer", "debug",
                        "explain", "export", "summary",
                        "compiled_step", "deferred", "multi_tensor"},
    "gpuhybrid.numpy": {"arrays", "functions", "mapping"},
    "gpuhybrid.numpy_extension": {"functions", "gluon_support", "mode"},
    "gpuhybrid.gluon.nn": {"basic_layers", "norm_layers", "activations", "conv_layers"},
    "gpuhybrid.gluon.contrib.nn": {"concurrent"},
    "gpuhybrid.gluon.data": {"dataloader", "dataset"},
    # Its modules load on first use (they import the onnx package); error is where OnnxError lives.
    "gpuhybrid.onnx": {"error", "export", "export_ops", "writer", "importer", "import_ops", "coverage",
                       "export_mxnet", "import_mxnet", "export_conv", "import_conv"},
    # The tape, for the layers above: nd records each op, a hybridized block records one node.
    "gpuhybrid.emu": {"batch", "build", "launch_spec", "runner"},
    "gpuhybrid.autograd": {"GRAD_REQS", "GradSlot", "TapeNode", "needs_grad", "record_call", "attach_grad",
                           "check_write", "free_together"},
}


def visible_names(module) -> set:
    """Public names a user of ``module`` meets: all of a package's, the ones a plain module defines."""
    if hasattr(module, "__path__"):
        return {name for name in dir(module) if not name.startswith("_")}
    tree = ast.parse(Path(module.__file__).read_text())
    defined = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {t.id for t in targets if isinstance(t, ast.Name)}
    return {name for name in defined if not name.startswith("_")}


@pytest.mark.parametrize("name", sorted(API))
def test_namespace_holds_its_api_and_nothing_else(name):
    module = importlib.import_module(name)
    api = API[name] - {"__version__"}
    assert set(module.__all__) == API[name], f"{name}.__all__ differs from the listed API"
    assert all(hasattr(module, n) for n in module.__all__)
    leaked = visible_names(module) - api - NOT_API.get(name, set())
    assert not leaked, f"{name} exposes {sorted(leaked)}: make them private or list them here on purpose"


def test_nd_and_sym_alias_their_packages():
    assert gh.nd is gh.ndarray and gh.sym is gh.symbol
    assert importlib.import_module("gpuhybrid.nd") is nd


def test_gradient_only_ops_are_on_ndarray_F_not_in_nd():
    assert GRADIENT_ONLY_OPS == {"getitem_backward", "pick_backward", "embedding_backward",
                                 "convolution_weight_backward", "pooling_backward", "pooling_gather_backward",
                                 "convolution_columns_backward",
                                 "pad_backward"}
    for name in GRADIENT_ONLY_OPS:
        assert not hasattr(nd, name)
        assert callable(getattr(nd.NDArray.F, name))
    assert all(hasattr(nd.NDArray.F, name) for name in REGISTRY)


# --- private names stay in their module ------------------------------------------------------------------

def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _module_path(path: Path, level: int, dotted: str | None) -> Path:
    """The folder or file stem that ``from <level dots><dotted> import ...`` in the file at ``path`` names."""
    base = path.parent if level else PACKAGE_DIR.parent
    for _ in range(max(level - 1, 0)):
        base = base.parent
    return base.joinpath(*dotted.split(".")) if dotted else base


def _is_module(stem: Path) -> bool:
    return stem.with_suffix(".py").exists() or (stem / "__init__.py").exists()


def private_names_crossing() -> set:
    """``(file, line, name)`` for each use of another gpuhybrid module's private name: imported by name
    (``from .x import _y``) or read off a module imported at the top (``x._y``)."""
    found = set()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text())
        where = path.relative_to(PACKAGE_DIR.parent).as_posix()
        modules = set()              # names that the top-level imports bind to gpuhybrid modules
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level
                                                     or (node.module or "").startswith("gpuhybrid")):
                found |= {(where, node.lineno, a.name) for a in node.names if _is_private(a.name)}
                if node in tree.body:
                    origin = _module_path(path, node.level, node.module)
                    modules |= {a.asname or a.name for a in node.names if _is_module(origin / a.name)}
            elif isinstance(node, ast.Import) and node in tree.body:
                modules |= {a.asname or a.name.split(".")[0] for a in node.names
                            if a.name.startswith("gpuhybrid")}
        found |= {(where, node.lineno, f"{node.value.id}.{node.attr}") for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute) and _is_private(node.attr)
                  and isinstance(node.value, ast.Name) and node.value.id in modules}
    return found


def test_no_module_uses_another_modules_private_names():
    unexplained = sorted(private_names_crossing())
    assert not unexplained, (f"private names used outside their module: {unexplained}; make them public "
                             f"with a docstring, or move the code that needs them")


# --- no module imports itself back -----------------------------------------------------------------------


def test_no_import_cycles_between_modules():
    """Module by module, imports inside functions included (lint-imports checks packages' children; this
    also catches a package's __init__ and one of its modules importing each other)."""
    grimp = pytest.importorskip("grimp")     # installed with import-linter (the dev extra)
    graph = grimp.build_graph("gpuhybrid", cache_dir=None)
    cycles = sorted((importer, imported) for importer in graph.modules
                    for imported in graph.find_modules_directly_imported_by(importer)
                    if graph.chain_exists(importer=imported, imported=importer))
    assert not cycles, f"import cycles through these imports: {cycles}"
