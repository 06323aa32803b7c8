#!/usr/bin/env bash
# The GPU check, run from the repository root on a lent GPU machine after perf/gpu/publish.sh here:
#   device tool: run(command="bash perf/gpu/check.sh", carry=[".gpu"], timeout_s=480)
# In order, each step under its own time limit, everything logged to $OUT/check.log (or /tmp/gpucnn-check):
#  1. the machine; 2. `gpucnn devices` (auto must pick cuda); 3. `selftest --device cuda --verbose`, the whole
#     xunit test suite (its CUDA classes run here) and the PyTorch parity fixtures through the CLI;
#  4. `bench --device cuda --json`, then the GEMM-heavy rows once per GEMM kernel; 5. PyTorch/cuDNN on the same rows and GPU (TF32 off, cudnn.benchmark on);
#  6. LeNet-5 on the full MNIST, 2 epochs, ours then PyTorch CUDA with the same settings (per-epoch wall time and
#     test accuracy); 7. bitwise reproducibility (two identical training runs, same hashes);
#  8. auto's fall-back to the CPU after a real CUDA fault (GPUCNN_INJECT_FAULT_AT_LAUNCH); 9. an ncu profile of the
#     tiled GEMM kernel at gemm-4096. At most 8 files come back, so only the log, the two bench tables and the
#     profile go to $OUT (ncu: the GEMM at gemm-4096, the kernels of conv3x3-64, the filter gradient of conv3x3-128-bwd).
# ResNet-8 (batch norm, residual blocks, augmentation) trains on the full MNIST for 2 epochs, ours then PyTorch CUDA,
# after `gpucnn profile` has timed its training step (and LeNet-5's) layer by layer.
# `groups` times the tiled kernels' group sizes against each other (GPUCNN_TILE_GROUP_THREADS=256|128|64, every bench
# row, alternating, twice); `narrow` times the implicit GEMM's 32-filter tiles against its 64-filter ones (layers of
# at most 32 filters; GPUCNN_IMPLICIT_GEMM_FILTERS=64|32; 32 became the default after an H200 run of this step) and
# the 16-filter forward tiles (=16: the forwards of layers of at most 16 filters; the default after a later run);
# `lists` times the optimizer and clipping rows and the whole training steps with the tensor-list launches (one per
# 32 tensors, the default) against a launch per tensor (GPUCNN_TENSOR_LISTS=1|0), alternating, twice;
# `ncu-resnet` sums Nsight Compute's GPU time per kernel over 900 launches of ResNet-8 training steps
# (perf/gpu/ncu_kernel_times.py); `distributed` unpacks the Open MPI packages publish.sh carried and
# trains on the GPU with 2 ranks sharing it (`--device cuda` takes the GPU of the local rank modulo the GPUs there)
# against one process, twice for bitwise reproducibility, then runs the distributed test class; `floor` times depth
# splits that reach 264 groups wherever the depth allows (GPUCNN_SPLIT_MINIMUM_GROUPS=264) against the default;
# `depthwise` times the depthwise kernels (Auto) against the generic direct ones (GPUCNN_CONV_ALGORITHM=Direct) on the
# depthwise rows, alternating, twice; `ncu-depthwise` profiles the depthwise kernels of conv-dw3x3-64-bwd (backward
# data, filter gradient) and conv-dw3x3s2-128-fwd; `fewtaps` times the few-taps filter gradients against the implicit GEMM's on
# the convolution rows of LeNet and the 1x1 shortcut and the training steps (GPUCNN_FEW_TAPS_FILTER_GRADIENT=64|0|160), three rounds;
# `blocked` the same rows with the blocked few-taps filter gradient (16 filters of a tap a thread, in registers; on by
# default for layers of at most 160 taps since an H200 run of this step) taking the layers of at most 160 taps that the
# few-taps kernel leaves or gives up (groups of 128 threads or more), then all of them
# (GPUCNN_BLOCKED_FEW_TAPS_FILTER_GRADIENT=0|160, GPUCNN_FEW_TAPS_FILTER_GRADIENT=64|0); `blocked-small` times it on
# 96-thread groups (a 72-tap layer of 16 filters) against the implicit GEMM, layer by layer; `blocked-chunks` its chunks
# a multiprocessor (GPUCNN_BLOCKED_FEW_TAPS_CHUNKS=2..16 against the default); `bn-merge` batch norm's chunk merges
# staged in shared memory (GPUCNN_BATCH_NORM_STAGED_MERGE=1, the default since an H200 run of this step) against merges from memory (=0); `defaults` times today's
# defaults against those before the blocked kernel and the 16-filter tiles were turned on (rows, steps, ResNet-8 trained).
# Steps can be chosen to fit what is left of a lease: `bash perf/gpu/check.sh bench torch-bench` runs only those
# (names: machine devices selftest tests parity bench lists groups narrow floor depthwise fewtaps blocked blocked-small blocked-chunks
# bn-merge defaults ladder conv-ladder torch-bench lenet resnet repro fallback distributed ptx opencl ncu ncu-resnet ncu-depthwise; default:
# all but groups, narrow, floor, ladder, opencl, ncu, ncu-resnet, ncu-depthwise, fewtaps, blocked, blocked-small, blocked-chunks, bn-merge
# and defaults,
# whose results are recorded in docs/benchmarks.md; `all` runs every one). TEST_ARGS narrows the test suite (e.g.
# "-class GpuCnn.Tests.CudaBackendOps"); CONV_ALGORITHMS names the convolution routes the conv-ladder step compares
# (default: Im2ColGemm ImplicitGemm); DISTRIBUTED_DEVICE the device of the distributed step (default cuda; cpu tries
# the step on a machine without a GPU).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/gpucnn-check}
work=/tmp/gpucnn-work
mkdir -p "$out" "$work"
exec > >(tee "$out/check.log") 2>&1
bundle=/tmp/gpucnn-bundle
rm -rf "$bundle" && mkdir -p "$bundle" && tar -C "$bundle" -xJf .gpu/bundle.tar.xz
gpucnn=$bundle/gpucnn
data=.gpu/data
# ResNet-8 as every step trains it (2 epochs on the full MNIST; the steps add --out and, for profiles, their own data)
resnet8=(train --device cuda --arch resnet8 --batch-size 128 --lr 0.1 --momentum 0.9 --weight-decay 5e-4 --normalize 0.1307,0.3081 --seed 1)
resnet8_full=("${resnet8[@]}" --epochs 2 --schedule cosine --augment crop=2 --data "$data/mnist")
# Failures go to a file: a check inside a pipeline (`check … | grep`) runs in a subshell, where an array would lose them.
failed="$work/failed-steps"
: > "$failed"
fail() { echo "$1" >> "$failed"; }
default_steps="machine devices selftest tests parity bench lists depthwise conv-ladder torch-bench lenet resnet repro fallback distributed ptx"
all_steps="machine devices selftest tests parity bench lists groups narrow floor depthwise fewtaps blocked blocked-small blocked-chunks bn-merge defaults ladder conv-ladder torch-bench lenet resnet repro fallback distributed ptx opencl ncu ncu-resnet ncu-depthwise"
if [ $# -eq 0 ]; then chosen=" $default_steps "; elif [ "$1" = all ]; then chosen=" $all_steps "; else chosen=" $* "; fi
for name in $chosen; do [[ " $all_steps " == *" $name "* ]] || { echo "unknown step: $name (steps: $all_steps)"; exit 2; }; done
wanted() { [[ "$chosen" == *" $1 "* ]]; }
step() { echo; echo "== $1 ($(date -u +%T))"; }
check() { # check NAME SECONDS COMMAND...: runs under a time limit, records a failure by name
  local name=$1 limit=$2; shift 2
  timeout -k 5 "$limit" "$@"
  local rc=$?
  if [ $rc -ne 0 ]; then echo "!! $name: exit code $rc$([ $rc -eq 124 ] && echo " (timed out after ${limit} s)")"; fail "$name"; fi
  return $rc
}

if wanted machine; then
  step "machine"
  date -u +%F; cat .gpu/COMMIT 2>/dev/null
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -3
  ldconfig -p | grep -E "libcuda\.so" | head -3; echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  grep -m1 "model name" /proc/cpuinfo; nproc
  echo "LANG=${LANG:-} LC_ALL=${LC_ALL:-} (the tests run in de-DE whatever it is; gpucnn in the invariant culture)"
fi

if wanted devices; then
  step "gpucnn devices"
  check devices 60 "$gpucnn" devices | tee "$work/devices.txt"
  grep -q "auto picks: cuda" "$work/devices.txt" && echo "ok: auto picks cuda" || { echo "!! auto does not pick cuda"; fail auto-picks-cuda; }
fi

if wanted selftest; then
  step "gpucnn selftest --device cuda --verbose"
  check selftest 150 "$gpucnn" selftest --device cuda --verbose | tee "$work/selftest.txt"
  # The tensor-list kernels (a struct of 32 views per launch) first ran on a GPU here: if they fail, the rest of the
  # run takes a launch per tensor, so that its training and timing steps still say something.
  # (The test step unsets it again: its CUDA classes test the list kernels themselves.)
  cases="over a list of tensors|clip grad norm|a list of tensors to one buffer"
  lists=$(grep -cE "$cases" "$work/selftest.txt"); passed=$(grep -E "$cases" "$work/selftest.txt" | grep -c " pass$")
  if [ "$lists" -eq 0 ] || [ "$passed" -ne "$lists" ]; then
    echo "!! the tensor-list kernels did not pass; the steps after this run with GPUCNN_TENSOR_LISTS=0"
    fail tensor-lists
    export GPUCNN_TENSOR_LISTS=0
  fi
fi

if wanted tests; then
  step "the test suite, self-contained (no .NET here): every class, the CUDA ones included"
  # shellcheck disable=SC2086 # TEST_ARGS is a list of runner options
  # The IlgpuCpuGpuGroups* and IlgpuCpuBlockedFewTaps* classes simulate a GPU's 256- or 128-thread groups on ILGPU's
  # CPU accelerator (an OS thread per simulated thread, minutes of device time): they stand in for a GPU where there
  # is none, so they are left out here (the Cuda* classes run the same kernels).
  check test-suite 300 env -u GPUCNN_TENSOR_LISTS "$bundle/GpuCnn.Tests" -parallelMode collections -noColor -result-ctrf "$out/tests.ctrf.json" \
    -class- "GpuCnn.Tests.IlgpuCpuGpuGroups*" -class- "GpuCnn.Tests.IlgpuCpuBlockedFewTaps*" ${TEST_ARGS:-} > "$work/tests.txt" 2>&1
  grep -E "\[FAIL\]|Total:" "$work/tests.txt" | tail -n 40
  grep -A6 "\[FAIL\]" "$work/tests.txt" | head -n 120
  # A runner that died before its summary (this happened once, on a fresh machine, within a second) says why only here.
  grep -q "Total:" "$work/tests.txt" || { echo "-- no summary; the runner's last lines:"; tail -n 30 "$work/tests.txt"; }
fi

if wanted parity; then
  step "PyTorch parity fixtures on cuda (predict and one training step; gelu, silu and residual blocks included)"
  check torch-parity 120 python3 perf/gpu/torch_parity.py "$gpucnn" --device cuda
fi

if wanted bench; then
  step "gpucnn bench --device cuda"
  check bench 180 "$gpucnn" bench --device cuda --json "$out/gpucnn-cuda.json"
fi

if wanted ladder; then
  step "the GEMM ladder on the GEMM-heavy rows: 4x4 blocks (Tiled) against 8x8 blocks (Tiled8x8), same run"
  for algorithm in Tiled Tiled8x8; do
    echo "-- GPUCNN_GEMM_ALGORITHM=$algorithm"
    check "bench-$algorithm" 90 env GPUCNN_GEMM_ALGORITHM=$algorithm "$gpucnn" bench --device cuda --only gemm conv3x3
  done
fi

if wanted groups; then
  step "tile groups of 256, 128 and 64 threads (GPUCNN_TILE_GROUP_THREADS): selftest at each, then every bench row, alternating, twice"
  for threads in 128 64; do
    echo "-- selftest, GPUCNN_TILE_GROUP_THREADS=$threads"
    check "selftest-groups-$threads" 120 env GPUCNN_TILE_GROUP_THREADS=$threads "$gpucnn" selftest --device cuda | tail -n 1
  done
  for round in 1 2; do
    for threads in 256 128 64; do
      echo "-- round $round, GPUCNN_TILE_GROUP_THREADS=$threads"
      check "bench-groups-$threads" 90 env GPUCNN_TILE_GROUP_THREADS=$threads "$gpucnn" bench --device cuda \
        --json "$work/groups-$round-$threads.json" | grep -E "^(gemm|conv|lenet)"
    done
  done
  for threads in 256 64; do
    echo "-- ResNet-8, 2 epochs, GPUCNN_TILE_GROUP_THREADS=$threads"
    check "resnet-groups-$threads" 120 env GPUCNN_TILE_GROUP_THREADS=$threads "$gpucnn" "${resnet8_full[@]}" \
      --out "$work/resnet8-groups-$threads.safetensors" | grep -E "^epoch"
  done
fi

if wanted lists; then
  step "tensor lists: a launch per 32 tensors against a launch per tensor (GPUCNN_TENSOR_LISTS), alternating, twice"
  for round in 1 2; do
    for lists in 0 1; do
      echo "-- round $round, GPUCNN_TENSOR_LISTS=$lists"
      check "bench-lists-$lists" 90 env GPUCNN_TENSOR_LISTS=$lists "$gpucnn" bench --device cuda --only sgd clip lenet-step-64 resnet8 \
        | grep -E "^(sgd|clip|lenet|resnet|kernel)"
    done
  done
fi

if wanted narrow; then
  step "implicit-GEMM tiles of 64, 32 and 16 filters (GPUCNN_IMPLICIT_GEMM_FILTERS; 32 applies to layers of <= 32 filters, 16 to the forwards and stride-1 backward data of layers of <= 16): selftest, bench rows rotated, ResNet-8"
  for filters in 64 16; do
    echo "-- selftest, GPUCNN_IMPLICIT_GEMM_FILTERS=$filters"
    check "selftest-filters-$filters" 120 env GPUCNN_IMPLICIT_GEMM_FILTERS=$filters "$gpucnn" selftest --device cuda | tail -n 1
  done
  for round in 1 2; do
    case $round in 1) settings="64 32 16";; *) settings="16 32 64";; esac
    for filters in $settings; do
      echo "-- round $round, GPUCNN_IMPLICIT_GEMM_FILTERS=$filters"
      check "bench-filters-$filters" 90 env GPUCNN_IMPLICIT_GEMM_FILTERS=$filters "$gpucnn" bench --device cuda --only conv lenet-step resnet8 \
        | grep -E "^(conv|lenet|resnet)"
    done
  done
  for filters in 64 32 16; do
    echo "-- ResNet-8, 2 epochs, GPUCNN_IMPLICIT_GEMM_FILTERS=$filters"
    check "resnet-filters-$filters" 120 env GPUCNN_IMPLICIT_GEMM_FILTERS=$filters "$gpucnn" "${resnet8_full[@]}" \
      --out "$work/resnet8-filters-$filters.safetensors" | grep -E "^epoch"
  done
