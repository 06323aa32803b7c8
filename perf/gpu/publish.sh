#!/usr/bin/env bash
# Publishes what the lent GPU machines run (no .NET there, no network) into the git-ignored .gpu/ folder that the
# device tool carries (at most 64 MiB): the gpucnn CLI and the self-contained test executable (xunit v3), published
# into one folder so they share one .NET runtime, untrimmed (trimming breaks ILGPU's reflection), linux-x64, packed
# as .gpu/bundle.tar.xz; the data the check trains on in .gpu/data (the bundled sample and, from MNIST_DIR, default
# ../shared/data/mnist, the full MNIST, gzipped as it is); the commit in .gpu/COMMIT. perf/gpu/check.sh unpacks it.
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
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src perf tests || echo ' + uncommitted changes')" > .gpu/COMMIT
size=$(du -sm .gpu | cut -f1)
echo "published .gpu/ (${size} MiB): bundle.tar.xz (gpucnn + GpuCnn.Tests, one shared runtime), data/, COMMIT"
ls -la .gpu
if [ "$size" -ge 60 ]; then
  echo "error: .gpu is ${size} MiB; it must stay under 60 MiB" >&2
  exit 1
fi
