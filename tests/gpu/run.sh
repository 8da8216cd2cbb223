#!/usr/bin/env bash
# GPU checks (issue #6), for a machine with a CUDA GPU: ops on cuda vs the CPU, the
# cooperative-reduction and tiled-matmul kernels vs numpy (each with its kill switch
# too, so a failure says which path is wrong), a digits-CNN training run on the GPU,
# then the GPU benchmarks. Installs nothing, no network, under 5 minutes on an H100.
# Prints a summary last; exits non-zero when any step failed.
# Usage: tests/gpu/run.sh [REGEX]   (only the steps whose name matches REGEX)
set -u
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
LAMINA_CACHE_DIR="$(mktemp -d)"
export LAMINA_CACHE_DIR
status=0
summary=()
only=${1:-}

step() {  # step NAME SECONDS COMMAND...: run, record ok/FAIL with the time taken
    local name=$1 limit=$2 start rc
    shift 2
    if [ -n "$only" ] && ! [[ "$name" =~ $only ]]; then return 0; fi
    echo
    echo "== $name"
    start=$(date +%s)
    timeout "$limit" "$@"
    rc=$?
    local took=$(( $(date +%s) - start ))
    if [ "$rc" -eq 0 ]; then
        summary+=("ok    ${took}s  $name")
    else
        summary+=("FAIL  ${took}s  $name (exit $rc)")
        status=1
    fi
}

PYTEST=(python3 -m pytest -q -rs -p no:cacheprovider)

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -c "import sys, numpy, llvmlite; print('python', sys.version.split()[0], 'numpy', \
numpy.__version__, 'llvmlite', llvmlite.__version__)"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    2>/dev/null || echo "torch: not installed"

step "lamina.cuda" 30 python3 -c "import lamina; assert lamina.cuda.is_available(); \
print(lamina.cuda.get_device_name(), lamina.cuda.get_device_capability())"
step "driver + program runner tests" 60 "${PYTEST[@]}" tests/runtime/test_cuda_driver.py \
    tests/backends/test_cuda_frontend.py
step "ops on cuda vs cpu (tensors, autograd, modules)" 150 "${PYTEST[@]}" -x \
    tests/frontend/test_cuda_tensors.py
for f in tests/gpu/test_gpu_kernels.py tests/gpu/test_gpu_matmul.py; do
    [ -f "$f" ] || continue
    step "$f" 90 "${PYTEST[@]}" "$f"
done
[ -f tests/gpu/test_gpu_kernels.py ] && \
    step "tests/gpu/test_gpu_kernels.py with LAMINA_GPU_COOP=0" 90 \
    env LAMINA_GPU_COOP=0 "${PYTEST[@]}" tests/gpu/test_gpu_kernels.py \
    -k "not cooperative_mapping_is_used"
step "tests/gpu/test_gpu_kernels.py with LAMINA_GPU_UNROLL=0" 90 \
    env LAMINA_GPU_UNROLL=0 "${PYTEST[@]}" tests/gpu/test_gpu_kernels.py \
    -k "not elementwise_kernels_are_unrolled"
[ -f tests/gpu/test_gpu_matmul.py ] && \
    step "tests/gpu/test_gpu_matmul.py with LAMINA_GPU_TILED_MATMUL=0" 90 \
    env LAMINA_GPU_TILED_MATMUL=0 "${PYTEST[@]}" tests/gpu/test_gpu_matmul.py
step "digits CNN training on cuda" 120 python3 examples/train_digits.py --device cuda
step "benchmarks (elementwise, softmax, layer_norm, matmul, training step)" 150 \
    python3 tests/gpu/bench.py
step "elementwise benchmark with LAMINA_GPU_UNROLL=0" 60 \
    env LAMINA_GPU_UNROLL=0 python3 tests/gpu/bench.py --elementwise
[ -f tests/gpu/bench_matmul.py ] && step "matmul benchmark" 90 python3 tests/gpu/bench_matmul.py

echo
echo "== summary"
for line in "${summary[@]}"; do echo "  $line"; done
echo "== done (status $status)"
exit $status
