"""gpuhybrid-bench: the command line, a smoke run of every workload, numerics before timing, peers
that are missing or on the wrong device reported as skipped, the console script."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid.bench import cli, peers, suite
from gpuhybrid.bench.timing import Runner, Timing, agree, measure, median_ratio
from gpuhybrid.bench.training import Skip, missing_training_api
from gpuhybrid.bench.workloads import chain_case, mlp_case, softmax_case

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "gpuhybrid.bench", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_help_names_workloads_modes_and_peers():
    done = run_cli("--help")
    assert done.returncode == 0, done.stderr
    for word in ("mlp", "chain", "softmax", "layernorm", "train", "--peers", "--device", "--json", "--plot",
                 "hybridized+static", "torch.compile", "cupy.fuse"):
        assert word in done.stdout


def test_console_script_is_declared_and_resolves():
    tomllib = pytest.importorskip("tomllib")     # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = project["scripts"]["gpuhybrid-bench"]
    module, _, function = target.partition(":")
    assert callable(getattr(__import__(module, fromlist=[function]), function))
    script = Path(sys.executable).with_name("gpuhybrid-bench")
    if script.exists():   # installed (make test installs it); an older editable install may predate it
        done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "gpuhybrid-bench" in done.stdout


def test_smoke_run_every_workload_writes_valid_json_and_plot(tmp_path):
    out, plot = tmp_path / "run.json", tmp_path / "speedup.png"
    done = run_cli("all", "--quick", "--peers", "numpy", "--chain-length", "1,3", "--batch-size", "1,4",
                   "--device", "cpu", "--json", str(out), "--plot", str(plot), "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "imperative" in done.stdout and "hybridized" in done.stdout
    doc = json.loads(out.read_text())
    from gpuhybrid.bench.report import validate
    validate(doc)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {(r["label"], r["name"]): r for r in doc["results"]}
    workloads = {"mlp", "chain", "softmax", "layernorm", "train", "eager", "lenet", "resnet18",
                 "resnet18-train"}
    assert {r["workload"] for r in doc["results"]} == workloads
    eager = rows[("eager elements=16 ops=8", "gpuhybrid imperative")]
    assert eager["status"] == "ok" and eager["launches_per_call"]["total"] == 8     # one per op
    hybrid = rows[("chain length=3 elements=2^12", "gpuhybrid hybridized")]
    assert hybrid["status"] == "ok" and hybrid["launches_per_call"]["total"] < 3
    assert rows[("chain length=3 elements=2^12", "gpuhybrid imperative")]["launches_per_call"]["total"] == 3
    assert hybrid["gb_per_s"] > 0 and doc["copy_bandwidth"]["gb_per_s"] > 0
    for row in doc["results"]:
        if row["workload"] == "resnet18-train" and row["runner"] == "numpy":    # no NumPy backward of it
            assert row["status"] == "skipped" and "backward" in row["reason"], row
        elif row["workload"] != "train":
            assert row["status"] == "ok", row
    train = [r for r in doc["results"] if r["workload"] == "train" and r["runner"] == "gpuhybrid"]
    why = missing_training_api()
    assert all(r["status"] == ("skipped" if why else "ok") for r in train)
    if why:
        assert all("autograd" in r["reason"] for r in train)
    assert doc["environment"]["libraries"]["numpy"] == np.__version__


def test_sizes_and_lists_parse():
    assert cli.size("2^22") == 1 << 22 and cli.size("2**10") == 1024 and cli.size("4096") == 4096
    assert cli.sizes("1,16,256") == [1, 16, 256]
    args = cli.parser().parse_args(["chain", "--peers"])
    assert args.peers == list(peers.PEERS) and args.modes == ["imperative", "hybridized", "hybridized+static"]
    assert cli.parser().parse_args(["--peers", "numpy,jax.jit"]).peers == ["numpy", "jax.jit"]
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["--peers", "tensorflow"])


def test_unknown_workload_and_missing_gpu_are_clear_errors():
    done = run_cli("resnet")
    assert done.returncode == 2 and "unknown workload resnet" in done.stderr
    if gh.num_gpus() == 0:
        done = run_cli("mlp", "--device", "gpu", "--quick")
        assert done.returncode == 2 and "gpu" in done.stderr.lower() and "Traceback" not in done.stderr


def test_results_dir_names_files_by_device_and_date(tmp_path):
    assert cli.main(["chain", "--quick", "--modes", "imperative,hybridized", "--device", "cpu",
                     "--results-dir", str(tmp_path), "--no-progress"]) == 0
    written = sorted(p.suffix for p in tmp_path.iterdir())
    assert written == [".json", ".png"]
    assert next(tmp_path.glob("*.json")).name.startswith("cpu")


def test_wrong_numbers_fail_and_are_not_timed(monkeypatch):
    case = chain_case(4, 256)

    def bad_peer(peer, case, device):
        return Runner("broken", lambda: case.inputs[0] * 2.0)
    monkeypatch.setattr(suite, "peer_runner", bad_peer)
    rows = suite.run_case(case, gh.cpu(), ["imperative"], ["numpy"], suite.Settings(3, 0.001, 0.001), None)
    broken = rows[-1]
    assert broken["status"] == "failed" and "disagree" in broken["reason"]
    assert broken["median_s"] is None and broken["per_call_s"] is None and broken["max_abs_error"] > 0.1
    assert rows[0]["status"] == "ok" and rows[0]["speedup_vs_imperative"] == pytest.approx(1.0)


def test_a_peer_that_raises_is_reported_and_the_others_still_run(monkeypatch):
    def exploding(peer, case, device):
        raise RuntimeError("boom")
    monkeypatch.setattr(suite, "peer_runner", exploding)
    rows = suite.run_case(softmax_case(8, 16), gh.cpu(), ["imperative", "hybridized"], ["numpy"],
                          suite.Settings(3, 0.001, 0.001), None)
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"] and "boom" in rows[-1]["reason"]


def test_a_runner_that_breaks_while_timed_fails_its_case_and_not_the_run(monkeypatch):
    case = chain_case(4, 256)
    right, calls = suite.reference_of(case), []

    def flaky_peer(peer, case, device):
        def call():
            calls.append(1)
            if len(calls) > 3:                  # passes its check, then breaks while timed
                raise RuntimeError("device lost")
            return right
        return Runner("flaky", call)
    monkeypatch.setattr(suite, "peer_runner", flaky_peer)
    rows = suite.run_case(case, gh.cpu(), ["imperative"], ["numpy"], suite.Settings(3, 0.001, 0.001), None)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all("failed while timed: RuntimeError: device lost" in r["reason"] for r in rows)
    assert all(r["median_s"] is None for r in rows)


def test_missing_library_and_wrong_device_are_skipped(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)          # import torch now fails
    with pytest.raises(Skip, match="torch is not installed"):
        peers.peer_runner("torch", mlp_case(2), gh.cpu())
    with pytest.raises(Skip, match="GPU only"):
        peers.peer_runner("cupy", mlp_case(2), gh.cpu())
    rows = suite.run_case(mlp_case(2), gh.cpu(), [], ["torch", "cupy.fuse"], suite.Settings(3, 0.001, 0.001),
                          None)
    assert [r["status"] for r in rows] == ["skipped", "skipped"]
    assert all(r["median_s"] is None for r in rows)


@pytest.mark.parametrize("peer", ["torch", "torch.compile", "jax.jit"])
def test_installed_peers_agree_with_the_reference(peer):
    pytest.importorskip(peer.split(".")[0])
    rows = suite.run_case(chain_case(5, 1000), gh.cpu(), [], [peer], suite.Settings(2, 0.001, 0.001), None)
    assert rows[0]["status"] == "ok", rows[0]["reason"]


def test_timing_statistics():
    timing = Timing([3.0, 1.0, 2.0, 4.0, 5.0], 10, 2)
    assert timing.median_s == 3.0 and timing.spread()["min_s"] == 1.0 and timing.spread()["max_s"] == 5.0
    assert timing.spread()["q1_s"] == 2.0 and timing.spread()["q3_s"] == 4.0
    assert median_ratio(Timing([2.0, 4.0, 9.0], 1, 0), Timing([1.0, 1.0, 3.0], 1, 0)) == 3.0
    assert agree(np.float32([1.0, 2.0]), np.array([1.0, 2.0 + 1e-7]))[0]
    assert not agree(np.float32([1.0, np.nan]), np.array([1.0, 2.0]))[0]
    assert not agree(np.ones(3), np.ones(4))[0]


def test_measure_warms_up_then_interleaves():
    order = []
    runners = {name: Runner(name, lambda name=name: order.append(name)) for name in "ab"}
    timings = measure(runners, repeats=3, min_repeat_s=0.0, warmup_s=0.0, settle_s=0.0)
    # warm-up in order; then each repeat rotates who goes first, and each stretch has an untimed wake call
    assert order == ["a", "b"] + ["a", "a", "b", "b"] + ["b", "b", "a", "a"] + ["a", "a", "b", "b"]
    assert timings["a"].calls_per_repeat == 1 and len(timings["b"].per_call_s) == 3


def test_the_first_call_after_the_pause_is_not_timed():
    """A call that follows the settle pause pays for it (threads asleep, caches cold); the stream the
    figure describes does not: a runner whose first call after a pause is slow keeps its steady time."""
    import time
    state = {"last": 0.0}

    def call():
        if time.perf_counter() - state["last"] > 0.02:     # after a pause: a cold start of 30 ms
            time.sleep(0.03)
        state["last"] = time.perf_counter()
    timing = measure({"cold": Runner("cold", call)}, repeats=3, min_repeat_s=0.001, warmup_s=0.0,
                     settle_s=0.05)["cold"]
    assert timing.median_s < 0.01, timing.per_call_s


def test_demo_module_still_runs():
    done = subprocess.run([sys.executable, "-m", "gpuhybrid.demo", "--quick", "--no-progress"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "hybridized" in done.stdout and "NumPy" in done.stdout


@pytest.mark.gpu
def test_gpu_run_with_cupy_peers(tmp_path):
    out = tmp_path / "gpu.json"
    assert cli.main(["chain", "softmax", "--quick", "--device", "gpu", "--peers", "numpy,cupy,cupy.fuse",
                     "--json", str(out), "--no-progress"]) in (0, 1)
    doc = json.loads(out.read_text())
    assert doc["device"]["kind"] == "gpu"
    ok = {r["name"] for r in doc["results"] if r["status"] == "ok"}
    assert {"gpuhybrid hybridized", "CuPy eager"} <= ok


def test_table_keeps_brackets_of_reasons(monkeypatch):
    Console = pytest.importorskip("rich.console").Console
    from gpuhybrid.bench import report

    def missing(peer, case, device):
        raise Skip("torch is not installed; pip install 'gpuhybrid[peers]'")
    monkeypatch.setattr(suite, "peer_runner", missing)
    rows = suite.run_case(chain_case(2, 64), gh.cpu(), ["imperative"], ["torch"],
                          suite.Settings(2, 0.001, 0.001, 0.0), None)
    doc = report.document(rows, report.describe_device(gh.cpu(), "test"), {"repeats": 2}, None, [])
    console = Console(record=True, width=200)
    report.print_table(doc, console=console)
    text = console.export_text()
    assert "gpuhybrid[peers]" in text and "skipped [1]" in text and "imperative" in text
