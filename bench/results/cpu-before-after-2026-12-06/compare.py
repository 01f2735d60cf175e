"""Before (8853e6e) and after (1258037): `gpuhybrid-bench mlp chain softmax layernorm train --device cpu
--json` run alternately, 3 rounds, on the 2-core development machine; prints the medians and their ratio."""
import json
import statistics as st
from pathlib import Path

HERE = Path(__file__).parent


def table(prefix: str) -> dict:
    out: dict = {}
    for path in sorted(HERE.glob(f"{prefix}-r*.json")):
        for c in json.loads(path.read_text())["results"]:
            if c["status"] == "ok":
                out.setdefault((c["label"], c["mode"] or c["name"]), []).append(
                    (c["median_s"], c["relative_spread"], c["launches_per_call"]["total"]))
    return out


def fmt(s: float) -> str:
    return f"{s * 1e6:.1f}us" if s < 1e-3 else f"{s * 1e3:.2f}ms"


before, after = table("before-8853e6e"), table("after-1258037")
print(f"{'case':32} {'mode':18} {'before':>10} {'after':>10} {'after/before':>12} {'spread':>7} launches")
for key, rows in before.items():
    b, a = st.median(x[0] for x in rows), st.median(x[0] for x in after[key])
    spread = max(st.median(x[1] for x in rows), st.median(x[1] for x in after[key]))
    print(f"{key[0]:32} {key[1]:18} {fmt(b):>10} {fmt(a):>10} {a / b:12.2f} {spread * 100:6.0f}% "
          f"{rows[0][2]}->{after[key][0][2]}")
