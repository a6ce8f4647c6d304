using System.Text.Json;

namespace Kernels.Cli.Report;

/// <summary>How big the report's shapes are: the default, <c>--quick</c> (about a quarter of the work), or the hidden <c>tiny</c> of the tests.</summary>
internal enum ReportScale
{
    Default,
    Quick,
    Tiny,
}

/// <summary>One benchmark of the suite on one backend: what it is called and how it runs (through the bench runners).</summary>
/// <param name="Label">For progress lines: op and shape.</param>
/// <param name="Run">Runs it on a session; returns the result records, each serialized as <c>bench --json</c> prints it.</param>
internal sealed record ReportCase(string Label, Func<KernelSession, IEnumerable<object>> Run);

/// <summary>
/// The suite <c>kernels report</c> runs on each backend, through the same runners as <c>kernels bench</c>
/// (<see cref="GemmBenchmark"/>, <see cref="SparseBenchmark"/>, <see cref="AttentionBenchmark"/>): int8 GEMM at a
/// square and a decode shape (m = 1), CSR int8 at 90 % sparsity, attention prefill (non-causal and causal) and decode
/// (one query row against a long key sequence). Sizes per backend (docs/report.md): the ILGPU CPU accelerator simulates
/// every GPU thread on the CPU, so it gets small shapes only.
/// </summary>
internal static class ReportSuite
{
    /// <summary>
    /// Sizes of one backend at one scale. <c>DecodeRepeat</c>, for the two decode cases on the fast backends: with peers
    /// the calls alternate in 3 blocks, and a decode call's 16 MiB of weights (or K and V) come back into the cache only
    /// over the first calls of a block (measured on the Xeon VM: about 8 calls, 1.4 → 0.4 ms at m = 1, n = k = 4096), so
    /// blocks of 5 would mostly time that.
    /// </summary>
    internal sealed record Sizes(int Gemm, int DecodeNk, int Sparse, int Heads, int HeadDim, int Seq, int DecodeKv, int Repeat, int DecodeRepeat);

    internal static Sizes For(Backend backend, ReportScale scale)
    {
        if (scale == ReportScale.Tiny)
            return new Sizes(Gemm: 32, DecodeNk: 64, Sparse: 32, Heads: 2, HeadDim: 16, Seq: 16, DecodeKv: 32, Repeat: 2, DecodeRepeat: 2);
        Sizes full = backend switch
        {
            Backend.Cuda => new Sizes(4096, 8192, 4096, 16, 64, 4096, 8192, 15, 60),
            Backend.OpenCL => new Sizes(512, 2048, 512, 8, 64, 256, 1024, 15, 15),
            Backend.CpuSimd => new Sizes(1024, 4096, 1024, 8, 64, 1024, 4096, 15, 60),
            _ => new Sizes(256, 512, 128, 8, 64, 64, 256, 15, 15), // the ILGPU CPU accelerator: simulated threads
        };
        return scale == ReportScale.Quick
            ? full with { Gemm = full.Gemm / 2, DecodeNk = full.DecodeNk / 2, Sparse = full.Sparse / 2, Seq = full.Seq / 2, DecodeKv = full.DecodeKv / 2, Repeat = 5, DecodeRepeat = Math.Min(full.DecodeRepeat, 20) }
            : full;
    }

    /// <summary>The cases for <paramref name="backend"/>, in the order they run.</summary>
    internal static List<ReportCase> Cases(Backend backend, ReportScale scale, int seed, bool peer)
    {
        Sizes s = For(backend, scale);
        var cases = new List<ReportCase>
        {
            new($"int8-gemm {s.Gemm}×{s.Gemm}×{s.Gemm}",
                session => [GemmBenchmark.Run(session, s.Gemm, s.Gemm, s.Gemm, s.Repeat, GemmKernel.Auto, seed, peer)]),
            new($"int8-gemm decode 1×{s.DecodeNk}×{s.DecodeNk}",
                session => [GemmBenchmark.Run(session, 1, s.DecodeNk, s.DecodeNk, s.DecodeRepeat, GemmKernel.Auto, seed, peer)]),
            new($"sparse-gemm csr 90% {s.Sparse}×{s.Sparse}×{s.Sparse}",
                session => SparseBenchmark.Run(session, s.Sparse, s.Sparse, s.Sparse, SparseFormat.Csr, (4, 4), 0.9, sweep: false, s.Repeat, seed)),
        };
        foreach (bool causal in new[] { false, true })
        {
            var shape = new AttentionShape(1, s.Heads, s.Heads, s.Seq, s.Seq, s.HeadDim, causal);
            cases.Add(new($"attention prefill {s.Seq}{(causal ? " causal" : "")}", session => [AttentionBenchmark.Run(session, shape, s.Repeat, seed, peer)]));
        }
        var decode = new AttentionShape(1, s.Heads, s.Heads, 1, s.DecodeKv, s.HeadDim, false);
        cases.Add(new($"attention decode 1×{s.DecodeKv}", session => [AttentionBenchmark.Run(session, decode, s.DecodeRepeat, seed, peer)]));
        return cases;
    }

    /// <summary>A result record as one line of <c>bench --json</c>.</summary>
    internal static string ToJsonLine(object result) => JsonSerializer.Serialize(result, result.GetType(), Program.Json);
}
