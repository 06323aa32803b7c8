#!/usr/bin/env bash
# Publishes the gpucnn CLI for the lent GPU machines (no .NET there, no network): self-contained, single file,
# untrimmed (trimming breaks ILGPU's reflection), linux-x64, into the git-ignored .gpu/ folder that the device
# tool carries, with the data the check trains on (.gpu/data: the bundled sample and, from MNIST_DIR, default
# ../shared/data/mnist, the full MNIST, gzipped as it is) and the commit in .gpu/COMMIT. Prints the size; the
# device tool carries at most 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .gpu
dotnet publish src/Cli -c Release -r linux-x64 --self-contained \
  -p:PublishSingleFile=true -p:EnableCompressionInSingleFile=true -p:PublishTrimmed=false \
  -p:DebugType=none -p:GenerateDocumentationFile=false -o .gpu -nologo -v quiet
mkdir -p .gpu/data
cp -r data/mnist-sample .gpu/data/
mnist=${MNIST_DIR:-../shared/data/mnist}
if [ -f "$mnist/train-images-idx3-ubyte.gz" ]; then cp -r "$mnist" .gpu/data/mnist; else echo "warning: no full MNIST at $mnist" >&2; fi
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src perf || echo ' + uncommitted changes')" > .gpu/COMMIT
size=$(du -sm .gpu | cut -f1)
echo "published .gpu/gpucnn (${size} MiB in .gpu/):"
ls -la .gpu
if [ "$size" -ge 60 ]; then
  echo "error: .gpu is ${size} MiB; it must stay under 60 MiB" >&2
  exit 1
fi
