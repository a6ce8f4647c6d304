using BenchmarkDotNet.Attributes;
using Kernels.Backends.Simd;

namespace Kernels.Benchmarks;

/// <summary>
/// Decode-sized sparse int8 products through the session API on cpu-simd (n = k = 4096, CSR, weights
/// resident): the dense int8 GEMM on the pruned weights (packed once, the baseline), the sparse product
/// (8- and 16-token panels with <c>vpermb</c> where the CPU has AVX-512 VBMI), and the same with the
/// four-token gathers forced. The figures of docs/perf/cpu-sparse.md (small m).
/// Run: <c>dotnet run -c Release --project benchmarks/Kernels.Benchmarks -- --filter '*SparseDecode*'</c>.
/// </summary>
public class SparseDecodeBenchmarks : IDisposable
{
    private const int Size = 4096;
    private KernelSession? _session;
    private DeviceSparseMatrix<sbyte>? _w;
    private DeviceBuffer<sbyte>? _dense;
    private DeviceBuffer<sbyte>? _x;
    private DeviceBuffer<int>? _y;

    [Params(1, 4, 8, 16)]
    public int Tokens { get; set; }

    [Params(0.9, 0.95)]
    public double Sparsity { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(1);
        _session = KernelSession.Create(Backend.CpuSimd);
        sbyte[] weights = SparseAdvisor.PrunedWeights(random, Size, Size, Sparsity, SparseFormat.Csr, 1, 1);
        var x = new sbyte[(long)Tokens * Size];
        random.NextBytes((byte[])(Array)x);
        _w = _session.Upload(SparseMatrix.FromDense(weights, Size, Size, SparseFormat.Csr));
        _dense = _session.Upload<sbyte>(weights);
        _x = _session.Upload<sbyte>(x);
        _y = _session.Allocate<int>((long)Tokens * Size);
        DenseInt8();
        SparseInt8();
    }

    [Benchmark(Baseline = true)]
    public void DenseInt8()
    {
        _session!.Int8Gemm(_x!, _dense!, _y!, Tokens, Size, Size);
        _session.Synchronize();
    }

    [Benchmark]
    public void SparseInt8()
    {
        _session!.SparseInt8Gemm(_w!, _x!, _y!, Tokens);
        _session.Synchronize();
    }

    [Benchmark]
    public void SparseInt8Gathers()
    {
        _session!.SparseSimdOverrides = new SparseSimdOverrides(SmallGathers: true);
        try
        {
            SparseInt8();
        }
        finally
        {
            _session.SparseSimdOverrides = default;
        }
    }

    [GlobalCleanup]
    public void Dispose()
    {
        _w?.Dispose();
        _dense?.Dispose();
        _x?.Dispose();
        _y?.Dispose();
        _session?.Dispose();
        _session = null;
        GC.SuppressFinalize(this);
    }
}
