# Copied from the team's shared/device/peers_gpu.py (our own script), run by run.sh.
# Peer figures on the GPU machine, for side-by-side comparison (usage: python3 peers_gpu.py OUT.json): cuBLASLt int8 GEMM, bf16 GEMM, SDPA attention, cuSPARSE CSR SpMM, 2:4 sparse, NVML energy.
import time, torch, json, sys
import torch.nn.functional as F
res = {}
def bench(fn, reps=20, warm=5):
    for _ in range(warm): fn()
    torch.cuda.synchronize()
    s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(reps):
        s.record(); fn(); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e))
    ts.sort(); return ts[len(ts)//2]
try:
    import pynvml; pynvml.nvmlInit(); h = pynvml.nvmlDeviceGetHandleByIndex(0)
    energy = lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0
except Exception as ex:
    print("pynvml", ex); energy = None
print(torch.__version__, torch.cuda.get_device_name(0))
for n in (4096, 8192, 16384):
    a = torch.randint(-128, 127, (n, n), dtype=torch.int8, device='cuda')
    b = torch.randint(-128, 127, (n, n), dtype=torch.int8, device='cuda')
    ms = bench(lambda: torch._int_mm(a, b.t()))
    res[f'int8_mm_{n}_TOPS'] = 2*n**3/ms/1e9
    if energy and n == 8192:
        # the NVML counter updates every ~20-100 ms: measure over a window of at least 5 s
        reps = max(1, int(5000 / ms)); torch.cuda.synchronize(); e0 = energy(); t0 = time.time()
        for _ in range(reps): torch._int_mm(a, b.t())
        torch.cuda.synchronize(); e1 = energy(); t1 = time.time()
        res['int8_mm_8192_J_per_TOP'] = (e1-e0) / (2*n**3*reps/1e12); res['int8_mm_8192_avg_W'] = (e1-e0)/(t1-t0)
        res['int8_mm_8192_energy_window_s'] = t1-t0
    ah = a.to(torch.bfloat16); bh = b.to(torch.bfloat16)
    ms = bench(lambda: ah @ bh.t()); res[f'bf16_mm_{n}_TFLOPS'] = 2*n**3/ms/1e9
    del a, b, ah, bh
# decode-shaped int8 GEMM (skinny M)
for m in (1, 16, 128):
    a = torch.randint(-128, 127, (max(m,17), 8192), dtype=torch.int8, device='cuda')  # _int_mm needs m>16
    b = torch.randint(-128, 127, (8192, 8192), dtype=torch.int8, device='cuda')
    ms = bench(lambda: torch._int_mm(a, b.t())); res[f'int8_mm_m{max(m,17)}_k8192_n8192_ms'] = ms
    res[f'int8_mm_m{max(m,17)}_GBps'] = (8192*8192 + a.numel())/ms/1e6
# attention
for (B,H,S,D,causal) in ((8,32,4096,128,False),(8,32,4096,128,True),(1,32,16384,128,True)):
    q = torch.randn(B,H,S,D, dtype=torch.float16, device='cuda'); k = torch.randn_like(q); v = torch.randn_like(q)
    ms = bench(lambda: F.scaled_dot_product_attention(q,k,v,is_causal=causal), reps=10)
    fl = 4*B*H*S*S*D * (0.5 if causal else 1)
    res[f'sdpa_fp16_B{B}H{H}S{S}D{D}{"c" if causal else ""}_TFLOPS'] = fl/ms/1e9
    qf, kf, vf = q.float(), k.float(), v.float()
    if S <= 4096:
        ms = bench(lambda: F.scaled_dot_product_attention(qf,kf,vf,is_causal=causal), reps=5)
        res[f'sdpa_fp32_B{B}H{H}S{S}D{D}{"c" if causal else ""}_TFLOPS'] = fl/ms/1e9
    del q,k,v,qf,kf,vf
# decode attention: 1 query vs long KV cache
B,H,S,D = 32, 32, 8192, 128
q = torch.randn(B,H,1,D, dtype=torch.float16, device='cuda'); k = torch.randn(B,H,S,D, dtype=torch.float16, device='cuda'); v = torch.randn_like(k)
ms = bench(lambda: F.scaled_dot_product_attention(q,k,v))
res['sdpa_decode_fp16_B32H32S8192_GBps'] = 2*k.numel()*2/ms/1e6
del q,k,v
# sparse: CSR SpMM at 90% and 50% unstructured sparsity, fp32 and fp16, vs dense
n = 8192
x = torch.randn(n, 4096, device='cuda')
for sp in (0.5, 0.9, 0.99):
    w = torch.randn(n, n, device='cuda'); w[torch.rand_like(w) < sp] = 0
    ws = w.to_sparse_csr()
    ms = bench(lambda: ws @ x, reps=10); res[f'csr_spmm_fp32_{int(sp*100)}pct_ms'] = ms
    res[f'csr_spmm_fp32_{int(sp*100)}pct_effGFLOPS'] = 2*n*n*4096*(1-sp)/ms/1e6
    del w, ws
wd = torch.randn(n, n, device='cuda'); ms = bench(lambda: wd @ x, reps=10); res['dense_fp32_8192x8192x4096_ms'] = ms
torch.backends.cuda.matmul.allow_tf32 = False
ms = bench(lambda: wd @ x, reps=10); res['dense_fp32_notf32_8192x8192x4096_ms'] = ms
del wd, x
# 2:4 semi-structured
try:
    from torch.sparse import to_sparse_semi_structured
    for dt in (torch.float16, torch.int8):
        n = 8192
        if dt == torch.int8:
            w = torch.randint(-128,127,(n,n),dtype=dt,device='cuda'); x = torch.randint(-128,127,(n,n),dtype=dt,device='cuda')
        else:
            w = torch.randn(n,n,dtype=dt,device='cuda'); x = torch.randn(n,n,dtype=dt,device='cuda')
        mask = torch.tensor([0,0,1,1], dtype=torch.bool, device='cuda').tile((n, n//4))
        w = w * mask
        ws = to_sparse_semi_structured(w)
        if dt == torch.int8:
            ms = bench(lambda: torch.mm(ws, x.t()), reps=10); msd = bench(lambda: torch._int_mm(w, x.t()), reps=10)
        else:
            ms = bench(lambda: torch.mm(ws, x), reps=10); msd = bench(lambda: torch.mm(w, x), reps=10)
        res[f'semi24_{str(dt)[6:]}_8192_ms'] = ms; res[f'dense_{str(dt)[6:]}_8192_ms'] = msd
        res[f'semi24_{str(dt)[6:]}_speedup'] = msd/ms
except Exception as ex:
    print("2:4 failed", repr(ex)[:300])
# bandwidth
x = torch.empty(2**30, dtype=torch.uint8, device='cuda'); y = torch.empty_like(x)
ms = bench(lambda: y.copy_(x)); res['copy_GBps'] = 2*2**30/ms/1e6
for k,v in res.items(): print(f"{k}: {v:.4g}")
json.dump(res, open(sys.argv[1] if len(sys.argv)>1 else '/tmp/baselines.json','w'), indent=1)