fi

if wanted floor; then
  step "depth splits of at least 264 groups (GPUCNN_SPLIT_MINIMUM_GROUPS=264: the launch report's goal as written) against splits by waves: the plan, then the rows alternating, twice"
  check launches-floor 60 env GPUCNN_SPLIT_MINIMUM_GROUPS=264 "$gpucnn" bench --device cuda --launches | grep -E "dominant|rows meet"
  for round in 1 2; do
    for floor in 0 264; do
      echo "-- round $round, GPUCNN_SPLIT_MINIMUM_GROUPS=$floor"
      check "bench-floor-$floor" 90 env GPUCNN_SPLIT_MINIMUM_GROUPS=$floor "$gpucnn" bench --device cuda --only gemm-1024 conv lenet-step resnet8-step \
        | grep -E "^(gemm|conv|lenet|resnet)"
    done
  done
fi

if wanted depthwise; then
  step "depthwise layers: the depthwise kernels (Auto) against the generic direct kernels (Direct), alternating, twice"
  for round in 1 2; do
    for algorithm in Auto Direct; do
      echo "-- round $round, GPUCNN_CONV_ALGORITHM=$algorithm"
      check "depthwise-$algorithm" 60 env GPUCNN_CONV_ALGORITHM=$algorithm "$gpucnn" bench --device cuda --only conv-dw
    done
  done
