using Kernels.Backends.Simd;

namespace Kernels.Tests.Sparse;

/// <summary>The sparse layouts: round trips, the documented storage, and the rejection of every malformed structure.</summary>
public class SparseFormatTests
{
    private static readonly (int Rows, int Cols)[] Shapes = [(1, 1), (7, 13), (31, 67), (4, 8), (5, 3)];

    public static TheoryData<SparseFormat> Formats => new(SparseTestData.Formats);

    [Theory]
    [MemberData(nameof(Formats))]
    public void DenseRoundTripsThroughEveryFormat(SparseFormat format)
    {
        Seeded.Run((random, seed) =>
        {
            foreach ((int rows, int cols) in Shapes)
            {
                foreach (double sparsity in new[] { 0, 0.3, 0.7, 1 })
                {
                    sbyte[] dense = SparseTestData.PrunedInt8(random, rows, cols, format, sparsity);
                    SparseMatrix w = SparseTestData.Int8Matrix(dense, rows, cols, format);
                    string what = $"{format} {rows}×{cols} sparsity {sparsity}";
                    Assert.True(dense.SequenceEqual(w.ToDense()), what);
                    Assert.Equal(dense.Count(v => v != 0), w.NonZeros);
                    Assert.Equal(format, w.Format);
                    Assert.Equal((rows, cols), (w.Rows, w.Columns));
                    Assert.Equal(w.Values.Length, w.StoredValues);

                    // Every other format gives the same matrix back.
                    foreach (SparseFormat other in SparseTestData.Formats)
                    {
                        if (other == SparseFormat.TwoFour && format != SparseFormat.TwoFour)
                            continue; // only 2:4 matrices convert to 2:4
                        Assert.True(dense.SequenceEqual(w.ConvertTo(other).ToDense()), $"{what} → {other}");
                    }

                    float[] denseF = dense.Select(v => (float)v).ToArray();
                    SparseMatrixF32 f = SparseTestData.FloatMatrix(denseF, rows, cols, format);
                    Assert.True(denseF.SequenceEqual(f.ToDense()), $"{what} float32");
                    Assert.Equal(w.NonZeros, f.NonZeros);
                }
            }
        });
    }

    [Fact]
    public void CsrStoresTheDocumentedLayout()
    {
        sbyte[] dense = [0, 5, 0, -128, 0, 0, 0, 0, 127, 0, 0, 1];
        SparseMatrix w = SparseMatrix.FromDense(dense, 3, 4, SparseFormat.Csr);
        Assert.Equal([0, 2, 2, 4], w.RowPointers.ToArray());
        Assert.Equal([1, 3, 0, 3], w.ColumnIndices.ToArray());
        Assert.Equal([5, -128, 127, 1], w.Values.ToArray());
        Assert.True(w.Meta.IsEmpty);
        Assert.Equal((1, 1), (w.BlockRows, w.BlockColumns));
        Assert.True(dense.SequenceEqual(SparseMatrix.FromCsr(3, 4, [0, 2, 2, 4], [1, 3, 0, 3], [5, -128, 127, 1]).ToDense()));
    }

    [Fact]
    public void BsrStoresWholeBlocksWithZeroPaddingAtTheEdges()
    {
        // 3×5 with 2×2 blocks: block grid 2×3; non-zeros in blocks (0,0), (0,2) and (1,1).
        sbyte[] dense =
        [
            1, 0, 0, 0, 2,
            0, 3, 0, 0, 0,
            0, 0, 4, 0, 0,
        ];
        SparseMatrix w = SparseMatrix.FromDense(dense, 3, 5, SparseFormat.Bsr, 2, 2);
        Assert.Equal([0, 2, 3], w.RowPointers.ToArray());
        Assert.Equal([0, 2, 1], w.ColumnIndices.ToArray());
        Assert.Equal([1, 0, 0, 3, /* edge */ 2, 0, 0, 0, /* edge */ 4, 0, 0, 0], w.Values.ToArray());
        Assert.Equal(4, w.NonZeros);
        Assert.Equal(12, w.StoredValues);
        Assert.Equal((2, 2), (w.BlockRows, w.BlockColumns));
        Assert.True(dense.SequenceEqual(SparseMatrix.FromBsr(3, 5, 2, 2, [0, 2, 3], [0, 2, 1], w.Values.ToArray()).ToDense()));

        SparseMatrix defaultBlocks = SparseMatrix.FromDense(dense, 3, 5, SparseFormat.Bsr);
        Assert.Equal((4, 4), (defaultBlocks.BlockRows, defaultBlocks.BlockColumns));
        Assert.True(dense.SequenceEqual(defaultBlocks.ToDense()));
    }

