using Kernels.Backends.Simd;
using Kernels.DeviceCode;
using Kernels.Simd;

namespace Kernels.Backends.Ilgpu;

/// <summary>
/// The int8 weights in the layout of <see cref="SparseKernels.TiledInt8"/>: each row's non-zeros split
/// by k chunk of <see cref="SparseKernels.TileK"/> columns, in groups of four (the last group of a row
/// and chunk padded with weight 0 on its last column), each group one 64-bit word: four local columns
/// (bytes 0–3) and four weights (bytes 4–7). Built once on the host from any format, at upload.
/// </summary>
internal sealed class SparseTiles
{
    private SparseTiles(int chunks, int[] pointers, long[] groups)
    {
        Chunks = chunks;
        Pointers = pointers;
        Groups = groups;
    }

    /// <summary>⌈k / TileK⌉.</summary>
    public int Chunks { get; }

    /// <summary>rows·chunks + 1 group offsets: the groups of (row, chunk) are [p[row·chunks + chunk], p[row·chunks + chunk + 1]).</summary>
    public int[] Pointers { get; }

    /// <summary>Per group: four local columns (column − chunk·TileK), one byte each, then the four signed weights in the same order.</summary>
    public long[] Groups { get; }

    /// <summary>Builds the tiles of an int8 matrix; throws (naming the uploaded matrix, w) when they would not fit int32 offsets.</summary>
#pragma warning disable CA2208 // Named after the public API's argument (session.Upload(w)), not this helper's.
    public static unsafe SparseTiles Build(SparseParts<sbyte> parts)
    {
        int rows = parts.Rows, k = parts.Columns;
        int chunks = (k + SparseKernels.TileK - 1) / SparseKernels.TileK;
        fixed (int* rp = parts.RowPointers)
        fixed (int* ci = parts.ColumnIndices)
        fixed (sbyte* v = parts.Values)
        fixed (byte* meta = parts.Meta)
        {
            // The scalar CSR view: the arrays themselves for CSR, a converted copy for BSR and 2:4.
            using SparseSimdPlan csr = SparseSimdPlan.PrepareForCall(
                SparseLayout.Weights(parts.Format, rows, k, parts.BlockRows, parts.BlockColumns, rp, ci, v, meta), SimdLevel.Scalar);
            int* rowPtr = csr.RowPtr;
            int* col = csr.Col;
            var val = (sbyte*)csr.Val;

            long cells = (long)rows * chunks;
            if (cells + 1 > Array.MaxLength)
                throw new ArgumentException($"w: {rows} rows × {chunks} k chunks of {SparseKernels.TileK} is more than the tiled kernel's offsets hold.", "w");
            var pointers = new int[cells + 1];
            long groups = 0;
            for (int r = 0; r < rows; r++)
            {
                long cell = (long)r * chunks;
                int p = rowPtr[r], end = rowPtr[r + 1];
                for (int c = 0; c < chunks; c++)
                {
                    int limit = (c + 1) * SparseKernels.TileK;
                    int count = 0;
                    while (p < end && col[p] < limit)
                    {
                        count++;
                        p++;
                    }
                    groups += (count + 3) / 4;
                    if (groups > int.MaxValue)
                        throw new ArgumentException($"w: more than {int.MaxValue} groups of four non-zeros for the tiled kernel.", "w");
                    pointers[cell + c + 1] = (int)groups;
                }
            }

            var packed = new long[Math.Max(1, groups)];
            for (int r = 0; r < rows; r++)
            {
                int p = rowPtr[r], end = rowPtr[r + 1];
                for (int c = 0; c < chunks; c++)
                {
                    int limit = (c + 1) * SparseKernels.TileK, baseCol = c * SparseKernels.TileK;
                    int g = pointers[(long)r * chunks + c];
                    int j = 0, cw = 0, ww = 0, last = 0;
                    while (p < end && col[p] < limit)
                    {
                        last = col[p] - baseCol;
                        cw |= last << (8 * j);
                        ww |= (val[p] & 0xFF) << (8 * j);
                        p++;
                        if (++j == 4)
                        {
                            packed[g] = (uint)cw | ((long)ww << 32);
                            g++;
                            j = cw = ww = 0;
                        }
                    }
                    if (j > 0)
                    {
                        // Pad with the last column and weight 0.
                        for (; j < 4; j++)
                            cw |= last << (8 * j);
                        packed[g] = (uint)cw | ((long)ww << 32);
                    }
                }
            }
            return new SparseTiles(chunks, pointers, packed);
        }
    }
#pragma warning restore CA2208
}
