using Kernels.Simd;

namespace Kernels.Backends.Simd;

/// <summary>
/// The prepared CPU plans (<see cref="SparseSimdPlan"/>) of one immutable sparse matrix, one per
/// instruction-set level, made on first use and kept until the matrix is disposed or collected. A plan
/// refers to the matrix's own memory, so the cache belongs to the object that owns that memory.
/// </summary>
/// <remarks>
/// Plans are never replaced while the cache lives (a call running on another thread may hold one), so
/// changing <see cref="CpuSimd.MaxLevelVariable"/> adds a plan rather than swapping it. The finalizer
/// frees the plans' native memory when the owner is collected without being disposed.
/// </remarks>
internal sealed class SparseSimdPlanCache : IDisposable
{
    private readonly Lock _sync = new();
    private readonly SparseSimdPlan?[] _plans = new SparseSimdPlan?[(int)SimdLevel.Avx512Vnni + 1];
    private bool _disposed;

    ~SparseSimdPlanCache() => Free();

    /// <summary>The plan of <paramref name="weights"/> for <paramref name="level"/>, prepared now if there is none.</summary>
    public SparseSimdPlan Get(in SparseWeights weights, SimdLevel level, bool isFloat)
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            SparseSimdPlan? plan = _plans[(int)level];
            if (plan is null)
            {
                plan = isFloat ? SparseSimdPlan.PrepareFloat32(weights, level) : SparseSimdPlan.Prepare(weights, level);
                _plans[(int)level] = plan;
            }
            return plan;
        }
    }

    /// <summary>Frees every plan (the owner is being disposed).</summary>
    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        lock (_sync)
        {
            _disposed = true;
            for (int i = 0; i < _plans.Length; i++)
            {
                _plans[i]?.Dispose();
                _plans[i] = null;
            }
        }
    }
}
