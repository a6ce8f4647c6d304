using BenchmarkDotNet.Attributes;

namespace Kernels.Benchmarks;

/// <summary>
/// int8 GEMM per usable backend, kernel and size, on device-resident buffers (weights uploaded once),
/// each operation synchronized. Random full-range inputs (never zeros). Backends without a device
/// are not offered as parameters. Sizes on ILGPU's CPU accelerator are kept small: it simulates
/// GPU threads and is meant for testing.
/// </summary>
[MemoryDiagnoser]
public class Int8GemmBenchmarks : IDisposable
{
    private KernelSession? _session;
    private DeviceBuffer<sbyte>? _a;
    private DeviceBuffer<sbyte>? _b;
    private DeviceBuffer<int>? _c;

    /// <summary>Valid (backend, kernel, size) combinations on this machine.</summary>
    public static IEnumerable<GemmCase> Cases()
    {
        foreach (Backend backend in DeviceCatalog.List().Where(d => d.Usable).Select(d => d.Backend).Distinct())
        {
            int[] sizes = backend switch
            {
                Backend.Cpu => [64, 128],
                Backend.CpuSimd => [256, 1024, 2048],
                _ => [1024, 4096, 8192],
            };
            GemmKernel[] kernels = backend switch
            {
                Backend.Cuda => [GemmKernel.Reference, GemmKernel.Tiled, GemmKernel.Dp4a],
                Backend.CpuSimd => [GemmKernel.Simd],
                _ => [GemmKernel.Reference, GemmKernel.Tiled],
            };
            foreach (GemmKernel kernel in kernels)
            {
                foreach (int size in sizes)
                    yield return new GemmCase(backend, kernel, size);
            }
        }
    }

    [ParamsSource(nameof(Cases))]
    public GemmCase Case { get; set; } = new(Backend.Cpu, GemmKernel.Tiled, 64);

    [GlobalSetup]
    public void Setup()
    {
        _session = KernelSession.Create(Case.Backend);
        var random = new Random(42);
        int size = Case.Size;
        var a = new byte[size * size];
        var b = new byte[size * size];
        random.NextBytes(a);
        random.NextBytes(b);
        _a = _session.Upload<sbyte>((sbyte[])(Array)a);
        _b = _session.Upload<sbyte>((sbyte[])(Array)b);
        _c = _session.Allocate<int>((long)size * size);
    }

    [Benchmark]
    public void Int8Gemm()
    {
        _session!.Int8Gemm(_a!, _b!, _c!, Case.Size, Case.Size, Case.Size, Case.Kernel);
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

/// <summary>One benchmark case: backend, kernel and cube size.</summary>
public sealed record GemmCase(Backend Backend, GemmKernel Kernel, int Size)
{
    public override string ToString() => $"{Backend.ToName()}/{Kernel.ToString().ToLowerInvariant()}/{Size}";
}
