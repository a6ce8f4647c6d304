using System.Runtime.Intrinsics;
using Kernels.Backends.Simd;
using Kernels.Simd;

namespace Kernels.Tests.Simd;

/// <summary>A pruned matrix (dense copy) and its CSR, BSR and 2:4 encodings as plain arrays.</summary>
internal sealed class SparseCase<T>
    where T : unmanaged
{
    public required T[] Dense { get; init; }
    public required int Rows { get; init; }
    public required int Columns { get; init; }
    public required SparseFormat Format { get; init; }
    public int BlockRows { get; init; } = 1;
    public int BlockColumns { get; init; } = 1;
    public int[]? RowPointers { get; init; }
    public int[]? ColumnIndices { get; init; }
    public required T[] Values { get; init; }
    public byte[]? Meta { get; init; }

    public override string ToString() =>
        $"{Format} {Rows}×{Columns}" + (Format == SparseFormat.Bsr ? $" blocks {BlockRows}×{BlockColumns}" : "");

    /// <summary>Pins the arrays and passes the raw view.</summary>
    public unsafe void With(Action<SparseWeights> body)
    {
        fixed (int* rp = RowPointers)
        fixed (int* ci = ColumnIndices)
        fixed (T* v = Values)
        fixed (byte* meta = Meta)
        {
            body(new SparseWeights
            {
                Format = Format,
                Rows = Rows,
                Columns = Columns,
                BlockRows = BlockRows,
                BlockColumns = BlockColumns,
                RowPointers = rp,
                ColumnIndices = ci,
                Values = v,
                Meta = meta,
            });
        }
    }
}

/// <summary>Builds test matrices directly in the documented layouts.</summary>
internal static class SparseBuild
{
    /// <summary>A dense n×k matrix with each entry non-zero with probability <paramref name="density"/>.</summary>
    public static T[] Pruned<T>(Random random, int n, int k, double density, Func<Random, T> draw)
        where T : unmanaged
    {
        var w = new T[n * k];
        for (int i = 0; i < w.Length; i++)
            w[i] = random.NextDouble() < density ? draw(random) : default;
        return w;
    }

    /// <summary>
    /// A dense n×k int8 matrix of br×bc blocks, dense inside, of which exactly max(1, ⌊fraction · blocks⌋) distinct ones
    /// (drawn at random) are non-zero: a density of at most about <paramref name="fraction"/>, whatever the draw.
    /// </summary>
    public static sbyte[] BlockPruned(Random random, int n, int k, int br, int bc, double fraction)
    {
        int blockRows = (n + br - 1) / br, blockColumns = (k + bc - 1) / bc;
        int[] order = [.. Enumerable.Range(0, blockRows * blockColumns)];
        random.Shuffle(order);
        var w = new sbyte[n * k];
        foreach (int block in order.Take(Math.Max(1, (int)(fraction * order.Length))))
        {
            int b = block / blockColumns, j = block % blockColumns;
            for (int i = 0; i < br && b * br + i < n; i++)
            {
                for (int c = 0; c < bc && j * bc + c < k; c++)
                    w[(b * br + i) * k + j * bc + c] = NonZero8(random);
            }
        }
        return w;
    }

    public static sbyte NonZero8(Random random)
    {
        int v = random.Next(-128, 127);
        return (sbyte)(v >= 0 ? v + 1 : v);
    }

    public static float NonZeroF(Random random) => (float)(random.NextDouble() * 2 - 1) is var f && f != 0 ? f : 0.5f;

    public static SparseCase<T> Csr<T>(T[] dense, int n, int k)
        where T : unmanaged, IEquatable<T>
    {
        var ptr = new int[n + 1];
        var cols = new List<int>();
        var vals = new List<T>();
        for (int r = 0; r < n; r++)
        {
            for (int c = 0; c < k; c++)
            {
                if (!dense[r * k + c].Equals(default))
                {
                    cols.Add(c);
                    vals.Add(dense[r * k + c]);
                }
            }
            ptr[r + 1] = cols.Count;
        }
        return new SparseCase<T>
        {
            Dense = dense, Rows = n, Columns = k, Format = SparseFormat.Csr,
            RowPointers = ptr, ColumnIndices = cols.ToArray(), Values = vals.ToArray(),
        };
    }

