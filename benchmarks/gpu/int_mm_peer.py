# The peer of `kernels bench` on the GPU machine: torch._int_mm (cuBLASLt int8 GEMM) on random int8
# data, C = A·Bᵀ as Kernels computes it, median of CUDA-event timings. Prints one JSON object a size.
# Usage: python3 int_mm_peer.py 4096 8192
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

for n in [int(x) for x in sys.argv[1:]] or [8192]:
    a = torch.randint(-128, 128, (n, n), dtype=torch.int8, device="cuda")
    b = torch.randint(-128, 128, (n, n), dtype=torch.int8, device="cuda")
    ms = median_ms(lambda: torch._int_mm(a, b.t()))
    print(json.dumps({"op": "int8-gemm", "peer": "torch._int_mm", "torch": torch.__version__,
                      "device": torch.cuda.get_device_name(0), "m": n, "n": n, "k": n,
                      "median_ms": ms, "tops": 2 * n**3 / ms / 1e9}))
    del a, b