    [Fact]
    public void TwoFourStoresTwoValuesAndPositionsPerGroup()
    {
        // 2×6: groups of columns 0-3 and 4-5 (partial).
        sbyte[] dense =
        [
            0, 7, 0, -3, 0, 9,
            0, 0, 0, 0, 5, 0,
        ];
        SparseMatrix w = SparseMatrix.FromDense(dense, 2, 6, SparseFormat.TwoFour);
        // Row 0: (1, 3) → 1 | 3<<2 = 13; (0=pad, 1) → 4. Row 1: none → (0, 1) = 4; (0, 1=pad) → 4.
        Assert.Equal([13, 4, 4, 4], w.Meta.ToArray());
        Assert.Equal([7, -3, 0, 9, 0, 0, 5, 0], w.Values.ToArray());
        Assert.True(w.RowPointers.IsEmpty && w.ColumnIndices.IsEmpty);
        Assert.Equal(4, w.NonZeros);

        // A last group of one column: the second position lies beyond the matrix and holds 0.
        SparseMatrix narrow = SparseMatrix.FromDense([1, 2, 0, 0, 3], 1, 5, SparseFormat.TwoFour);
        Assert.Equal([4, 4], narrow.Meta.ToArray());
        Assert.Equal([1, 2, 3, 0], narrow.Values.ToArray());
        Assert.True(new sbyte[] { 1, 2, 0, 0, 3 }.SequenceEqual(SparseMatrix.FromTwoFour(1, 5, [1, 2, 3, 0], [4, 4]).ToDense()));
    }

    [Fact]
    public void NotTwoFourIsRejected()
    {
        var ex = Assert.Throws<ArgumentException>(() => SparseMatrix.FromDense([1, 1, 1, 0, 0, 0], 1, 6, SparseFormat.TwoFour));
        Assert.Equal("w", ex.ParamName);
        Assert.Contains("got 3 in row 0, columns 0..3", ex.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => SparseMatrixF32.FromDense([0, 0, 0, 0, 1, 2, 3], 1, 7, SparseFormat.TwoFour));
    }

    [Fact]
    public void WeightsViewMatchesTheArrays()
    {
        SparseMatrix csr = SparseMatrix.FromDense([0, 5, 0, -128, 0, 0, 0, 0, 127, 0, 0, 1], 3, 4, SparseFormat.Csr);
        SparseMatrix tf = SparseMatrix.FromDense([0, 7, 0, -3, 0, 9], 1, 6, SparseFormat.TwoFour);
        unsafe
        {
            SparseWeights a = csr.Weights;
            Assert.Equal((SparseFormat.Csr, 3, 4, 1, 1), (a.Format, a.Rows, a.Columns, a.BlockRows, a.BlockColumns));
            Assert.Equal(4, a.RowPointers[3]);
            Assert.Equal(3, a.ColumnIndices[3]);
            Assert.Equal(-128, ((sbyte*)a.Values)[1]);
            Assert.True(a.Meta == null);
            SparseWeights b = tf.Weights;
            Assert.True(b.RowPointers == null && b.ColumnIndices == null);
            Assert.Equal(13, b.Meta[0]);
            Assert.Equal(9, ((sbyte*)b.Values)[3]);
        }
        GC.KeepAlive(csr);
        GC.KeepAlive(tf);
    }

    // ---------------------------------------------------------------- malformed structures

