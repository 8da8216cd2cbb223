#!/usr/bin/env bash
# GPU checks: driver/runtime tests on the GPU, PTX assembly tests, then benchmarks.
# Needs a CUDA GPU and libcuda.so.1; installs nothing, no network; < 5 minutes.
set -u
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0
echo "== lamina.cuda"
python3 -c "import lamina; print('available', lamina.cuda.is_available(), 'devices', lamina.cuda.device_count())" || status=1
echo "== runtime tests on the GPU"
timeout 240 python3 -m pytest -q -rs tests/runtime/test_cuda_driver.py tests/backends/test_cuda_frontend.py || status=1
echo "== PTX + ptxas"
timeout 120 python3 -m pytest -q tests/backends/test_nvptx.py tests/passes/test_gpu_map.py || status=1
echo "== benchmarks"
timeout 240 python3 tests/gpu/bench.py || status=1
echo "== done (status $status)"
exit $status
