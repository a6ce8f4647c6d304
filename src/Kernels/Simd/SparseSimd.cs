namespace Kernels.Simd;

/// <summary>
/// A sparse weight matrix on host memory as raw pointers, in one of the <see cref="SparseFormat"/>s
/// (the layouts are described there). <c>Values</c> points at <c>sbyte</c> or <c>float</c> values.
/// </summary>
internal readonly unsafe struct SparseWeights
{
    public SparseFormat Format { get; init; }

    /// <summary>Rows of W (= n, output channels).</summary>
    public int Rows { get; init; }

    /// <summary>Columns of W (= k).</summary>
    public int Columns { get; init; }

    /// <summary>BSR block height (1 for the other formats).</summary>
    public int BlockRows { get; init; }

    /// <summary>BSR block width (1 for the other formats).</summary>
    public int BlockColumns { get; init; }

    /// <summary>CSR: Rows+1 entries; BSR: ceil(Rows/BlockRows)+1 entries; 2:4: null.</summary>
    public int* RowPointers { get; init; }

    /// <summary>CSR: column per value; BSR: block column per block; 2:4: null.</summary>
    public int* ColumnIndices { get; init; }

    /// <summary>CSR: nnz values; BSR: blocks·BlockRows·BlockColumns; 2:4: Rows·ceil(Columns/4)·2.</summary>
    public void* Values { get; init; }

    /// <summary>2:4 only: Rows·ceil(Columns/4) metadata bytes; null otherwise.</summary>
    public byte* Meta { get; init; }
}

/// <summary>
/// Sparse × dense products on the CPU for the <see cref="Backend.CpuSimd"/> backend:
/// <c>Y[m, n] = Σ_k X[m, k]·W[n, k]</c> with W sparse (<see cref="SparseWeights"/>) and X dense row-major m×k.
/// </summary>
/// <remarks>The first version is scalar and defines the semantics; the vectorized kernels replace the bodies.</remarks>
internal static unsafe class SparseSimd
{
    /// <summary>
    /// int8 × int8 → int32 (exact), written through <paramref name="output"/> (int32 or the dequantizing
    /// epilogue, batch index 0: C/Y row-major m×Rows).
    /// </summary>
    public static void Int8(in SparseWeights w, sbyte* x, int m, in SimdEpilogue output, SimdLevel level)
    {
        _ = level;
        int n = w.Rows;
        int k = w.Columns;
        var acc = new int[n];
        for (int i = 0; i < m; i++)
        {
            sbyte* xr = x + (long)i * k;
            Array.Clear(acc);
            AccumulateInt8(w, xr, acc);
            for (int j = 0; j < n; j++)
                Store(output, i, j, n, acc[j]);
        }
    }

    /// <summary>float32: <c>Y = X·Wᵀ (+ bias[n])</c>, Y row-major m×Rows; <paramref name="bias"/> may be null.</summary>
    public static void Float32(in SparseWeights w, float* x, int m, float* y, float* bias, SimdLevel level)
    {
        _ = level;
        int n = w.Rows;
        int k = w.Columns;
        var acc = new float[n];
        for (int i = 0; i < m; i++)
        {
            float* xr = x + (long)i * k;
            Array.Clear(acc);
            AccumulateFloat(w, xr, acc);
            for (int j = 0; j < n; j++)
                y[(long)i * n + j] = bias == null ? acc[j] : acc[j] + bias[j];
        }
    }

    private static void Store(in SimdEpilogue output, int row, int col, int n, int acc)
    {
        long at = (long)row * n + col;
        if (!output.IsDequant)
        {
            output.C[at] = acc;
            return;
        }
        float v = acc * output.AScale[row] * output.BScale[col];
        if (output.Bias != null)
            v += output.Bias[col];
        output.Y[at] = v;
    }

