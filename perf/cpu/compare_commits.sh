#!/usr/bin/env bash
# `gpucnn bench --device cpu` of this working tree against another commit, in one session: both are built, then run
# alternately RUNS times (so drift of a shared machine hits both), and each row's median is printed with our median
# over theirs (below 1: this tree is faster).
#   perf/cpu/compare_commits.sh BASE_COMMIT [RUNS=5] [extra bench options, e.g. --quick]
set -euo pipefail
cd "$(dirname "$0")/../.."
base=${1:?usage: compare_commits.sh BASE_COMMIT [RUNS] [bench options]}
runs=${2:-5}
shift $(( $# < 2 ? $# : 2 ))
work=$(mktemp -d)
git worktree add --detach -q "$work/base" "$base"
trap 'git worktree remove --force "$work/base"' EXIT
dotnet build "$work/base/src/Cli" -c Release -v quiet -nologo > /dev/null
dotnet build src/Cli -c Release -v quiet -nologo > /dev/null
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(grep -o -m1 'avx512f' /proc/cpuinfo || echo 'no avx512'); $(date -u +%F)"
src/Cli/bin/Release/net10.0/gpucnn devices | grep '^cpu path:' # DOTNET_EnableAVX512=0 selects the AVX2 path
echo "this tree: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' + changes'); base: $(git -C "$work/base" rev-parse --short HEAD)"
for i in $(seq "$runs"); do
  "$work/base/src/Cli/bin/Release/net10.0/gpucnn" bench --device cpu --json "$work/base-$i.json" "$@" > /dev/null
  src/Cli/bin/Release/net10.0/gpucnn bench --device cpu --json "$work/head-$i.json" "$@" > /dev/null
done
python3 - "$work" "$runs" <<'PY'
import json, statistics, sys
work, runs = sys.argv[1], int(sys.argv[2])
def medians(side):
    rows = {}
    for i in range(1, runs + 1):
        for r in json.load(open(f"{work}/{side}-{i}.json")):
            rows.setdefault(r["name"], []).append(r["ms"])
    return {k: statistics.median(v) for k, v in rows.items()}
base, head = medians("base"), medians("head")
print(f"{'row':<24} {'base ms':>10} {'this ms':>10} {'this/base':>10}")
for name in base:
    if name in head:
        print(f"{name:<24} {base[name]:>10.3f} {head[name]:>10.3f} {head[name] / base[name]:>10.2f}")
PY
