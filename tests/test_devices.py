"""Devices without a GPU: gh.cpu(i), gh.gpu(i) failing clearly where CuPy (or a GPU) is missing, the
default device (``with dev:``, GPUHYBRID_DEVICE), device names, never copying between devices silently,
launch counting per device, and waitall().
"""
from __future__ import annotations

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import nd
from helpers import expect_raises

no_gpu = pytest.mark.skipif(gh.num_gpus() > 0, reason="checks the behaviour of a machine without a GPU")


def test_cpu_devices_compare_hash_and_print():
    assert gh.cpu() == gh.cpu(0) == gh.Context("cpu", 0) == gh.Device("cpu")
    assert gh.cpu(1) != gh.cpu(0) and gh.cpu() != "cpu"
    assert len({gh.cpu(), gh.cpu(0), gh.cpu(1)}) == 2
    assert repr(gh.cpu(1)) == "cpu(1)" and not gh.cpu().is_gpu
    expect_raises(gh.DeviceError, lambda: gh.Device("tpu"), "tpu", "cpu", "gpu")


@no_gpu
def test_gpu_without_cupy_or_a_gpu_says_what_is_missing():
    assert gh.num_gpus() == 0
    exc = expect_raises(gh.DeviceUnavailableError, lambda: gh.gpu(0), "gh.gpu(0)", "CuPy")
    assert isinstance(exc, RuntimeError)
    expect_raises(gh.DeviceUnavailableError, lambda: gh.gpu(3), "gh.gpu(3)")
    expect_raises(gh.DeviceUnavailableError, lambda: nd.zeros((2,), ctx="gpu"), "CuPy")
    expect_raises(gh.DeviceUnavailableError, lambda: nd.ones(2).copyto("gpu:0"), "CuPy")


@no_gpu
def test_default_device_is_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.delenv("GPUHYBRID_DEVICE", raising=False)
    assert gh.default_device() == gh.cpu()
    monkeypatch.setenv("GPUHYBRID_DEVICE", "auto")
    assert gh.default_device() == gh.cpu()
    assert nd.zeros(2).ctx == gh.cpu()


def test_environment_variable_chooses_the_cpu(monkeypatch):
    monkeypatch.setenv("GPUHYBRID_DEVICE", "cpu")
    assert gh.default_device() == gh.cpu()
    assert nd.array([1.0]).ctx == gh.cpu() and nd.random.normal(shape=(2,)).ctx == gh.cpu()
    monkeypatch.setenv("GPUHYBRID_DEVICE", " CPU ")
    assert gh.default_device() == gh.cpu()


@no_gpu
def test_environment_variable_asking_for_a_gpu_fails_clearly(monkeypatch):
    for value in ("gpu", "gpu:0", "gpu(1)"):
        monkeypatch.setenv("GPUHYBRID_DEVICE", value)
        expect_raises(gh.DeviceUnavailableError, gh.default_device, "CuPy")


def test_environment_variable_with_a_typo_is_an_error(monkeypatch):
    monkeypatch.setenv("GPUHYBRID_DEVICE", "cuda")
    expect_raises(gh.DeviceError, gh.default_device, "GPUHYBRID_DEVICE", "'cuda'")


def test_with_device_scopes_the_default(monkeypatch):
    monkeypatch.setenv("GPUHYBRID_DEVICE", "cpu")
    with gh.cpu(1):
        assert gh.default_device() == gh.cpu(1)
        assert nd.zeros(2).ctx == gh.cpu(1) and nd.arange(3).ctx == gh.cpu(1)
        with gh.cpu(2):
            assert nd.ones(1).ctx == gh.cpu(2)
        assert gh.default_device() == gh.cpu(1)
    assert gh.default_device() == gh.cpu()


