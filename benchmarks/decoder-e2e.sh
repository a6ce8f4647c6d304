#!/bin/bash
# End-to-end decoder runs (ours against llama.cpp on the same weights) for docs/perf/<date>-decoder-e2e/.
# Usage: benchmarks/decoder-e2e.sh OUT_DIR [OMP_WAIT_POLICY]   (build first: dotnet build src/Kernels.Cli -c Release)
set -eu
cd "$(dirname "$0")/.."
OUT=$1
POLICY=${2:-}
mkdir -p "$OUT"
CLI="dotnet src/Kernels.Cli/bin/Release/net10.0/Kernels.Cli.dll"
for spec in "llama-3.2-1b 16 512" "llama-3.1-8b 4 512"; do
  set -- $spec
  name=$1-$2L-ctx$3${POLICY:+-omp-$POLICY}
  args="cost --backend cpu-simd --model $1 --layers $2 --run --context $3 --decode-steps 32 --blocks 3 --regions de,cn-industrial"
  { echo "# $(date -u +%FT%TZ) $(uptime)"; echo "# ${POLICY:+OMP_WAIT_POLICY=$POLICY }kernels $args"; } > "$OUT/$name.txt"
  if [ -n "$POLICY" ]; then export OMP_WAIT_POLICY=$POLICY; fi
  $CLI $args 2> "$OUT/$name.stderr.txt" >> "$OUT/$name.txt"
  echo "# finished $(date -u +%FT%TZ) $(uptime)" >> "$OUT/$name.txt"
done
