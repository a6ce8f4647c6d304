namespace Kernels.Tests;

/// <summary>
/// Sparse and quantization edges (issue 15): blocks larger than the matrix and inconsistent quantized
/// matrices get an ArgumentException that names the argument and says what was expected, never an
/// IndexOutOfRange, Overflow, OutOfMemory or NullReference exception, and never a silent no-op.
/// </summary>
public class EdgeValidationTests
{
    private static void Throws(string argument, Action action, params string[] fragments) => Expect.Throws(argument, action, fragments);

    [Theory]
    [InlineData(int.MaxValue, 1, "blockRows")]
    [InlineData(1, int.MaxValue, "blockColumns")]
    [InlineData(65536, 65536, "blockRows")]
    [InlineData(257, 256, "blockRows")]
    public void BsrBlocksBeyondTheElementLimitAreRefused(int blockRows, int blockColumns, string argument)
    {
        sbyte[] dense = [1, 0, 2, 0, 0, 3, 0, 4, 5, 0, 0, 6, 7, 0, 8, 0, 0, 9, 1, 0]; // 4×5
        Throws(argument, () => SparseMatrix.FromDense(dense, 4, 5, SparseFormat.Bsr, blockRows, blockColumns), "65536");
        Throws(argument, () => SparseMatrixF32.FromDense([.. dense.Select(v => (float)v)], 4, 5, SparseFormat.Bsr, blockRows, blockColumns));
        Throws(argument, () => SparseMatrix.FromBsr(4, 5, blockRows, blockColumns, [0, 0], [], []));
        Throws(argument, () => SparseMatrix.FromDense(dense, 4, 5, SparseFormat.Csr).ConvertTo(SparseFormat.Bsr, blockRows, blockColumns));
    }

    [Fact]
    public void BsrLayoutsTooLargeForAnArrayAreRefusedBeforeAllocating()
    {
        // Found by the fuzzer: 65536 non-zero 1×65536 blocks (each stored whole) would hold 2^32 values.
        var dense = new sbyte[65536 * 9];
        for (int r = 0; r < 65536; r++)
            dense[r * 9] = 1;
        Expect.Throws("blockColumns", () => SparseMatrix.FromDense(dense, 65536, 9, SparseFormat.Bsr, 1, 65536), "choose smaller blocks");
    }

    [Fact]
    public void BsrBlocksLargerThanTheMatrixButWithinTheLimitArePadded()
    {
        sbyte[] dense = [1, 0, 2, 0, 0, 3, 0, 4, 5, 0, 0, 6, 7, 0, 8, 0, 0, 9, 1, 0]; // 4×5
        SparseMatrix w = SparseMatrix.FromDense(dense, 4, 5, SparseFormat.Bsr, 256, 256);
        Assert.Equal(dense, w.ToDense());
    }

    [Theory]
    [InlineData(5, 6, "blockRows")]
    [InlineData(int.MaxValue, int.MaxValue, "blockRows")]
    public void PruningBlocksLargerThanTheMatrixAreRefused(int blockRows, int blockCols, string argument) =>
        Throws(argument, () => Pruning.Block(new float[20], 4, 5, blockRows, blockCols, 0.5), "fits the 4×5 matrix");

    [Fact]
    public void PruningEdgeBlocksLargerInOneDimensionStillPrune()
    {
        float[] w = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]; // 4×5
        float[] p = Pruning.Block(w, 4, 5, 8, 2, 1.0 / 3); // three column blocks (2, 2, 1 wide): the smallest goes
        Assert.Equal(0f, p[0]);
        Assert.Equal(0f, p[16]);
        Assert.Equal(3f, p[2]);
    }

    public static TheoryData<QuantizedMatrix, string> Inconsistent => new()
    {
        { new QuantizedMatrix(null!, [1f], 2, 2, QuantizationGranularity.PerTensor), "null Values" },
        { new QuantizedMatrix(new sbyte[4], null!, 2, 2, QuantizationGranularity.PerTensor), "null Scales" },
        { new QuantizedMatrix(new sbyte[3], [1f], 2, 2, QuantizationGranularity.PerTensor), "Rows·Columns = 4, got 3" },
        { new QuantizedMatrix(new sbyte[4], [1f], 2, 2, QuantizationGranularity.PerRow), "Scales.Length = 2" },
        { new QuantizedMatrix(new sbyte[6], [1f, 2f], 2, 3, QuantizationGranularity.PerColumn), "Scales.Length = 3" },
        { new QuantizedMatrix(new sbyte[4], [], 2, 2, QuantizationGranularity.PerTensor), "Scales.Length = 1 for PerTensor" },
        { new QuantizedMatrix([], [1f], 0, 2, QuantizationGranularity.PerTensor), "Rows and Columns ≥ 1" },
        { new QuantizedMatrix(new sbyte[4], [1f], 2, 2, (QuantizationGranularity)7), "QuantizationGranularity" },
    };

    [Theory]
    [MemberData(nameof(Inconsistent))]
    public void DequantizingAnInconsistentMatrixIsRefused(QuantizedMatrix q, string fragment) =>
        Throws("q", () => Quantization.Dequantize(q), fragment);

    [Fact]
    public void DequantizingAConsistentMatrixStillWorks()
    {
        QuantizedMatrix q = Quantization.Quantize([1f, -2f, 3f, -4f, 5f, 6f], 2, 3, QuantizationGranularity.PerRow);
        float[] x = Quantization.Dequantize(q);
        Assert.Equal(6, x.Length);
        Assert.InRange(x[3], -4f - 6f / 254, -4f + 6f / 254); // within half a step of row 1's scale 6/127
    }
}
