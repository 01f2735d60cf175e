"""The JSON that gpuhybrid-bench writes follows docs/bench-schema.json, and the schema rejects
documents that break its rules (so that validating means something)."""
import copy
import json

import pytest

import gpuhybrid as gh
from gpuhybrid.bench import report, suite
from gpuhybrid.bench.workloads import chain_case

jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def doc():
    rows = suite.run_case(chain_case(3, 512), gh.cpu(), ["imperative", "hybridized"], ["numpy", "cupy"],
                          suite.Settings(3, 0.001, 0.001), 10.0)
    copy_figures = {"bytes": 2048, "bytes_moved_per_copy": 4096, "per_call_s": [1e-6, 2e-6],
                    "median_s": 1.5e-6, "gb_per_s": 2.7, "method": "NumPy copyto, one thread"}
    settings = {"repeats": 3, "min_repeat_s": 0.001, "warmup_s": 0.001, "rtol": 2e-4, "atol": 2e-5,
                "settle_s": 0.0,
                "modes": ["imperative", "hybridized"], "peers": ["numpy", "cupy"], "quick": True,
                "workloads": ["chain"]}
    document = report.document(rows, report.describe_device(gh.cpu(), "test"), settings, copy_figures,
                               ["chain", "--quick"])
    return json.loads(json.dumps(document))     # exactly what --json writes


def test_a_real_document_validates(doc):
    report.validate(doc)
    statuses = [r["status"] for r in doc["results"]]
    assert statuses == ["ok", "ok", "ok", "skipped"]


def test_schema_is_a_valid_draft_2020_12_schema():
    schema = json.loads(report.schema_path().read_text())
    jsonschema.Draft202012Validator.check_schema(schema)


def broken(doc, change):
    bad = copy.deepcopy(doc)
    change(bad)
    return bad


@pytest.mark.parametrize("change", [
    lambda d: d.pop("device"),
    lambda d: d.update(schema="gpuhybrid-bench/0"),
    lambda d: d["results"][0].update(status="great"),
    lambda d: d["results"][0].update(median_s=None),                       # ok rows have times
    lambda d: d["results"][0].update(reason="why not"),                    # ok rows have no reason
    lambda d: d["results"][3].update(reason=None),                         # skipped rows say why
    lambda d: d["results"][3].update(median_s=0.1),                        # skipped rows have no times
    lambda d: d["results"][2].update(mode="hybridized"),                   # peers have no mode
    lambda d: d["results"][0].update(runner="tensorflow"),
    lambda d: d["results"][1]["launches_per_call"].pop("kernels"),
    lambda d: d["results"][1].update(per_call_s=[]),
    lambda d: d["results"][1].update(extra_field=1),
    lambda d: d["environment"].update(git_commit="not-a-sha"),
    lambda d: d["device"].update(kind="tpu"),
    lambda d: d["settings"].update(peers=["tensorflow"]),
], ids=["no device", "schema id", "status", "ok without median", "ok with reason", "skipped without reason",
        "skipped with time", "peer with mode", "unknown runner", "launches incomplete", "no repeats",
        "unknown field", "commit", "device kind", "unknown peer"])
def test_schema_rejects_broken_documents(doc, change):
    with pytest.raises(jsonschema.ValidationError):
        report.validate(broken(doc, change))


def test_write_json_validates_before_writing(doc, tmp_path):
    with pytest.raises(jsonschema.ValidationError):
        report.write_json(broken(doc, lambda d: d.pop("results")), tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()
    report.write_json(doc, tmp_path / "good.json")
    assert json.loads((tmp_path / "good.json").read_text()) == doc
