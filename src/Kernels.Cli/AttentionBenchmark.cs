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
    double? RatioToPeer = null,
    double? PeerMedianMs = null,
    IReadOnlyList<PeerResult>? Peers = null,
    double? MedianMsAfterIdle = null);

/// <summary>Times fused attention and checks it against the float64 reference.</summary>
internal static class AttentionBenchmark
{
    /// <summary>Above this many multiply-adds the check samples rows instead of recomputing all of them.</summary>
    private const long FullCheckLimit = 1L << 27;

    private const int SampledRows = 48;

    /// <summary>Largest absolute error accepted against the float64 reference (float32 accumulation).</summary>
    private const double Tolerance = 2e-3;

    /// <summary>
    /// Times <see cref="KernelSession.Attention(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, Span{float}, AttentionShape, AttentionOptions)"/>
    /// on host arrays into one output array, as ONNX Runtime is timed: on a GPU the timings include copying Q, K
    /// and V in and the output back; on the CPU the arrays are used in place.
    /// </summary>
    public static AttentionBenchResult Run(KernelSession session, AttentionShape shape, int repeat, int seed, bool peer)
    {
        BenchSizes.Check(shape);
        var random = new Random(seed);
        float[] q = RandomFloats(random, shape.QueryElements);
        float[] k = RandomFloats(random, shape.KeyElements);
        float[] v = RandomFloats(random, shape.KeyElements);

        float[] output = new float[shape.QueryElements];
        Array.Fill(output, float.NaN); // poisoned: an element no call writes fails the verification
        session.Attention(q, k, v, output, shape); // warm-up (compiles the kernels)
        double flops = 4.0 * shape.Batch * shape.Heads * shape.QueryLength * shape.KeyLength * shape.HeadDim
            * (shape.Causal && shape.QueryLength == shape.KeyLength ? 0.5 : 1.0);

        // ONNX Runtime's MultiHeadAttention on the same data, in its own layout ([B, S, H·D], converted once
        // here, outside the timings), when the shape is one it computes: as many KV heads as query heads, and
        // for causal attention S = Sk (its unidirectional mask is then the library's).
        bool simdPeers = peer && session.Backend == Backend.CpuSimd;
        var notes = new List<string>();
        OrtAttention? ort = null;
        float[]? ortQ = null, ortK = null, ortV = null, ortOut = null;
        if (simdPeers)
        {
            if (!OnnxRuntimePeer.IsAvailable(out string reason))
                notes.Add($"ONNX Runtime not available: {reason}");
            else if (shape.KvHeads != shape.Heads)
                notes.Add("ONNX Runtime MultiHeadAttention: needs as many KV heads as query heads");
            else if (shape.Causal && shape.QueryLength != shape.KeyLength)
                notes.Add("ONNX Runtime MultiHeadAttention: causal only for seq = kv seq here");
            else
            {
                ort = new OrtAttention(shape.Batch, shape.Heads, shape.QueryLength, shape.KeyLength, shape.HeadDim, shape.Causal);
                ortQ = OrtAttention.ToSequenceMajor(q, shape.Batch, shape.Heads, shape.QueryLength, shape.HeadDim);
                ortK = OrtAttention.ToSequenceMajor(k, shape.Batch, shape.Heads, shape.KeyLength, shape.HeadDim);
                ortV = OrtAttention.ToSequenceMajor(v, shape.Batch, shape.Heads, shape.KeyLength, shape.HeadDim);
                ortOut = new float[ort.QueryElements];
                ort.Run(ortQ, ortK, ortV, ortOut); // warm-up
            }
        }
        using OrtAttention? ortSession = ort;

        // Ours and ORT take turns in blocks (Alternation).
        var ours = new Alternation.Contender(_ => session.Attention(q, k, v, output, shape), repeat);
        Alternation.Contender? onnx = ortSession is null ? null
            : new Alternation.Contender(_ => ortSession.Run(ortQ, ortK, ortV, ortOut), repeat);
        Alternation.Run(repeat, onnx is null ? [ours] : [ours, onnx]);

        (double maxError, string how) = Verify(q, k, v, output, shape, new Random(seed + 1));
        double median = ours.Median;
        double tflops = flops / (median * 1e-3) / 1e12;

        var peers = new List<PeerResult>();
        if (onnx is not null)
        {
            float[] headMajor = OrtAttention.FromSequenceMajor(ortOut, shape.Batch, shape.Heads, shape.QueryLength, shape.HeadDim);
            (double ortError, string ortHow) = Verify(q, k, v, headMajor, shape, new Random(seed + 1));
            double pm = onnx.Median;
            peers.Add(new PeerResult("onnxruntime",
                $"ONNX Runtime {OnnxRuntimePeer.Version} com.microsoft MultiHeadAttention, 3-D inputs ({ortSession!.Threads} threads)",
                pm, pm / median, Verified: ortError <= Tolerance,
                Note: $"max error {ortError:G2} against the float64 reference ({ortHow})", AfterIdleMs: onnx.AfterIdleMedian));
        }
        if (simdPeers)
        {
            if (OneDnn.IsAvailable(out string reason))
            {
                Thread.Sleep(Alternation.Pause); // let the other threads go idle first
                (double sgemmMs, double sgemmTflops) = Sgemm(1024, repeat);
                peers.Add(new PeerResult("onednn", $"oneDNN dnnl_sgemm 1024³ ({OneDnn.LibraryName}): a float32 rate yardstick, not attention",
                    sgemmMs, tflops / sgemmTflops, SameOp: false));
            }
            else
            {
                notes.Add($"oneDNN not available: {reason}");
            }
        }
        foreach (string note in notes)
        {
            bool oneDnn = note.StartsWith("oneDNN", StringComparison.Ordinal);
            peers.Add(new PeerResult(oneDnn ? "onednn" : "onnxruntime", oneDnn ? "oneDNN" : "ONNX Runtime", null, null, Note: note));
        }

        // The single peer fields (kept for older readers) describe the first peer that ran: ONNX Runtime's
        // attention where it ran, else the oneDNN sgemm rate; every peer is in `peers`.
        PeerResult? first = peers.FirstOrDefault(p => p.MedianMs is not null);
        double? peerTflops = first is null ? null : first.SameOp ? flops / (first.MedianMs!.Value * 1e-3) / 1e12 : tflops / first.Ratio;
        string? peerName = first?.Detail ?? (notes.Count > 0 ? string.Join("; ", notes) : null);
        return new AttentionBenchResult("attention", session.Backend.ToName(), session.DeviceName,
            shape.Batch, shape.Heads, shape.KvHeads, shape.QueryLength, shape.KeyLength, shape.HeadDim, shape.Causal,
            repeat, median, tflops, maxError <= Tolerance, maxError, how, peerName, peerTflops, tflops / peerTflops,
            first?.SameOp == true ? first.MedianMs : null, peers.Count > 0 ? peers : null, ours.AfterIdleMedian);
    }

    private static (double MedianMs, double Tflops) Sgemm(int n, int repeat)
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
        double median = Alternation.Median(times);
        return (median, 2.0 * n * n * n / (median * 1e-3) / 1e12);
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
