using System.Diagnostics;
using Kernels.Peers;

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
    double? SpeedVsPeer = null,
    double? MedianMsPackingEachCall = null,
    double? SpeedVsPeerPackingEachCall = null,
    double? CpuMsPerCall = null,
    IReadOnlyList<PeerResult>? Peers = null,
    double? MedianMsAfterIdle = null);

/// <summary>
/// One peer library measured in the same run on the same data (<c>peers</c> in the JSON): its name
/// (onednn, onnxruntime), what exactly ran, its median, and <c>ratio</c> = our speed over its speed
/// (its median over ours when <c>same_op</c>; otherwise a rate ratio against a yardstick op), whether its
/// output was verified (int8: bit-identical to ours), or why it did not run (<c>note</c>, no median);
/// <c>after_idle_ms</c>: the median of its first call of each block, after the pause (<see cref="Alternation"/>).
/// </summary>
internal sealed record PeerResult(
    string Name,
    string Detail,
    double? MedianMs,
    double? Ratio,
    bool SameOp = true,
    bool? Verified = null,
    string? Note = null,
    double? AfterIdleMs = null);

/// <summary>Times the int8 GEMM on device-resident buffers and verifies it against the int64 host reference.</summary>
internal static class GemmBenchmark
{
    /// <summary>Above this many multiply-adds the check samples outputs instead of recomputing all of them.</summary>
    private const long FullCheckLimit = 1L << 28;

    private const int SampledOutputs = 4096;