def test_one_device_object_may_be_entered_inside_its_own_scope_and_in_threads(monkeypatch):
    import threading
    monkeypatch.setenv("GPUHYBRID_DEVICE", "cpu")
    device = gh.cpu(1)
    with device:
        with device:
            assert gh.default_device() == gh.cpu(1)
        assert gh.default_device() == gh.cpu(1)
    assert gh.default_device() == gh.cpu()
    errors = []

    def enter_often():
        try:
            for _ in range(500):
                with device, gh.cpu(2), device:
                    assert gh.default_device() == gh.cpu(1)
        except Exception as exc:          # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=enter_often) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_device_names_are_accepted_where_a_device_is():
    assert nd.zeros(2, ctx="cpu").ctx == gh.cpu()
    assert nd.zeros(2, ctx="cpu:1").ctx == gh.cpu(1)
    assert nd.array([1.0], ctx=gh.cpu(1)).ctx == gh.cpu(1)
    expect_raises(gh.DeviceError, lambda: nd.zeros(2, ctx=3), "3", "gh.cpu()")


def test_inputs_on_different_devices_are_never_copied_silently():
    a, b = nd.ones((2,), ctx=gh.cpu(0)), nd.ones((2,), ctx=gh.cpu(1))
    exc = expect_raises(gh.DeviceError, lambda: a + b, "add", "cpu(0)", "cpu(1)", "as_in_context")
    assert isinstance(exc, ValueError)
    expect_raises(gh.DeviceError, lambda: nd.concat(a, a, b, dim=0), "concat", "cpu(1)")
    out = a + b.as_in_context(a.ctx)
    assert out.ctx == gh.cpu(0)


def test_ops_run_and_count_launches_on_their_inputs_device():
    x = nd.ones((2, 3), ctx=gh.cpu(1))
    with gh.profiler.count_launches() as launches:
        y = nd.relu(x)
        z = nd.dot(y, y.T)
        y.reshape(3, 2)
    assert y.ctx == z.ctx == gh.cpu(1)
    assert launches.on(gh.cpu(1)) == launches.total == 2 and launches.on("cpu(0)") == 0
    assert launches.kind("kernel") == 1 and launches.kind("library") == 1
    assert "cpu(1) kernel=1" in repr(launches)


def test_launch_counters_nest():
    x = nd.ones((4,))
    with gh.profiler.count_launches() as outer:
        nd.exp(x)
        with gh.profiler.count_launches() as inner:
            nd.exp(x)
    assert inner.total == 1 and outer.total == 2


def test_waitall_returns_at_once_on_the_cpu():
    nd.exp(nd.ones((100,)))
    assert gh.waitall() is None and nd.waitall() is None


@no_gpu
def test_a_gpu_device_built_directly_says_what_is_missing():
    # MXNet code builds contexts directly (mx.Context('gpu', 0)); that must fail as gh.gpu() does,
    # not later with a NoneType error from the first op.
    for make in (lambda: gh.Context("gpu", 0), lambda: gh.backend.Device("gpu", 1)):
        expect_raises(gh.DeviceUnavailableError, make, "not available")


@no_gpu
def test_an_array_on_a_gpu_cannot_be_read_without_cupy():
    class DeviceArray:                 # any object that says its memory is on a GPU (Numba, PyTorch)
        __cuda_array_interface__ = {"shape": (2,), "typestr": "<f4", "data": (0, False), "version": 3}
    expect_raises(gh.OpValueError, lambda: nd.array(DeviceArray()), "lives on a GPU", "CuPy")


def test_float_bounds_of_integer_gpu_kernels_are_clamped_to_the_integer_range():
    from gpuhybrid.backend.cuda_elementwise import _scalar
    int32 = np.dtype("int32")
    assert _scalar(int32, float("inf")) == np.iinfo(np.int32).max
    assert _scalar(int32, -1e300) == np.iinfo(np.int32).min
    assert _scalar(np.dtype("int64"), float("inf")) == np.iinfo(np.int64).max
    assert _scalar(int32, 2.75) == 2 and _scalar(np.dtype("float32"), 2.75) == np.float32(2.75)
