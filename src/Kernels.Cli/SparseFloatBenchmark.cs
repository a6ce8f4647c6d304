using System.Diagnostics;
using Kernels.Peers;

namespace Kernels.Cli;

/// <summary>One measured float32 sparse configuration (<c>bench --op sparse-gemm --dtype float32</c>).</summary>
internal sealed record SparseFloatBenchResult(
    string Op,
    string Dtype,
    string Backend,
    string Device,
    string Format,
    string Block,
    int M,
    int N,
    int K,
    double Sparsity,
    long NonZeros,
    int Repeat,
    double MedianMs,
    double DenseEquivalentTflops,
    string? Peer,
    double? PeerMedianMs,
    double? SpeedupVsPeer,
    bool Verified,
    double MaxRelativeError,
    string Verification,
    string SparseKernel);

/// <summary>
/// The float32 sparse product (<c>session.SparseGemm</c>, weights resident) against the dense float32 peer
/// of the same pruned weights where there is one in this process: oneDNN's sgemm on cpu-simd. The library
/// has no dense float32 GEMM of its own, so on the ILGPU backends only the sparse time is reported.
/// </summary>
internal static class SparseFloatBenchmark
{
    public static SparseFloatBenchResult Run(
        KernelSession session, int m, int n, int k, SparseFormat format, (int Rows, int Columns) block, double sparsity,
        int repeat, int seed, bool peer)
    {
        BenchSizes.Check(m, n, k);
        if (format != SparseFormat.Bsr)
            block = (1, 1);
        var random = new Random(seed);
        float[] weights = SparseAdvisor.PrunedFloatWeights(random, n, k, sparsity, format, block.Rows, block.Columns);
        var x = new float[(long)m * k];
        for (long i = 0; i < x.Length; i++)
            x[i] = (float)(random.NextDouble() * 2 - 1);
        SparseMatrixF32 sparse = format == SparseFormat.Bsr
            ? SparseMatrixF32.FromDense(weights, n, k, format, block.Rows, block.Columns)
            : SparseMatrixF32.FromDense(weights, n, k, format);

        using DeviceSparseMatrix<float> dw = session.Upload(sparse);
        using DeviceBuffer<float> dx = session.Upload<float>(x);
        using DeviceBuffer<float> dy = session.Allocate<float>((long)m * n);
        session.SparseGemm(dw, dx, null, dy, m);
        session.Synchronize();

        bool usePeer = peer && session.Backend == Kernels.Backend.CpuSimd && OneDnn.IsAvailable(out _);
        float[]? yPeer = usePeer ? new float[(long)m * n] : null;
        if (yPeer is not null)
            OneDnn.Sgemm(x, weights, yPeer, m, n, k);

        // Ours and oneDNN take turns in blocks (Alternation): oneDNN's OpenMP threads keep spinning for a while
        // after a call and would slow down our next calls (measured: 1024³ 3.5 against 2.4 ms).
        var sparseRun = new Alternation.Contender(_ =>
        {
            session.SparseGemm(dw, dx, null, dy, m);
            session.Synchronize();
        }, repeat);
        Alternation.Contender? peerRun = yPeer is null ? null
            : new Alternation.Contender(_ => OneDnn.Sgemm(x, weights, yPeer, m, n, k), repeat);
        Alternation.Run(repeat, peerRun is null ? [sparseRun] : [sparseRun, peerRun]);

        // float64 reference at the corners and sampled outputs; error relative to Σ|x·w| of the output.
        float[] y = dy.ToArray();
        var points = new List<(int Row, int Col)> { (0, 0), (0, n - 1), (m - 1, 0), (m - 1, n - 1) };
        for (int i = 0; i < SparseAdvisor.SampledOutputs; i++)
            points.Add((random.Next(m), random.Next(n)));
        double worst = 0;
        foreach ((int row, int col) in points)
        {
            double sum = 0, magnitude = 0;
            for (int c = 0; c < k; c++)
            {
                double p = (double)x[(long)row * k + c] * weights[(long)col * k + c];
                sum += p;
                magnitude += Math.Abs(p);
            }
            double error = Math.Abs(y[(long)row * n + col] - sum) / Math.Max(magnitude, 1e-30);
            worst = Math.Max(worst, double.IsNaN(error) ? double.PositiveInfinity : error);
        }
        const double Tolerance = 1e-5;
        double median = sparseRun.Median;
        double? peerMedian = peerRun?.Median;
        return new SparseFloatBenchResult(
            "sparse-gemm", "float32", session.Backend.ToName(), session.DeviceName, SparseBenchmark.FormatName(format),
            format == SparseFormat.Bsr ? $"{block.Rows}x{block.Columns}" : "-", m, n, k,
            1.0 - (double)sparse.NonZeros / ((long)n * k), sparse.NonZeros, repeat, median,
            2.0 * m * n * k / (median * 1e-3) / 1e12, peerMedian is null ? null : "onednn-sgemm", peerMedian,
            peerMedian / median, worst <= Tolerance, worst,
            $"float64 reference at 4 corners + {SparseAdvisor.SampledOutputs} samples, |error| ≤ {Tolerance:G2}·Σ|x·w|",
            session.DescribeSparseFloat32(dw, m));
    }
}
