namespace Kernels.Tests.Sparse;

public class PruningTests
{
    private static float[] Distinct(Random random, int count)
    {
        // Distinct magnitudes with random signs, shuffled.
        float[] w = Enumerable.Range(1, count).Select(i => i * (random.Next(2) == 0 ? -0.25f : 0.25f)).ToArray();
        random.Shuffle(w);
        return w;
    }

    [Fact]
    public void MagnitudePrunesExactlyTheSmallestGlobally()
    {
        Seeded.Run((random, seed) =>
        {
            foreach ((int rows, int cols) in new[] { (1, 1), (7, 13), (31, 67) })
            {
                float[] w = Distinct(random, rows * cols);
                foreach (double sparsity in new[] { 0, 0.1, 0.5, 0.77, 0.999, 1 })
                {
                    float[] p = Pruning.Magnitude(w, rows, cols, sparsity);
                    int pruned = (int)Math.Round(sparsity * w.Length, MidpointRounding.ToEven);
                    Assert.Equal(pruned, p.Count(v => v == 0));
                    // Every kept weight is at least as large as every pruned one, and kept weights are unchanged.
                    float maxPruned = w.Where((v, i) => p[i] == 0).Select(Math.Abs).DefaultIfEmpty(0).Max();
                    for (int i = 0; i < w.Length; i++)
                        Assert.True(p[i] == 0 ? true : p[i] == w[i] && Math.Abs(w[i]) > maxPruned, $"{rows}×{cols} sparsity {sparsity} index {i}");
                }
                Assert.True(w.SequenceEqual(Pruning.Magnitude(w, rows, cols, 0)));
                Assert.All(Pruning.Magnitude(w, rows, cols, 1), v => Assert.Equal(0f, v));
            }
        });
    }

    [Fact]
    public void MagnitudePerRowPrunesTheSameCountInEveryRow()
    {
        Seeded.Run((random, seed) =>
        {
            int rows = 9, cols = 13;
            float[] w = Distinct(random, rows * cols);
            foreach (double sparsity in new[] { 0, 0.3, 0.5, 1 })
            {
                float[] p = Pruning.MagnitudePerRow(w, rows, cols, sparsity);
                int pruned = (int)Math.Round(sparsity * cols, MidpointRounding.ToEven);
                for (int r = 0; r < rows; r++)
                {
                    float[] row = w[(r * cols)..((r + 1) * cols)], prow = p[(r * cols)..((r + 1) * cols)];
                    Assert.Equal(pruned, prow.Count(v => v == 0));
                    float maxPruned = row.Where((v, i) => prow[i] == 0).Select(Math.Abs).DefaultIfEmpty(0).Max();
                    Assert.All(prow.Where(v => v != 0), v => Assert.True(Math.Abs(v) > maxPruned));
                }
            }
        });
    }

    [Fact]
    public void TiesArePrunedLowerIndexFirst()
    {
        float[] w = [1, -1, 1, -1, 1, 1];
        Assert.Equal([0, 0, 0, -1, 1, 1], Pruning.Magnitude(w, 2, 3, 0.5));
        Assert.Equal([0, -1, 1, 0, 1, 1], Pruning.MagnitudePerRow(w, 2, 3, 1.0 / 3));
        Assert.Equal([0, 0, 1, -1, 2, 2, 0, 0], Pruning.TwoFour([1, -1, 1, -1, 2, 2, 1, 1], 2, 4));
        Assert.Equal([0, 0, 1, 1, 0, 3, 0, 3], Pruning.TwoFour([1, 1, 1, 1, 3, 3, 1, 3], 2, 4));
        // Round half to even: 0.5·5 = 2.5 → 2 pruned.
        Assert.Equal(2, Pruning.Magnitude([1, 2, 3, 4, 5], 1, 5, 0.5).Count(v => v == 0));
    }

    [Fact]
    public void TwoFourKeepsTheTwoLargestOfEveryGroup()
    {
        Seeded.Run((random, seed) =>
        {
            foreach ((int rows, int cols) in new[] { (1, 1), (1, 2), (3, 3), (7, 13), (5, 16), (4, 18) })
            {
                float[] w = Distinct(random, rows * cols);
                float[] p = Pruning.TwoFour(w, rows, cols);
                for (int r = 0; r < rows; r++)
                {
                    for (int c0 = 0; c0 < cols; c0 += 4)
                    {
                        int width = Math.Min(4, cols - c0);
                        var group = Enumerable.Range(c0, width).Select(c => r * cols + c).ToArray();
                        Assert.Equal(Math.Min(2, width), group.Count(i => p[i] != 0));
                        float minKept = group.Where(i => p[i] != 0).Select(i => Math.Abs(w[i])).Min();
                        Assert.All(group.Where(i => p[i] == 0), i => Assert.True(Math.Abs(w[i]) < minKept));
                        Assert.All(group.Where(i => p[i] != 0), i => Assert.Equal(w[i], p[i]));
                    }
                }
                // The result is 2:4 and round-trips through the format.
                Assert.True(p.SequenceEqual(SparseMatrixF32.FromDense(p, rows, cols, SparseFormat.TwoFour).ToDense()));
            }
        });
    }

