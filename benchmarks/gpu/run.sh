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

# The generated tensor-core PTX and ptxas -v on it (registers, spills, shared memory per kernel).
"$app/Kernels.Cli" ptx --out "$OUT/ptx" > /dev/null 2>&1
if [ -f .gpu/ptxas.xz ]; then xz -dc .gpu/ptxas.xz > /tmp/ptxas && chmod +x /tmp/ptxas && export KERNELS_PTXAS=/tmp/ptxas; fi
ptxas=${KERNELS_PTXAS:-$(command -v ptxas || true)}
if [ -n "$ptxas" ]; then
  for arch in sm_80 sm_90; do "$ptxas" -v -arch=$arch "$OUT/ptx/kernels_tensorcore.ptx" -o /tmp/tc.cubin > "$OUT/ptxas-$arch.txt" 2>&1; done
  for arch in sm_80 sm_90; do "$ptxas" -v -arch=$arch "$OUT/ptx/kernels_sparse_tensorcore.ptx" -o /tmp/sp.cubin > "$OUT/ptxas-sparse-$arch.txt" 2>&1; done
fi
# The mma.sp::ordered_metadata module needs PTX ISA 8.5: only the machine's own (CUDA 13) ptxas knows it; keep its SASS to compare with plain mma.sp.
if [ -x /usr/local/cuda/bin/ptxas ]; then
  /usr/local/cuda/bin/ptxas -v -arch=sm_90 "$OUT/ptx/kernels_sparse_tensorcore_ordered.ptx" -o /tmp/spo.cubin > "$OUT/ptxas-sparse-ordered-sm_90.txt" 2>&1
  /usr/local/cuda/bin/ptxas -arch=sm_90 "$OUT/ptx/kernels_sparse_tensorcore.ptx" -o /tmp/sp90.cubin > /dev/null 2>&1
  for f in spo sp90; do [ -x /usr/local/cuda/bin/cuobjdump ] && /usr/local/cuda/bin/cuobjdump -sass /tmp/$f.cubin 2>/dev/null | grep -m 8 -i "sp\|HMMA\|IMMA" > "$OUT/sass-$f.txt"; done
fi

"$app/Kernels.Cli" devices --json > "$OUT/devices.jsonl" 2>&1
( timeout 240 "$app/Kernels.Tests" -xml "$OUT/tests.xml" > "$OUT/tests.log" 2>&1 ) || true
{
  for size in 8192 4096 2048; do
    timeout 120 "$app/Kernels.Cli" bench --backend cuda --kernel tensorcore --m $size --repeat 9 --json
  done
  # Decode shapes (the weight-streaming kernel, m <= 32): weight bytes n·k per median_ms = GB/s.
  for m in 1 8 16 32; do
    timeout 60 "$app/Kernels.Cli" bench --backend cuda --kernel tensorcore --m $m --n 8192 --k 8192 --repeat 21 --json
  done
  timeout 60 "$app/Kernels.Cli" bench --backend cuda --kernel tensorcore --m 1000 --n 1001 --k 999 --repeat 5 --json
  for kernel in dp4a tiled; do
    timeout 120 "$app/Kernels.Cli" bench --backend cuda --kernel "$kernel" --m 8192 --repeat 7 --json
    timeout 60 "$app/Kernels.Cli" bench --backend cuda --kernel "$kernel" --m 4096 --repeat 7 --json
  done
  timeout 60 "$app/Kernels.Cli" bench --backend cuda --kernel reference --m 4096 --repeat 3 --json
  timeout 60 "$app/Kernels.Cli" bench --backend opencl --m 1024 --repeat 5 --json
  # Issue 4's goal: 2:4 on the sparse tensor cores (mma.sp) faster than the dense int8 GEMM of the same shape, same run.
  timeout 120 "$app/Kernels.Cli" bench --op sparse-gemm --backend cuda --format 2:4 --m 4096 --n 8192 --k 8192 --json
  timeout 120 "$app/Kernels.Cli" bench --op sparse-gemm --backend cuda --format 2:4 --m 16 --n 8192 --k 8192 --json
  # CSR 90 %: the tiled int8 kernel (default) and the one-thread-per-output kernel, against cuSPARSE fp32 below.
  timeout 120 "$app/Kernels.Cli" bench --op sparse-gemm --backend cuda --format csr --sparsity 0.9 --m 4096 --n 8192 --k 8192 --sparse-kernel tiled --json
  timeout 120 "$app/Kernels.Cli" bench --op sparse-gemm --backend cuda --format csr --sparsity 0.9 --m 4096 --n 8192 --k 8192 --sparse-kernel general --repeat 3 --json
} > "$OUT/bench.jsonl" 2> "$OUT/bench.err"
# Peers in the same visit: cuSPARSE CSR fp32 at 90% (8192×8192 @ 8192×4096), torch 2:4 int8, cuBLASLt int8.
( timeout 300 python3 benchmarks/gpu/peers_gpu.py "$OUT/peers.json" > "$OUT/peers.txt" 2>&1 ) || true
( timeout 120 python3 benchmarks/gpu/int_mm_peer.py 2048 4096 8192 1x8192x8192 8x8192x8192 17x8192x8192 32x8192x8192 > "$OUT/peer.jsonl" 2> "$OUT/peer.err" ) || true

echo "== ptxas"; grep -h "Used\|spill" "$OUT"/ptxas-sm_90.txt 2>/dev/null | paste - - | head -20
echo "== devices"; cat "$OUT/devices.jsonl"
echo "== tests"; grep -a "Total:" "$OUT/tests.log" | tail -1
echo "== bench (ours)"; cat "$OUT/bench.jsonl"; tail -3 "$OUT/bench.err"
echo "== peer"; cat "$OUT/peer.jsonl"; tail -3 "$OUT/peer.err"
echo "== sparse ptxas"; grep -h "Used\|spill" "$OUT"/ptxas-sparse-sm_90.txt 2>/dev/null | paste - - | head -12
echo "== peers (sparse)"; grep -a "csr_spmm_fp32_90\|semi24\|dense_fp32" "$OUT/peers.txt"
