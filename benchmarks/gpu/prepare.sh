#!/usr/bin/env bash
# Builds, on the development machine, what benchmarks/gpu/run.sh needs on the GPU machine (which has
# no .NET): the test project and the `kernels` CLI published self-contained into one folder, packed
# as .gpu/app.tar.xz (.gpu/ is git-ignored). Then, with the device tool:
#   run(command="bash benchmarks/gpu/run.sh", carry=[".gpu"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .gpu && mkdir -p .gpu/app   # only what run.sh needs: carry has a 64 MiB limit
common=(-c Release -r linux-x64 --self-contained true -p:InvariantGlobalization=true -o .gpu/app)
dotnet publish tests/Kernels.Tests "${common[@]}" >/dev/null
dotnet publish src/Kernels.Cli "${common[@]}" >/dev/null
rm -f .gpu/app.tar.xz
tar cf - -C .gpu/app . | xz -T2 -3 > .gpu/app.tar.xz
rm -rf .gpu/app
# ptxas (CUDA 11.8, from Debian's nvidia-cuda-toolkit) for `ptxas -v` of the generated PTX there (~6 MB).
ptxas=${KERNELS_PTXAS:-$(command -v ptxas || echo /opt/cuda-ptxas/usr/bin/ptxas)}
rm -f .gpu/ptxas.xz
if [ -x "$ptxas" ]; then xz -T2 -3 -c "$ptxas" > .gpu/ptxas.xz; fi
ls -la .gpu/app.tar.xz .gpu/ptxas.xz 2>/dev/null || true
