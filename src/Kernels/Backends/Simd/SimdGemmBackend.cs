using ILGPU;
using ILGPU.Runtime;
using Kernels.Backends.Ilgpu;
using Kernels.Simd;

namespace Kernels.Backends.Simd;

/// <summary>
/// Int8 GEMM on cpu-simd: <see cref="Int8GemmSimd"/> on host memory (host arrays in place, session
/// buffers through their host pointers after the stream is drained). Weights in a session buffer are
/// packed once (<see cref="PackedWeights"/>) and reused until the buffer is written, used with another
/// shape or released. The ILGPU kernels of the base class still run when asked for by name
/// (reference, tiled, dp4a on the CPU accelerator under the session).
/// </summary>
internal sealed class SimdGemmBackend(KernelSession session) : IlgpuGemmBackend(session)
{
    private readonly Dictionary<object, PackedEntry> _packed = new(ReferenceEqualityComparer.Instance);

    public override GemmKernel Select(GemmKernel kernel) =>
        kernel is GemmKernel.Auto or GemmKernel.Simd ? GemmKernel.Simd : base.Select(kernel);

    public override IReadOnlyList<GemmKernel> Compared => [GemmKernel.Simd];

    public override unsafe void Int32(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, Span<int> c, in GemmProblem problem, GemmKernel requested)
    {
        if (Select(requested) != GemmKernel.Simd)
        {
            base.Int32(a, b, c, problem, requested);
            return;
        }
        (int m, int n, int k, StridedBatch batch) = problem;
        fixed (sbyte* ap = a, bp = b)
        fixed (int* cp = c)
        {
            Int8GemmSimd.Gemm(ap, bp, m, n, k, batch.Count, batch.StrideA, batch.StrideB,
                SimdEpilogue.Int32(cp, batch.StrideC), CpuSimd.Effective);
        }
    }

    public override unsafe void Dequant(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, ReadOnlySpan<float> aScale, ReadOnlySpan<float> bScale,
        ReadOnlySpan<float> bias, Span<float> y, in GemmProblem problem, GemmKernel requested)
    {
        if (Select(requested) != GemmKernel.Simd)
        {
            base.Dequant(a, b, aScale, bScale, bias, y, problem, requested);
            return;
        }
        fixed (sbyte* ap = a, bp = b)
        fixed (float* yp = y, asp = aScale, bsp = bScale, biasp = bias)
        {
            Int8GemmSimd.Gemm(ap, bp, problem.M, problem.N, problem.K, 1, 0, 0,
                SimdEpilogue.Dequant(yp, 0, asp, 0, bsp, bias.IsEmpty ? null : biasp, 0), CpuSimd.Effective);
        }
    }

    public override unsafe void Run<TEpilogue>(ArrayView<sbyte> a, ArrayView<sbyte> b, in GemmProblem problem, TEpilogue epilogue,
        GemmKernel requested, DeviceBuffer<sbyte>? weights)
    {
        GemmKernel kernel = Select(requested);
        if (kernel != GemmKernel.Simd)
        {
            Launch(kernel, a, b, problem, epilogue);
            return;
        }

        (int m, int n, int k, StridedBatch batch) = problem;
        Session.Stream.Synchronize();
        SimdEpilogue output = SimdEpilogue.Of(epilogue);
        SimdLevel level = CpuSimd.Effective;
        var aPointer = (sbyte*)a.LoadEffectiveAddressAsPtr();
        var bPointer = (sbyte*)b.LoadEffectiveAddressAsPtr();
        if (weights is null || !Session.ReuseSimdPackedWeights)
        {
            Int8GemmSimd.Gemm(aPointer, bPointer, m, n, k, batch.Count, batch.StrideA, batch.StrideB, output, level);
            return;
        }

        var key = new PackedKey(weights.Version, n, k, batch.Count, batch.StrideB, level);
        if (!_packed.TryGetValue(weights, out PackedEntry? entry) || entry.Key != key)
        {
            Forget(weights);
            PackedWeights packed = Int8GemmSimd.PackWeights(bPointer, n, k, batch.Count, batch.StrideB, level);
            entry = new PackedEntry(key, packed);
            _packed[weights] = entry;
            Session.AddAllocated(packed.Bytes);
        }
        Int8GemmSimd.Gemm(aPointer, entry.Packed, m, batch.Count, batch.StrideA, output, level);
    }

    public override void Forget(object weights)
    {
        if (_packed.Remove(weights, out PackedEntry? entry))
        {
            Session.AddAllocated(-entry.Packed.Bytes);
            entry.Packed.Dispose();
        }
    }

    public override void Dispose()
    {
        base.Dispose();
        foreach (PackedEntry entry in _packed.Values)
            entry.Packed.Dispose();
        _packed.Clear();
    }

    private sealed record PackedKey(long Version, int N, int K, int BatchCount, long StrideB, SimdLevel Level);

    private sealed record PackedEntry(PackedKey Key, PackedWeights Packed);
}
