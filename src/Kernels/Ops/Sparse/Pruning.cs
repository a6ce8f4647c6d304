namespace Kernels;

/// <summary>
/// Pruning of float32 weight matrices (rows = output channels n, columns = k, row-major, the layout of a
/// linear layer) to a target sparsity, and the int8 quantization of what remains.
/// </summary>
/// <remarks>
/// <para>
/// Every method returns a new dense matrix with the pruned weights set to zero; the input is not changed.
/// The input must hold finite values and <c>sparsity</c> must lie in [0, 1].
/// </para>
/// <para>
/// Counts: over a set of <c>count</c> candidates (weights or blocks) exactly
/// <c>round(sparsity·count)</c> (rounding half to even) are pruned, so 0 prunes nothing and 1 prunes all.
/// Weights that are already zero count like any other candidate (they have the smallest magnitude, so
/// they are pruned first); the result may therefore hold more zeros than the pruned count.
/// </para>
/// <para>
/// Ties: candidates are ranked by (score, index) ascending, the index being the element's row-major
/// index (the block's row-major index in the block grid, the column inside a group of 4 for 2:4), and
/// the lowest-ranked are pruned. Among equal magnitudes the one with the lower index is pruned first,
/// so the result is deterministic.
/// </para>
/// </remarks>
public static class Pruning
{
    /// <summary>
    /// Global magnitude pruning: the <c>round(sparsity·rows·cols)</c> weights of smallest |w| in the whole
    /// matrix become zero.
    /// </summary>
    /// <exception cref="ArgumentException">A size is not positive, the length does not match, a value is not finite, or sparsity is outside [0, 1].</exception>
    public static float[] Magnitude(ReadOnlySpan<float> w, int rows, int cols, double sparsity)
    {
        float[] result = Prepare(w, rows, cols, sparsity);
        PruneSmallest(result, 0, result.Length, sparsity);
        return result;
    }

    /// <summary>
    /// Per-row magnitude pruning: in every row the <c>round(sparsity·cols)</c> weights of smallest |w|
    /// become zero (every output channel keeps the same number of weights).
    /// </summary>
    /// <exception cref="ArgumentException">See <see cref="Magnitude"/>.</exception>
    public static float[] MagnitudePerRow(ReadOnlySpan<float> w, int rows, int cols, double sparsity)
    {
        float[] result = Prepare(w, rows, cols, sparsity);
        for (int r = 0; r < rows; r++)
            PruneSmallest(result, r * cols, cols, sparsity);
        return result;
    }

    /// <summary>
    /// Block pruning: the matrix is cut into blocks of <paramref name="blockRows"/>×<paramref name="blockCols"/>
    /// from the top-left corner (blocks on the bottom and right edges are partial when the sizes do not
    /// divide), and the <c>round(sparsity·blocks)</c> blocks of smallest score become zero. The score is
    /// the mean of w² over the block's elements inside the matrix (the L2 norm normalized by the element
    /// count, so partial edge blocks compete fairly with whole ones).
    /// </summary>
    /// <exception cref="ArgumentException">See <see cref="Magnitude"/>; also a block extent below 1, or a block larger than the matrix in both dimensions.</exception>
    public static float[] Block(ReadOnlySpan<float> w, int rows, int cols, int blockRows, int blockCols, double sparsity)
    {
        float[] result = Prepare(w, rows, cols, sparsity);
        Check.PruningBlock(blockRows, blockCols, rows, cols);
        // In 64 bits: a block may exceed the matrix in one dimension (an edge block), by any amount.
        int gridRows = (int)(((long)rows + blockRows - 1) / blockRows);
        int gridCols = (int)(((long)cols + blockCols - 1) / blockCols);
        var scores = new double[(long)gridRows * gridCols];
        for (int br = 0; br < gridRows; br++)
        {
            for (int bc = 0; bc < gridCols; bc++)
            {
                double sum = 0;
                int count = 0;
                ForEachInBlock(rows, cols, blockRows, blockCols, br, bc, at =>
                {
                    sum += (double)result[at] * result[at];
                    count++;
                });
                scores[(long)br * gridCols + bc] = sum / count;
            }
        }

        foreach (int block in Smallest(scores, Pruned(sparsity, scores.Length)))
            ForEachInBlock(rows, cols, blockRows, blockCols, block / gridCols, block % gridCols, at => result[at] = 0);
        return result;
    }

