"""gpuhybrid-bench's fairness to the runners that share its process: --standalone-check (each row's runner
timed again in a fresh process that imports only its library, alternately with the run) catches a runner
made slower by the run, and the ways gpuhybrid could slow a peer down in the same process (its pool's
threads spinning, a thread count or floating-point mode left changed) are absent."""
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.bench import standalone, standalone_child
from gpuhybrid.bench.conv_training import resnet18_train_case
from gpuhybrid.bench.conv_workloads import lenet_case
from gpuhybrid.bench.suite import Settings, build_runner
from gpuhybrid.bench.workloads import (chain_case, eager_case, eager_op_case, layernorm_case, mlp_case,
                                       softmax_case, train_case)

ROOT = Path(__file__).resolve().parents[1]
TINY = [mlp_case(3), chain_case(4, 100), softmax_case(8, 16), layernorm_case(8, 16), train_case(4),
        eager_case(16), eager_op_case("relu"), lenet_case(1), resnet18_train_case(2)]


@pytest.mark.parametrize("case", TINY, ids=lambda c: c.label)
def test_a_fresh_process_rebuilds_the_same_case(case):
    again = standalone_child.case_from_spec(json.loads(json.dumps(standalone.case_spec(case))))
    assert again.label == case.label
    for mine, theirs in zip(case.inputs + case.weights, again.inputs + again.weights):
        np.testing.assert_array_equal(mine, theirs)


def _spec(case, runner="numpy"):
    return {"case": standalone.case_spec(case), "runner": runner, "rtol": 2e-4, "atol": 2e-5,
            "warmup_s": 0.0, "device_kind": "cpu", "device_id": 0}


def test_the_check_times_alone_in_a_process_without_peer_libraries():
    case = softmax_case(64, 64)
    runner = build_runner(case, gh.cpu(), "numpy")
    alone = standalone.compare(runner, _spec(case), calls=20, repeats=3, settle_s=0.0)
    assert len(alone["ratios"]) == len(alone["alone_per_call_s"]) == len(alone["in_run_per_call_s"]) == 3
    assert alone["alone_modules"] == []               # NumPy's process loaded neither PyTorch nor JAX
    assert alone["ratio_q1"] <= alone["ratio"] <= alone["ratio_q3"]


def test_a_runner_the_run_slows_down_is_marked():
    """The same NumPy softmax, 3 ms slower per call in the run (as a peer whose cores another library's
    spinning threads took): the check reports it far over the limit."""
    case = softmax_case(64, 64)
    runner = build_runner(case, gh.cpu(), "numpy")
    call = runner.call
    runner.call = lambda: (time.sleep(0.003), call())[1]
    alone = standalone.compare(runner, _spec(case), calls=5, repeats=3, settle_s=0.0)
    assert alone["over_limit"] and alone["ratio"] > 5, alone


def test_a_child_that_cannot_build_says_why():
    with pytest.raises(RuntimeError, match="exited with code"):
        standalone.Child({**_spec(softmax_case(8, 8)), "runner": "no-such-peer", "calls": 1})


