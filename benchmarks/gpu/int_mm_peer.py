# The peer of `kernels bench` on the GPU machine: torch._int_mm (cuBLASLt int8 GEMM) on random int8
# data, C = A·Bᵀ as Kernels computes it, median of CUDA-event timings. Prints one JSON object a size.
# Usage: python3 int_mm_peer.py 4096 8192 8x8192x8192   (N for N×N×N, or MxNxK; decode shapes report GB/s of B)
import json, sys, torch

def median_ms(fn, reps=20, warm=5):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(); fn(); end.record(); torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]

for arg in sys.argv[1:] or ["8192"]:
    m, n, k = [int(x) for x in arg.split("x")] if "x" in arg else [int(arg)] * 3
    a = torch.randint(-128, 128, (m, k), dtype=torch.int8, device="cuda")
    b = torch.randint(-128, 128, (n, k), dtype=torch.int8, device="cuda")
    try:
        ms = median_ms(lambda: torch._int_mm(a, b.t()))
    except RuntimeError as e:  # torch._int_mm refuses some small m
        print(json.dumps({"op": "int8-gemm", "peer": "torch._int_mm", "m": m, "n": n, "k": k, "error": str(e)[:200]}))
        continue
    print(json.dumps({"op": "int8-gemm", "peer": "torch._int_mm", "torch": torch.__version__,
                      "device": torch.cuda.get_device_name(0), "m": m, "n": n, "k": k,
                      "median_ms": ms, "tops": 2 * m * n * k / ms / 1e9, "weight_gbps": n * k / ms / 1e6}))
    del a, b
