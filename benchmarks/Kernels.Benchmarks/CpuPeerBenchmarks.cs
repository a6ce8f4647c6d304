using BenchmarkDotNet.Attributes;
using Kernels.Peers;

namespace Kernels.Benchmarks;

/// <summary>
/// The SIMD CPU int8 GEMM against oneDNN's <c>dnnl_gemm_s8s8s32</c> (Debian's libdnnl, through P/Invoke)
/// on the same random data; oneDNN is the baseline, so BenchmarkDotNet's Ratio column is our time
/// over theirs. Without libdnnl no case is generated and the reason is printed.
/// </summary>
public class CpuPeerBenchmarks : IDisposable
{
    private KernelSession? _session;
    private DeviceBuffer<sbyte>? _a;
    private DeviceBuffer<sbyte>? _b;
    private DeviceBuffer<int>? _c;
    private sbyte[] _hostA = [];
    private sbyte[] _hostB = [];
    private int[] _hostC = [];

    public static IEnumerable<int> Sizes()
    {
        if (!OneDnn.IsAvailable(out string reason))
        {
            Console.WriteLine($"CpuPeerBenchmarks: skipped, oneDNN is not available: {reason} (apt-get install libdnnl-dev)");
            return [];
        }
        return [256, 1024, 2048];
    }

    [ParamsSource(nameof(Sizes))]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _session = KernelSession.Create(Backend.CpuSimd);
        var random = new Random(42);
        var a = new byte[Size * Size];
        var b = new byte[Size * Size];
        random.NextBytes(a);
        random.NextBytes(b);
        _hostA = (sbyte[])(Array)a;
        _hostB = (sbyte[])(Array)b;
        _hostC = new int[Size * Size];
        _a = _session.Upload<sbyte>(_hostA);
        _b = _session.Upload<sbyte>(_hostB);
        _c = _session.Allocate<int>((long)Size * Size);
    }

    [Benchmark(Baseline = true, Description = "oneDNN dnnl_gemm_s8s8s32")]
    public void OneDnnGemm() => OneDnn.GemmS8S8S32(_hostA, _hostB, _hostC, Size, Size, Size);

    [Benchmark(Description = "Kernels cpu-simd")]
    public void KernelsGemm()
    {
        _session!.Int8Gemm(_a!, _b!, _c!, Size, Size, Size, GemmKernel.Simd);
        _session.Synchronize();
    }

    [GlobalCleanup]
    public void Dispose()
    {
        _a?.Dispose();
        _b?.Dispose();
        _c?.Dispose();
        _session?.Dispose();
        _session = null;
        GC.SuppressFinalize(this);
    }
}
