#!/bin/bash
# kernels bench on cpu-simd, ours vs ONNX Runtime (and oneDNN where installed) in the same process: int8 GEMM
# 1024³, 2048³, m = 1 and 8 at n = k = 4096 and attention B1 H8 S1024 D64/D128 causal and not; 3 processes
# per shape (rounds over all shapes; ROUNDS=n for more); /proc/loadavg recorded before each run. The decode shapes
# take 60 calls per side (4 blocks of 20 after their first calls): B (16 MiB) comes back into the cache over the
# first calls of a block, so blocks of 5 measure mostly that. Build first:
#   dotnet build src/Kernels.Cli -c Release
cd "$(dirname "$0")/.."
CLI=src/Kernels.Cli/bin/Release/net10.0/Kernels.Cli.dll
OUT=${OUT:-cpu-peers-ort.jsonl}
: > "$OUT"; : > "${OUT%.jsonl}.load.txt"
for rep in $(seq 1 ${ROUNDS:-3}); do
  for g in "1024 1024 1024 15" "2048 2048 2048 15" "1 4096 4096 60" "8 4096 4096 60"; do
    set -- $g
    echo "LOAD $(cat /proc/loadavg) gemm $1x$2x$3 rep $rep" >> ${OUT%.jsonl}.load.txt
    dotnet $CLI bench --backend cpu-simd --m $1 --n $2 --k $3 --repeat $4 --json 2>/dev/null | sed "s/^{/{\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"rep\":$rep,/" >> "$OUT"
    sleep 2
  done
  for d in 64 128; do for c in "" "--causal"; do
    echo "LOAD $(cat /proc/loadavg) attention D$d $c rep $rep" >> ${OUT%.jsonl}.load.txt
    dotnet $CLI bench --backend cpu-simd --op attention --batch 1 --heads 8 --seq 1024 --head-dim $d $c --repeat 15 --json 2>/dev/null | sed "s/^{/{\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"rep\":$rep,/" >> "$OUT"
    sleep 2
  done; done
done
echo DONE >> ${OUT%.jsonl}.load.txt
