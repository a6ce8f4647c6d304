#pragma warning disable CA2208 // Named after the command-line options these sizes came from.
namespace Kernels.Cli;

/// <summary>The one check of benchmark sizes before any data is made: the host arrays must be possible.</summary>
internal static class BenchSizes
{
    /// <summary>m, n, k ≥ 1 and the m·k, n·k and m·n host arrays each within what a .NET array holds (in 64 bits, no overflow).</summary>
    /// <exception cref="ArgumentException">A size is not positive, or an array would be too large (named after the options).</exception>
    public static void Check(int m, int n, int k)
    {
        Positive(m, "--m");
        Positive(n, "--n");
        Positive(k, "--k");
        foreach ((long elements, string what) in new[] { ((long)m * k, "m·k"), ((long)n * k, "n·k"), ((long)m * n, "m·n") })
        {
            if (elements > Array.MaxLength)
                throw new ArgumentException(
                    $"--m/--n/--k: expected {what} ≤ {Array.MaxLength} (the benchmark's host arrays), got {m}×{n}×{k}: {what} = {elements}.", "--m");
        }
    }

    /// <summary>The attention tensors (Q and output, K and V) each within what a .NET array holds.</summary>
    public static void Check(AttentionShape shape)
    {
        if (shape.QueryElements > Array.MaxLength || shape.KeyElements > Array.MaxLength)
            throw new ArgumentException(
                $"--batch/--heads/--seq/--head-dim: expected Q and K each ≤ {Array.MaxLength} elements (the benchmark's host arrays), got {shape.QueryElements} and {shape.KeyElements}.", "--seq");
    }

    private static void Positive(int value, string option)
    {
        if (value < 1)
            throw new ArgumentException($"{option}: expected ≥ 1, got {value}.", option);
    }
}
