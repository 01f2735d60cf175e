"""Print gpuhybrid vs PyTorch eager (median and min of the repeats) for the cpu-conv-peers-2026-12-06*.json
runs beside this script (or the JSON files named):
`python bench/results/cpu-conv-peers-2026-12-06-compare.py`."""
import json
import sys
from pathlib import Path

HERE = Path(__file__).parent


def fmt(s):
    return f"{s * 1e6:.0f}us" if s < 1e-3 else f"{s * 1e3:.1f}ms"


paths = map(Path, sys.argv[1:]) if len(sys.argv) > 1 else sorted(HERE.glob("cpu-conv-peers-2026-12-06*.json"))
for path in paths:
    doc = json.loads(path.read_text())
    print(f"== {path.name}: load average at the start {doc['environment']['load_average']}, "
          f"commit {doc['environment'].get('git_commit')}")
    rows = {}
    for r in doc["results"]:
        if r["status"] == "ok":
            rows.setdefault(r["label"], {})[r["name"]] = r
    for label, by_name in rows.items():
        torch = by_name.get("PyTorch eager")
        imperative = by_name.get("gpuhybrid imperative")
        for name, r in by_name.items():
            median, low = r["median_s"], r["spread"]["min_s"]
            vs_torch = (f"{median / torch['median_s']:5.2f}x  {low / torch['spread']['min_s']:5.2f}x"
                        if torch else "")
            vs_imp = f"{imperative['median_s'] / median:5.2f}x" if imperative else ""
            print(f"  {label:30} {name:28} median {fmt(median):>8} min {fmt(low):>8} "
                  f"+-{r['relative_spread'] * 50:3.0f}%  time/torch (median, min) {vs_torch}  "
                  f"speedup vs imperative {vs_imp}")
