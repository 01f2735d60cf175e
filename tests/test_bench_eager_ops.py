"""The single-op cases of ``gpuhybrid-bench eager``: each op's math agrees between gpuhybrid's ``nd``, NumPy
(float64 reference) and PyTorch where installed; the CLI builds one imperative-only case per op."""
from __future__ import annotations

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid.bench import cli
from gpuhybrid.bench.modes import gpuhybrid_runner
from gpuhybrid.bench.peers import ArrayOps, peer_runner
from gpuhybrid.bench.suite import Settings, run_case
from gpuhybrid.bench.workloads import EAGER_SINGLE_OPS, eager_op_case


@pytest.mark.parametrize("name", list(EAGER_SINGLE_OPS))
def test_single_op_case_matches_float64_numpy(name):
    case = eager_op_case(name, seed=7)
    want = np.asarray(case.math(ArrayOps(np), *[a.astype(np.float64) for a in case.inputs]))
    runner = gpuhybrid_runner(case, gh.cpu(), "imperative")
    for _ in range(2):                  # the first call prepares the signature, the second is direct
        got = runner.to_host(runner.call())
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    torch = pytest.importorskip("torch")
    with torch.inference_mode():
        peer = peer_runner("torch", case, gh.cpu())
        np.testing.assert_allclose(peer.to_host(peer.call()), want, rtol=1e-5, atol=1e-6)


def test_cli_builds_one_imperative_only_case_per_op():
    args = cli.parser().parse_args(["eager", "--eager-ops", "relu,dot"])
    cases = cli.build_cases(args)
    assert [c.label for c in cases] == ["eager elements=16 ops=8", "eager relu elements=16",
                                        "eager dot elements=16"]
    assert [c.imperative_only for c in cases] == [False, True, True]
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["eager", "--eager-ops", "conv"])


def test_single_op_case_runs_only_imperatively():
    case = eager_op_case("exp")
    rows = run_case(case, gh.cpu(), ["imperative"], ["numpy"],
                    Settings(repeats=2, min_repeat_s=0.001, warmup_s=0.001, settle_s=0.0), None)
    assert [(r["name"], r["status"]) for r in rows] == [("gpuhybrid imperative", "ok"), ("NumPy", "ok")]
    assert rows[0]["launches_per_call"]["total"] == 1
    with pytest.raises(Exception, match="nothing to hybridize"):
        gpuhybrid_runner(case, gh.cpu(), "hybridized")
