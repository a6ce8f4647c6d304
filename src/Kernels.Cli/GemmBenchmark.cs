using System.Diagnostics;

namespace Kernels.Cli;

/// <summary>One measured configuration, as printed and as written with <c>--json</c>.</summary>
internal sealed record BenchResult(
    string Op,
    string Backend,
    string Device,
    string Kernel,
    int M,
    int N,
    int K,
    int Repeat,
    double MedianMs,
    double Tops,
    bool Verified,
    double MaxAbsError,
    string Verification,
    string? Peer = null,
    double? PeerMedianMs = null,
    double? RatioToPeer = null);

/// <summary>Times the int8 GEMM on device-resident buffers and verifies it against the int64 host reference.</summary>
internal static class GemmBenchmark
{
    /// <summary>Above this many multiply-adds the check samples outputs instead of recomputing all of them.</summary>
    private const long FullCheckLimit = 1L << 28;

    private const int SampledOutputs = 4096;

    public static BenchResult Run(KernelSession session, int m, int n, int k, int repeat, GemmKernel kernel, int seed, Action<int>? progress = null)
    {
        var random = new Random(seed);
        sbyte[] a = RandomInt8(random, (long)m * k);
        sbyte[] b = RandomInt8(random, (long)n * k);
        using DeviceBuffer<sbyte> da = session.Upload<sbyte>(a);
        using DeviceBuffer<sbyte> db = session.Upload<sbyte>(b);
        using DeviceBuffer<int> dc = session.Allocate<int>((long)m * n);

        // Warm-up: compiles the kernel and touches the memory.
        session.Int8Gemm(da, db, dc, m, n, k, kernel);
        session.Synchronize();
        progress?.Invoke(0);

        var times = new double[repeat];
        for (int i = 0; i < repeat; i++)
        {
            long start = Stopwatch.GetTimestamp();
            session.Int8Gemm(da, db, dc, m, n, k, kernel);
            session.Synchronize();
            times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            progress?.Invoke(i + 1);
        }

        int[] c = dc.ToArray();
        (bool verified, double maxError, string how) = Verify(a, b, c, m, n, k, random);
        double median = Median(times);
        return new BenchResult("int8-gemm", session.Backend.ToName(), session.DeviceName,
            session.ResolveKernel(kernel).ToString().ToLowerInvariant(), m, n, k, repeat, median,
            2.0 * m * n * k / (median * 1e-3) / 1e12, verified, maxError, how);
    }

    /// <summary>Random int8 values over the whole range; never zeros.</summary>
    public static sbyte[] RandomInt8(Random random, long length)
    {
        var data = new sbyte[length];
        random.NextBytes((byte[])(Array)data);
        return data;
    }

    public static double Median(double[] values)
    {
        double[] sorted = [.. values];
        Array.Sort(sorted);
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    private static (bool Verified, double MaxError, string How) Verify(sbyte[] a, sbyte[] b, int[] c, int m, int n, int k, Random random)
    {
        long maxError = 0;
        if ((long)m * n * k <= FullCheckLimit)
        {
            long[] expected = HostReference.Int8Gemm(a, b, m, n, k);
            for (long i = 0; i < expected.Length; i++)
                maxError = Math.Max(maxError, Math.Abs(expected[i] - c[i]));
            return (maxError == 0, maxError, "all outputs");
        }

        // Corners and edges of the output, then random elements.
        var points = new List<(int Row, int Col)> { (0, 0), (0, n - 1), (m - 1, 0), (m - 1, n - 1) };
        for (int i = 0; i < SampledOutputs; i++)
            points.Add((random.Next(m), random.Next(n)));
        foreach ((int row, int col) in points)
        {
            long expected = HostReference.Int8GemmElement(a, b, k, row, col);
            maxError = Math.Max(maxError, Math.Abs(expected - c[(long)row * n + col]));
        }
        return (maxError == 0, maxError, $"{points.Count} sampled outputs");
    }
}
