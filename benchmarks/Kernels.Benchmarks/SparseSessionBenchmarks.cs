using BenchmarkDotNet.Attributes;
using Kernels.Backends.Simd;
using Kernels.Peers;

namespace Kernels.Benchmarks;

/// <summary>
/// What a user of the session API gets on cpu-simd, with the weights resident (as
/// <c>kernels bench --op sparse-gemm</c> measures): the dense int8 GEMM on the pruned weights (packed
/// once, the baseline), the sparse int8 product (CSR, 90 % global magnitude pruning, quantized per
/// channel) with the work split automatically, split by rows of W, and split by token panels; and the
/// float32 sparse product against oneDNN's sgemm on the same pruned float weights (when oneDNN is
/// installed). The figures of docs/perf/cpu-sparse.md (third pass).
/// Run: <c>dotnet run -c Release --project benchmarks/Kernels.Benchmarks -- --filter '*SparseSession*'</c>.
/// </summary>
public class SparseSessionBenchmarks : IDisposable
{
    private KernelSession? _session;
    private DeviceSparseMatrix<sbyte>? _w;
    private DeviceBuffer<sbyte>? _dense;
    private DeviceBuffer<sbyte>? _x;
    private DeviceBuffer<int>? _y;
    private DeviceSparseMatrix<float>? _wf;
    private DeviceBuffer<float>? _xf;
    private DeviceBuffer<float>? _yf;
    private float[] _prunedF = [];
    private float[] _xHost = [];
    private float[] _yPeer = [];

    [Params(1024, 2048)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        int s = Size;
        var random = new Random(1);
        _session = KernelSession.Create(Backend.CpuSimd);
        sbyte[] weights = SparseAdvisor.PrunedWeights(random, s, s, 0.9, SparseFormat.Csr, 1, 1);
        var x = new sbyte[(long)s * s];
        random.NextBytes((byte[])(Array)x);
        _w = _session.Upload(SparseMatrix.FromDense(weights, s, s, SparseFormat.Csr));
        _dense = _session.Upload<sbyte>(weights);
        _x = _session.Upload<sbyte>(x);
        _y = _session.Allocate<int>((long)s * s);
        _prunedF = SparseAdvisor.PrunedFloatWeights(random, s, s, 0.9, SparseFormat.Csr, 1, 1);
        _xHost = new float[(long)s * s];
        for (long i = 0; i < _xHost.Length; i++)
            _xHost[i] = (float)(random.NextDouble() * 2 - 1);
        _yPeer = new float[(long)s * s];
        _wf = _session.Upload(SparseMatrixF32.FromDense(_prunedF, s, s, SparseFormat.Csr));
        _xf = _session.Upload<float>(_xHost);
        _yf = _session.Allocate<float>((long)s * s);
        // Warm-up: packs the dense weights once, prepares the sparse plans.
        DenseInt8();
        SparseInt8();
        SparseFloat32();
    }

    [Benchmark(Baseline = true)]
    public void DenseInt8()
    {
        _session!.Int8Gemm(_x!, _dense!, _y!, Size, Size, Size);
        _session.Synchronize();
    }

    [Benchmark]
    public void SparseInt8()
    {
        _session!.SparseInt8Gemm(_w!, _x!, _y!, Size);
        _session.Synchronize();
    }

    [Benchmark]
    public void SparseInt8RowSplit() => Forced(SparseSimd.Split.Rows, SparseInt8);

    [Benchmark]
    public void SparseInt8PanelSplit() => Forced(SparseSimd.Split.Panels, SparseInt8);

    [Benchmark]
    public void SparseFloat32()
    {
        _session!.SparseGemm(_wf!, _xf!, null, _yf!, Size);
        _session.Synchronize();
    }

    [Benchmark]
    public void OneDnnSgemmOnPrunedWeights()
    {
        if (OneDnn.IsAvailable(out _))
            OneDnn.Sgemm(_xHost, _prunedF, _yPeer, Size, Size, Size);
    }

    private void Forced(SparseSimd.Split split, Action call)
    {
        _session!.SparseSimdOverrides = new SparseSimdOverrides(Split: split);
        try
        {
            call();
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
        _wf?.Dispose();
        _xf?.Dispose();
        _yf?.Dispose();
        _session?.Dispose();
        _session = null;
        GC.SuppressFinalize(this);
    }
}
