"""gpuhybrid-bench --peer-import-ratio: gpuhybrid's rows in fresh processes without and with PyTorch and
JAX imported, side by side as ratios (issue 15: no case more than 1.3x slower with PyTorch imported)."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpuhybrid.bench import cli, import_effect

ROOT = Path(__file__).resolve().parents[1]


def _row(label, mode, median, best, status="ok", cpu=None):
    return {"workload": label.split()[0], "label": label, "mode": mode, "status": status,
            "reason": None if status == "ok" else "it broke", "median_s": median,
            "spread": {"min_s": best}, "cpu_median_s": median * 2 if cpu is None and median else cpu}


def _doc(*rows):
    return {"results": list(rows)}


def test_help_documents_the_flag():
    text = cli.parser().format_help()
    assert "--peer-import-ratio" in text and "--rounds" in text and "1.3" in text


def test_summary_gives_median_ratio_best_ratio_and_marks_rows_over_the_limit():
    rounds = [
        {"without": _doc(_row("mlp batch_size=1", "hybridized", 10e-6, 9e-6),
                         _row("train batch_size=1", "hybridized", 100e-6, 90e-6)),
         "with": _doc(_row("mlp batch_size=1", "hybridized", 20e-6, 10e-6),
                      _row("train batch_size=1", "hybridized", 110e-6, 95e-6))},
        {"without": _doc(_row("mlp batch_size=1", "hybridized", 12e-6, 9.5e-6),
                         _row("train batch_size=1", "hybridized", 100e-6, 92e-6)),
         "with": _doc(_row("mlp batch_size=1", "hybridized", 18e-6, 12e-6),
                      _row("train batch_size=1", "hybridized", 100e-6, 99e-6))},
        {"without": _doc(_row("mlp batch_size=1", "hybridized", 10e-6, 9e-6),
                         _row("train batch_size=1", "hybridized", 100e-6, 91e-6)),
         "with": _doc(_row("mlp batch_size=1", "hybridized", 14e-6, 11e-6),
                      _row("train batch_size=1", "hybridized", 120e-6, 96e-6))},
    ]
    mlp, train = import_effect.summarise(rounds)
    assert mlp["ratios"] == pytest.approx([2.0, 1.5, 1.4])
    assert mlp["ratio"] == pytest.approx(1.5) and mlp["over_limit"]
    assert mlp["without_median_s"] == pytest.approx(10e-6) and mlp["with_median_s"] == pytest.approx(18e-6)
    assert mlp["best_ratio"] == pytest.approx(10e-6 / 9e-6)
    assert train["ratio"] == pytest.approx(1.1) and not train["over_limit"]
    assert train["best_ratio"] == pytest.approx(95e-6 / 90e-6)
    assert mlp["cpu_ratio"] == pytest.approx(1.5)       # the rows' CPU times are twice their medians
    text = import_effect.table([mlp, train])
    assert text.count("> 1.3") == 1 and "1.50" in text and "1.10" in text


def test_a_row_that_failed_in_either_process_has_no_ratio_and_says_why():
    rounds = [{"without": _doc(_row("mlp batch_size=1", "hybridized", 1e-5, 1e-5)),
               "with": _doc(_row("mlp batch_size=1", "hybridized", None, None, status="failed"))}]
    (entry,) = import_effect.summarise(rounds)
    assert entry["ratio"] is None and entry["status"] == "it broke"
    assert "it broke" in import_effect.table([entry])


def test_children_get_the_same_workloads_sizes_modes_and_timing():
    args = cli.parser().parse_args(["train", "mlp", "eager", "--batch-size", "1,64", "--modes", "hybridized",
                                    "--eager-ops", "relu,dot", "--repeats", "5", "--min-time", "0.02",
                                    "--settle", "0.01", "--peer-import-ratio", "--rounds", "3"])
    again = cli.parser().parse_args(import_effect.child_argv(args))
    for name in ("workloads", "batch_size", "modes", "eager_ops", "repeats", "min_time", "settle", "device",
                 "rows", "cols", "elements", "chain_length", "quick"):
        assert getattr(again, name) == getattr(args, name), name
    assert not again.peer_import_ratio and again.peers == [] and again.no_progress


def test_peers_and_plot_are_refused_and_missing_peers_named(monkeypatch, capsys):
    with pytest.raises(SystemExit):
        cli.main(["mlp", "--peer-import-ratio", "--peers", "numpy"])
    assert "--peer-import-ratio" in capsys.readouterr().err
    monkeypatch.setattr(import_effect, "missing_peers", lambda: ["torch"])
    assert cli.main(["mlp", "--peer-import-ratio"]) == 2
    assert "torch is not installed" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("torch") is None or importlib.util.find_spec("jax") is None,
                    reason="needs PyTorch and JAX (make venv EXTRAS=peers)")
def test_a_quick_run_times_both_kinds_of_process_and_writes_the_json(tmp_path):
    out = tmp_path / "ratio.json"
    done = subprocess.run([sys.executable, "-m", "gpuhybrid.bench", "mlp", "eager", "--quick", "--batch-size",
                           "2", "--eager-ops", "relu", "--modes", "imperative,hybridized", "--device", "cpu",
                           "--peer-import-ratio", "--rounds", "2", "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "with peers" in done.stdout and "mlp batch_size=2" in done.stdout
    doc = json.loads(out.read_text())
    assert doc["kind"] == "peer-import-ratio" and doc["limit"] == 1.3 and len(doc["rounds"]) == 2
    for pair in doc["rounds"]:
        assert pair["without"]["peers_imported"] == [] and pair["with"]["peers_imported"] == ["torch", "jax"]
        assert all(row["runner"] == "gpuhybrid" for kind in ("without", "with")
                   for row in pair[kind]["results"])
    labels = {(e["label"], e["mode"]) for e in doc["summary"]}
    assert {("mlp batch_size=2", "hybridized"), ("eager relu elements=16", "imperative")} <= labels
    assert all(e["ratio"] > 0 and len(e["ratios"]) == 2 and e["cpu_ratio"] > 0 for e in doc["summary"])
    from gpuhybrid.bench.report import validate
    for pair in doc["rounds"]:
        validate({key: value for key, value in pair["with"].items() if key != "peers_imported"})
        assert all(row["cpu_median_s"] > 0 for row in pair["with"]["results"])


def test_measure_records_the_process_cpu_time_beside_the_wall_clock():
    import time
    from gpuhybrid.bench.timing import Runner, measure

    def spin():                                    # 2 ms of CPU, however long that takes on a loaded machine
        end = time.thread_time() + 0.002
        while time.thread_time() < end:
            pass

    timings = measure({"sleep": Runner("sleep", lambda: time.sleep(0.002)), "spin": Runner("spin", spin)},
                      repeats=3, min_repeat_s=0.01, warmup_s=0.0, settle_s=0.0)
    sleep, busy = timings["sleep"], timings["spin"]
    assert len(sleep.cpu_per_call_s) == len(busy.cpu_per_call_s) == 3
    assert sleep.cpu_median_s < 0.001 < 0.002 <= sleep.median_s
    assert busy.cpu_median_s >= 0.0019


def test_pool_counts_count_parallel_launches_and_back_offs_over_timed_calls():
    import numpy as np
    import gpuhybrid as gh
    from gpuhybrid import nd
    from gpuhybrid.backend import host_threads
    from gpuhybrid.backend.host_compiler import find_host_compiler
    from gpuhybrid.bench.timing import Runner, measure
    if find_host_compiler() is None:
        pytest.skip("the kernel pool needs a C compiler")
    threads = host_threads.get_num_threads()
    try:
        gh.set_num_threads(2)
        x = nd.array(np.random.default_rng(0).normal(size=200_000).astype(np.float32))
        block = gh.gluon.nn.HybridLambda(lambda F, v: F.tanh(v * 1.5 + 0.5))
        block.hybridize()
        runners = {"big": Runner("big", lambda: block(x), nd.waitall),
                   "none": Runner("none", lambda: None)}
        timings = measure(runners, repeats=2, min_repeat_s=0.01, warmup_s=0.0, settle_s=0.0,
                          counters=gh.profiler.pool_counts)
    finally:
        gh.set_num_threads(threads)
    big, none = timings["big"].counts, timings["none"].counts
    assert set(big) == set(host_threads.POOL_COUNTS)
    assert big["parallel"] + big["backoff_serial"] >= 2 * timings["big"].calls_per_repeat
    assert all(value == 0 for value in none.values())


def test_bench_rows_of_gpuhybrid_carry_pool_counts(tmp_path):
    out = tmp_path / "run.json"
    assert cli.main(["mlp", "--quick", "--batch-size", "2", "--modes", "hybridized", "--device", "cpu",
                     "--peers", "numpy", "--json", str(out), "--no-progress"]) == 0
    rows = {row["runner"]: row for row in json.loads(out.read_text())["results"]}
    assert set(rows["gpuhybrid"]["pool_counts"]) == {"parallel", "backoff_serial", "backoffs_waited",
                                                      "backoffs_off_core"}
    assert rows["numpy"]["pool_counts"] is None


def test_whole_step_rows_give_cpu_time_beside_wall_clock(capsys):
    from gpuhybrid.bench.training import compare_whole_step, main
    rows = compare_whole_step((2,), ("gluon compile_step", "numpy"), repeats=2, min_repeat_s=0.001,
                              on_step=lambda text: None)
    assert all(r["cpu_median_us"] > 0 and len(r["cpu_per_call_us"]) == 2 for r in rows)
    assert all(r["cpu_ratio_to_jax_jit"] is None for r in rows)     # no jax.jit row to divide by
    if importlib.util.find_spec("torch") and importlib.util.find_spec("jax"):
        main(["--batch-size", "2", "--repeats", "1", "--runners", "numpy", "jax.jit"])
        assert "cpu us" in capsys.readouterr().out


def test_the_loop_row_gives_its_ratio_to_the_unjoined_loop_with_quartiles(capsys):
    from gpuhybrid.bench.training import compare_whole_step, main
    rows = compare_whole_step((2,), ("gluon loop", "gluon loop unjoined"), repeats=3, min_repeat_s=0.001,
                              on_step=lambda text: None, settle_s=0.0)
    joined = next(r for r in rows if r["runner"] == "gluon loop")
    ratios = sorted(a / b for a, b in zip(joined["per_call_us"], rows[1]["per_call_us"]))
    assert joined["ratio_to_unjoined"] == pytest.approx(ratios[1])
    assert joined["ratio_to_unjoined_q1"] <= joined["ratio_to_unjoined"] <= joined["ratio_to_unjoined_q3"]
    assert joined["cpu_ratio_to_unjoined"] > 0 and "ratio_to_unjoined" not in rows[1]
    if importlib.util.find_spec("torch") and importlib.util.find_spec("jax"):
        main(["--batch-size", "2", "--repeats", "2", "--runners", "gluon loop", "gluon loop unjoined"])
        out = capsys.readouterr().out
        assert "gluon loop / gluon loop unjoined" in out and "conditions:" in out