    [Fact]
    public void MalformedCsrIsRejected()
    {
        // 3×4, valid: [0, 2, 2, 4], [1, 3, 0, 3].
        SparseTestData.Throws("rowPointers", () => SparseMatrix.FromCsr(3, 4, [0, 2, 4], [1, 3, 0, 3], new sbyte[4]), "rows + 1", "got 3");
        SparseTestData.Throws("rowPointers", () => SparseMatrix.FromCsr(3, 4, [1, 2, 2, 4], [1, 3, 0, 3], new sbyte[4]), "expected 0 at index 0, got 1");
        SparseTestData.Throws("rowPointers", () => SparseMatrix.FromCsr(3, 4, [0, 3, 2, 4], [1, 3, 0, 3], new sbyte[4]), "non-decreasing", "got 2 after 3 at index 2");
        SparseTestData.Throws("rowPointers", () => SparseMatrix.FromCsr(3, 4, [0, 2, 2, 3], [1, 3, 0, 3], new sbyte[4]), "last pointer", "got 3");
        SparseTestData.Throws("rowPointers", () => SparseMatrix.FromCsr(3, 4, [0, 2, 2, 5], [1, 3, 0, 3], new sbyte[4]), "last pointer", "got 5");
        SparseTestData.Throws("values", () => SparseMatrix.FromCsr(3, 4, [0, 2, 2, 4], [1, 3, 0, 3], new sbyte[3]), "columnIndices.Length", "got 3");
        SparseTestData.Throws("columnIndices", () => SparseMatrix.FromCsr(3, 4, [0, 2, 2, 4], [1, 4, 0, 3], new sbyte[4]), "[0, 4)", "got 4 at position 1 (row 0)");
        SparseTestData.Throws("columnIndices", () => SparseMatrix.FromCsr(3, 4, [0, 2, 2, 4], [-1, 3, 0, 3], new sbyte[4]), "got -1 at position 0");
        SparseTestData.Throws("columnIndices", () => SparseMatrix.FromCsr(3, 4, [0, 2, 2, 4], [3, 1, 0, 3], new sbyte[4]), "strictly increasing column indices within row 0, got 1 after 3 at position 1");
        SparseTestData.Throws("columnIndices", () => SparseMatrix.FromCsr(3, 4, [0, 2, 2, 4], [1, 3, 3, 3], new sbyte[4]), "within row 2, got 3 after 3 at position 3");
        SparseTestData.Throws("rows", () => SparseMatrix.FromCsr(0, 4, [0], [], []), "expected ≥ 1");
        SparseTestData.Throws("cols", () => SparseMatrix.FromCsr(1, 0, [0, 0], [], []), "expected ≥ 1");
        SparseTestData.Throws("rowPointers", () => SparseMatrix.FromCsr(1, 4, null!, [], []));
        SparseTestData.Throws("values", () => SparseMatrixF32.FromCsr(1, 4, [0, 1], [2], [float.NaN]), "finite");
    }

