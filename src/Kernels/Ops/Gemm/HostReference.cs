namespace Kernels;

/// <summary>
/// Plain host implementations with the library's semantics and wide accumulation (int64, float64):
/// what every kernel is tested and verified against.
/// </summary>
public static partial class HostReference
{
    /// <summary><c>C[i,j] = Σ_k A[i,k]·B[j,k]</c> with int64 accumulation.</summary>
    public static long[] Int8Gemm(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, int m, int n, int k)
    {
        Check.GemmShape(m, n, k);
        Check.ExactLength(a.Length, (long)m * k, nameof(a), $"m·k = {m}·{k}");
        Check.ExactLength(b.Length, (long)n * k, nameof(b), $"n·k = {n}·{k}");
        var c = new long[Check.ArrayLength((long)m * n, "m·n")];
        for (int i = 0; i < m; i++)
        {
            ReadOnlySpan<sbyte> row = a.Slice(i * k, k);
            for (int j = 0; j < n; j++)
                c[(long)i * n + j] = Dot(row, b.Slice(j * k, k));
        }
        return c;
    }

    /// <summary>One element of the GEMM, <c>Σ_k A[row,k]·B[col,k]</c>, in int64.</summary>
    public static long Int8GemmElement(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, int k, int row, int col) =>
        Dot(a.Slice(row * k, k), b.Slice(col * k, k));

    /// <summary>The dequantized GEMM <c>C·aScale[i]·bScale[j] + bias[j]</c> in float64 (bias may be empty).</summary>
    public static double[] Int8GemmDequant(
        ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, ReadOnlySpan<float> aScale, ReadOnlySpan<float> bScale,
        ReadOnlySpan<float> bias, int m, int n, int k)
    {
        long[] c = Int8Gemm(a, b, m, n, k);
        var y = new double[c.Length];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double v = c[(long)i * n + j] * (double)aScale[i] * bScale[j];
                y[(long)i * n + j] = bias.IsEmpty ? v : v + bias[j];
            }
        }
        return y;
    }

    private static long Dot(ReadOnlySpan<sbyte> x, ReadOnlySpan<sbyte> y)
    {
        long sum = 0;
        for (int i = 0; i < x.Length; i++)
            sum += x[i] * y[i];
        return sum;
    }
}
