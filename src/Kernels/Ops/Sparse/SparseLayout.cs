using System.Numerics;
using Kernels.Backends.Simd;

namespace Kernels;

/// <summary>
/// The arrays of a sparse matrix in one of the <see cref="SparseFormat"/> layouts. The arrays live on
/// the pinned object heap, so raw pointers to them stay valid as long as the object lives.
/// </summary>
internal sealed record SparseParts<T>(
    SparseFormat Format, int Rows, int Columns, int BlockRows, int BlockColumns,
    int[] RowPointers, int[] ColumnIndices, T[] Values, byte[] Meta)
    where T : unmanaged;

/// <summary>Building, validating and expanding the sparse layouts, for int8 and float32 values alike.</summary>
internal static class SparseLayout
{
    /// <summary>The block shape <see cref="SparseFormat.Bsr"/> gets when none is given.</summary>
    public const int DefaultBlock = 4;

    public static int Groups(int cols) => (cols + 3) / 4;

    // ---------------------------------------------------------------- from dense

    public static SparseParts<T> FromDense<T>(ReadOnlySpan<T> w, int rows, int cols, SparseFormat format, int blockRows, int blockColumns)
        where T : unmanaged, INumberBase<T>
    {
        Size(rows, cols);
        Check.ExactLength(w.Length, (long)rows * cols, nameof(w), $"rows·cols = {rows}·{cols}");
        if (typeof(T) == typeof(float))
            Check.Finite(System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(w), nameof(w));
        if (format == SparseFormat.Bsr)
        {
            Check.BsrBlock(blockRows, blockColumns);
        }
        else
        {
            UnitBlock(blockRows, nameof(blockRows), format);
            UnitBlock(blockColumns, nameof(blockColumns), format);
        }
        return format switch
        {
            SparseFormat.Csr => DenseToCsr(w, rows, cols),
            SparseFormat.Bsr => DenseToBsr(w, rows, cols, blockRows, blockColumns),
            SparseFormat.TwoFour => DenseToTwoFour(w, rows, cols),
            _ => throw new ArgumentOutOfRangeException(nameof(format), format, $"format: expected a SparseFormat, got {(int)format}."),
        };
    }

