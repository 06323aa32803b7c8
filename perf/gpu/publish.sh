#!/usr/bin/env bash
# Publishes what the lent GPU machines run (no .NET there, no network) into the git-ignored .gpu/ folder that the
# device tool carries (at most 64 MiB): the gpucnn CLI and the self-contained test executable (xunit v3), published
# into one folder so they share one .NET runtime, untrimmed (trimming breaks ILGPU's reflection), linux-x64, packed
# as .gpu/bundle.tar.xz; the data the check trains on in .gpu/data (the bundled sample and, from MNIST_DIR, default
# ../shared/data/mnist, the full MNIST, gzipped as it is); Open MPI's Debian packages in .gpu/mpi; the commit in
# .gpu/COMMIT. perf/gpu/check.sh unpacks it.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .gpu
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for project in src/Cli tests/GpuCnn.Tests; do
  dotnet publish "$project" -c Release -r linux-x64 --self-contained -p:PublishTrimmed=false -p:DebugType=none \
    -p:GenerateDocumentationFile=false -o "$stage" -nologo -v quiet
done
mkdir -p .gpu/data
# ONNX Runtime's native library (the ONNX export tests' only need; ~20 MiB) stays behind so the bundle fits the device
# tool's 64 MiB: those tests report themselves skipped there, with that reason.
rm -f "$stage"/libonnxruntime*.so "$stage"/onnxruntime*.dll # (the package also drops its Windows DLLs into a Linux publish)
tar -C "$stage" -cf - . | xz -T0 -6 > .gpu/bundle.tar.xz
cp -r data/mnist-sample .gpu/data/
mnist=${MNIST_DIR:-../shared/data/mnist}
if [ -f "$mnist/train-images-idx3-ubyte.gz" ]; then cp -r "$mnist" .gpu/data/mnist; else echo "warning: no full MNIST at $mnist" >&2; fi
# Open MPI and the libraries it loads, as Debian packages (the GPU machines have no MPI and no network): check.sh's
# `distributed` step unpacks them under /tmp. About 7 MB; skipped with a warning when apt cannot fetch them.
mkdir -p .gpu/mpi
(cd .gpu/mpi && apt-get download -qq openmpi-bin openmpi-common libopenmpi3 libpmix2 libevent-core-2.1-7 libevent-pthreads-2.1-7 \
  libhwloc15 libnuma1 libmunge2 libfabric1 libibverbs1 librdmacm1 libnl-3-200 libnl-route-3-200 libpsm2-2 libpsm-infinipath1 \
  libucx0 libatomic1 2>/dev/null) || { echo "warning: no Open MPI packages (apt-get download failed); check.sh's distributed step will say so" >&2; rm -rf .gpu/mpi; }
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src perf tests || echo ' + uncommitted changes')" > .gpu/COMMIT
size=$(du -sm .gpu | cut -f1)
echo "published .gpu/ (${size} MiB): bundle.tar.xz (gpucnn + GpuCnn.Tests, one shared runtime), data/, COMMIT"
ls -la .gpu
if [ "$size" -ge 60 ]; then
  echo "error: .gpu is ${size} MiB; it must stay under 60 MiB" >&2
  exit 1
fi
