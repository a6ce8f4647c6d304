using System.Collections.Concurrent;
using System.Diagnostics;

namespace Kernels;

/// <summary>
/// One measurement of the sparse int8 product against the dense int8 GEMM of the same shape on the
/// same session, on the same random, pruned and quantized weights.
/// </summary>
/// <param name="Backend">The session's backend.</param>
/// <param name="Format">The sparse format measured.</param>
/// <param name="BlockRows">BSR block height (1 for the other formats).</param>
/// <param name="BlockColumns">BSR block width (1 for the other formats).</param>
/// <param name="M">Tokens (rows of X and Y).</param>
/// <param name="N">Output channels (rows of W).</param>
/// <param name="K">Input features (columns of W).</param>
/// <param name="RequestedSparsity">The sparsity asked for.</param>
/// <param name="Sparsity">The fraction of zeros in the int8 weights actually measured (2:4 is at least 0.5).</param>
/// <param name="NonZeros">Non-zero weights.</param>
/// <param name="SparseMs">Median time of the sparse product, milliseconds (weights resident, X and Y on the device).</param>
/// <param name="DenseMs">Median time of the dense int8 GEMM on the same pruned weights, milliseconds (its default kernel; on cpu-simd with the weights packed once).</param>
/// <param name="Repeat">Timed calls of each path.</param>
/// <param name="Verified">
/// Whether the sparse result was identical to the dense one element for element, and to the int64
/// reference at the four corners and <see cref="SparseAdvisor.SampledOutputs"/> random outputs.
/// </param>
/// <param name="Kernel">Which kernel ran the sparse product, in words (the SIMD plan's choice on cpu-simd, the <c>mma.sp</c> form on CUDA, the ILGPU kernel elsewhere).</param>
/// <param name="DenseFallback">
/// Whether the sparse call ran the dense GEMM on the expanded weights because the cpu-simd plan's cost
/// model judged it faster (then <see cref="SparseMs"/> measures the dense kernel, not a sparse one).
/// </param>
public sealed record SparseAdvice(
    Backend Backend,
    SparseFormat Format,
    int BlockRows,
    int BlockColumns,
    int M,
    int N,
    int K,
    double RequestedSparsity,
    double Sparsity,
    long NonZeros,
    double SparseMs,
    double DenseMs,
    int Repeat,
    bool Verified,
    string Kernel,
    bool DenseFallback = false)
{
    /// <summary>How many times faster the sparse path is than the dense one (above 1: sparse wins).</summary>
    public double Speedup => DenseMs / SparseMs;

    /// <summary>Whether the sparse path was faster.</summary>
    public bool UseSparse => SparseMs < DenseMs;
}

/// <summary>
/// Says whether pruning pays for a shape on a backend: it measures the sparse int8 product against the
/// dense int8 GEMM on the same session (both with their weights resident and prepared once, as an
/// inference engine holds them), and finds the sparsity at which the sparse path starts to win.
/// Measurements are cached per session, shape, format and sparsity: ask <see cref="Advise"/> as often
/// as you like.
/// </summary>
/// <remarks>
/// The weights are random normal-like floats, pruned to the sparsity (CSR: global magnitude; BSR: whole
/// blocks by norm; 2:4: magnitude pruning to the sparsity when above one half, then 2 of every 4) and
/// quantized per channel, so the int8 values are never all zero. X is random over the whole int8 range.
/// Timing alternates blocks of sparse and dense calls and reports medians; a noisy machine moves both.
/// </remarks>
public static class SparseAdvisor
{
    private static readonly ConditionalWeakTable<KernelSession, ConcurrentDictionary<Key, SparseAdvice>> Cache = [];

    private sealed record Key(SparseFormat Format, int BlockRows, int BlockColumns, int M, int N, int K, double Sparsity);

    /// <summary>
    /// The cached measurement for this shape, format and sparsity on <paramref name="session"/>, measured
    /// now (with <paramref name="repeat"/> timed calls of each path) if there is none.
    /// </summary>
    /// <exception cref="ArgumentException">A size is not positive, k is too large for int32 accumulation, or the sparsity is outside [0, 1].</exception>
    public static SparseAdvice Advise(
        KernelSession session, int m, int n, int k, double sparsity, SparseFormat format = SparseFormat.Csr,
        int blockRows = 4, int blockColumns = 4, int repeat = 5)
    {
        ArgumentNullException.ThrowIfNull(session);
        Validate(m, n, k, sparsity, format, blockRows, blockColumns, repeat);
        (blockRows, blockColumns) = format == SparseFormat.Bsr ? (blockRows, blockColumns) : (1, 1);
        var key = new Key(format, blockRows, blockColumns, m, n, k, sparsity);
        ConcurrentDictionary<Key, SparseAdvice> cache = Cache.GetOrCreateValue(session);
        if (cache.TryGetValue(key, out SparseAdvice? known))
            return known;
        SparseAdvice measured = Measure(session, m, n, k, sparsity, format, blockRows, blockColumns, repeat, seed: 1);
        cache[key] = measured;
        return measured;
    }

