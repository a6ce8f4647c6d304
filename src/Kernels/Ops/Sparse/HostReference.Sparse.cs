namespace Kernels;

public static partial class HostReference
{
    /// <summary>
    /// The sparse int8 product <c>Y[i, j] = Σ_k X[i, k]·W[j, k]</c> with int64 accumulation, computed on the
    /// dense form of <paramref name="w"/> (so it checks the layout as well as the kernels).
    /// </summary>
    public static long[] SparseInt8Gemm(SparseMatrix w, ReadOnlySpan<sbyte> x, int m)
    {
        ArgumentNullException.ThrowIfNull(w);
        return Int8Gemm(x, w.ToDense(), m, w.Rows, w.Columns);
    }

    /// <summary>The sparse float32 product <c>X·Wᵀ (+ bias)</c> in float64, on the dense form of <paramref name="w"/> (bias may be empty).</summary>
    public static double[] SparseGemm(SparseMatrixF32 w, ReadOnlySpan<float> x, int m, ReadOnlySpan<float> bias = default)
    {
        ArgumentNullException.ThrowIfNull(w);
        int n = w.Rows, k = w.Columns;
        Check.Positive(m, nameof(m));
        Check.ExactLength(x.Length, (long)m * k, nameof(x), $"m·Columns = {m}·{k}");
        if (!bias.IsEmpty)
            Check.ExactLength(bias.Length, n, nameof(bias), "Rows (or 0 for no bias)");
        float[] dense = w.ToDense();
        var y = new double[Check.ArrayLength((long)m * n, "m·Rows")];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = bias.IsEmpty ? 0 : bias[j];
                for (int c = 0; c < k; c++)
                    sum += (double)x[i * k + c] * dense[(long)j * k + c];
                y[(long)i * n + j] = sum;
            }
        }
        return y;
    }
}