    public static BenchResult Run(KernelSession session, int m, int n, int k, int repeat, GemmKernel kernel, int seed, bool peer = true, Action<int>? progress = null)
    {
        BenchSizes.Check(m, n, k);
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

        // The peers, when there are any for this backend, run in the same process on the same data: oneDNN
        // (repacks the weights in every call: its BLAS-like API has no other mode) and ONNX Runtime (u8s8
        // MatMulInteger, weights a constant initializer packed once when its session is created, here,
        // outside the timings).
        bool withPeer = peer && session.ResolveKernel(kernel) == GemmKernel.Simd;
        var notes = new List<string>();
        int[]? oneDnnC = null, ortC = null;
        OrtInt8Gemm? ort = null;
        string? oneDnnName = null, ortName = null;
        if (withPeer)
        {
            if (OneDnn.IsAvailable(out string reason))
            {
                oneDnnName = $"oneDNN dnnl_gemm_s8s8s32 ({OneDnn.LibraryName})";
                oneDnnC = new int[(long)m * n];
                OneDnn.GemmS8S8S32(a, b, oneDnnC, m, n, k);
            }
            else
            {
                notes.Add($"oneDNN not available: {reason}");
            }
            if (OnnxRuntimePeer.IsAvailable(out string ortReason))
            {
                ort = new OrtInt8Gemm(b, n, k);
                ortName = $"ONNX Runtime {OnnxRuntimePeer.Version} MatMulInteger u8s8, weights prepacked ({ort.Threads} threads)";
                ortC = new int[(long)m * n];
                ort.Run(a, ortC, m);
            }
            else
            {
                notes.Add($"ONNX Runtime not available: {ortReason}");
            }
            withPeer = oneDnnC is not null || ortC is not null;
        }
        using OrtInt8Gemm? ortSession = ort;

        // Ours and the peers take turns in blocks (Alternation). With a peer, ours is timed twice: as an embedder
        // runs it (weights in a device buffer, packed once) and packing the weights in every call, as
        // dnnl_gemm_s8s8s32 does.
        // Process CPU time per timed call of ours (all threads, user + system): `kernels cost --from-bench` charges
        // the CPU estimate by it, as a run of `cost` does. Time spent preempted by other processes is not in it.
        TimeSpan cpuTime = TimeSpan.Zero, cpu0 = TimeSpan.Zero;
        var ours = new Alternation.Contender(i =>
        {
            session.Int8Gemm(da, db, dc, m, n, k, kernel);
            session.Synchronize();
            if (i >= 0)
                progress?.Invoke(i + 1);
        }, repeat)
        {
            BeforeTimed = () => cpu0 = Environment.CpuUsage.TotalTime,
            AfterTimed = () => cpuTime += Environment.CpuUsage.TotalTime - cpu0,
        };
        var contenders = new List<Alternation.Contender> { ours };
        Alternation.Contender? packing = null, oneDnn = null, onnx = null;
        if (withPeer)
        {
            packing = new Alternation.Contender(_ =>
            {
                session.ReuseSimdPackedWeights = false;
                try
                {
                    session.Int8Gemm(da, db, dc, m, n, k, kernel);
                    session.Synchronize();
                }
                finally
                {
                    session.ReuseSimdPackedWeights = true;
                }
            }, repeat);
            contenders.Add(packing);
        }
        if (oneDnnC is not null)
            contenders.Add(oneDnn = new Alternation.Contender(_ => OneDnn.GemmS8S8S32(a, b, oneDnnC, m, n, k), repeat));
        if (ortSession is not null)
            contenders.Add(onnx = new Alternation.Contender(_ => ortSession.Run(a, ortC!, m), repeat));
        Alternation.Run(repeat, [.. contenders]);

        int[] c = dc.ToArray();
        (bool verified, double maxError, string how) = Verify(a, b, c, m, n, k, random);
        double median = ours.Median;
        var peers = new List<PeerResult>();
        if (oneDnn is not null)
        {
            bool same = oneDnnC.AsSpan().SequenceEqual(c);
            double pm = oneDnn.Median;
            peers.Add(new PeerResult("onednn", oneDnnName!, pm, pm / median, Verified: same, AfterIdleMs: oneDnn.AfterIdleMedian));
        }
        if (onnx is not null)
        {
            bool same = ortC.AsSpan().SequenceEqual(c);
            double pm = onnx.Median;
            peers.Add(new PeerResult("onnxruntime", ortName!, pm, pm / median, Verified: same, AfterIdleMs: onnx.AfterIdleMedian));
        }
        foreach (PeerResult p in peers.Where(p => p.Verified == false))
        {
            verified = false;
            how += $"; differs from {p.Name}";
        }
        foreach (string note in notes)
        {
            bool isOneDnn = note.StartsWith("oneDNN", StringComparison.Ordinal);
            peers.Add(new PeerResult(isOneDnn ? "onednn" : "onnxruntime", isOneDnn ? "oneDNN" : "ONNX Runtime", null, null, Note: note));
        }

        // The single peer fields (kept for older readers) describe the first peer that ran: oneDNN where it is
        // installed, else ONNX Runtime; every peer is in `peers`.
        PeerResult? first = peers.FirstOrDefault(p => p.MedianMs is not null);
        string? peerName = first?.Detail ?? (notes.Count > 0 ? string.Join("; ", notes) : null);
        double? peerMedian = first?.MedianMs;
        double? packingMedian = packing?.Median;
        return new BenchResult("int8-gemm", session.Backend.ToName(), session.DeviceName,
            session.ResolveKernel(kernel).ToString().ToLowerInvariant(), m, n, k, repeat, median,
            2.0 * m * n * k / (median * 1e-3) / 1e12, verified, maxError, how,
            // One median per row: speed_vs_peer is computed from median_ms (weights packed once, as an embedder
            // runs it); the per-call-packing figures, dnnl_gemm_s8s8s32's own mode, come as a pair of their own.
            peerName, peerMedian, peerMedian / median, packingMedian, peerMedian / packingMedian,
            cpuTime.TotalMilliseconds / repeat,
            peers.Count > 0 ? peers : null, ours.AfterIdleMedian);
    }

    /// <summary>Random int8 values over the whole range; never zeros.</summary>
    public static sbyte[] RandomInt8(Random random, long length)
    {
        var data = new sbyte[length];
        random.NextBytes((byte[])(Array)data);
        return data;
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