    /// <summary>Measures once, without the cache (see <see cref="Advise"/>); <paramref name="seed"/> fixes the random data.</summary>
    public static SparseAdvice Measure(
        KernelSession session, int m, int n, int k, double sparsity, SparseFormat format = SparseFormat.Csr,
        int blockRows = 4, int blockColumns = 4, int repeat = 5, int seed = 1)
    {
        ArgumentNullException.ThrowIfNull(session);
        Validate(m, n, k, sparsity, format, blockRows, blockColumns, repeat);
        if (format != SparseFormat.Bsr)
            (blockRows, blockColumns) = (1, 1);

        var random = new Random(seed);
        sbyte[] weights = PrunedWeights(random, n, k, sparsity, format, blockRows, blockColumns);
        var x = new sbyte[(long)m * k];
        random.NextBytes((byte[])(Array)x);
        SparseMatrix sparse = format == SparseFormat.Bsr
            ? SparseMatrix.FromDense(weights, n, k, format, blockRows, blockColumns)
            : SparseMatrix.FromDense(weights, n, k, format);

        using DeviceSparseMatrix<sbyte> dw = session.Upload(sparse);
        using DeviceBuffer<sbyte> dDense = session.Upload<sbyte>(weights);
        using DeviceBuffer<sbyte> dx = session.Upload<sbyte>(x);
        using DeviceBuffer<int> ySparse = session.Allocate<int>((long)m * n);
        using DeviceBuffer<int> yDense = session.Allocate<int>((long)m * n);

        // Warm-up: compiles the kernels, packs the dense weights once, touches the memory.
        session.SparseInt8Gemm(dw, dx, ySparse, m);
        session.Int8Gemm(dx, dDense, yDense, m, n, k);
        session.Synchronize();

        var sparseTimes = new double[repeat];
        var denseTimes = new double[repeat];
        int block = Math.Max(1, (repeat + 2) / 3);
        for (int begin = 0; begin < repeat; begin += block)
        {
            int end = Math.Min(repeat, begin + block);
            for (int i = begin; i < end; i++)
                sparseTimes[i] = Time(() => session.SparseInt8Gemm(dw, dx, ySparse, m), session);
            for (int i = begin; i < end; i++)
                denseTimes[i] = Time(() => session.Int8Gemm(dx, dDense, yDense, m, n, k), session);
        }

        SparseKernelChoice choice = session.DescribeSparseInt8(dw, m);
        int[] got = ySparse.ToArray();
        bool verified = got.AsSpan().SequenceEqual(yDense.ToArray()) && MatchesReference(weights, x, got, m, n, k, random);
        return new SparseAdvice(session.Backend, format, blockRows, blockColumns, m, n, k, sparsity,
            1.0 - (double)sparse.NonZeros / ((long)n * k), sparse.NonZeros,
            Median(sparseTimes), Median(denseTimes), repeat, verified, choice.Kernel, choice.DenseFallback);
    }

    /// <summary>
    /// The sparsity at which the sparse path becomes as fast as the dense one, interpolated linearly
    /// between the measured <paramref name="sparsities"/> (sorted ascending by this method), or null
    /// when it never crosses within them (<paramref name="points"/> holds every measurement).
    /// </summary>
    public static double? Crossover(
        KernelSession session, int m, int n, int k, IEnumerable<double> sparsities, out IReadOnlyList<SparseAdvice> points,
        SparseFormat format = SparseFormat.Csr, int blockRows = 4, int blockColumns = 4,
        int repeat = 5)
    {
        ArgumentNullException.ThrowIfNull(sparsities);
        var list = sparsities.Distinct().Order().Select(s => Advise(session, m, n, k, s, format, blockRows, blockColumns, repeat)).ToList();
        points = list;
        return CrossoverOf(list);
    }