    /// <summary>
    /// 2:4 semi-structured pruning: in every group of 4 consecutive columns of a row (from column 0)
    /// the 2 weights of largest |w| are kept and the others become zero. A last, partial group of
    /// 1 or 2 columns is kept whole; one of 3 columns loses its smallest weight.
    /// </summary>
    /// <exception cref="ArgumentException">A size is not positive, the length does not match, or a value is not finite.</exception>
    public static float[] TwoFour(ReadOnlySpan<float> w, int rows, int cols)
    {
        float[] result = Prepare(w, rows, cols, 0);
        Span<double> scores = stackalloc double[4];
        for (int r = 0; r < rows; r++)
        {
            for (int c0 = 0; c0 < cols; c0 += 4)
            {
                int width = Math.Min(4, cols - c0);
                for (int j = 0; j < width; j++)
                    scores[j] = Math.Abs(result[r * cols + c0 + j]);
                foreach (int j in Smallest(scores[..width].ToArray(), Math.Max(0, width - 2)))
                    result[r * cols + c0 + j] = 0;
            }
        }
        return result;
    }

    /// <summary>
    /// Quantizes a (pruned) rows×cols weight matrix to int8 with one scale per row, i.e. per output
    /// channel (<see cref="Quantization.Quantize"/> with <see cref="QuantizationGranularity.PerRow"/>).
    /// Zeros stay exactly zero, so the sparsity pattern is kept (a tiny weight may also round to zero,
    /// which only adds zeros: a 2:4 matrix stays 2:4). Build the sparse matrix from
    /// <see cref="QuantizedMatrix.Values"/> (<see cref="SparseMatrix.FromDense(ReadOnlySpan{sbyte}, int, int, SparseFormat)"/>)
    /// and pass <see cref="QuantizedMatrix.Scales"/> as the weight scales of
    /// <see cref="KernelSession.SparseInt8GemmDequant(SparseMatrix, ReadOnlySpan{sbyte}, ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, int)"/>.
    /// </summary>
    /// <exception cref="ArgumentException">A size is not positive, the length does not match, or a value is not finite.</exception>
    public static QuantizedMatrix QuantizePerChannel(ReadOnlySpan<float> w, int rows, int cols)
    {
        Validate(w, rows, cols, 0);
        return Quantization.Quantize(w, rows, cols, QuantizationGranularity.PerRow);
    }

    private static float[] Prepare(ReadOnlySpan<float> w, int rows, int cols, double sparsity)
    {
        Validate(w, rows, cols, sparsity);
        return w.ToArray();
    }

    private static void Validate(ReadOnlySpan<float> w, int rows, int cols, double sparsity)
    {
        Check.Positive(rows, nameof(rows));
        Check.Positive(cols, nameof(cols));
        Check.ExactLength(w.Length, (long)rows * cols, nameof(w), $"rows·cols = {rows}·{cols}");
        Check.Finite(w, nameof(w));
        if (!(sparsity >= 0 && sparsity <= 1))
            throw new ArgumentOutOfRangeException(nameof(sparsity), sparsity, $"sparsity: expected a fraction in [0, 1], got {sparsity}.");
    }

    private static int Pruned(double sparsity, int count) =>
        (int)Math.Min(count, Math.Round(sparsity * count, MidpointRounding.ToEven));

    /// <summary>Zeros the <c>round(sparsity·count)</c> smallest |w| of w[start .. start + count).</summary>
    private static void PruneSmallest(float[] w, int start, int count, double sparsity)
    {
        var scores = new double[count];
        for (int i = 0; i < count; i++)
            scores[i] = Math.Abs(w[start + i]);
        foreach (int i in Smallest(scores, Pruned(sparsity, count)))
            w[start + i] = 0;
    }

    /// <summary>The indices of the <paramref name="count"/> smallest scores, ranking by (score, index).</summary>
    private static int[] Smallest(double[] scores, int count)
    {
        if (count == 0)
            return [];
        int[] order = new int[scores.Length];
        for (int i = 0; i < order.Length; i++)
            order[i] = i;
        Array.Sort(order, (x, y) =>
        {
            int bySize = scores[x].CompareTo(scores[y]);
            return bySize != 0 ? bySize : x.CompareTo(y);
        });
        return order[..count];
    }

    private static void ForEachInBlock(int rows, int cols, int blockRows, int blockCols, int br, int bc, Action<int> action)
    {
        int r1 = (int)Math.Min(rows, (br + 1L) * blockRows);
        int c1 = (int)Math.Min(cols, (bc + 1L) * blockCols);
        for (int r = (int)((long)br * blockRows); r < r1; r++)
        {
            for (int c = (int)((long)bc * blockCols); c < c1; c++)
                action(r * cols + c);
        }
    }
}