    private static void AccumulateInt8(in SparseWeights w, sbyte* x, int[] acc)
    {
        var values = (sbyte*)w.Values;
        switch (w.Format)
        {
            case SparseFormat.Csr:
                for (int r = 0; r < w.Rows; r++)
                {
                    int sum = 0;
                    for (int p = w.RowPointers[r]; p < w.RowPointers[r + 1]; p++)
                        sum += x[w.ColumnIndices[p]] * values[p];
                    acc[r] = sum;
                }
                break;
            case SparseFormat.Bsr:
            {
                int br = w.BlockRows, bc = w.BlockColumns, blockRows = (w.Rows + br - 1) / br;
                for (int b = 0; b < blockRows; b++)
                {
                    for (int p = w.RowPointers[b]; p < w.RowPointers[b + 1]; p++)
                    {
                        int c0 = w.ColumnIndices[p] * bc;
                        sbyte* block = values + (long)p * br * bc;
                        for (int i = 0; i < br && b * br + i < w.Rows; i++)
                        {
                            int sum = 0;
                            for (int j = 0; j < bc && c0 + j < w.Columns; j++)
                                sum += x[c0 + j] * block[i * bc + j];
                            acc[b * br + i] += sum;
                        }
                    }
                }
                break;
            }
            case SparseFormat.TwoFour:
            {
                int groups = (w.Columns + 3) / 4;
                for (int r = 0; r < w.Rows; r++)
                {
                    int sum = 0;
                    for (int g = 0; g < groups; g++)
                    {
                        long at = (long)r * groups + g;
                        byte meta = w.Meta[at];
                        int c0 = g * 4 + (meta & 3), c1 = g * 4 + ((meta >> 2) & 3);
                        if (c0 < w.Columns)
                            sum += x[c0] * values[2 * at];
                        if (c1 < w.Columns)
                            sum += x[c1] * values[2 * at + 1];
                    }
                    acc[r] = sum;
                }
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(w), w.Format, $"w.Format: expected a SparseFormat, got {(int)w.Format}.");
        }
    }

    private static void AccumulateFloat(in SparseWeights w, float* x, float[] acc)
    {
        var values = (float*)w.Values;
        switch (w.Format)
        {
            case SparseFormat.Csr:
                for (int r = 0; r < w.Rows; r++)
                {
                    float sum = 0;
                    for (int p = w.RowPointers[r]; p < w.RowPointers[r + 1]; p++)
                        sum += x[w.ColumnIndices[p]] * values[p];
                    acc[r] = sum;
                }
                break;
            case SparseFormat.Bsr:
            {
                int br = w.BlockRows, bc = w.BlockColumns, blockRows = (w.Rows + br - 1) / br;
                for (int b = 0; b < blockRows; b++)
                {
                    for (int p = w.RowPointers[b]; p < w.RowPointers[b + 1]; p++)
                    {
                        int c0 = w.ColumnIndices[p] * bc;
                        float* block = values + (long)p * br * bc;
                        for (int i = 0; i < br && b * br + i < w.Rows; i++)
                        {
                            float sum = 0;
                            for (int j = 0; j < bc && c0 + j < w.Columns; j++)
                                sum += x[c0 + j] * block[i * bc + j];
                            acc[b * br + i] += sum;
                        }
                    }
                }
                break;
            }
            case SparseFormat.TwoFour:
            {
                int groups = (w.Columns + 3) / 4;
                for (int r = 0; r < w.Rows; r++)
                {
                    float sum = 0;
                    for (int g = 0; g < groups; g++)
                    {
                        long at = (long)r * groups + g;
                        byte meta = w.Meta[at];
                        int c0 = g * 4 + (meta & 3), c1 = g * 4 + ((meta >> 2) & 3);
                        if (c0 < w.Columns)
                            sum += x[c0] * values[2 * at];
                        if (c1 < w.Columns)
                            sum += x[c1] * values[2 * at + 1];
                    }
                    acc[r] = sum;
                }
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(w), w.Format, $"w.Format: expected a SparseFormat, got {(int)w.Format}.");
        }
    }
}