    /// <summary>
    /// The interpolated sparsity where the speed-up crosses 1 in measurements sorted by sparsity, or null.
    /// Points where the plan ran the dense fallback (<see cref="SparseAdvice.DenseFallback"/>) are left
    /// out: they time the dense kernel twice, and their ratio (about 1) is noise. When the first point
    /// that ran a sparse kernel is already faster, its sparsity is returned (the crossover is at or below it).
    /// </summary>
    public static double? CrossoverOf(IReadOnlyList<SparseAdvice> sorted)
    {
        ArgumentNullException.ThrowIfNull(sorted);
        sorted = [.. sorted.Where(a => !a.DenseFallback)];
        if (sorted.Count > 0 && sorted[0].Speedup >= 1)
            return sorted[0].Sparsity;
        for (int i = 1; i < sorted.Count; i++)
        {
            SparseAdvice a = sorted[i - 1], b = sorted[i];
            if (a.Speedup < 1 && b.Speedup >= 1)
            {
                double t = (1 - a.Speedup) / (b.Speedup - a.Speedup);
                return a.Sparsity + t * (b.Sparsity - a.Sparsity);
            }
        }
        return null;
    }

    /// <summary>
    /// Random weights pruned to <paramref name="sparsity"/> for <paramref name="format"/> and quantized per
    /// channel: the int8 matrix the advisor and the benchmark measure.
    /// </summary>
    public static sbyte[] PrunedWeights(Random random, int n, int k, double sparsity, SparseFormat format, int blockRows, int blockColumns) =>
        Pruning.QuantizePerChannel(PrunedFloatWeights(random, n, k, sparsity, format, blockRows, blockColumns), n, k).Values;

    /// <summary>
    /// Random float32 weights pruned to <paramref name="sparsity"/> for <paramref name="format"/> (CSR: global
    /// magnitude; BSR: whole blocks by norm; 2:4: magnitude to the sparsity when above one half, then 2 of 4).
    /// </summary>
    public static float[] PrunedFloatWeights(Random random, int n, int k, double sparsity, SparseFormat format, int blockRows, int blockColumns)
    {
        ArgumentNullException.ThrowIfNull(random);
        var w = new float[(long)n * k];
        for (long i = 0; i < w.Length; i++)
        {
            // A sum of uniforms: bell-shaped, never all-equal magnitudes, no zeros in practice.
            w[i] = (float)(random.NextDouble() + random.NextDouble() + random.NextDouble() - 1.5);
        }
        return format switch
        {
            SparseFormat.Csr => Pruning.Magnitude(w, n, k, sparsity),
            SparseFormat.Bsr => Pruning.Block(w, n, k, blockRows, blockColumns, sparsity),
            _ => Pruning.TwoFour(sparsity > 0.5 ? Pruning.Magnitude(w, n, k, sparsity) : w, n, k),
        };
    }

    private static void Validate(int m, int n, int k, double sparsity, SparseFormat format, int blockRows, int blockColumns, int repeat)
    {
        Check.GemmShape(m, n, k);
        if (!(sparsity >= 0 && sparsity <= 1))
            throw new ArgumentOutOfRangeException(nameof(sparsity), sparsity, $"sparsity: expected a fraction in [0, 1], got {sparsity}.");
        if (!Enum.IsDefined(format))
            throw new ArgumentOutOfRangeException(nameof(format), format, $"format: expected csr, bsr or 2:4, got {(int)format}.");
        if (format == SparseFormat.Bsr)
        {
            Check.Positive(blockRows, nameof(blockRows));
            Check.Positive(blockColumns, nameof(blockColumns));
        }
        Check.Positive(repeat, nameof(repeat));
    }

    /// <summary>Random outputs the measurement checks against the int64 reference (besides the four corners).</summary>
    public const int SampledOutputs = 1024;

    private static bool MatchesReference(sbyte[] w, sbyte[] x, int[] y, int m, int n, int k, Random random)
    {
        var points = new List<(int Row, int Col)> { (0, 0), (0, n - 1), (m - 1, 0), (m - 1, n - 1) };
        for (int i = 0; i < SampledOutputs; i++)
            points.Add((random.Next(m), random.Next(n)));
        foreach ((int row, int col) in points)
        {
            if (HostReference.Int8GemmElement(x, w, k, row, col) != y[(long)row * n + col])
                return false;
        }
        return true;
    }

    private static double Time(Action call, KernelSession session)
    {
        long start = Stopwatch.GetTimestamp();
        call();
        session.Synchronize();
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    private static double Median(double[] values)
    {
        double[] sorted = [.. values];
        Array.Sort(sorted);
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