    /// <summary>
    /// BSR of the dense matrix: every block holding a non-zero is stored, and (to test stored zero blocks)
    /// a few all-zero blocks too; edge blocks padded with zeros.
    /// </summary>
    public static SparseCase<T> Bsr<T>(Random random, T[] dense, int n, int k, int br, int bc)
        where T : unmanaged, IEquatable<T>
    {
        int bRows = (n + br - 1) / br, bCols = (k + bc - 1) / bc;
        var ptr = new int[bRows + 1];
        var cols = new List<int>();
        var vals = new List<T>();
        for (int b = 0; b < bRows; b++)
        {
            for (int j = 0; j < bCols; j++)
            {
                bool any = false;
                for (int i = 0; i < br; i++)
                {
                    for (int c = 0; c < bc; c++)
                    {
                        int r = b * br + i, cc = j * bc + c;
                        if (r < n && cc < k && !dense[r * k + cc].Equals(default))
                            any = true;
                    }
                }
                if (!any && random.Next(8) != 0)
                    continue;
                cols.Add(j);
                for (int i = 0; i < br; i++)
                {
                    for (int c = 0; c < bc; c++)
                    {
                        int r = b * br + i, cc = j * bc + c;
                        vals.Add(r < n && cc < k ? dense[r * k + cc] : default);
                    }
                }
            }
            ptr[b + 1] = cols.Count;
        }
        return new SparseCase<T>
        {
            Dense = dense, Rows = n, Columns = k, Format = SparseFormat.Bsr, BlockRows = br, BlockColumns = bc,
            RowPointers = ptr, ColumnIndices = cols.ToArray(), Values = vals.ToArray(),
        };
    }

    /// <summary>Prunes <paramref name="dense"/> in place to 2:4 (keeps up to two random entries per group) and encodes it.</summary>
    public static SparseCase<T> TwoFour<T>(Random random, T[] dense, int n, int k)
        where T : unmanaged, IEquatable<T>
    {
        int groups = (k + 3) / 4;
        var vals = new T[n * groups * 2];
        var meta = new byte[n * groups];
        for (int r = 0; r < n; r++)
        {
            for (int g = 0; g < groups; g++)
            {
                int a = random.Next(4), b = random.Next(3);
                if (b >= a)
                    b++;
                int p0 = Math.Min(a, b), p1 = Math.Max(a, b);
                for (int t = 0; t < 4; t++)
                {
                    int c = g * 4 + t;
                    if (c < k && t != p0 && t != p1)
                        dense[r * k + c] = default;
                }
                long at = (long)r * groups + g;
                meta[at] = (byte)(p0 | (p1 << 2));
                vals[2 * at] = g * 4 + p0 < k ? dense[r * k + g * 4 + p0] : default;
                vals[2 * at + 1] = g * 4 + p1 < k ? dense[r * k + g * 4 + p1] : default;
            }
        }
        return new SparseCase<T> { Dense = dense, Rows = n, Columns = k, Format = SparseFormat.TwoFour, Values = vals, Meta = meta };
    }
}

public class SparseSimdTests
{
    private const int Poison = unchecked((int)0xDEADBEEF);
    private const int Slack = 13;

    public static TheoryData<SimdLevel> Levels => new(SimdLevel.Scalar, SimdLevel.Avx2, SimdLevel.AvxVnni, SimdLevel.Avx512Vnni);

    private static void Require(SimdLevel level)
    {
        if (CpuSimd.Effective < level)
            Assert.Skip($"{level.ToName()}: this machine (or {CpuSimd.MaxLevelVariable}) allows only {CpuSimd.Effective.ToName()}");
        if (CpuSimd.Resolve(level) != level)
            Assert.Skip($"{level.ToName()}: this processor has AVX-512 VNNI but not the 256-bit AVX-VNNI the intrinsics use; the cap runs {CpuSimd.Resolve(level).ToName()}, tested as that");
    }