    [Fact]
    public void BlockPrunesWholeBlocksBySmallestMeanSquare()
    {
        // 3×5 in 2×2 blocks: grid 2×3, edge blocks partial. Block (0,0) is small, (1,2) (one element) is small.
        float[] w =
        [
            0.1f, 0.1f, 5, 5, 3,
            0.1f, 0.1f, 5, 5, 3,
            4, 4, 6, 6, 0.2f,
        ];
        float[] p = Pruning.Block(w, 3, 5, 2, 2, 2.0 / 6);
        float[] expected =
        [
            0, 0, 5, 5, 3,
            0, 0, 5, 5, 3,
            4, 4, 6, 6, 0,
        ];
        Assert.Equal(expected, p);
        Assert.All(Pruning.Block(w, 3, 5, 2, 2, 1), v => Assert.Equal(0f, v));
        Assert.Equal(w, Pruning.Block(w, 3, 5, 2, 2, 0));

        Seeded.Run((random, seed) =>
        {
            int rows = 10, cols = 14, br = 3, bc = 4;
            float[] d = Distinct(random, rows * cols);
            float[] q = Pruning.Block(d, rows, cols, br, bc, 0.5);
            int blocks = 4 * 4, zeroBlocks = 0;
            for (int b = 0; b < blocks; b++)
            {
                var cells = Enumerable.Range(0, rows * cols).Where(i => i / cols / br == b / 4 && i % cols / bc == b % 4).ToArray();
                int zeros = cells.Count(i => q[i] == 0);
                Assert.True(zeros == 0 || zeros == cells.Length, $"block {b} is partly pruned");
                zeroBlocks += zeros == 0 ? 0 : 1;
            }
            Assert.Equal(8, zeroBlocks);
        });
    }

    [Fact]
    public void QuantizePerChannelKeepsTheZeros()
    {
        Seeded.Run((random, seed) =>
        {
            int rows = 6, cols = 12;
            float[] p = Pruning.TwoFour(Seeded.Floats(random, rows * cols, -1, 1), rows, cols);
            QuantizedMatrix q = Pruning.QuantizePerChannel(p, rows, cols);
            Assert.Equal(QuantizationGranularity.PerRow, q.Granularity);
            Assert.Equal(rows, q.Scales.Length);
            for (int i = 0; i < p.Length; i++)
            {
                if (p[i] == 0)
                    Assert.Equal(0, q.Values[i]);
            }
            SparseMatrix w = SparseMatrix.FromDense(q.Values, rows, cols, SparseFormat.TwoFour);
            Assert.True(q.Values.SequenceEqual(w.ToDense()));
        });
    }

    [Fact]
    public void BadArgumentsAreRejected()
    {
        float[] w = [1, 2, 3, 4];
        foreach (double bad in new[] { -0.01, 1.01, double.NaN, double.PositiveInfinity })
        {
            SparseTestData.Throws("sparsity", () => Pruning.Magnitude(w, 2, 2, bad), "[0, 1]");
            SparseTestData.Throws("sparsity", () => Pruning.MagnitudePerRow(w, 2, 2, bad), "[0, 1]");
            SparseTestData.Throws("sparsity", () => Pruning.Block(w, 2, 2, 1, 1, bad), "[0, 1]");
        }
        SparseTestData.Throws("w", () => Pruning.Magnitude([1, float.NaN, 3, 4], 2, 2, 0.5), "finite", "index 1");
        SparseTestData.Throws("w", () => Pruning.TwoFour([1, 2, float.NegativeInfinity, 4], 2, 2), "finite", "index 2");
        SparseTestData.Throws("w", () => Pruning.MagnitudePerRow(w, 3, 2, 0.5), "rows·cols", "got 4");
        SparseTestData.Throws("rows", () => Pruning.TwoFour([], 0, 2), "expected ≥ 1");
        SparseTestData.Throws("blockRows", () => Pruning.Block(w, 2, 2, 0, 1, 0.5), "expected ≥ 1");
        SparseTestData.Throws("blockCols", () => Pruning.Block(w, 2, 2, 1, -2, 0.5), "expected ≥ 1");
        SparseTestData.Throws("w", () => Pruning.QuantizePerChannel([1, float.NaN], 1, 2), "finite");
    }
}
