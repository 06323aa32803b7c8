#!/usr/bin/env bash
# Side-by-side CPU comparison with PyTorch on this machine, in one run (docs/benchmarks.md records the results).
# Needs Debian's PyTorch and OpenBLAS: apt-get install python3-torch libopenblas0-pthread
#   perf/cpu/compare.sh [runs]          # runs: LeNet repetitions per side (default 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
out=${OUT:-$(mktemp -d)}
python=/usr/bin/python3
dotnet build src/Cli -c Release -v quiet -nologo > /dev/null
gpucnn=src/Cli/bin/Release/net10.0/gpucnn

echo "== machine"
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F); commit $(git rev-parse --short HEAD)"
$python -c "import torch; print('torch', torch.__version__)"

echo "== kernels: gpucnn bench --device cpu, then PyTorch on the same shapes"
$gpucnn bench --device cpu --json "$out/gpucnn-cpu.json"
$python perf/torch/baseline.py --device cpu --ours "$out/gpucnn-cpu.json" --json "$out/torch-cpu.json"

echo "== LeNet-5, bundled sample, 4 epochs, batch 64, SGD lr 0.05 momentum 0.9 (constant rate): whole process"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for side in gpucnn torch; do
  : > "$out/$side.times"
  for _ in $(seq "$runs"); do
    start=$(date +%s.%N)
    if [ "$side" = gpucnn ]; then
      $gpucnn train --device cpu --epochs 4 --schedule constant --out "$out/lenet.safetensors" > "$out/$side.log" 2>&1
    else
      $python perf/torch/lenet_mnist.py --raw --epochs 4 > "$out/$side.log" 2>&1
    fi
    echo "$(date +%s.%N) - $start" | bc >> "$out/$side.times"
  done
  echo "$side: median $(median < "$out/$side.times") s over $runs runs; $(grep 'test accuracy:' "$out/$side.log" | tail -1)"
done
echo "ratio gpucnn/torch: $(echo "$(median < "$out/gpucnn.times") / $(median < "$out/torch.times")" | bc -l | cut -c1-5)"