fi

if wanted fewtaps; then
  step "few-taps filter gradients: layers of <= 64 taps (GPUCNN_FEW_TAPS_FILTER_GRADIENT=64, the default), none (=0: the implicit GEMM's), <= 160 (LeNet's second layer, ResNet-8's 16-channel ones), rotated each round"
  for round in 1 2 3; do
    case $round in 1) settings="64 0 160";; 2) settings="0 160 64";; *) settings="160 64 0";; esac
    for taps in $settings; do
      echo "-- round $round, GPUCNN_FEW_TAPS_FILTER_GRADIENT=$taps"
      check "fewtaps-$taps" 90 env GPUCNN_FEW_TAPS_FILTER_GRADIENT=$taps "$gpucnn" bench --device cuda --only conv-lenet conv1x1s2 lenet-step resnet8-step
    done
  done
  for taps in 64 0 160; do
    echo "-- GPUCNN_FEW_TAPS_FILTER_GRADIENT=$taps: ResNet-8 and LeNet-5 layer by layer (first layers, 16-channel 3x3 layers, 1x1 shortcuts)"
    GPUCNN_FEW_TAPS_FILTER_GRADIENT=$taps check "fewtaps-profile-$taps" 60 "$gpucnn" profile --device cuda --arch resnet8 --batch-size 128 --steps 20 \
      | grep -E "^0 |3.body.[03]|5.body.0|shortcut.0|profiled step|whole step"
    GPUCNN_FEW_TAPS_FILTER_GRADIENT=$taps check "fewtaps-profile-lenet-$taps" 60 "$gpucnn" profile --device cuda --arch lenet5 --batch-size 64 --steps 20 \
      | grep -E "^[03] |profiled step|whole step"
  done