    [Fact]
    public void MalformedBsrIsRejected()
    {
        // 3×5 with 2×2 blocks (grid 2×3): valid [0, 2, 3], [0, 2, 1], 12 values.
        sbyte[] values = [1, 0, 0, 3, 2, 0, 0, 0, 4, 0, 0, 0];
        SparseTestData.Throws("rowPointers", () => SparseMatrix.FromBsr(3, 5, 2, 2, [0, 2, 3, 3], [0, 2, 1], values), "ceil(rows/blockRows) + 1", "got 4");
        SparseTestData.Throws("rowPointers", () => SparseMatrix.FromBsr(3, 5, 2, 2, [0, 3, 2], [0, 2, 1], values), "non-decreasing");
        SparseTestData.Throws("rowPointers", () => SparseMatrix.FromBsr(3, 5, 2, 2, [0, 2, 2], [0, 2, 1], values), "last pointer");
        SparseTestData.Throws("values", () => SparseMatrix.FromBsr(3, 5, 2, 2, [0, 2, 3], [0, 2, 1], values[..11]), "columnIndices.Length·blockRows·blockColumns", "got 11");
        SparseTestData.Throws("columnIndices", () => SparseMatrix.FromBsr(3, 5, 2, 2, [0, 2, 3], [0, 3, 1], values), "block column indices in [0, 3)", "got 3");
        SparseTestData.Throws("columnIndices", () => SparseMatrix.FromBsr(3, 5, 2, 2, [0, 2, 3], [2, 0, 1], values), "strictly increasing block column indices within block row 0");
        SparseTestData.Throws("columnIndices", () => SparseMatrix.FromBsr(3, 5, 2, 2, [0, 2, 3], [1, 1, 1], values), "got 1 after 1");
        // Padding: block (0, 2) column 5 and block (1, 1) row 3 lie outside the 3×5 matrix.
        sbyte[] rightPadding = (sbyte[])values.Clone();
        rightPadding[5] = 9;
        SparseTestData.Throws("values", () => SparseMatrix.FromBsr(3, 5, 2, 2, [0, 2, 3], [0, 2, 1], rightPadding), "zeros", "edge block 1", "(0, 5)");
        sbyte[] bottomPadding = (sbyte[])values.Clone();
        bottomPadding[10] = -1;
        SparseTestData.Throws("values", () => SparseMatrix.FromBsr(3, 5, 2, 2, [0, 2, 3], [0, 2, 1], bottomPadding), "edge block 2", "(3, 2)");
        SparseTestData.Throws("blockRows", () => SparseMatrix.FromBsr(3, 5, 0, 2, [0], [], []), "expected ≥ 1");
        SparseTestData.Throws("blockColumns", () => SparseMatrix.FromDense(new sbyte[15], 3, 5, SparseFormat.Bsr, 2, -1), "expected ≥ 1");
        SparseTestData.Throws("blockRows", () => SparseMatrix.FromDense(new sbyte[15], 3, 5, SparseFormat.Csr, 2, 2), "expected 1 for the Csr format");
    }

    [Fact]
    public void MalformedTwoFourIsRejected()
    {
        // 1×6: 2 groups; valid meta [13, 4], values [7, -3, 0, 9].
        SparseTestData.Throws("meta", () => SparseMatrix.FromTwoFour(1, 6, [7, -3, 0, 9], [13]), "rows·ceil(cols/4)", "got 1");
        SparseTestData.Throws("values", () => SparseMatrix.FromTwoFour(1, 6, [7, -3, 0], [13, 4]), "rows·ceil(cols/4)·2", "got 3");
        SparseTestData.Throws("meta", () => SparseMatrix.FromTwoFour(1, 6, [7, -3, 0, 9], [13, 1]), "first < second", "got 0x01", "index 1");
        SparseTestData.Throws("meta", () => SparseMatrix.FromTwoFour(1, 6, [7, -3, 0, 9], [13, 5]), "first 1, second 1");
        SparseTestData.Throws("meta", () => SparseMatrix.FromTwoFour(1, 6, [7, -3, 0, 9], [(byte)(13 | 16), 4]), "zero bits 4-7", "0x1D");
        // Group 1 covers columns 4-5 only: positions 2 and 3 lie beyond the matrix and must hold 0.
        SparseTestData.Throws("values", () => SparseMatrix.FromTwoFour(1, 6, [7, -3, 1, 9], [13, 2 | (3 << 2)]), "position 2 of row 0, group 1", "beyond the 6 columns", "got 1 at index 2");
        Assert.True(new sbyte[] { 0, 7, 0, -3, 0, 0 }.SequenceEqual(SparseMatrix.FromTwoFour(1, 6, [7, -3, 0, 0], [13, 2 | (3 << 2)]).ToDense()));
        SparseTestData.Throws("meta", () => SparseMatrix.FromTwoFour(1, 6, [7, -3, 0, 9], null!));
    }

    [Fact]
    public void BadDenseInputIsRejected()
    {
        SparseTestData.Throws("w", () => SparseMatrix.FromDense(new sbyte[5], 2, 3, SparseFormat.Csr), "rows·cols", "got 5");
        SparseTestData.Throws("w", () => SparseMatrixF32.FromDense([1, float.PositiveInfinity], 1, 2, SparseFormat.Csr), "finite", "index 1");
        SparseTestData.Throws("format", () => SparseMatrix.FromDense(new sbyte[6], 2, 3, (SparseFormat)7), "got 7");
    }
}
