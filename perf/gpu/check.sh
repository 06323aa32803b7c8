#!/usr/bin/env bash
# The GPU check, run from the repository root on a lent GPU machine after perf/gpu/publish.sh here:
#   device tool: run(command="bash perf/gpu/check.sh", carry=[".gpu"], timeout_s=420)
# 1. what the machine is; 2. ILGPU finds the device; 3. selftest on CUDA (both kernel ladders vs the reference);
# 4. the benchmark suite on CUDA; 5. PyTorch/cuDNN on the same shapes and GPU, with our time over theirs per row;
# 6. a short end-to-end training run. Everything is logged to $OUT (when set) for docs/benchmarks.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/gpucnn-check}
mkdir -p "$out"
exec > >(tee "$out/check.log") 2>&1
gpucnn=./.gpu/gpucnn
chmod +x "$gpucnn" 2>/dev/null || true
step() { echo; echo "== $1 ($(date -u +%T))"; }

step "machine"
date -u +%F; git rev-parse --short HEAD 2>/dev/null || true
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | head -3
ls -la /usr/lib/x86_64-linux-gnu/libcuda.so* 2>/dev/null | head -3

step "gpucnn devices"
timeout 120 "$gpucnn" devices

step "gpucnn selftest --device cuda"
timeout 180 "$gpucnn" selftest --device cuda | tee "$out/selftest.txt"
selftest=${PIPESTATUS[0]}

step "gpucnn bench --device cuda"
timeout 240 "$gpucnn" bench --device cuda --json "$out/gpucnn-cuda.json"

step "PyTorch on the same shapes (TF32 off, cudnn.benchmark, CUDA events)"
timeout 180 python3 perf/gpu/torch_baseline.py --json "$out/torch-cuda.json" --ours "$out/gpucnn-cuda.json"

step "train LeNet-5, 2 epochs, on cuda"
timeout 120 "$gpucnn" train --device cuda --epochs 2 --out "$out/lenet5.safetensors" --data .gpu/data/mnist-sample

step "done: selftest exit code $selftest; logs in $out"
exit "$selftest"
