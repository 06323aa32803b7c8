#!/usr/bin/env bash
# The CPU backend's GEMM against OpenBLAS's sgemm in one process, call for call (perf/GpuCnn.Perf/GemmVersusBlas.cs):
# the median of each pair's time ratio, so that a shared machine's drift hits both sides alike.
#   perf/cpu/gemm_vs_blas.sh [--lib PATH] [--pairs N] [SIZE …]        (default sizes 1024 and 4096)
#   DOTNET_EnableAVX512=0 perf/cpu/gemm_vs_blas.sh                      (the AVX2 path, against OpenBLAS's AVX2 kernel)
# OpenBLAS gets the kernel of the path being measured: Debian's 0.3.21 does not know newer processors and would run
# its SSE3 kernel (docs/benchmarks.md, fourteenth session); its idle threads sleep at once instead of spinning on the
# cores our team needs next.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The path's kernel replaces any OPENBLAS_CORETYPE inherited from the environment (these machines preset Haswell,
# which would hold OpenBLAS to AVX2 against our AVX-512 path); GEMM_VS_BLAS_CORETYPE names another on purpose.
if grep -q -m1 avx512f /proc/cpuinfo && [[ "${DOTNET_EnableAVX512:-1}" != 0 ]]; then path_kernel=SkylakeX; else path_kernel=Haswell; fi
if [[ -n "${OPENBLAS_CORETYPE:-}" && "$OPENBLAS_CORETYPE" != "${GEMM_VS_BLAS_CORETYPE:-$path_kernel}" ]]; then
  echo "note: OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE from the environment replaced by ${GEMM_VS_BLAS_CORETYPE:-$path_kernel}" >&2
fi
export OPENBLAS_CORETYPE=${GEMM_VS_BLAS_CORETYPE:-$path_kernel}
export OPENBLAS_THREAD_TIMEOUT=4
dotnet build perf/GpuCnn.Perf -c Release -v quiet -nologo > /dev/null
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' + changes')"
exec perf/GpuCnn.Perf/bin/Release/net10.0/GpuCnn.Perf gemm-vs-blas "$@"
