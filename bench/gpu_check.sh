#!/usr/bin/env bash
# The GPU checks as one prepared run, for a machine with an NVIDIA GPU, CuPy, NumPy, pytest and
# hypothesis already installed (no network needed; gpuhybrid runs from this checkout):
#
#   bash bench/gpu_check.sh [OUT_DIR]        (default: bench/results/gpu-<date>)
#
# 1. the machine: GPU, driver, CUDA runtime, CuPy/NumPy/Python versions, the commit  -> env.txt
# 2. every `gpu`-marked test                                                         -> gpu-tests.log
# 3. every benchmark workload on the GPU, gpuhybrid's three modes and the CuPy,
#    PyTorch and JAX peers, ratios measured side by side in one run                  -> bench.json/.log
# 4. the training step of bench/train_step.py on the GPU                             -> train.json/.log
#
# Each step writes its raw output as it goes, so what ran survives a step that fails or a time limit.
# STEPS="tests bench train" (the default) chooses the steps, e.g. STEPS=tests to split a long run.
set -u -o pipefail
cd "$(dirname "$0")/.."
out="${1:-bench/results/gpu-$(date +%Y-%m-%d)}"
mkdir -p "$out"
python="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if ! "$python" -c "import gpuhybrid as gh, sys; sys.exit(0 if gh.num_gpus() else 1)"; then
    echo "gpu_check: no usable GPU here (gpuhybrid sees none: CuPy, the driver or a device is missing)" >&2
    exit 2
fi

{
    date -u +"date %Y-%m-%dT%H:%M:%SZ"
    echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
    "$python" - <<'EOF'
import platform, numpy, cupy
print("python", platform.python_version(), "numpy", numpy.__version__, "cupy", cupy.__version__)
print("cuda runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
print("device", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())
EOF
} > "$out/env.txt" 2>&1
cat "$out/env.txt"

status=0
steps=" ${STEPS:-tests bench train} "
if [[ $steps == *" tests "* ]]; then
    "$python" -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$out/gpu-tests.log" || status=1
fi
if [[ $steps == *" bench "* ]]; then
    "$python" -m gpuhybrid.bench all --device gpu --peers cupy,cupy.fuse,torch,torch.compile,jax.jit \
        --no-progress --json "$out/bench.json" 2>&1 | tee "$out/bench.log" || status=1
fi
if [[ $steps == *" train "* ]]; then
    "$python" bench/train_step.py --device gpu --out "$out/train.json" 2>&1 | tee "$out/train.log" || status=1
fi
echo "gpu_check: results in $out (exit $status)"
exit $status