fi

if wanted blocked; then
  step "blocked few-taps filter gradients: off (GPUCNN_BLOCKED_FEW_TAPS_FILTER_GRADIENT=0); <= 160 taps (the default: LeNet's second layer and ResNet-8's 16-channel 3x3 layers, against the implicit GEMM, and the few-taps kernel's layers whose blocked groups have 128 threads or more; first layers stay on the few-taps kernel); <= 160 with the few-taps kernel off (first layers too), rotated each round"
  settings_of() { case $1 in off) echo "0 64";; blocked) echo "160 64";; *) echo "160 0";; esac; }
  for round in 1 2 3; do
    case $round in 1) order="off blocked all";; 2) order="blocked all off";; *) order="all off blocked";; esac
    for setting in $order; do
      read -r blocked fewtaps <<< "$(settings_of $setting)"
      echo "-- round $round, $setting: GPUCNN_BLOCKED_FEW_TAPS_FILTER_GRADIENT=$blocked GPUCNN_FEW_TAPS_FILTER_GRADIENT=$fewtaps"
      check "blocked-$setting" 90 env GPUCNN_BLOCKED_FEW_TAPS_FILTER_GRADIENT=$blocked GPUCNN_FEW_TAPS_FILTER_GRADIENT=$fewtaps \
        "$gpucnn" bench --device cuda --only conv-lenet conv1x1s2 lenet-step resnet8-step
    done
  done
  for setting in off blocked all; do
    read -r blocked fewtaps <<< "$(settings_of $setting)"
    echo "-- $setting: ResNet-8 and LeNet-5 layer by layer (first layers, 16-channel 3x3 layers, 1x1 shortcuts)"
    GPUCNN_BLOCKED_FEW_TAPS_FILTER_GRADIENT=$blocked GPUCNN_FEW_TAPS_FILTER_GRADIENT=$fewtaps check "blocked-profile-$setting" 60 \
      "$gpucnn" profile --device cuda --arch resnet8 --batch-size 128 --steps 20 | grep -E "^0 |3.body.[03]|5.body.0|shortcut.0|profiled step|whole step"
    GPUCNN_BLOCKED_FEW_TAPS_FILTER_GRADIENT=$blocked GPUCNN_FEW_TAPS_FILTER_GRADIENT=$fewtaps check "blocked-profile-lenet-$setting" 60 \
      "$gpucnn" profile --device cuda --arch lenet5 --batch-size 64 --steps 20 | grep -E "^[03] |profiled step|whole step"
  done
