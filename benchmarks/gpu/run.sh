#!/usr/bin/env bash
# Runs on the GPU machine (see prepare.sh): the whole test suite (CUDA and OpenCL tests run there for
# real: PoCL 5 has generic address space), the devices list, `kernels bench` on CUDA and OpenCL, and
# torch._int_mm on the same shapes. Everything lands in $OUT; a short table is printed last.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/kernels-gpu-out}
mkdir -p "$OUT" /tmp/app
tar xJf .gpu/app.tar.xz -C /tmp/app
export LD_LIBRARY_PATH=/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-} DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
app=/tmp/app
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia-smi.txt" 2>&1 || true

"$app/Kernels.Cli" devices --json > "$OUT/devices.jsonl" 2>&1
( timeout 240 "$app/Kernels.Tests" -xml "$OUT/tests.xml" > "$OUT/tests.log" 2>&1 ) || true
{
  for kernel in dp4a tiled; do
    timeout 120 "$app/Kernels.Cli" bench --backend cuda --kernel "$kernel" --m 8192 --repeat 7 --json
    timeout 60 "$app/Kernels.Cli" bench --backend cuda --kernel "$kernel" --m 4096 --repeat 7 --json
  done
  timeout 60 "$app/Kernels.Cli" bench --backend cuda --kernel reference --m 4096 --repeat 3 --json
  timeout 60 "$app/Kernels.Cli" bench --backend opencl --m 1024 --repeat 5 --json
} > "$OUT/bench.jsonl" 2> "$OUT/bench.err"
( timeout 120 python3 benchmarks/gpu/int_mm_peer.py 4096 8192 > "$OUT/peer.jsonl" 2> "$OUT/peer.err" ) || true

echo "== devices"; cat "$OUT/devices.jsonl"
echo "== tests"; grep -a "Total:" "$OUT/tests.log" | tail -1
echo "== bench (ours)"; cat "$OUT/bench.jsonl"; tail -3 "$OUT/bench.err"
echo "== peer"; cat "$OUT/peer.jsonl"; tail -3 "$OUT/peer.err"
