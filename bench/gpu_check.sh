#!/usr/bin/env bash
# The GPU checks as one prepared run, for a machine with an NVIDIA GPU, CuPy, NumPy, pytest and
# hypothesis already installed (no network needed; gpuhybrid runs from this checkout):
#
#   bash bench/gpu_check.sh [OUT_DIR]    (default: $OUT when set, as on the device tool's machines,
#                                         else bench/results/gpu-<date>)
#
# Where the checkout is a copy without .git, pass the commit: GPUHYBRID_COMMIT=<sha> bash ...
#
# 1. the machine: GPU, driver, CUDA runtime, CuPy/NumPy/Python versions, the commit  -> env.txt
# 2. every `gpu`-marked test                                                         -> gpu-tests.log
# 3. every benchmark workload on the GPU, gpuhybrid's three modes and the CuPy,
#    PyTorch and JAX peers, ratios measured side by side in one run                  -> bench.json/.log
# 4. the training step of bench/train_step.py on the GPU                             -> train.json/.log
#    and the MLP 512-256-128-10 Adam step at batch 64 and 128 (gpuhybrid.bench.training):
#    the Gluon loop and compile_step, each plain and with static_shape (CUDA graphs),
#    against jax.jit and PyTorch eager on the GPU, ratios to jax.jit                  -> train-step.json/.log
#
# Each step writes its raw output as it goes, so what ran survives a step that fails or a time limit.
# STEPS="tests bench train" (the default) chooses the steps, e.g. STEPS=tests to split a long run;
# each step has a time limit (TESTS_S=330, BENCH_S=210, TRAIN_S=90 seconds: within 10 minutes).
#
# cuDNN: the device tool's image has the cuDNN runtime (nvidia-cudnn-cu13) but not NVIDIA's frontend, and
# nothing can be downloaded there, so without it every cuDNN test skips. Carry its wheel: here, once,
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl nvidia-cudnn-frontend==1.32.0
# and name `.whl` in the run's carry: this script installs .whl/*.whl (no index, no dependencies) first.
set -u -o pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-bench/results/gpu-$(date +%Y-%m-%d)}}"
mkdir -p "$out"
python="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false         # JAX shares the GPU with CuPy and PyTorch here
export GPUHYBRID_COMMIT="${GPUHYBRID_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
if compgen -G ".whl/*.whl" > /dev/null; then     # carried wheels (see above), into a folder of their own
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpuhybrid-site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/gpuhybrid-site"
fi

if ! "$python" -c "import gpuhybrid as gh, sys; sys.exit(0 if gh.num_gpus() else 1)"; then
    echo "gpu_check: no usable GPU here (gpuhybrid sees none: CuPy, the driver or a device is missing)" >&2
    exit 2
fi

{
    date -u +"date %Y-%m-%dT%H:%M:%SZ"
    echo "commit $GPUHYBRID_COMMIT"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
    echo "host C compiler: $(command -v cc || command -v gcc || echo none)"
    "$python" - <<'EOF'
import platform, numpy, cupy
print("python", platform.python_version(), "numpy", numpy.__version__, "cupy", cupy.__version__)
print("cuda runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
print("device", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())
import sysconfig, os.path
print("Python.h", os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))
EOF
} > "$out/env.txt" 2>&1
cat "$out/env.txt"

status=0
steps=" ${STEPS:-tests bench train} "
if [[ $steps == *" tests "* ]]; then
    timeout -k 10 "${TESTS_S:-330}" "$python" -m pytest -q --durations=25 -m gpu -p no:cacheprovider tests 2>&1 \
        | tee "$out/gpu-tests.log" || status=1
fi
if [[ $steps == *" bench "* ]]; then
    timeout -k 10 "${BENCH_S:-210}" "$python" -m gpuhybrid.bench all --device gpu --repeats 5 \
        --peers cupy,cupy.fuse,torch,torch.compile,jax.jit --no-progress --json "$out/bench.json" 2>&1 \
        | tee "$out/bench.log" || status=1
fi
if [[ $steps == *" train "* ]]; then
    # both parts within the step's one limit (timeout signals the whole process group)
    timeout -k 10 "${TRAIN_S:-90}" bash -c 'set -o pipefail; python=$0 out=$1 failed=0
        "$python" bench/train_step.py --device gpu --repeats 5 --out "$out/train.json" 2>&1 \
            | tee "$out/train.log" || failed=1
        "$python" -m gpuhybrid.bench.training --device gpu --batch-size 64 128 --repeats 5 \
            --note "bench/gpu_check.sh" --out "$out/train-step.json" 2>&1 | tee "$out/train-step.log" || failed=1
        exit $failed' "$python" "$out" || status=1
fi
echo "gpu_check: results in $out (exit $status)"
exit $status