    private static long[] Reference(sbyte[] x, sbyte[] w, int m, int n, int k)
    {
        var y = new long[m * n];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                long s = 0;
                for (int c = 0; c < k; c++)
                    s += x[i * k + c] * w[j * k + c];
                y[i * n + j] = s;
            }
        }
        return y;
    }

    private static IEnumerable<SparseCase<sbyte>> Encodings(Random random, int n, int k, double density, bool allBsr)
    {
        sbyte[] dense = SparseBuild.Pruned(random, n, k, density, SparseBuild.NonZero8);
        yield return SparseBuild.Csr(dense, n, k);
        (int, int)[] blocks = allBsr ? [(1, 4), (4, 4), (1, 8), (2, 2), (3, 5), (4, 1), (8, 4)] : [(4, 4), (1, 8), (3, 5)];
        foreach ((int br, int bc) in blocks)
            yield return SparseBuild.Bsr(random, dense, n, k, br, bc);
        yield return SparseBuild.TwoFour(random, (sbyte[])dense.Clone(), n, k);
    }

    /// <summary>Int32 output into a poisoned buffer: every element equals the int64 reference, nothing else is written.</summary>
    private static unsafe void CheckInt8(SimdLevel level, SparseCase<sbyte> w, sbyte[] x, int m, string what,
        SparseSimdOverrides overrides = default)
    {
        int n = w.Rows, k = w.Columns;
        long[] expected = Reference(x, w.Dense, m, n, k);
        var c = new int[m * n + Slack];
        Array.Fill(c, Poison);
        fixed (sbyte* px = x)
        fixed (int* pc = c)
        {
            int* cp = pc;
            sbyte* xp = px;
            w.With(sw => SparseSimd.Int8(sw, xp, m, SimdEpilogue.Int32(cp, 0), level, overrides));
        }
        for (int i = 0; i < m * n; i++)
        {
            if (c[i] != expected[i])
                Assert.Fail($"{what} {w} m={m} [{level.ToName()}]: element ({i / n},{i % n}) is {c[i]}, expected {expected[i]}");
        }
        for (int i = m * n; i < c.Length; i++)
            Assert.True(c[i] == Poison, $"{what} {w} [{level.ToName()}]: element {i} past the output was written");
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void Int8_matches_the_reference_for_every_format_and_remainder(SimdLevel level)
    {
        Require(level);
        Seeded.Run((random, _) =>
        {
            (int m, int n, int k)[] shapes =
            [
                (1, 1, 1), (1, 9, 7), (2, 17, 33), (3, 8, 4), (4, 5, 131), (5, 13, 3), (7, 31, 67),
                (16, 8, 64), (31, 9, 29), (32, 16, 130), (33, 7, 5), (61, 23, 97), (97, 41, 257),
            ];
            foreach ((int m, int n, int k) in shapes)
            {
                foreach (double density in new[] { 0.0, 0.1, 0.5, 1.0 })
                {
                    sbyte[] x = Seeded.Int8(random, (long)m * k);
                    foreach (SparseCase<sbyte> w in Encodings(random, n, k, density, allBsr: m % 2 == 1))
                        CheckInt8(level, w, x, m, $"density {density}");
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void Int8_uses_several_threads_and_token_blocks(SimdLevel level)
    {
        Require(level);
        Seeded.Run((random, _) =>
        {
            foreach ((int m, int n, int k, double density) in new[] { (200, 301, 500, 0.1), (3, 1000, 700, 0.2), (130, 5, 1000, 0.9) })
            {
                sbyte[] x = Seeded.Int8(random, (long)m * k);
                sbyte[] dense = SparseBuild.Pruned(random, n, k, density, SparseBuild.NonZero8);
                CheckInt8(level, SparseBuild.Csr(dense, n, k), x, m, "large");
                CheckInt8(level, SparseBuild.Bsr(random, dense, n, k, 4, 4), x, m, "large");
                CheckInt8(level, SparseBuild.TwoFour(random, (sbyte[])dense.Clone(), n, k), x, m, "large");
            }
        });
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public unsafe void Both_thread_splits_give_the_same_exact_results(SimdLevel level)
    {
        // The row split (pack all panels, then rows of W per thread) and the panel split (a task packs one
        // token panel and runs all rows) are chosen by size and thread count; force each on every shape.
        Require(level);
        Seeded.Run((random, _) =>
        {
            foreach ((int m, int n, int k) in new[] { (200, 301, 500), (257, 40, 77), (130, 1030, 33), (65, 9, 130) })
            {
                sbyte[] x = Seeded.Int8(random, (long)m * k);
                float[] xf = Seeded.Floats(random, (long)m * k, -1f, 1f);
                sbyte[] dense = SparseBuild.Pruned(random, n, k, 0.15, SparseBuild.NonZero8);
                float[] densef = SparseBuild.Pruned(random, n, k, 0.15, SparseBuild.NonZeroF);
                float[] bias = Seeded.Floats(random, n, -1f, 1f);
                var floats = new Dictionary<SparseSimd.Split, float[]>();
                foreach (SparseSimd.Split split in new[] { SparseSimd.Split.Rows, SparseSimd.Split.Panels })
                {
                    var forced = new SparseSimdOverrides(Split: split);
                    CheckInt8(level, SparseBuild.Csr(dense, n, k), x, m, $"split {split}", forced);
                    CheckInt8(level, SparseBuild.Bsr(random, dense, n, k, 4, 4), x, m, $"split {split}", forced);
                    CheckInt8(level, SparseBuild.Bsr(random, dense, n, k, 3, 5), x, m, $"split {split}", forced);
                    var y = new float[m * n + Slack];
                    Array.Fill(y, float.NaN);
                    fixed (float* px = xf)
                    fixed (float* pb = bias)
                    fixed (float* py = y)
                    {
                        float* xp = px, bp = pb, yp = py;
                        SparseBuild.Csr(densef, n, k).With(sw => SparseSimd.Float32(sw, xp, m, yp, bp, level, forced));
                    }
                    for (int i = m * n; i < y.Length; i++)
                        Assert.True(float.IsNaN(y[i]), $"float split {split} m={m} n={n} k={k} [{level.ToName()}]: element {i} past the output was written");
                    floats[split] = y;
                }
                for (int i = 0; i < m * n; i++)
                {
                    float a = floats[SparseSimd.Split.Rows][i], b = floats[SparseSimd.Split.Panels][i];
                    if (BitConverter.SingleToInt32Bits(a) != BitConverter.SingleToInt32Bits(b) || float.IsNaN(a))
                        Assert.Fail($"float m={m} n={n} k={k} [{level.ToName()}]: element ({i / n},{i % n}) is {a} with the row split and {b} with the panel split");
                }
            }
        });
    }

    [Theory]
    [InlineData(false, SimdLevel.Avx2)]
    [InlineData(true, SimdLevel.Avx2)]
    [InlineData(false, SimdLevel.AvxVnni)]
    [InlineData(true, SimdLevel.AvxVnni)]
    [InlineData(false, SimdLevel.Avx512Vnni)]
    [InlineData(true, SimdLevel.Avx512Vnni)]
    public void Small_m_int8_kernels_are_exact(bool gathers, SimdLevel level)
    {
        // m ≤ 16 at every SIMD level: one token with gathers; 8- and 16-token panels with vpermb (AVX-512 VBMI), or
        // four-token gathers up to m = 8 (the 64-token kernels above). Without AVX-VNNI (the avx2 level, or
        // avx512-vnni on a CPU without AVX-VNNI) they run the AVX2 form of vpdpbusd.
        // Every m, row lengths of every remainder mod 8 (empty, 1…7, long), extremes, several threads.
        Require(level);
        if (!gathers && !System.Runtime.Intrinsics.X86.Avx512Vbmi.VL.IsSupported)
            Assert.Skip("no AVX-512 VBMI: the eight-token kernel does not run on this CPU");
        var forced = new SparseSimdOverrides(SmallGathers: gathers);
        Seeded.Run((random, _) =>
        {
            foreach ((int n, int k, double density) in new[] { (23, 37, 0.3), (40, 300, 0.1), (9, 8, 1.0), (1100, 600, 0.05) })
            {
                sbyte[] dense = SparseBuild.Pruned(random, n, k, density, SparseBuild.NonZero8);
                for (int j = 0; j < Math.Min(k, 7); j++)
                    dense[j] = j % 2 == 0 ? (sbyte)-128 : (sbyte)127;   // row 0: seven non-zeros at the start
                Array.Clear(dense, k, Math.Min(k, (n - 1) * k));         // row 1 empty (when there is one)
                for (int m = 1; m <= SparseSimd.SmallMInt8Vbmi; m++)
                {
                    sbyte[] x = Seeded.Int8(random, (long)m * k);
                    x[0] = -128;
                    string what = gathers ? "gathers" : "vpermb panels";
                    SparseCase<sbyte> csr = SparseBuild.Csr(dense, n, k);
                    CheckInt8(level, csr, x, m, what, forced);
                    CheckInt8(level, SparseBuild.Bsr(random, dense, n, k, 3, 5), x, m, what, forced);
                    csr.With(sw =>
                    {
                        using SparseSimdPlan plan = SparseSimdPlan.PrepareForCall(sw, level);
                        string kernel = SparseSimd.DescribeInt8(plan, m, forced);
                        Assert.True(kernel.Contains("small-m", StringComparison.Ordinal) == m <= SparseSimd.SmallMInt8Here(forced), $"m={m}: {kernel}");
                    });
                }
            }
        });
    }

    [Fact]
    public unsafe void Float32_is_bit_identical_at_the_avx2_and_avx_vnni_levels()
    {
        // The row kernel sums non-zeros round-robin into four partial sums in a fixed order; the AVX-VNNI
        // level uses 512-bit vectors on AVX-512 CPUs, the AVX2 level 256-bit ones: with FMA on both, the
        // same bits. Every remainder of the four-way unroll, empty rows, several panels.
        Require(SimdLevel.AvxVnni);
        if (!System.Runtime.Intrinsics.X86.Fma.IsSupported)
            Assert.Skip("no FMA: the AVX2 level multiplies and adds separately");
        Seeded.Run((random, _) =>
        {
            foreach ((int m, int n, int k, double density) in new[] { (70, 37, 45, 0.1), (33, 20, 9, 0.5), (130, 64, 300, 0.07), (40, 11, 5, 1.0) })
            {
                float[] x = Seeded.Floats(random, (long)m * k, -1f, 1f);
                float[] dense = SparseBuild.Pruned(random, n, k, density, SparseBuild.NonZeroF);
                var results = new List<float[]>();
                foreach (SimdLevel level in new[] { SimdLevel.Avx2, SimdLevel.AvxVnni })
                {
                    var y = new float[m * n];
                    fixed (float* px = x)
                    fixed (float* py = y)
                    {
                        float* xp = px, yp = py;
                        SparseBuild.Csr(dense, n, k).With(sw => SparseSimd.Float32(sw, xp, m, yp, null, level));
                    }
                    results.Add(y);
                }
                for (int i = 0; i < m * n; i++)
                {
                    if (BitConverter.SingleToInt32Bits(results[0][i]) != BitConverter.SingleToInt32Bits(results[1][i]))
                        Assert.Fail($"float {m}×{n}×{k} density {density}: element ({i / n},{i % n}) is {results[0][i]} at avx2 and {results[1][i]} at avx-vnni");
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void Int8_tiles_of_several_row_groups_store_every_remainder(SimdLevel level)
    {
        // Up to SparseSimdKernels.StoreGroups groups of 8 rows per tile: whole tiles, a last partial group,
        // rows a multiple of 8 past one tile, token remainders, several threads (n ≥ 1000).
        Require(level);
        Seeded.Run((random, _) =>
        {
            foreach ((int m, int n, int k) in new[] { (70, 128, 45), (65, 136, 97), (9, 263, 40), (130, 250, 33), (64, 1030, 20), (77, 2056, 9) })
            {
                foreach (double density in new[] { 0.1, 1.0 })
                {
                    sbyte[] x = Seeded.Int8(random, (long)m * k);
                    sbyte[] dense = SparseBuild.Pruned(random, n, k, density, SparseBuild.NonZero8);
                    CheckInt8(level, SparseBuild.Csr(dense, n, k), x, m, $"density {density}");
                    CheckInt8(level, SparseBuild.Bsr(random, dense, n, k, 4, 4), x, m, $"density {density}");
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void Int8_extremes_are_exact_at_the_largest_k(SimdLevel level)
    {
        Require(level);
        Seeded.Run((random, _) =>
        {
            const int n = 9, k = Check.MaxK;
            foreach ((sbyte xv, sbyte wv) in new[] { ((sbyte)-128, (sbyte)-128), ((sbyte)127, (sbyte)-128), ((sbyte)-128, (sbyte)127) })
            {
                var dense = new sbyte[n * k];
                Array.Fill(dense, wv);
                foreach (int m in new[] { 2, 33 })
                {
                    var x = new sbyte[m * k];
                    Array.Fill(x, xv);
                    CheckInt8(level, SparseBuild.Csr(dense, n, k), x, m, $"x={xv} w={wv}");
                    CheckInt8(level, SparseBuild.Bsr(random, dense, n, k, 1, 8), x, m, $"x={xv} w={wv}");
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public unsafe void Int8_dequant_is_bit_identical_to_the_scalar_semantics(SimdLevel level)
    {
        Require(level);
        Seeded.Run((random, _) =>
        {
            foreach ((int m, int n, int k) in new[] { (1, 13, 70), (3, 8, 33), (37, 21, 101), (64, 16, 64), (70, 136, 45), (9, 263, 40) })
            {
                sbyte[] x = Seeded.Int8(random, (long)m * k);
                float[] aScale = Seeded.Floats(random, m, 1e-3f, 2f);
                float[] bScale = Seeded.Floats(random, n, 1e-3f, 2f);
                float[] bias = Seeded.Floats(random, n, -5f, 5f);
                foreach (SparseCase<sbyte> w in Encodings(random, n, k, 0.3, allBsr: true))
                {
                    foreach (bool withBias in new[] { false, true })
                    {
                        var expected = new float[m * n];
                        var actual = new float[m * n + Slack];
                        Array.Fill(actual, float.NaN);
                        fixed (sbyte* px = x)
                        fixed (float* pa = aScale)
                        fixed (float* pb = bScale)
                        fixed (float* pbias = bias)
                        fixed (float* pe = expected)
                        fixed (float* py = actual)
                        {
                            sbyte* xp = px;
                            var eExp = SimdEpilogue.Dequant(pe, 0, pa, 0, pb, withBias ? pbias : null, 0);
                            var eAct = SimdEpilogue.Dequant(py, 0, pa, 0, pb, withBias ? pbias : null, 0);
                            w.With(sw =>
                            {
                                SparseSimd.Int8(sw, xp, m, eExp, SimdLevel.Scalar);
                                SparseSimd.Int8(sw, xp, m, eAct, level);
                            });
                        }
                        for (int i = 0; i < m * n; i++)
                        {
                            if (BitConverter.SingleToInt32Bits(actual[i]) != BitConverter.SingleToInt32Bits(expected[i]))
                                Assert.Fail($"{w} m={m} bias={withBias} [{level.ToName()}]: element {i} is {actual[i]}, expected {expected[i]}");
                        }
                        for (int i = m * n; i < actual.Length; i++)
                            Assert.True(float.IsNaN(actual[i]), $"{w} [{level.ToName()}]: element {i} past the output was written");
                    }
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public unsafe void Plans_give_the_same_results_and_are_reusable(SimdLevel level)
    {
        Require(level);
        Seeded.Run((random, _) =>
        {
            const int n = 45, k = 203;
            foreach (SparseCase<sbyte> w in Encodings(random, n, k, 0.2, allBsr: true))
            {
                w.With(sw =>
                {
                    using SparseSimdPlan plan = SparseSimdPlan.Prepare(sw, level);
                    foreach (int m in new[] { 1, 6, 40 })
                    {
                        sbyte[] x = Seeded.Int8(random, (long)m * k);
                        long[] expected = Reference(x, w.Dense, m, n, k);
                        var c = new int[m * n];
                        fixed (sbyte* px = x)
                        fixed (int* pc = c)
                            SparseSimd.Int8(plan, px, m, SimdEpilogue.Int32(pc, 0));
                        Expect.Equal(expected, c, $"{w} m={m} plan [{level.ToName()}]");
                    }
                });
            }
        });
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public unsafe void Float32_matches_a_float64_reference(SimdLevel level)
    {
        Require(level);
        Seeded.Run((random, _) =>
        {
            foreach ((int m, int n, int k) in new[] { (1, 9, 7), (3, 17, 100), (4, 8, 33), (5, 13, 3), (33, 7, 67), (70, 41, 130), (200, 64, 300), (70, 141, 50) })
            {
                foreach (double density in new[] { 0.0, 0.1, 0.6, 1.0 })
                {
                    float[] x = Seeded.Floats(random, (long)m * k, -1f, 1f);
                    float[] bias = Seeded.Floats(random, n, -1f, 1f);
                    float[] dense = SparseBuild.Pruned(random, n, k, density, SparseBuild.NonZeroF);
                    var cases = new List<SparseCase<float>> { SparseBuild.Csr(dense, n, k), SparseBuild.Bsr(random, dense, n, k, 4, 4), SparseBuild.Bsr(random, dense, n, k, 3, 5) };
                    cases.Add(SparseBuild.TwoFour(random, (float[])dense.Clone(), n, k));
                    foreach (SparseCase<float> w in cases)
                    {
                        foreach (bool withBias in new[] { false, true })
                        {
                            var expected = new double[m * n];
                            for (int i = 0; i < m; i++)
                            {
                                for (int j = 0; j < n; j++)
                                {
                                    double s = withBias ? bias[j] : 0;
                                    for (int c = 0; c < k; c++)
                                        s += (double)x[i * k + c] * w.Dense[j * k + c];
                                    expected[i * n + j] = s;
                                }
                            }
                            var y = new float[m * n + Slack];
                            Array.Fill(y, float.NaN);
                            fixed (float* px = x)
                            fixed (float* pb = bias)
                            fixed (float* py = y)
                            {
                                float* xp = px, bp = withBias ? pb : null, yp = py;
                                w.With(sw => SparseSimd.Float32(sw, xp, m, yp, bp, level));
                            }
                            Expect.Close(expected, y[..(m * n)], 1e-4, 1e-4 * Math.Sqrt(k), $"{w} m={m} density {density} bias={withBias} [{level.ToName()}]");
                            for (int i = m * n; i < y.Length; i++)
                                Assert.True(float.IsNaN(y[i]), $"{w} [{level.ToName()}]: element {i} past the output was written");
                        }
                    }
                }
            }
        });
    }

    [Fact]
    public unsafe void A_plan_is_checked_against_the_element_type()
    {
        sbyte[] dense = [1, 0, -2, 3];
        SparseCase<sbyte> w = SparseBuild.Csr(dense, 2, 2);
        var x = new sbyte[2];
        var c = new int[2];
        w.With(sw =>
        {
            using SparseSimdPlan plan = SparseSimdPlan.PrepareFloat32(sw, SimdLevel.AvxVnni);
            fixed (sbyte* px = x)
            fixed (int* pc = c)
            {
                sbyte* xp = px;
                int* cp = pc;
                Assert.Throws<ArgumentException>(() => SparseSimd.Int8(plan, xp, 1, SimdEpilogue.Int32(cp, 0)));
            }
        });
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public unsafe void Float32_plans_are_reusable(SimdLevel level)
    {
        Require(level);
        Seeded.Run((random, _) =>
        {
            const int n = 19, k = 77;
            float[] dense = SparseBuild.Pruned(random, n, k, 0.3, SparseBuild.NonZeroF);
            SparseBuild.Bsr(random, dense, n, k, 2, 8).With(sw =>
            {
                using SparseSimdPlan plan = SparseSimdPlan.PrepareFloat32(sw, level);
                foreach (int m in new[] { 1, 9, 40 })
                {
                    float[] x = Seeded.Floats(random, (long)m * k, -1f, 1f);
                    var expected = new double[m * n];
                    for (int i = 0; i < m; i++)
                    {
                        for (int j = 0; j < n; j++)
                        {
                            double s = 0;
                            for (int c = 0; c < k; c++)
                                s += (double)x[i * k + c] * dense[j * k + c];
                            expected[i * n + j] = s;
                        }
                    }
                    var y = new float[m * n];
                    fixed (float* px = x)
                    fixed (float* py = y)
                        SparseSimd.Float32(plan, px, m, py, null);
                    Expect.Close(expected, y, 1e-4, 1e-3, $"float plan m={m} [{level.ToName()}]");
                }
            });
        });
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void Int8_block_pruned_matrices_take_every_plan_form(SimdLevel level)
    {
        Require(level);
        Seeded.Run((random, _) =>
        {
            foreach ((int m, int n, int k) in new[] { (40, 37, 203), (70, 16, 64), (9, 23, 130) })
            {
                sbyte[] x = Seeded.Int8(random, (long)m * k);
                foreach ((int br, int bc) in new[] { (1, 4), (4, 4), (2, 8) })
                {
                    // 5 % of the blocks, dense inside: the aligned-quad form (below the densities where decode loses
                    // to the dense GEMM, SparseSimdPlan.Costs).
                    sbyte[] dense = SparseBuild.BlockPruned(random, n, k, br, bc, 0.05);
                    SparseCase<sbyte> w = SparseBuild.Bsr(random, dense, n, k, br, bc);
                    CheckInt8(level, w, x, m, "block-pruned");
                    CheckInt8(level, SparseBuild.Csr(dense, n, k), x, m, "block-pruned");
                    if (level >= SimdLevel.AvxVnni)
                    {
                        w.With(sw =>
                        {
                            using SparseSimdPlan plan = SparseSimdPlan.Prepare(sw, level);
                            Assert.True(plan.UseQuads, $"{w}: expected the aligned-quad form");
                        });
                    }
                }
                // Dense-ish: the dense fallback.
                SparseCase<sbyte> full = SparseBuild.Csr(SparseBuild.Pruned(random, n, k, 0.9, SparseBuild.NonZero8), n, k);
                CheckInt8(level, full, x, m, "dense-ish");
                if (level >= SimdLevel.AvxVnni)
                {
                    full.With(sw =>
                    {
                        using SparseSimdPlan plan = SparseSimdPlan.Prepare(sw, level);
                        Assert.True(plan.Dense is not null, $"{full}: expected the dense fallback");
                    });
                }
            }
        });
    }

    [Fact]
    public unsafe void The_256_bit_interleave_kernel_matches_the_512_bit_one()
    {
        if (!System.Runtime.Intrinsics.X86.AvxVnni.IsSupported || !System.Runtime.Intrinsics.X86.Avx512BW.IsSupported)
            Assert.Skip("needs AVX-VNNI and AVX-512BW to run both forms");
        Seeded.Run((random, _) =>
        {
            const int k = 97;
            byte[] panel = new byte[k * SparseSimdKernels.TBV];
            random.NextBytes(panel);
            foreach (int count in new[] { 0, 1, 2, 3, 4, 5, 7, 8, 13, 64 })
            {
                int[] cols = new int[count];
                for (int i = 0; i < count; i++)
                    cols[i] = random.Next(k);
                sbyte[] vals = Seeded.Int8(random, count);
                var a = new int[SparseSimdKernels.TBV];
                var b = new int[SparseSimdKernels.TBV];
                fixed (byte* pp = panel)
                fixed (int* pc = cols)
                fixed (sbyte* pv = vals)
                fixed (int* pa = a)
                fixed (int* pb = b)
                {
                    SparseSimdKernels.RowVnni(pp, pc, pv, 0, count, pa);
                    SparseSimdKernels.RowVnni256(pp, pc, pv, 0, count, pb);
                }
                Assert.Equal(a, b);
            }
        });
    }
}

/// <summary><see cref="Vnni256.DotAddAvx2"/>, the AVX2 form of <c>vpdpbusd</c>, against the definition.</summary>
public class Vnni256Tests
{
    [Fact]
    public void The_avx2_form_of_vpdpbusd_matches_the_definition_at_every_extreme()
    {
        if (!System.Runtime.Intrinsics.X86.Avx2.IsSupported)
            Assert.Skip("no AVX2");
        Seeded.Run((random, seed) =>
        {
            byte[] edgesA = [0, 1, 127, 128, 254, 255];
            sbyte[] edgesB = [-128, -127, -1, 0, 1, 127];
            var a = new byte[32];
            var b = new sbyte[32];
            var acc = new int[8];
            for (int round = 0; round < 2000; round++)
            {
                for (int i = 0; i < 32; i++)
                {
                    a[i] = round % 3 == 0 ? edgesA[random.Next(edgesA.Length)] : (byte)random.Next(256);
                    b[i] = round % 3 == 0 ? edgesB[random.Next(edgesB.Length)] : (sbyte)random.Next(-128, 128);
                }
                for (int j = 0; j < 8; j++)
                    acc[j] = round % 5 == 0 ? (j % 2 == 0 ? int.MaxValue - random.Next(70000) : int.MinValue + random.Next(70000)) : random.Next();
                Vector256<int> got = Vnni256.DotAddAvx2(Vector256.Create(acc), Vector256.Create(a), Vector256.Create(b));
                for (int j = 0; j < 8; j++)
                {
                    int expected = acc[j];
                    for (int t = 0; t < 4; t++)
                        expected = unchecked(expected + a[4 * j + t] * b[4 * j + t]);
                    Assert.True(got[j] == expected, $"seed {seed}, round {round}, lane {j}: got {got[j]}, expected {expected} (wrapping int32 like vpdpbusd)");
                }
            }
        });
    }
}
