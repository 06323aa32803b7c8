#!/usr/bin/env bash
# Publishes the gpucnn CLI for the lent GPU machines (no .NET there, no network): self-contained, single file,
# untrimmed (trimming breaks ILGPU's reflection), linux-x64, into the git-ignored .gpu/ folder that the device
# tool carries. Prints the size; the device tool carries at most 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .gpu
dotnet publish src/Cli -c Release -r linux-x64 --self-contained \
  -p:PublishSingleFile=true -p:EnableCompressionInSingleFile=true -p:PublishTrimmed=false \
  -p:DebugType=none -p:GenerateDocumentationFile=false -o .gpu -nologo -v quiet
size=$(du -sm .gpu | cut -f1)
echo "published .gpu/gpucnn (${size} MiB in .gpu/):"
ls -la .gpu
if [ "$size" -ge 60 ]; then
  echo "error: .gpu is ${size} MiB; it must stay under 60 MiB" >&2
  exit 1
fi
