#!/usr/bin/env bash
# OpenCL (PoCL 6 on this CPU) next to cpu-simd and the ILGPU CPU accelerator, every op, with `kernels bench`.
# Rounds alternate the backends so that load changes hit all of them; each line is one JSON result,
# prefixed with the round and the load average. Usage: benchmarks/opencl/bench-pocl.sh [rounds] > out.jsonl
# Needs the CLI built: dotnet build src/Kernels.Cli -c Release
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
cli=(dotnet src/Kernels.Cli/bin/Release/net10.0/Kernels.Cli.dll bench --json --no-peer --repeat 5)
run() { # round, then bench arguments
  local round=$1; shift
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  "${cli[@]}" "$@" | while IFS= read -r line; do
    case "$line" in
      \{*) echo "{\"round\":$round,\"load1\":$load,${line#\{}" ;;
    esac
  done
}
for r in $(seq 1 "$rounds"); do
  for b in opencl cpu-simd cpu; do
    run "$r" --backend "$b" --op int8-gemm --m 256
    run "$r" --backend "$b" --op attention --batch 1 --heads 8 --seq 128 --head-dim 64 --causal
    run "$r" --backend "$b" --op sparse-gemm --format csr --sparsity 0.9 --m 256
  done
  for b in opencl cpu-simd; do
    run "$r" --backend "$b" --op int8-gemm --m 1024
    run "$r" --backend "$b" --op int8-gemm --m 1 --n 4096 --k 4096
    run "$r" --backend "$b" --op attention --batch 1 --heads 8 --seq 1024 --head-dim 64 --causal
    run "$r" --backend "$b" --op sparse-gemm --format csr --sparsity 0.9 --m 1024
  done
done
