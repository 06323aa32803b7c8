#!/usr/bin/env bash
# The fast CPU backend against PyTorch on both vector paths of this machine, in alternating rounds (issue 13's table):
# each round runs `gpucnn bench --device cpu` and perf/torch/baseline.py on the AVX-512 path, then both again on the
# AVX2 path (ours with DOTNET_EnableAVX512=0; PyTorch held to AVX2 with ATEN_CPU_CAPABILITY=avx2
# DNNL_MAX_CPU_ISA=AVX2), the order of the sides flipped every other round. OpenBLAS gets its kernel of each path
# (SkylakeX, Haswell) whatever the environment presets: Debian's 0.3.21 would run its SSE3 kernel on processors newer
# than it knows, and some machines here preset Haswell (their OPENBLAS_L2_SIZE is left: 0.3.21 does not read it). Prints each row's
# median ms per side and path and ours/torch (below 1: we are faster) as a Markdown table; the JSON files stay in $OUT.
# Needs: apt-get install python3-torch libopenblas0-pthread
#   perf/cpu/compare_paths.sh [rounds] [--only PREFIX…]            (default 3 rounds, every row)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=3
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then rounds=$1; shift; fi
only=()
if [[ "${1:-}" == --only ]]; then shift; only=(--only "$@"); fi
out=${OUT:-$(mktemp -d)}
python=/usr/bin/python3
dotnet build src/Cli -c Release -v quiet -nologo > /dev/null
gpucnn=src/Cli/bin/Release/net10.0/gpucnn
grep -q -m1 avx512f /proc/cpuinfo || { echo "this processor has no AVX-512: only one path to compare (perf/cpu/compare.sh)" >&2; exit 1; }

echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) (family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs)," \
  "model $(grep -m1 '^model' /proc/cpuinfo | cut -d: -f2 | xargs)); $(date -u +%F); commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' + changes')"
$gpucnn devices | grep -iE "cpu path|peak" || true
DOTNET_EnableAVX512=0 $gpucnn devices | grep -iE "cpu path|peak" || true

ours() { # ours PATH ROUND
  if [[ $1 == avx2 ]]; then export DOTNET_EnableAVX512=0; else unset DOTNET_EnableAVX512; fi
  $gpucnn bench --device cpu ${only[@]+"${only[@]}"} --json "$out/ours-$1-$2.json" > "$out/ours-$1-$2.log"
  unset DOTNET_EnableAVX512
}
torch() { # torch PATH ROUND
  if [[ $1 == avx2 ]]; then
    env ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell OPENBLAS_THREAD_TIMEOUT=4 \
      $python perf/torch/baseline.py --device cpu ${only[@]+"${only[@]}"} --json "$out/torch-$1-$2.json" > "$out/torch-$1-$2.log"
  else
    env -u ATEN_CPU_CAPABILITY -u DNNL_MAX_CPU_ISA OPENBLAS_CORETYPE=SkylakeX OPENBLAS_THREAD_TIMEOUT=4 \
      $python perf/torch/baseline.py --device cpu ${only[@]+"${only[@]}"} --json "$out/torch-$1-$2.json" > "$out/torch-$1-$2.log"
  fi
}
for round in $(seq "$rounds"); do
  for path in avx512 avx2; do
    if (( round % 2 )); then ours $path "$round"; torch $path "$round"; else torch $path "$round"; ours $path "$round"; fi
    echo "round $round, $path: done ($(date -u +%T))" >&2
  done
done
head -1 "$out/torch-avx512-1.log"; head -1 "$out/torch-avx2-1.log"

$python - "$out" "$rounds" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def load(side, path):
    runs = [{r["name"]: r["ms"] for r in json.load(open(f"{out}/{side}-{path}-{i}.json"))} for i in range(1, rounds + 1)]
    return {name: [run[name] for run in runs if name in run] for name in runs[0]}
table = {path: (load("ours", path), load("torch", path)) for path in ("avx512", "avx2")}
print(f"\n{rounds} rounds, medians (ms); ours/torch per round in brackets")
print("| row | AVX-512 ours | torch | ours/torch | AVX2 ours | torch | ours/torch |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name in table["avx512"][0]:
    cells = []
    for path in ("avx512", "avx2"):
        ours, torch = table[path]
        if name not in torch:
            cells += [f"{statistics.median(ours[name]):.3f}", "-", "-"]
            continue
        per_round = ", ".join(f"{o / t:.2f}" for o, t in zip(ours[name], torch[name])) if len(ours[name]) == len(torch[name]) else "rounds missing"
        ratio = statistics.median(ours[name]) / statistics.median(torch[name])
        cells += [f"{statistics.median(ours[name]):.3f}", f"{statistics.median(torch[name]):.3f}", f"{ratio:.2f} ({per_round})"]
    print(f"| {name} | " + " | ".join(cells) + " |")
EOF
echo "(JSON and logs in $out)"
