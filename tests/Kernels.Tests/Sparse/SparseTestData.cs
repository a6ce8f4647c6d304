namespace Kernels.Tests.Sparse;

/// <summary>Random pruned int8 and float32 weight matrices in every format.</summary>
internal static class SparseTestData
{
    public static readonly SparseFormat[] Formats = [SparseFormat.Csr, SparseFormat.Bsr, SparseFormat.TwoFour];

    public static TheoryData<Backend, SparseFormat> BackendsAndFormats
    {
        get
        {
            var data = new TheoryData<Backend, SparseFormat>();
            foreach (Backend b in new[] { Backend.Cpu, Backend.CpuSimd, Backend.Cuda, Backend.OpenCL })
            {
                foreach (SparseFormat f in Formats)
                    data.Add(b, f);
            }
            return data;
        }
    }

    /// <summary>
    /// A dense rows×cols float matrix of random integers in [-128, 127] (with the extremes present), pruned
    /// for <paramref name="format"/>: magnitude per row for CSR, 2×3 blocks for BSR, 2:4 (then magnitude) for 2:4.
    /// </summary>
    public static float[] PrunedFloats(Random random, int rows, int cols, SparseFormat format, double sparsity)
    {
        var w = new float[rows * cols];
        for (int i = 0; i < w.Length; i++)
            w[i] = random.Next(-128, 128);
        w[random.Next(w.Length)] = -128;
        w[random.Next(w.Length)] = 127;
        return format switch
        {
            SparseFormat.Csr => Pruning.MagnitudePerRow(w, rows, cols, sparsity),
            SparseFormat.Bsr => Pruning.Block(w, rows, cols, Math.Min(2, rows), Math.Min(3, cols), sparsity),
            _ => Pruning.Magnitude(Pruning.TwoFour(w, rows, cols), rows, cols, sparsity),
        };
    }

    public static sbyte[] PrunedInt8(Random random, int rows, int cols, SparseFormat format, double sparsity) =>
        PrunedFloats(random, rows, cols, format, sparsity).Select(v => (sbyte)v).ToArray();

    public static SparseMatrix Int8Matrix(sbyte[] dense, int rows, int cols, SparseFormat format) =>
        format == SparseFormat.Bsr
            ? SparseMatrix.FromDense(dense, rows, cols, format, 2, 3)
            : SparseMatrix.FromDense(dense, rows, cols, format);

    public static SparseMatrixF32 FloatMatrix(float[] dense, int rows, int cols, SparseFormat format) =>
        format == SparseFormat.Bsr
            ? SparseMatrixF32.FromDense(dense, rows, cols, format, 2, 3)
            : SparseMatrixF32.FromDense(dense, rows, cols, format);

    /// <summary>An ArgumentException naming <paramref name="argument"/>, whose message holds every fragment.</summary>
    public static void Throws(string argument, Action action, params string[] fragments) => Expect.Throws(argument, action, fragments);
}