fi

if wanted blocked-small; then
  step "the blocked few-taps filter gradient on 96-thread groups (a 72-tap layer of 16 filters, 8 -> 16 channels at 3x3; with its bias) against the implicit GEMM (GPUCNN_BLOCKED_FEW_TAPS_FILTER_GRADIENT=160|0), layer by layer, rotated, three rounds"
  small_net="conv(8,3,pad=1),relu,conv(16,3,pad=1),relu,conv(16,3,pad=1),relu,flatten,dense(10)"
  for round in 1 2 3; do
    case $round in 2) order="0 160";; *) order="160 0";; esac
    for blocked in $order; do
      echo "-- round $round, GPUCNN_BLOCKED_FEW_TAPS_FILTER_GRADIENT=$blocked (layer 2: 72 taps, 96 threads; layer 4: 144 taps, 160 threads)"
      GPUCNN_BLOCKED_FEW_TAPS_FILTER_GRADIENT=$blocked check "blocked-small-$blocked" 60 "$gpucnn" profile --device cuda --arch "$small_net" \
        --input-shape 1,28,28 --batch-size 128 --steps 20 | grep -E "^[024] |profiled step|whole step"
    done
  done
fi

if wanted blocked-chunks; then
  step "the blocked few-taps filter gradient's chunks a multiprocessor (GPUCNN_BLOCKED_FEW_TAPS_CHUNKS; default 1,024 / its group's threads, 4 to 8: 6 for ResNet-8's 16 -> 16 layers, 4 for its 16 -> 32 one), rotated, twice; then ResNet-8 layer by layer at each"
  for round in 1 2; do
    case $round in 1) order="default 2 4 8 12 16";; *) order="16 12 8 4 2 default";; esac
    for chunks in $order; do
      echo "-- round $round, chunks a multiprocessor: $chunks"
      if [ "$chunks" = default ]; then settings=(); else settings=(GPUCNN_BLOCKED_FEW_TAPS_CHUNKS=$chunks); fi
      check "blocked-chunks-$chunks" 60 env ${settings[@]+"${settings[@]}"} "$gpucnn" bench --device cuda --only lenet-step resnet8-step \
        | grep -E "^(kernels|lenet|resnet)"
    done
  done
  for chunks in default 2 4 8 12 16; do
    echo "-- chunks a multiprocessor: $chunks, ResNet-8 layer by layer"
    if [ "$chunks" = default ]; then settings=(); else settings=(GPUCNN_BLOCKED_FEW_TAPS_CHUNKS=$chunks); fi
    check "blocked-chunks-profile-$chunks" 60 env ${settings[@]+"${settings[@]}"} "$gpucnn" profile --device cuda --arch resnet8 --batch-size 128 --steps 20 \
      | grep -E "3.body.[03]|5.body.0|profiled step|whole step"
  done
fi

if wanted bn-merge; then
  step "batch norm's chunk merges from shared memory, staged by a group a channel (GPUCNN_BATCH_NORM_STAGED_MERGE=1, the default; the same bits) against a thread a channel reading memory (=0), rotated, three rounds; ResNet-8 layer by layer with each"
  for round in 1 2 3; do
    case $round in 2) order="1 0";; *) order="0 1";; esac
    for staged in $order; do
      echo "-- round $round, GPUCNN_BATCH_NORM_STAGED_MERGE=$staged"
      check "bn-merge-$staged" 60 env GPUCNN_BATCH_NORM_STAGED_MERGE=$staged "$gpucnn" bench --device cuda --only batchnorm lenet-step resnet8-step \
        | grep -E "^(kernels|batchnorm|lenet|resnet)"
    done
  done
  for staged in 0 1; do
    echo "-- GPUCNN_BATCH_NORM_STAGED_MERGE=$staged: ResNet-8 layer by layer (its batch norms)"
    check "bn-merge-profile-$staged" 60 env GPUCNN_BATCH_NORM_STAGED_MERGE=$staged "$gpucnn" profile --device cuda --arch resnet8 --batch-size 128 --steps 20 \
      | grep -E "batchnorm|profiled step|whole step"
  done
fi

