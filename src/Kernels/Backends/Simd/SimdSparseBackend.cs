using ILGPU;
using ILGPU.Runtime;
using Kernels.DeviceCode;
using Kernels.Simd;

namespace Kernels.Backends.Simd;

/// <summary>
/// Sparse products on cpu-simd: <see cref="SparseSimd"/> on prepared plans (<see cref="SparseSimdPlan"/>,
/// one per instruction-set level, made at first use and kept with the matrix; a plan may run a matrix
/// too dense to gain as the dense GEMM). Host arrays are used in place; session buffers through their
/// host pointers after the stream is drained.
/// </summary>
internal sealed unsafe class SimdSparseBackend(KernelSession session) : ISparseBackend
{
    public int CachedUploads => 0;

    public IPreparedSparse? Prepare<T>(DeviceSparseMatrix<T> w, SparseParts<T> parts)
        where T : unmanaged =>
        new SimdSparseWeights<T>(w);

    public SparseInt8Path Select(DeviceSparseMatrix<sbyte> w, int m) => SparseInt8Path.Simd;

    public SparseKernelChoice Describe(DeviceSparseMatrix<sbyte> w, int m)
    {
        SparseSimdPlan plan = PlanOf(w);
        return new SparseKernelChoice(SparseInt8Path.Simd, SparseSimd.DescribeInt8(plan, m, session.SparseSimdOverrides), plan.Dense is not null);
    }

    public string DescribeFloat32(DeviceSparseMatrix<float> w, int m)
    {
        SparseSimdPlan plan = PlanOf(w);
        string kernel = plan.Level == SimdLevel.Scalar ? "scalar"
            : m <= SparseSimd.SmallMFloat ? "gathered dot products"
            : "FMA on 32-token panels, four partial sums";
        return $"cpu-simd {plan.Level.ToName()}: {kernel}";
    }

    public void Int8<TEpilogue>(DeviceSparseMatrix<sbyte> w, ArrayView<sbyte> x, int m, TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue
    {
        session.Stream.Synchronize();
        SparseSimd.Int8(PlanOf(w), (sbyte*)x.LoadEffectiveAddressAsPtr(), m, SimdEpilogue.Of(epilogue), session.SparseSimdOverrides);
    }

    public void Float32(DeviceSparseMatrix<float> w, ArrayView<float> x, int m, Float32Product output)
    {
        session.Stream.Synchronize();
        SparseSimd.Float32(PlanOf(w), (float*)x.LoadEffectiveAddressAsPtr(), m, (float*)output.Y.LoadEffectiveAddressAsPtr(),
            output.HasBias != 0 ? (float*)output.Bias.LoadEffectiveAddressAsPtr() : null, session.SparseSimdOverrides);
    }

    public void Int8(SparseMatrix w, ReadOnlySpan<sbyte> x, int m, Span<int> y)
    {
        fixed (sbyte* xp = x)
        fixed (int* yp = y)
        {
            SparseSimd.Int8(w.SimdPlan(CpuSimd.Effective), xp, m, SimdEpilogue.Int32(yp, 0), session.SparseSimdOverrides);
        }
        GC.KeepAlive(w);
    }

    public void Int8Dequant(SparseMatrix w, ReadOnlySpan<sbyte> x, ReadOnlySpan<float> xScale, ReadOnlySpan<float> wScale,
        ReadOnlySpan<float> bias, int m, Span<float> y)
    {
        fixed (sbyte* xp = x)
        fixed (float* yp = y, xsp = xScale, wsp = wScale, bp = bias)
        {
            SparseSimd.Int8(w.SimdPlan(CpuSimd.Effective), xp, m,
                SimdEpilogue.Dequant(yp, 0, xsp, 0, wsp, bias.IsEmpty ? null : bp, 0), session.SparseSimdOverrides);
        }
        GC.KeepAlive(w);
    }

    public void Float32(SparseMatrixF32 w, ReadOnlySpan<float> x, ReadOnlySpan<float> bias, int m, Span<float> y)
    {
        fixed (float* xp = x, yp = y, bp = bias)
        {
            SparseSimd.Float32(w.SimdPlan(CpuSimd.Effective), xp, m, yp, bias.IsEmpty ? null : bp, session.SparseSimdOverrides);
        }
        GC.KeepAlive(w);
    }

    public void Dispose()
    {
    }

    private static SparseSimdPlan PlanOf<T>(DeviceSparseMatrix<T> w)
        where T : unmanaged =>
        ((SimdSparseWeights<T>)w.Prepared!).Plan(CpuSimd.Effective);
}

/// <summary>
/// An uploaded matrix's CPU plans (cpu-simd sessions): made on first use from the matrix's buffers,
/// which are host memory, and freed with the matrix.
/// </summary>
internal sealed class SimdSparseWeights<T>(DeviceSparseMatrix<T> matrix) : IPreparedSparse
    where T : unmanaged
{
    private SparseSimdPlanCache? _plans;

    public long LengthInBytes => 0;

    /// <summary>The plan for <paramref name="level"/>, prepared now if there is none.</summary>
    public SparseSimdPlan Plan(SimdLevel level)
    {
        ObjectDisposedException.ThrowIf(matrix.IsDisposed, matrix);
        return LazyInitializer.EnsureInitialized(ref _plans).Get(matrix.HostWeights, level, typeof(T) == typeof(float));
    }

    public void Dispose() => Interlocked.Exchange(ref _plans, null)?.Dispose();
}