    private static SparseParts<T> DenseToCsr<T>(ReadOnlySpan<T> w, int rows, int cols)
        where T : unmanaged, INumberBase<T>
    {
        var pointers = new int[rows + 1];
        var indices = new List<int>();
        var values = new List<T>();
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                T v = w[r * cols + c];
                if (!T.IsZero(v))
                {
                    indices.Add(c);
                    values.Add(v);
                }
            }
            pointers[r + 1] = indices.Count;
        }
        return new(SparseFormat.Csr, rows, cols, 1, 1, Pinned<int>(pointers), Pinned<int>(indices.ToArray()), Pinned<T>(values.ToArray()), Pinned<byte>([]));
    }

    private static SparseParts<T> DenseToBsr<T>(ReadOnlySpan<T> w, int rows, int cols, int br, int bc)
        where T : unmanaged, INumberBase<T>
    {
        int gridRows = (int)(((long)rows + br - 1) / br), gridCols = (int)(((long)cols + bc - 1) / bc);
        // Every block holding a non-zero is stored whole (edge blocks zero-padded): count them first, so that
        // a layout too large for an array is refused before anything is allocated.
        long stored = 0;
        for (int b = 0; b < gridRows; b++)
        {
            for (int j = 0; j < gridCols; j++)
            {
                if (BlockHasNonZero(w, rows, cols, br, bc, b, j))
                    stored++;
            }
        }
        if (stored * br * bc > Array.MaxLength)
            throw new ArgumentException(
                $"blockRows·blockColumns: expected the stored blocks to hold at most {Array.MaxLength} values, got {stored} non-zero blocks of {br}·{bc} = {stored * br * bc} values; choose smaller blocks.",
                br >= bc ? "blockRows" : "blockColumns");

        var pointers = new int[gridRows + 1];
        var indices = new int[stored];
        var values = new T[stored * br * bc];
        int p = 0;
        for (int b = 0; b < gridRows; b++)
        {
            for (int j = 0; j < gridCols; j++)
            {
                if (!BlockHasNonZero(w, rows, cols, br, bc, b, j))
                    continue;
                indices[p] = j;
                for (int i = 0; i < br && (long)b * br + i < rows; i++)
                {
                    for (int jj = 0; jj < bc && (long)j * bc + jj < cols; jj++)
                        values[(long)p * br * bc + (long)i * bc + jj] = w[(b * br + i) * cols + j * bc + jj];
                }
                p++;
            }
            pointers[b + 1] = p;
        }
        return new(SparseFormat.Bsr, rows, cols, br, bc, Pinned<int>(pointers), Pinned<int>(indices), Pinned<T>(values), Pinned<byte>([]));
    }

    /// <summary>Whether block (b, j) of a dense row-major matrix holds a non-zero (the part inside the matrix).</summary>
    private static bool BlockHasNonZero<T>(ReadOnlySpan<T> w, int rows, int cols, int br, int bc, int b, int j)
        where T : unmanaged, INumberBase<T>
    {
        for (int i = 0; i < br && (long)b * br + i < rows; i++)
        {
            for (int jj = 0; jj < bc && (long)j * bc + jj < cols; jj++)
            {
                if (!T.IsZero(w[(b * br + i) * cols + j * bc + jj]))
                    return true;
            }
        }
        return false;
    }

    private static SparseParts<T> DenseToTwoFour<T>(ReadOnlySpan<T> w, int rows, int cols)
        where T : unmanaged, INumberBase<T>
    {
        int groups = Groups(cols);
        int length = Check.ArrayLength((Int128)rows * groups * 2, "rows·ceil(cols/4)·2 values");
        T[] values = GC.AllocateArray<T>(length, pinned: true);
        byte[] meta = GC.AllocateArray<byte>(length / 2, pinned: true);
        Span<int> kept = stackalloc int[4];
        for (int r = 0; r < rows; r++)
        {
            for (int g = 0; g < groups; g++)
            {
                int count = 0;
                for (int p = 0; p < 4 && g * 4 + p < cols; p++)
                {
                    if (!T.IsZero(w[r * cols + g * 4 + p]))
                        kept[count++] = p;
                }
                if (count > 2)
                    throw new ArgumentException(
                        $"w: expected at most 2 non-zero values in every group of 4 columns (2:4), got {count} in row {r}, columns {g * 4}..{Math.Min(cols, g * 4 + 4) - 1}; prune with Pruning.TwoFour first.", nameof(w));
                // Pad with the lowest zero positions, then keep the positions in increasing order.
                for (int p = 0; count < 2; p++)
                {
                    if (kept[..count].IndexOf(p) < 0)
                        kept[count++] = p;
                }
                (int first, int second) = kept[0] < kept[1] ? (kept[0], kept[1]) : (kept[1], kept[0]);
                long at = (long)r * groups + g;
                meta[at] = (byte)(first | (second << 2));
                values[2 * at] = first < cols - g * 4 ? w[r * cols + g * 4 + first] : T.Zero;
                values[2 * at + 1] = second < cols - g * 4 ? w[r * cols + g * 4 + second] : T.Zero;
            }
        }
        return new(SparseFormat.TwoFour, rows, cols, 1, 1, Pinned<int>([]), Pinned<int>([]), values, meta);
    }

    // ---------------------------------------------------------------- from the raw arrays (validated)

    public static SparseParts<T> FromCsr<T>(int rows, int cols, int[] rowPointers, int[] columnIndices, T[] values)
        where T : unmanaged, INumberBase<T>
    {
        Size(rows, cols);
        ArgumentNullException.ThrowIfNull(rowPointers);
        ArgumentNullException.ThrowIfNull(columnIndices);
        ArgumentNullException.ThrowIfNull(values);
        Check.ExactLength(rowPointers.Length, (long)rows + 1, nameof(rowPointers), "rows + 1");
        Check.ExactLength(values.Length, columnIndices.Length, nameof(values), "columnIndices.Length");
        FiniteValues(values);
        RowStructure(rowPointers, columnIndices, cols, "row", "column");
        return new(SparseFormat.Csr, rows, cols, 1, 1, Pinned<int>(rowPointers), Pinned<int>(columnIndices), Pinned<T>(values), Pinned<byte>([]));
    }

    public static SparseParts<T> FromBsr<T>(
        int rows, int cols, int blockRows, int blockColumns, int[] rowPointers, int[] columnIndices, T[] values)
        where T : unmanaged, INumberBase<T>
    {
        Size(rows, cols);
        Check.BsrBlock(blockRows, blockColumns);
        ArgumentNullException.ThrowIfNull(rowPointers);
        ArgumentNullException.ThrowIfNull(columnIndices);
        ArgumentNullException.ThrowIfNull(values);
        int gridRows = (int)(((long)rows + blockRows - 1) / blockRows), gridCols = (int)(((long)cols + blockColumns - 1) / blockColumns);
        Check.ExactLength(rowPointers.Length, (long)gridRows + 1, nameof(rowPointers), "ceil(rows/blockRows) + 1");
        Check.ExactLength(values.Length, (Int128)columnIndices.Length * blockRows * blockColumns, nameof(values),
            $"columnIndices.Length·blockRows·blockColumns = {columnIndices.Length}·{blockRows}·{blockColumns}");
        FiniteValues(values);
        RowStructure(rowPointers, columnIndices, gridCols, "block row", "block column");
        for (int b = 0; b < gridRows; b++)
        {
            for (int p = rowPointers[b]; p < rowPointers[b + 1]; p++)
            {
                for (int i = 0; i < blockRows; i++)
                {
                    for (int j = 0; j < blockColumns; j++)
                    {
                        int r = b * blockRows + i, c = columnIndices[p] * blockColumns + j;
                        T v = values[(long)p * blockRows * blockColumns + i * blockColumns + j];
                        if ((r >= rows || c >= cols) && !T.IsZero(v))
                            throw new ArgumentException(
                                $"values: expected zeros in the part of edge block {p} outside the matrix, got {v} at block element ({i}, {j}) (matrix position ({r}, {c}) of a {rows}×{cols} matrix).", nameof(values));
                    }
                }
            }
        }
        return new(SparseFormat.Bsr, rows, cols, blockRows, blockColumns, Pinned<int>(rowPointers), Pinned<int>(columnIndices), Pinned<T>(values), Pinned<byte>([]));
    }

    public static SparseParts<T> FromTwoFour<T>(int rows, int cols, T[] values, byte[] meta)
        where T : unmanaged, INumberBase<T>
    {
        Size(rows, cols);
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(meta);
        int groups = Groups(cols);
        Check.ExactLength(meta.Length, (long)rows * groups, nameof(meta), $"rows·ceil(cols/4) = {rows}·{groups}");
        Check.ExactLength(values.Length, (Int128)rows * groups * 2, nameof(values), $"rows·ceil(cols/4)·2 = {rows}·{groups}·2");
        FiniteValues(values);
        for (long at = 0; at < meta.Length; at++)
        {
            byte b = meta[at];
            int first = b & 3, second = (b >> 2) & 3;
            long row = at / groups, group = at % groups;
            if (b >> 4 != 0 || first >= second)
                throw new ArgumentException(
                    $"meta: expected positions first < second in bits 0-1 and 2-3 and zero bits 4-7, got 0x{b:X2} (first {first}, second {second}) at index {at} (row {row}, group {group}).", nameof(meta));
            int width = (int)Math.Min(4, cols - group * 4);
            for (int s = 0; s < 2; s++)
            {
                int position = s == 0 ? first : second;
                T v = values[2 * at + s];
                if (position >= width && !T.IsZero(v))
                    throw new ArgumentException(
                        $"values: expected 0 at position {position} of row {row}, group {group}, which lies beyond the {cols} columns, got {v} at index {2 * at + s}.", nameof(values));
            }
        }
        return new(SparseFormat.TwoFour, rows, cols, 1, 1, Pinned<int>([]), Pinned<int>([]), Pinned<T>(values), Pinned<byte>(meta));
    }

    // ---------------------------------------------------------------- back to dense

    public static T[] ToDense<T>(SparseParts<T> s)
        where T : unmanaged, INumberBase<T>
    {
        var dense = new T[Check.ArrayLength((long)s.Rows * s.Columns, "Rows·Columns")];
        ForEach(s, (row, col, v) => dense[(long)row * s.Columns + col] = v);
        return dense;
    }

    /// <summary>Calls <paramref name="action"/> for every stored value inside the matrix (padding skipped).</summary>
    public static void ForEach<T>(SparseParts<T> s, Action<int, int, T> action)
        where T : unmanaged
    {
        switch (s.Format)
        {
            case SparseFormat.Csr:
                for (int r = 0; r < s.Rows; r++)
                {
                    for (int p = s.RowPointers[r]; p < s.RowPointers[r + 1]; p++)
                        action(r, s.ColumnIndices[p], s.Values[p]);
                }
                break;
            case SparseFormat.Bsr:
                for (int b = 0; b + 1 < s.RowPointers.Length; b++)
                {
                    for (int p = s.RowPointers[b]; p < s.RowPointers[b + 1]; p++)
                    {
                        for (int i = 0; i < s.BlockRows && b * s.BlockRows + i < s.Rows; i++)
                        {
                            for (int j = 0; j < s.BlockColumns && s.ColumnIndices[p] * s.BlockColumns + j < s.Columns; j++)
                                action(b * s.BlockRows + i, s.ColumnIndices[p] * s.BlockColumns + j, s.Values[(long)p * s.BlockRows * s.BlockColumns + i * s.BlockColumns + j]);
                        }
                    }
                }
                break;
            default:
                int groups = Groups(s.Columns);
                for (long at = 0; at < s.Meta.Length; at++)
                {
                    int row = (int)(at / groups), c0 = (int)(at % groups) * 4;
                    int first = c0 + (s.Meta[at] & 3), second = c0 + ((s.Meta[at] >> 2) & 3);
                    if (first < s.Columns)
                        action(row, first, s.Values[2 * at]);
                    if (second < s.Columns)
                        action(row, second, s.Values[2 * at + 1]);
                }
                break;
        }
    }

    /// <summary>
    /// The raw-pointer view of a matrix for the CPU kernels, from the addresses of its four arrays
    /// (the row pointers and column indices are null for 2:4, the metadata null for the other formats).
    /// </summary>
    public static unsafe SparseWeights Weights(
        SparseFormat format, int rows, int cols, int blockRows, int blockColumns,
        void* rowPointers, void* columnIndices, void* values, void* meta)
    {
        bool twoFour = format == SparseFormat.TwoFour;
        return new SparseWeights
        {
            Format = format,
            Rows = rows,
            Columns = cols,
            BlockRows = blockRows,
            BlockColumns = blockColumns,
            RowPointers = twoFour ? null : (int*)rowPointers,
            ColumnIndices = twoFour ? null : (int*)columnIndices,
            Values = values,
            Meta = twoFour ? (byte*)meta : null,
        };
    }

    // ---------------------------------------------------------------- checks

    private static void Size(int rows, int cols)
    {
        Check.Positive(rows, nameof(rows));
        Check.Positive(cols, nameof(cols));
    }

    private static void UnitBlock(int value, string name, SparseFormat format)
    {
        if (value != 1)
            throw new ArgumentOutOfRangeException(name, value, $"{name}: expected 1 for the {format} format (block shapes are for Bsr), got {value}.");
    }

    private static void FiniteValues<T>(T[] values)
        where T : unmanaged
    {
        if (values is float[] floats)
            Check.Finite(floats, nameof(values));
    }

    /// <summary>
    /// CSR-style structure over <paramref name="rowPointers"/>.Length − 1 rows: pointers from 0, monotone,
    /// ending at the index count; indices in [0, <paramref name="width"/>), strictly increasing within a row.
    /// </summary>
    private static void RowStructure(int[] rowPointers, int[] columnIndices, int width, string row, string column)
    {
        if (rowPointers[0] != 0)
            throw new ArgumentException($"rowPointers: expected 0 at index 0, got {rowPointers[0]}.", nameof(rowPointers));
        for (int r = 0; r + 1 < rowPointers.Length; r++)
        {
            if (rowPointers[r + 1] < rowPointers[r])
                throw new ArgumentException(
                    $"rowPointers: expected non-decreasing row pointers, got {rowPointers[r + 1]} after {rowPointers[r]} at index {r + 1}.", nameof(rowPointers));
        }
        if (rowPointers[^1] != columnIndices.Length)
            throw new ArgumentException(
                $"rowPointers: expected the last pointer to equal the number of stored {column}s (columnIndices.Length = {columnIndices.Length}), got {rowPointers[^1]}.", nameof(rowPointers));
        for (int r = 0; r + 1 < rowPointers.Length; r++)
        {
            for (int p = rowPointers[r]; p < rowPointers[r + 1]; p++)
            {
                int c = columnIndices[p];
                if (c < 0 || c >= width)
                    throw new ArgumentException(
                        $"columnIndices: expected {column} indices in [0, {width}), got {c} at position {p} ({row} {r}).", nameof(columnIndices));
                if (p > rowPointers[r] && c <= columnIndices[p - 1])
                    throw new ArgumentException(
                        $"columnIndices: expected strictly increasing {column} indices within {row} {r}, got {c} after {columnIndices[p - 1]} at position {p}.", nameof(columnIndices));
            }
        }
    }

    private static T[] Pinned<T>(T[] source)
        where T : unmanaged
    {
        T[] copy = GC.AllocateUninitializedArray<T>(source.Length, pinned: true);
        source.CopyTo(copy, 0);
        return copy;
    }
}