if wanted defaults; then
  step "today's defaults against those before the blocked few-taps filter gradient and the 16-filter forward tiles (GPUCNN_BLOCKED_FEW_TAPS_FILTER_GRADIENT=0 GPUCNN_IMPLICIT_GEMM_FILTERS=32), rotated, three rounds; ResNet-8 trained with each"
  before=(GPUCNN_BLOCKED_FEW_TAPS_FILTER_GRADIENT=0 GPUCNN_IMPLICIT_GEMM_FILTERS=32)
  for round in 1 2 3; do
    case $round in 2) order="before now";; *) order="now before";; esac
    for setting in $order; do
      echo "-- round $round, $setting"
      if [ "$setting" = now ]; then settings=(); else settings=("${before[@]}"); fi
      check "defaults-$setting" 90 env ${settings[@]+"${settings[@]}"} "$gpucnn" bench --device cuda --only conv lenet-step resnet8-step | grep -E "^(kernels|conv|lenet|resnet)"
    done
  done
  for setting in now before; do
    if [ "$setting" = now ]; then settings=(); else settings=("${before[@]}"); fi
    echo "-- ResNet-8, 2 epochs, $setting"
    check "defaults-resnet-$setting" 120 env ${settings[@]+"${settings[@]}"} "$gpucnn" "${resnet8_full[@]}" --out "$work/resnet8-$setting.safetensors" | grep -E "^epoch"
    echo "-- $setting: ResNet-8 layer by layer"
    check "defaults-profile-$setting" 60 env ${settings[@]+"${settings[@]}"} "$gpucnn" profile --device cuda --arch resnet8 --batch-size 128 --steps 20 \
      | grep -E "^0 |3.body.[03]|5.body.0|shortcut.0|profiled step|whole step"
  done
fi

if wanted conv-ladder; then
  step "the convolution routes on the convolution rows and the LeNet step, same run (GPUCNN_CONV_ALGORITHM)"
  for algorithm in ${CONV_ALGORITHMS:-Im2ColGemm ImplicitGemm}; do
    echo "-- GPUCNN_CONV_ALGORITHM=$algorithm"
    check "conv-$algorithm" 90 env GPUCNN_CONV_ALGORITHM=$algorithm "$gpucnn" bench --device cuda --only conv lenet-step
  done
fi

if wanted torch-bench; then
  step "PyTorch on the same rows (TF32 off, cudnn.benchmark, CUDA events)"
  check torch-bench 150 python3 perf/gpu/torch_baseline.py --json "$out/torch-cuda.json" $([ -f "$out/gpucnn-cuda.json" ] && echo --ours "$out/gpucnn-cuda.json")
fi

if wanted lenet; then
  step "LeNet-5, full MNIST, 2 epochs, lr 0.05 momentum 0.9 batch 64 constant: ours on cuda"
  check lenet-ours 150 "$gpucnn" train --device cuda --epochs 2 --schedule constant --data "$data/mnist" --out "$work/lenet-full.safetensors"

  step "LeNet-5, full MNIST, 2 epochs, same settings: PyTorch CUDA"
  check lenet-torch 120 python3 perf/torch/lenet_mnist.py --device cuda --epochs 2 --data "$data/mnist"
fi

if wanted resnet; then
  step "where a ResNet-8 and a LeNet-5 training step's GPU time goes, layer by layer (gpucnn profile: a synchronisation around each layer)"
  check profile-resnet8 60 "$gpucnn" profile --device cuda --arch resnet8 --batch-size 128 --steps 20
  check profile-lenet5 60 "$gpucnn" profile --device cuda --arch lenet5 --batch-size 64 --steps 20
  step "ResNet-8 (batch norm, residual blocks, crop augmentation), full MNIST, 2 epochs, batch 128, cosine: ours on cuda"
  check resnet-ours 150 "$gpucnn" "${resnet8_full[@]}" --out "$work/resnet8.safetensors"
  step "ResNet-8, full MNIST, 2 epochs, same settings: PyTorch CUDA, NCHW (its default, and ours), then channels_last"
  check resnet-torch 120 python3 perf/torch/lenet_mnist.py --net resnet8 --device cuda --epochs 2 --batch-size 128 --lr 0.1 --momentum 0.9 \
    --weight-decay 5e-4 --schedule cosine --augment-crop 2 --seed 1 --data "$data/mnist"
  check resnet-torch-channels-last 120 python3 perf/torch/lenet_mnist.py --net resnet8 --device cuda --epochs 2 --batch-size 128 --lr 0.1 \
    --momentum 0.9 --weight-decay 5e-4 --schedule cosine --augment-crop 2 --seed 1 --channels-last --data "$data/mnist"
fi

if wanted repro; then
  step "bitwise reproducibility: the same training twice on cuda"
  for run in 1 2; do
    check "reproducible-$run" 90 "$gpucnn" train --device cuda --epochs 2 --data "$data/mnist-sample" --out "$work/repeat-$run.safetensors" >/dev/null
  done
  sha256sum "$work"/repeat-*.safetensors
  if [ "$(sha256sum "$work"/repeat-*.safetensors | cut -d' ' -f1 | sort -u | wc -l)" = 1 ]; then echo "ok: identical models"; else echo "!! the two runs differ"; fail reproducible; fi
fi

if wanted fallback; then
  step "auto falls back to the CPU after a real CUDA fault (an illegal-address write at launch 300)"
  check fallback 120 env GPUCNN_INJECT_FAULT_AT_LAUNCH=300 "$gpucnn" train --device auto --epochs 1 --data "$data/mnist-sample" --out "$work/fallback.safetensors" --verbose 2>&1 | tee "$work/fallback.txt"
  grep -q "falling back to the CPU" "$work/fallback.txt" && grep -q "test accuracy" "$work/fallback.txt" && echo "ok: fell back and finished on the CPU" || { echo "!! no fall-back seen"; fail fallback-seen; }
