using System.Diagnostics;
using Kernels.Peers;

namespace Kernels.Cli;

/// <summary>One measured attention configuration, as printed and as written with <c>--json</c>.</summary>
internal sealed record AttentionBenchResult(
    string Op,
    string Backend,
    string Device,
    int Batch,
    int Heads,
    int KvHeads,
    int Seq,
    int KvSeq,
    int HeadDim,
    bool Causal,
    int Repeat,
    double MedianMs,
    double Tflops,
    bool Verified,
    double MaxAbsError,
    string Verification,
    string? Peer = null,
    double? PeerTflops = null,
    double? RatioToPeer = null);

/// <summary>Times fused attention and checks it against the float64 reference.</summary>
internal static class AttentionBenchmark
{
    /// <summary>Above this many multiply-adds the check samples rows instead of recomputing all of them.</summary>
    private const long FullCheckLimit = 1L << 27;

    private const int SampledRows = 48;

    /// <summary>Largest absolute error accepted against the float64 reference (float32 accumulation).</summary>
    private const double Tolerance = 2e-3;

    /// <summary>
    /// Times <see cref="KernelSession.Attention(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, AttentionShape)"/>
    /// on host arrays: the timings include copying Q, K and V in and the output back.
    /// </summary>
    public static AttentionBenchResult Run(KernelSession session, AttentionShape shape, int repeat, int seed, bool peer)
    {
        BenchSizes.Check(shape);
        var random = new Random(seed);
        float[] q = RandomFloats(random, shape.QueryElements);
        float[] k = RandomFloats(random, shape.KeyElements);
        float[] v = RandomFloats(random, shape.KeyElements);

        float[] output = session.Attention(q, k, v, shape); // warm-up (compiles the kernels)
        var times = new double[repeat];
        for (int i = 0; i < repeat; i++)
        {
            long start = Stopwatch.GetTimestamp();
            output = session.Attention(q, k, v, shape);
            times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }

        (double maxError, string how) = Verify(q, k, v, output, shape, random);
        double median = GemmBenchmark.Median(times);
        double flops = 4.0 * shape.Batch * shape.Heads * shape.QueryLength * shape.KeyLength * shape.HeadDim
            * (shape.Causal && shape.QueryLength == shape.KeyLength ? 0.5 : 1.0);
        double tflops = flops / (median * 1e-3) / 1e12;

        string? peerName = null;
        double? peerTflops = null;
        if (peer && session.Backend == Backend.CpuSimd)
        {
            if (OneDnn.IsAvailable(out string reason))
            {
                Thread.Sleep(300); // let our worker threads go idle first
                peerTflops = SgemmTflops(1024, repeat);
                peerName = $"oneDNN dnnl_sgemm 1024³ ({OneDnn.LibraryName})";
            }
            else
            {
                peerName = $"oneDNN not available: {reason}";
            }
        }

        return new AttentionBenchResult("attention", session.Backend.ToName(), session.DeviceName,
            shape.Batch, shape.Heads, shape.KvHeads, shape.QueryLength, shape.KeyLength, shape.HeadDim, shape.Causal,
            repeat, median, tflops, maxError <= Tolerance, maxError, how, peerName, peerTflops, tflops / peerTflops);
    }

    private static double SgemmTflops(int n, int repeat)
    {
        var random = new Random(7);
        float[] a = RandomFloats(random, (long)n * n), b = RandomFloats(random, (long)n * n);
        var c = new float[n * n];
        OneDnn.Sgemm(a, b, c, n, n, n);
        var times = new double[Math.Max(3, repeat)];
        for (int i = 0; i < times.Length; i++)
        {
            long start = Stopwatch.GetTimestamp();
            OneDnn.Sgemm(a, b, c, n, n, n);
            times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        return 2.0 * n * n * n / (GemmBenchmark.Median(times) * 1e-3) / 1e12;
    }

    private static float[] RandomFloats(Random random, long length)
    {
        var data = new float[length];
        for (long i = 0; i < length; i++)
            data[i] = (float)(random.NextDouble() * 2 - 1);
        return data;
    }

    private static (double MaxError, string How) Verify(float[] q, float[] k, float[] v, float[] output, AttentionShape shape, Random random)
    {
        double maxError = 0;
        long work = (long)shape.Batch * shape.Heads * shape.QueryLength * shape.KeyLength * shape.HeadDim;
        if (work <= FullCheckLimit)
        {
            double[] expected = HostReference.Attention(q, k, v, shape);
            for (long i = 0; i < expected.Length; i++)
                maxError = Math.Max(maxError, Error(expected[i], output[i]));
            return (maxError, "all rows");
        }
        for (int s = 0; s < SampledRows; s++)
        {
            int b = random.Next(shape.Batch), h = random.Next(shape.Heads), i = s == 0 ? shape.QueryLength - 1 : random.Next(shape.QueryLength);
            double[] row = HostReference.AttentionRow(q, k, v, shape, AttentionOptions.Default, default, b, h, i);
            long offset = (((long)b * shape.Heads + h) * shape.QueryLength + i) * shape.HeadDim;
            for (int x = 0; x < row.Length; x++)
                maxError = Math.Max(maxError, Error(row[x], output[offset + x]));
        }
        return (maxError, $"{SampledRows} sampled rows");
    }

    private static double Error(double expected, float actual) =>
        double.IsNaN(actual) || double.IsNaN(expected) ? double.PositiveInfinity : Math.Abs(expected - actual);
}
