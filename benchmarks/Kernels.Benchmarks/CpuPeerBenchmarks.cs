using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Filters;
using Kernels.Peers;

namespace Kernels.Benchmarks;

/// <summary>
/// The SIMD CPU int8 GEMM (<c>C[m,n] = Σ_k A[m,k]·B[n,k]</c>) against its CPU peers on the same random data:
/// ONNX Runtime (u8s8 <c>MatMulInteger</c>, the weights a constant initializer prepacked once when its session
/// is created) and oneDNN's <c>dnnl_gemm_s8s8s32</c> (Debian's libdnnl through P/Invoke; its BLAS-like API
/// repacks the weights in every call). Ours is the baseline with the weights uploaded once (packed on the
/// first call and reused), so the Ratio column is each peer's time over ours: above 1 means ours is faster.
/// Shapes: the cubes 1024³ and 2048³ and the decode shapes m = 1 and 8 at n = k = 4096. Without libdnnl the
/// oneDNN cases are left out and the reason is printed.
/// </summary>
[Config(typeof(PeerFilter))]
public class CpuPeerBenchmarks : IDisposable
{
    private KernelSession? _session;
    private DeviceBuffer<sbyte>? _a;
    private DeviceBuffer<sbyte>? _b;
    private DeviceBuffer<int>? _c;
    private OrtInt8Gemm? _ort;
    private sbyte[] _hostA = [];
    private sbyte[] _hostB = [];
    private int[] _hostC = [];
    private int _m, _n, _k;

    /// <summary>m×n×k.</summary>
    public static IEnumerable<string> Shapes() => ["1024x1024x1024", "2048x2048x2048", "1x4096x4096", "8x4096x4096"];

    [ParamsSource(nameof(Shapes))]
    public string Shape { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        int[] mnk = Shape.Split('x').Select(int.Parse).ToArray();
        (_m, _n, _k) = (mnk[0], mnk[1], mnk[2]);
        _session = KernelSession.Create(Backend.CpuSimd);
        var random = new Random(42);
        var a = new byte[_m * _k];
        var b = new byte[_n * _k];
        random.NextBytes(a);
        random.NextBytes(b);
        _hostA = (sbyte[])(Array)a;
        _hostB = (sbyte[])(Array)b;
        _hostC = new int[_m * _n];
        _a = _session.Upload<sbyte>(_hostA);
        _b = _session.Upload<sbyte>(_hostB);
        _c = _session.Allocate<int>((long)_m * _n);
        if (OnnxRuntimePeer.IsAvailable(out _))
            _ort = new OrtInt8Gemm(_hostB, _n, _k);
    }

    [Benchmark(Baseline = true, Description = "Kernels cpu-simd, weights uploaded once")]
    public void KernelsGemm()
    {
        _session!.Int8Gemm(_a!, _b!, _c!, _m, _n, _k, GemmKernel.Simd);
        _session.Synchronize();
    }

    [Benchmark(Description = "ONNX Runtime MatMulInteger u8s8, weights prepacked")]
    public void OnnxRuntimeGemm()
    {
        if (_ort is null)
        {
            OnnxRuntimePeer.IsAvailable(out string reason);
            throw new InvalidOperationException($"ONNX Runtime is not available: {reason}");
        }
        _ort.Run(_hostA, _hostC, _m);
    }

    [Benchmark(Description = "oneDNN dnnl_gemm_s8s8s32, repacks per call")]
    public void OneDnnGemm() => OneDnn.GemmS8S8S32(_hostA, _hostB, _hostC, _m, _n, _k);

    [GlobalCleanup]
    public void Dispose()
    {
        _a?.Dispose();
        _b?.Dispose();
        _c?.Dispose();
        _ort?.Dispose();
        _ort = null;
        _session?.Dispose();
        _session = null;
        GC.SuppressFinalize(this);
    }
}

