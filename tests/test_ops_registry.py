"""The op registry as a whole: every op and alias is tested against NumPy somewhere in this suite, exists in
``nd`` with a docstring, and declares the launches it issues (checked here directly for a few).
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.ops import REGISTRY, get_op, list_ops
from gpuhybrid.ops.registry import ALIASES

# Each tests/test_ops_*.py module names the ops and aliases it compares with NumPy in a set COVERS.
OP_TEST_MODULES = sorted(path.stem for path in Path(__file__).parent.glob("test_ops_*.py")
                         if path.stem != Path(__file__).stem)
HANDWRITTEN = {"zeros", "ones", "full", "arange"}   # nd functions that take ctx= and a positional shape


def test_every_op_and_alias_is_compared_with_numpy_by_some_test():
    covered = set()
    for module in OP_TEST_MODULES:
        covered |= getattr(importlib.import_module(module), "COVERS", set())
    untested = sorted(set(list_ops()) - covered)
    assert not untested, (f"ops without a NumPy comparison: {untested}; test them in a tests/test_ops_*.py "
                          f"module and list them in its COVERS")
    assert not sorted(set(ALIASES) - covered), "aliases without a test"
    assert not sorted(covered - set(list_ops()) - set(ALIASES)), "tests claim ops that do not exist"


@pytest.mark.parametrize("name", sorted(set(REGISTRY) | set(ALIASES)))
def test_every_op_and_alias_is_an_nd_function_with_a_docstring(name):
    # The gradient-only ops (pick_backward, ...) are not in nd, as in MXNet; nd.NDArray.F has every op.
    fn = getattr(nd.NDArray.F, name) if name.endswith("_backward") else getattr(nd, name)
    assert callable(fn) and fn.__name__ == name and fn.__doc__
    op = get_op(name)
    assert get_op(op.name) is op
    if name not in HANDWRITTEN:
        assert op.doc.splitlines()[0] in fn.__doc__
        for attr in op.attrs:
            assert attr.name in fn.__doc__


@pytest.mark.parametrize("name", list_ops())
def test_elementwise_ops_have_a_c_expression_and_one_kernel(name):
    op = REGISTRY[name]
    if op.category != "elementwise":
        with pytest.raises(gh.OpValueError, match="not elementwise"):
            op.scalar_expr({})
        return
    required = {"a_min": 0.0, "a_max": 1.0, "dtype": "float32", "scalar": 1.0}
    attrs = {a.name: a.choices[0] if a.choices else required.get(a.name, a.default) for a in op.attrs}
    assert "{0}" in op.scalar_expr(attrs)
    assert op.launch_counts(attrs, []) == (1, 0)


def _count(make) -> tuple:
    with gh.profiler.count_launches() as launches:
        make()
    return launches.kind("kernel"), launches.kind("library")


def test_launch_counts_of_representative_ops():
    """(kernels, library calls) of one eager call, written out rather than read from the registry."""
    x, w, b = nd.ones((4, 3)), nd.ones((5, 3)), nd.ones((5,))
    batch_a, batch_b = nd.ones((2, 3, 4)), nd.ones((2, 4, 5))
    expected = {
        "elementwise op": (lambda: nd.sigmoid(x), (1, 0)),
        "binary op with broadcasting": (lambda: x + b[:3], (1, 0)),
        "scalar variant": (lambda: 2.0 * x, (1, 0)),
        "comparison": (lambda: x > 0.5, (1, 0)),
        "cast": (lambda: x.astype("float16"), (1, 0)),
        "reduction": (lambda: x.sum(axis=0), (1, 0)),
        "softmax": (lambda: nd.softmax(x), (5, 0)),
        "log_softmax with temperature": (lambda: nd.log_softmax(x, temperature=2.0), (7, 0)),
        "dot": (lambda: nd.dot(x, w.T), (0, 1)),
        "matmul operator": (lambda: x @ w.T, (0, 1)),
        "batch_dot": (lambda: nd.batch_dot(batch_a, batch_b), (0, 1)),
        "FullyConnected with bias": (lambda: nd.FullyConnected(x, w, b), (1, 1)),
        "FullyConnected without bias": (lambda: nd.FullyConnected(x, w, no_bias=True), (0, 1)),
        "reshape (a view)": (lambda: x.reshape(3, 4), (0, 0)),
        "transpose (a view)": (lambda: x.T, (0, 0)),
        "indexing (a view)": (lambda: x[1:, 0], (0, 0)),
        "split (views)": (lambda: nd.split(x, num_outputs=3, axis=1), (0, 0)),
        "concat (a copy)": (lambda: nd.concat(x, x, dim=0), (1, 0)),
        "tile (a copy)": (lambda: nd.tile(x, reps=(2,)), (1, 0)),
        "zeros": (lambda: nd.zeros((2, 2)), (1, 0)),
        "random normal float32": (lambda: nd.random.normal(shape=(3,)), (3, 0)),
        "random uniform float16": (lambda: nd.random.uniform(shape=(3,), dtype="float16"), (4, 0)),
        "Dropout outside training": (lambda: nd.Dropout(x, p=0.5), (0, 0)),
    }
    for what, (make, counts) in expected.items():
        assert _count(make) == counts, what
    with gh.autograd.train_mode():
        assert _count(lambda: nd.Dropout(x, p=0.5)) == (2, 0)


def test_launches_are_counted_only_inside_the_scope():
    x = nd.ones((2,))
    with gh.profiler.count_launches() as launches:
        pass
    nd.exp(x)
    assert launches.total == 0 and np.isfinite(nd.exp(x).asnumpy()).all()
