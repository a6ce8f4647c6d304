namespace Kernels.Cli;

/// <summary>One measured sparse configuration, as printed and as written with <c>--json</c>.</summary>
internal sealed record SparseBenchResult(
    string Op,
    string Backend,
    string Device,
    string Format,
    string Block,
    int M,
    int N,
    int K,
    double RequestedSparsity,
    double Sparsity,
    long NonZeros,
    int Repeat,
    double MedianMs,
    double DenseMedianMs,
    double SpeedupVsDense,
    double DenseEquivalentTops,
    bool Verified,
    string Verification,
    double? CrossoverSparsity = null,
    string? SparseKernel = null,
    bool DenseFallback = false);

/// <summary><c>kernels bench --op sparse-gemm</c>: the sparse int8 product against the dense int8 GEMM of the same shape on the same backend.</summary>
internal static class SparseBenchmark
{
    /// <summary>Sparsities of <c>--sweep</c>, for the crossover.</summary>
    internal static readonly double[] SweepSparsities = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99];

    /// <summary>Default cube size per backend (the CPU accelerator simulates threads: keep it small).</summary>
    internal static int DefaultSize(Backend backend) => backend switch
    {
        Backend.Cuda => 4096,
        Backend.OpenCL or Backend.CpuSimd => 1024,
        _ => 128,
    };

    /// <summary>Parses <c>2:4</c>, <c>24</c>, <c>twofour</c>, <c>csr</c>, <c>bsr</c>.</summary>
    public static SparseFormat ParseFormat(string value) => value.Trim().ToLowerInvariant() switch
    {
        "csr" => SparseFormat.Csr,
        "bsr" => SparseFormat.Bsr,
        "2:4" or "24" or "twofour" or "two-four" => SparseFormat.TwoFour,
        _ => throw new ArgumentException($"--format: expected csr, bsr or 2:4, got '{value}'.", nameof(value)),
    };

    /// <summary>Parses a block shape <c>RxC</c> (for example <c>4x4</c> or <c>1x16</c>).</summary>
    public static (int Rows, int Columns) ParseBlock(string value)
    {
        string[] parts = value.Split('x', 'X', '×');
        if (parts.Length == 2 && int.TryParse(parts[0], out int r) && int.TryParse(parts[1], out int c) && r >= 1 && c >= 1)
            return (r, c);
        throw new ArgumentException($"--block: expected ROWSxCOLUMNS with both ≥ 1 (for example 4x4), got '{value}'.", nameof(value));
    }

    public static string FormatName(SparseFormat format) => format switch
    {
        SparseFormat.Csr => "csr",
        SparseFormat.Bsr => "bsr",
        _ => "2:4",
    };

    public static List<SparseBenchResult> Run(
        KernelSession session, int m, int n, int k, SparseFormat format, (int Rows, int Columns) block, double sparsity,
        bool sweep, int repeat, int seed)
    {
        BenchSizes.Check(m, n, k);
        var measured = new List<SparseAdvice>();
        IEnumerable<double> sparsities = sweep ? SweepSparsities.Append(sparsity).Distinct().Order() : [sparsity];
        foreach (double s in sparsities)
            measured.Add(SparseAdvisor.Measure(session, m, n, k, s, format, block.Rows, block.Columns, repeat, seed));
        double? crossover = sweep ? SparseAdvisor.CrossoverOf(measured) : null;
        return measured.Select(a => new SparseBenchResult(
            "sparse-gemm", session.Backend.ToName(), session.DeviceName, FormatName(format),
            format == SparseFormat.Bsr ? $"{a.BlockRows}x{a.BlockColumns}" : "-",
            m, n, k, a.RequestedSparsity, a.Sparsity, a.NonZeros, repeat, a.SparseMs, a.DenseMs, a.Speedup,
            2.0 * m * n * k / (a.SparseMs * 1e-3) / 1e12, a.Verified,
            $"identical to the dense int8 GEMM; int64 reference at 4 corners + {SparseAdvisor.SampledOutputs} samples",
            crossover, a.Kernel, a.DenseFallback)).ToList();
    }
}