/// <summary>
/// Float32 attention B1 H8 S1024, D64 and D128, causal and not: ours (cpu-simd, device buffers, the baseline)
/// against ONNX Runtime's com.microsoft <c>MultiHeadAttention</c> on 3-D inputs (each library's own layout,
/// converted once in setup). The Ratio column is ORT's time over ours: above 1 means ours is faster.
/// </summary>
public class AttentionPeerBenchmarks : IDisposable
{
    private const int Batch = 1, Heads = 8, Seq = 1024;

    private KernelSession? _session;
    private DeviceBuffer<float>? _q, _k, _v, _out;
    private OrtAttention? _ort;
    private float[] _ortQ = [], _ortK = [], _ortV = [], _ortOut = [];
    private AttentionShape _shape;

    [Params(64, 128)]
    public int HeadDim { get; set; }

    [Params(false, true)]
    public bool Causal { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _shape = new AttentionShape(Batch, Heads, Heads, Seq, Seq, HeadDim, Causal);
        _session = KernelSession.Create(Backend.CpuSimd);
        var random = new Random(42);
        float[] q = Floats(random, _shape.QueryElements), k = Floats(random, _shape.KeyElements), v = Floats(random, _shape.KeyElements);
        _q = _session.Upload<float>(q);
        _k = _session.Upload<float>(k);
        _v = _session.Upload<float>(v);
        _out = _session.Allocate<float>(_shape.QueryElements);
        if (OnnxRuntimePeer.IsAvailable(out _))
        {
            _ort = new OrtAttention(Batch, Heads, Seq, Seq, HeadDim, Causal);
            _ortQ = OrtAttention.ToSequenceMajor(q, Batch, Heads, Seq, HeadDim);
            _ortK = OrtAttention.ToSequenceMajor(k, Batch, Heads, Seq, HeadDim);
            _ortV = OrtAttention.ToSequenceMajor(v, Batch, Heads, Seq, HeadDim);
            _ortOut = new float[_ort.QueryElements];
        }
    }

    [Benchmark(Baseline = true, Description = "Kernels cpu-simd")]
    public void KernelsAttention()
    {
        _session!.Attention(_q!, _k!, _v!, _out!, _shape);
        _session.Synchronize();
    }

    [Benchmark(Description = "ONNX Runtime MultiHeadAttention (3-D)")]
    public void OnnxRuntimeAttention()
    {
        if (_ort is null)
        {
            OnnxRuntimePeer.IsAvailable(out string reason);
            throw new InvalidOperationException($"ONNX Runtime is not available: {reason}");
        }
        _ort.Run(_ortQ, _ortK, _ortV, _ortOut);
    }

    [GlobalCleanup]
    public void Dispose()
    {
        _q?.Dispose();
        _k?.Dispose();
        _v?.Dispose();
        _out?.Dispose();
        _ort?.Dispose();
        _ort = null;
        _session?.Dispose();
        _session = null;
        GC.SuppressFinalize(this);
    }

    private static float[] Floats(Random random, long length)
    {
        var data = new float[length];
        for (long i = 0; i < length; i++)
            data[i] = (float)(random.NextDouble() * 2 - 1);
        return data;
    }
}

/// <summary>Leaves the oneDNN cases out, printing why, when libdnnl cannot be loaded.</summary>
public sealed class PeerFilter : ManualConfig
{
    private static readonly Lazy<bool> OneDnnAvailable = new(() =>
    {
        bool available = OneDnn.IsAvailable(out string reason);
        if (!available)
            Console.WriteLine($"CpuPeerBenchmarks: oneDNN cases skipped, oneDNN is not available: {reason}");
        return available;
    });

    public PeerFilter()
    {
        bool oneDnn = OneDnnAvailable.Value;
        AddFilter(new SimpleFilter(b => oneDnn || b.Descriptor.WorkloadMethod.Name != nameof(CpuPeerBenchmarks.OneDnnGemm)));
    }
}