fi

if wanted distributed; then
  step "data-parallel training on the GPU over Open MPI (carried in .gpu/mpi, unpacked to /tmp): 2 ranks sharing it against one process"
  if compgen -G ".gpu/mpi/*.deb" >/dev/null; then
    mpi=/tmp/gpucnn-mpi
    rm -rf "$mpi" && for package in .gpu/mpi/*.deb; do dpkg -x "$package" "$mpi"; done
    ln -sf orterun "$mpi/usr/bin/mpirun" # the tests call mpirun, which Debian's alternatives would have linked
    mpienv=(env OPAL_PREFIX="$mpi/usr" PATH="$mpi/usr/bin:$PATH"
      LD_LIBRARY_PATH="$mpi/usr/lib/x86_64-linux-gnu:$mpi/usr/lib/x86_64-linux-gnu/openmpi/lib:${LD_LIBRARY_PATH:-}")
    "${mpienv[@]}" mpirun --version | head -n 1
    ranks=(mpirun --allow-run-as-root --oversubscribe -np 2)
    args=(train --device "${DISTRIBUTED_DEVICE:-cuda}" --epochs 1 --batch-size 128 --seed 1 --data "$data/mnist-sample")
    rm -f "$work"/one.safetensors "$work"/two-*.safetensors
    echo "-- one process"
    check distributed-one 120 "$gpucnn" "${args[@]}" --out "$work/one.safetensors" | grep -E "^epoch"
    for run in 1 2; do
      echo "-- 2 ranks, run $run"
      check "distributed-two-$run" 180 "${mpienv[@]}" "${ranks[@]}" "$gpucnn" "${args[@]}" --distributed --verbose \
        --out "$work/two-$run.safetensors" 2>&1 | grep -E "^epoch|rank|error"
    done
    echo "-- 2 ranks against one process, then the two 2-rank runs against each other"
    python3 perf/gpu/compare_models.py "$work/one.safetensors" "$work/two-1.safetensors"
    python3 perf/gpu/compare_models.py "$work/two-1.safetensors" "$work/two-2.safetensors" | tee "$work/two-repeat.txt"
    grep -q "bitwise identical: True" "$work/two-repeat.txt" || { echo "!! the two 2-rank runs differ"; fail distributed-reproducible; }
    echo "-- the distributed test class (2 ranks on the CPU)"
    check distributed-tests 240 "${mpienv[@]}" "$bundle/GpuCnn.Tests" -class GpuCnn.Tests.DistributedTests -noColor > "$work/distributed-tests.txt" 2>&1
    grep -E "\[FAIL\]|Total:" "$work/distributed-tests.txt" | tail -n 20
  else
    echo "!! no Open MPI packages in .gpu/mpi (perf/gpu/publish.sh downloads them)"; fail distributed-no-mpi
  fi
fi

if wanted ptx; then
  step "ptxas: registers, spills and shared memory of the GEMM and convolution kernels for sm_90"
  GPUCNN_PTX_DUMP="$work/ptx" check ptx-dump 120 "$bundle/GpuCnn.Tests" -class GpuCnn.Tests.PtxCompilationTests -noColor > "$work/ptx.txt" 2>&1
  for kernel in GemmTiled8x8Kernels_Tiled_Identity_ ConvolutionImplicitGemmKernels_Forward_Identity_ ConvolutionImplicitGemmKernels_FilterGradient \
    ConvolutionImplicitGemmKernels_ForwardNarrow_Identity_ ConvolutionImplicitGemmKernels_ForwardNarrow16_Identity_ ConvolutionImplicitGemmKernels_FilterGradientNarrow \
    DepthwiseKernels_Correlate_Identity_ DepthwiseKernels_FilterGradient ConvolutionFewTapsKernels_FilterGradient \
    ConvolutionFewTapsKernels_FilterGradientBlocked; do
    echo "-- $kernel"; ptxas -arch=sm_90 -v "$work/ptx/$kernel.ptx" -o /dev/null 2>&1 | grep -E "registers|spill|error" | head -4
  done
  # The blocked few-taps kernel launches up to 512 threads a group without a launch bound: 65,536 registers / 512 = 128.
  used=$(ptxas -arch=sm_90 -v "$work/ptx/ConvolutionFewTapsKernels_FilterGradientBlocked.ptx" -o /dev/null 2>&1 | grep -oE "Used [0-9]+ registers" | grep -oE "[0-9]+" | head -1)
  if [ -z "$used" ]; then echo "!! no register count for FilterGradientBlocked"; fail ptx-blocked-registers
  elif [ "$used" -gt 128 ]; then echo "FilterGradientBlocked uses $used registers: more than a 512-thread group can have"; fail ptx-blocked-registers; fi
  # The optimizer updates round as PyTorch's CPU kernels do (Rounded.cs: fma.rn and mul.rn, which ptxas leaves as
  # written; the test suite's PyTorch fixtures check the bits): for the record, the FFMAs of the machine code (SGD's
  # PTX states 4 fused multiply-adds; Adam's division and square root are FFMA sequences too) and the stack frame (the
  # inline PTX's out-values go through a local depot, which ptxas should fold to 0 bytes).
  for kernel in OptimizerKernels_Sgd_FusedMultiplyAdd_ ForeachKernels_SgdList OptimizerKernels_Adam_FusedMultiplyAdd_ ForeachKernels_AdamList; do
    echo "-- $kernel"
    ptxas -arch=sm_90 -v "$work/ptx/$kernel.ptx" -o "$work/$kernel.cubin" 2>&1 | grep -E "stack frame|registers|error"
    if command -v cuobjdump >/dev/null; then
      echo "    $(cuobjdump -sass "$work/$kernel.cubin" | grep -c FFMA) FFMA"
    else
      echo "    cuobjdump not found (FFMA not counted)"
    fi
  done
fi

if wanted ncu-depthwise; then
  step "ncu: the depthwise kernels (conv-dw3x3-64-bwd's backward data and filter gradient, conv-dw3x3s2-128-fwd's forward; clock control off)"
  if command -v ncu >/dev/null; then
    sections=(--section SpeedOfLight --section LaunchStats --section Occupancy --section MemoryWorkloadAnalysis --section WarpStateStats)
    { check ncu-depthwise-bwd 90 ncu --clock-control none -k regex:"Correlate|FilterGradient" -c 2 "${sections[@]}" "$gpucnn" bench --device cuda --only conv-dw3x3-64-bwd
      check ncu-depthwise-s2 60 ncu --clock-control none -k regex:Correlate -c 1 "${sections[@]}" "$gpucnn" bench --device cuda --only conv-dw3x3s2-128-fwd
    } > "$out/ncu-depthwise.txt" 2>&1
    grep -E "==PROF==|Kernel|Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers Per|Theoretical Occupancy|Compute \(SM\)" "$out/ncu-depthwise.txt" | head -60
  else
    echo "ncu not found"; fail ncu-depthwise
  fi
fi

if wanted opencl; then
  step "OpenCL on this machine (the test suite found a device there): devices, then selftest --device opencl --verbose"
  clinfo -l 2>/dev/null | head -5
  check opencl-selftest 150 "$gpucnn" selftest --device opencl --verbose
fi

if wanted ncu; then
  step "ncu: the 8x8-blocked GEMM kernel at gemm-4096 (clock control off)"
  if command -v ncu >/dev/null; then
    check ncu 120 env GPUCNN_GEMM_ALGORITHM=Tiled8x8 ncu --clock-control none -k regex:Kernel_Tiled -c 1 --section SpeedOfLight --section LaunchStats --section Occupancy \
      --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section InstructionStats \
      "$gpucnn" bench --device cuda --only gemm-4096 > "$out/ncu-gemm.txt" 2>&1
    tail -n 80 "$out/ncu-gemm.txt"
    step "ncu: where a 3x3 convolution's time goes, kernel by kernel (conv3x3-64, forward and backward)"
    check ncu-conv 120 ncu --clock-control none -c 40 --section SpeedOfLight --print-summary per-kernel \
      "$gpucnn" bench --device cuda --only conv3x3-64 > "$out/ncu-conv.txt" 2>&1
    grep -A4 -E "^  Kernel_|Duration" "$out/ncu-conv.txt" | grep -E "Kernel_|Duration|Compute \(SM\)|Memory Throughput" | head -n 60
    step "ncu: the implicit-GEMM filter gradient of conv3x3-128-bwd (the row furthest from cuDNN)"
    check ncu-filter-gradient 120 ncu --clock-control none -k regex:FilterGradient -c 1 --section SpeedOfLight --section LaunchStats \
      --section Occupancy --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
      "$gpucnn" bench --device cuda --only conv3x3-128-bwd > "$out/ncu-filter-gradient.txt" 2>&1
    tail -n 100 "$out/ncu-filter-gradient.txt"
  else
    echo "ncu not found"
  fi
fi

if wanted ncu-resnet; then
  step "ncu: GPU time per kernel of ResNet-8 training steps (launches 3001-3900 of a training on the sample, batch 128; clock control off)"
  echo "-- without the profiler: 2 epochs on the sample, same settings (per-epoch wall time)"
  check resnet-sample 120 "$gpucnn" "${resnet8[@]}" --epochs 2 --data "$data/mnist-sample" --out "$work/resnet8-sample.safetensors" | grep -E "^epoch"
  if command -v ncu >/dev/null; then
    check ncu-resnet 240 ncu --clock-control none -s 3000 -c 900 --metrics gpu__time_duration.sum --csv --page raw \
      "$gpucnn" "${resnet8[@]}" --epochs 1 --data "$data/mnist-sample" --out "$work/resnet8-ncu.safetensors" > "$out/ncu-resnet.csv" 2> "$work/ncu-resnet.err"
    tail -n 3 "$work/ncu-resnet.err"
    python3 perf/gpu/ncu_kernel_times.py "$out/ncu-resnet.csv" SoftmaxCrossEntropyBatch | head -n 45
  else
    echo "ncu not found"
  fi
fi

step "done"
if [ ! -s "$failed" ]; then echo "all steps passed"; exit 0; fi
echo "failed steps: $(tr '\n' ' ' < "$failed")"; exit 1