def test_cli_standalone_check_fills_the_column_and_the_json(tmp_path):
    out = tmp_path / "run.json"
    done = subprocess.run([sys.executable, "-m", "gpuhybrid.bench", "softmax", "--quick", "--modes",
                           "hybridized", "--peers", "numpy", "--standalone-check", "numpy", "--device", "cpu",
                           "--json", str(out), "--no-progress"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "run/alone" in done.stdout and "conditions:" in done.stdout
    doc = json.loads(out.read_text())
    from gpuhybrid.bench.report import validate
    validate(doc)
    rows = {r["name"]: r for r in doc["results"]}
    assert "standalone" not in rows["gpuhybrid hybridized"]            # only the runners named
    assert rows["NumPy"]["standalone"]["ratio"] > 0
    assert doc["settings"]["standalone_check"] == ["numpy"]
    conditions = doc["environment"]["conditions"]
    assert conditions["threads"]["gpuhybrid"] >= 1 and conditions["others_cpu_cores"] >= 0


# --- how gpuhybrid could slow a peer down in the same process: none of them happens -----------------
def _thread_ticks() -> dict:
    ticks = {}
    for task in glob.glob(f"/proc/{os.getpid()}/task/*"):
        try:
            fields = Path(task, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[int(Path(task).name)] = int(fields[11]) + int(fields[12])
    return ticks


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux's per-thread CPU times")
def test_the_kernel_pool_sleeps_while_another_library_works():
    """After gpuhybrid's threaded kernels, its pool's workers use no CPU while the caller does other work
    (a peer's turn): they would otherwise take the peer's cores."""
    if gh.profiler.pool_counts() is None:
        pytest.skip("no host compiler: no kernel pool")
    threads = gh.get_num_threads()
    try:
        gh.set_num_threads(2)
        x = nd.array(np.random.default_rng(0).normal(size=400_000).astype(np.float32))
        block = gh.gluon.nn.HybridLambda(lambda F, v: F.tanh(v * 1.5 + 0.5))
        block.hybridize()
        before_counts = gh.profiler.pool_counts()
        for _ in range(20):
            block(x)
        nd.waitall()
        assert gh.profiler.pool_counts()["parallel"] > before_counts["parallel"]
        time.sleep(0.05)
        before, main = _thread_ticks(), __import__("threading").get_native_id()
        # the peer's turn: the caller busy in its own code for 0.4 s of its CPU (however loaded the machine)
        start, deadline = time.thread_time(), time.perf_counter() + 20
        while time.thread_time() - start < 0.4 and time.perf_counter() < deadline:
            sum(range(1000))
        after = _thread_ticks()
    finally:
        gh.set_num_threads(threads)
    others = {tid: after[tid] - before.get(tid, 0) for tid in after if tid != main}
    assert after[main] - before[main] >= 30                       # the busy caller: ~40 ticks of 10 ms
    assert sum(others.values()) <= 3, others                      # the workers: asleep


def test_training_leaves_the_callers_floating_point_mode_and_peers_threads():
    """Adam updates run with subnormals flushed (GPUHYBRID_DENORMALS=updates); the caller's mode, which
    NumPy and PyTorch then compute in, keeps gradual underflow, and PyTorch keeps its thread count."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    environment = dict(os.environ)
    net = gh.gluon.nn.HybridSequential()
    net.add(gh.gluon.nn.Dense(64, activation="relu"), gh.gluon.nn.Dense(2))
    net.initialize()
    net.hybridize()
    trainer = gh.gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 1e-3})
    loss_fn = gh.gluon.loss.SoftmaxCrossEntropyLoss()
    x = nd.array(np.random.default_rng(1).normal(size=(256, 300)).astype(np.float32))
    labels = nd.array((np.arange(256) % 2).astype(np.float32))
    for _ in range(3):
        with gh.autograd.record():
            loss = loss_fn(net(x), labels)
        loss.backward()
        trainer.step(256)
    nd.waitall()
    tiny = np.float32(1e-39)                                      # subnormal in float32
    assert tiny * np.float32(1.0) != 0 and tiny + np.float32(0.0) != 0
    assert float((torch.full((100_000,), 1e-39) * 1.0).min()) != 0
    assert torch.get_num_threads() == threads and dict(os.environ) == environment


_TORCH_AFTER_GEMM = """
import numpy as np
import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.backend import gemm
net = gh.gluon.nn.Dense(256, in_units=512)
net.initialize()
net(nd.array(np.ones((64, 512), np.float32))).asnumpy()      # a product through gpuhybrid's BLAS
import torch
print(gemm.blas().name, torch.get_num_threads())
"""


def test_pytorch_imported_after_gpuhybrids_products_keeps_its_threads():
    """PyTorch's CPU wheels export their own MKL's symbols, so when gpuhybrid's MKL ran first (its symbols
    global), PyTorch calls it: in its sequential layer PyTorch started with one thread and its products
    ran on one core (the CLI's PyTorch rows, whose library is imported after gpuhybrid's first GEMM)."""
    pytest.importorskip("torch")
    alone = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, timeout=300, check=True)
    if int(alone.stdout) < 2:
        pytest.skip("PyTorch starts with one thread here: nothing to lose")
    done = subprocess.run([sys.executable, "-c", _TORCH_AFTER_GEMM], capture_output=True, text=True,
                          timeout=300, check=True)
    blas, threads = done.stdout.split()
    assert int(threads) == int(alone.stdout), (blas, threads, alone.stdout)


def test_the_cli_imports_the_peers_before_gpuhybrid_computes(monkeypatch):
    """As a program importing PyTorch at its top: the peers' libraries are loaded before any gpuhybrid
    product, so none finds gpuhybrid's MKL in place of its own."""
    from gpuhybrid.bench import cli
    order = []

    def stop(requested):
        order.append(("device",))
        raise gh.DeviceError("stop here")
    real_import_peers = cli.import_peers
    monkeypatch.setattr(cli, "import_peers", lambda peers: order.append(("import", tuple(peers))) or [])
    monkeypatch.setattr(cli, "choose_device", stop)
    assert cli.main(["mlp", "--peers", "numpy,torch", "--device", "cpu"]) == 2
    assert order == [("import", ("numpy", "torch")), ("device",)]
    expected = [name for name in ("torch", "jax") if __import__("importlib.util").util.find_spec(name)]
    assert real_import_peers(["numpy", "torch", "torch.compile", "jax.jit"]) == expected
