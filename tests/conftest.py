"""Shared test setup: skip `gpu` tests without a GPU, run the other tests on the CPU, and stable
hypothesis settings.

Every call of a compiled plan is checked to launch what its final graph lists (launch_listing.py).
The `gpu` marker itself is registered in pyproject.toml. Hypothesis uses the "ci" profile
(derandomized: the same examples on every run) when the CI environment variable is set, else "dev".
"""
import os
import tempfile

import pytest
from hypothesis import settings

import gpuhybrid as gh
from gpuhybrid.executor import CompiledGraph
from gpuhybrid.ndarray import _array as array_module
from launch_listing import checked_run, close_tally, open_tally

# Every kernel generated during the run is dumped here; test_zz_nvrtc_generated.py (collected last)
# compiles each of them with NVRTC.
GENERATED_KERNELS_DIR = os.environ.setdefault("GPUHYBRID_DUMP_KERNELS",
                                              tempfile.mkdtemp(prefix="gpuhybrid-generated-"))

settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_collection_modifyitems(config, items):
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if gpu_tests and gh.num_gpus() == 0:
        skip = pytest.mark.skip(reason="no GPU: CuPy, the driver or a device is missing")
        for item in gpu_tests:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _unmarked_tests_run_on_the_cpu(request, monkeypatch):
    """Tests without the `gpu` marker are CPU tests: where a GPU is present it would be the default
    device, and their bare ``nd.array(...)`` data would land on it next to ``gh.cpu()`` plans."""
    if request.node.get_closest_marker("gpu") is None and "GPUHYBRID_DEVICE" not in os.environ:
        monkeypatch.setenv("GPUHYBRID_DEVICE", "cpu")


@pytest.fixture(autouse=True, scope="session")
def _every_plan_launches_what_its_final_graph_lists():
    run, tally = CompiledGraph.run, open_tally()
    CompiledGraph.run = checked_run(run, tally)
    yield
    CompiledGraph.run = run
    close_tally(tally)


@pytest.fixture
def full_path_calls(monkeypatch):
    """The ops whose eager calls went through invoke's full path (a first call, or one the direct CPU
    calls and fast paths refused); test_eager_direct_calls and test_eager_fast_paths read it."""
    calls = []
    original = array_module._invoke_checked

    def counting(*args):
        calls.append(args[0])
        return original(*args)
    monkeypatch.setattr(array_module, "_invoke_checked", counting)
    return calls
