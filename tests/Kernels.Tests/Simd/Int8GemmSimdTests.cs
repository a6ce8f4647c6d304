using Kernels.Peers;
using Kernels.Simd;

namespace Kernels.Tests.Simd;

public class Int8GemmSimdTests
{
    private const uint Poison = 0xDEADBEEF;
    private const int Slack = 37;

    public static TheoryData<SimdLevel> Levels => new(SimdLevel.Scalar, SimdLevel.Avx2, SimdLevel.AvxVnni, SimdLevel.Avx512Vnni);

    /// <summary>Skips a level this machine (or KERNELS_SIMD_MAX) cannot run, so a forced level is really that path.</summary>
    private static void Require(SimdLevel level)
    {
        if (level == SimdLevel.Avx512Vnni && CpuSimd.Detected < level)
            Assert.Skip("avx512-vnni: .NET 10 exposes no managed intrinsic for the 512-bit vpdpbusd, so the level is never detected (no such path)");
        if (CpuSimd.Detected < level)
            Assert.Skip($"{level.ToName()}: this processor/runtime supports only {CpuSimd.Detected.ToName()}");
        if (CpuSimd.Effective < level)
            Assert.Skip($"{level.ToName()}: capped by {CpuSimd.MaxLevelVariable} to {CpuSimd.Effective.ToName()}");
    }

    /// <summary>Runs one (batched) GEMM into a poisoned buffer and checks every element and the untouched rest.</summary>
    private static void CheckGemm(SimdLevel level, sbyte[] a, sbyte[] b, int m, int n, int k, int batch,
        long strideA, long strideB, long strideC, string what)
    {
        long length = (batch - 1) * strideC + (long)m * n + Slack;
        var c = new int[length];
        Array.Fill(c, unchecked((int)Poison));
        Int8GemmSimd.Gemm(a, b, c, m, n, k, batch, strideA, strideB, strideC, level);
        var written = new bool[length];
        for (int bt = 0; bt < batch; bt++)
        {
            long[] expected = HostReference.Int8Gemm(
                a.AsSpan((int)(bt * strideA), m * k), b.AsSpan((int)(bt * strideB), n * k), m, n, k);
            for (int i = 0; i < expected.Length; i++)
            {
                long at = bt * strideC + i;
                written[at] = true;
                if (c[at] != expected[i])
                    Assert.Fail($"{what} [{level.ToName()}] batch {bt}: element ({i / n},{i % n}) is {c[at]}, expected {expected[i]}");
            }
        }
        for (long i = 0; i < length; i++)
        {
            if (!written[i] && c[i] != unchecked((int)Poison))
                Assert.Fail($"{what} [{level.ToName()}]: element {i} outside the output was overwritten with {c[i]}");
        }
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void Shapes_cover_every_remainder(SimdLevel level)
    {
        Require(level);
        Seeded.Run((random, _) =>
        {
            int[] ms = [1, 2, 5, 6, 7, 12, 13, 97];
            int[] ns = [1, 3, 8, 15, 16, 17, 33, 47];
            int[] ks = [1, 2, 3, 4, 5, 7, 31, 32, 33, 63, 64, 65, 129];
            foreach (int m in ms)
            {
                foreach (int n in ns)
                {
                    foreach (int k in ks)
                    {
                        sbyte[] a = Seeded.Int8(random, (long)m * k);
                        sbyte[] b = Seeded.Int8(random, (long)n * k);
                        CheckGemm(level, a, b, m, n, k, 1, 0, 0, 0, $"m={m} n={n} k={k}");
                    }
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void Large_shapes_use_several_blocks_and_threads(SimdLevel level)
    {
        Require(level);
        Seeded.Run((random, _) =>
        {
            foreach ((int m, int n, int k) in new[] { (200, 301, 1000), (97, 95, 8191), (1, 1000, 777), (301, 3, 513) })
            {
                sbyte[] a = Seeded.Int8(random, (long)m * k);
                sbyte[] b = Seeded.Int8(random, (long)n * k);
                CheckGemm(level, a, b, m, n, k, 1, 0, 0, 0, $"m={m} n={n} k={k}");
            }
        });
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void Extremes_are_exact_at_the_largest_k(SimdLevel level)
    {
        Require(level);
        Seeded.Run((random, _) =>
        {
            const int m = 7, n = 17, k = Check.MaxK;
            foreach ((string name, sbyte av, sbyte bv) in new[] { ("all -128", (sbyte)-128, (sbyte)-128), ("all 127", (sbyte)127, (sbyte)127), ("-128·127", (sbyte)-128, (sbyte)127), ("127·-128", (sbyte)127, (sbyte)-128) })
            {
                var a = new sbyte[m * k];
                var b = new sbyte[n * k];
                Array.Fill(a, av);
                Array.Fill(b, bv);
                CheckGemm(level, a, b, m, n, k, 1, 0, 0, 0, $"{name} k={k}");
            }
            // Mixed extremes: every entry -128 or 127.
            sbyte[] am = Seeded.Int8(random, m * k, 0, 1);
            sbyte[] bm = Seeded.Int8(random, n * k, 0, 1);
            for (int i = 0; i < am.Length; i++)
                am[i] = am[i] == 0 ? (sbyte)-128 : (sbyte)127;
            for (int i = 0; i < bm.Length; i++)
                bm[i] = bm[i] == 0 ? (sbyte)-128 : (sbyte)127;
            CheckGemm(level, am, bm, m, n, k, 1, 0, 0, 0, $"mixed extremes k={k}");
        });
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void Strided_batches_with_gaps_and_shared_weights(SimdLevel level)
    {
        Require(level);
        Seeded.Run((random, _) =>
        {
            foreach ((int m, int n, int k, int batch) in new[] { (5, 17, 33, 3), (13, 40, 130, 4), (64, 64, 256, 5) })
            {
                long strideA = (long)m * k + 5;
                long strideC = (long)m * n + 7;
                sbyte[] a = Seeded.Int8(random, (batch - 1) * strideA + (long)m * k);
                foreach (long strideB in new[] { (long)n * k + 3, 0L })
                {
                    sbyte[] b = Seeded.Int8(random, (batch - 1) * strideB + (long)n * k);
                    CheckGemm(level, a, b, m, n, k, batch, strideA, strideB, strideC, $"batch={batch} m={m} n={n} k={k} strideB={strideB}");
                }
                // The same activations for every GEMM (strideA = 0).
                sbyte[] bs = Seeded.Int8(random, (batch - 1) * ((long)n * k) + (long)n * k);
                CheckGemm(level, a, bs, m, n, k, batch, 0, (long)n * k, strideC, $"shared A batch={batch} m={m} n={n} k={k}");
            }
        });
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void Dequant_is_bit_identical_to_float32_in_order(SimdLevel level)
    {
        Require(level);
        Seeded.Run((random, _) =>
        {
            foreach ((int m, int n, int k, int batch, bool hasBias, bool sharedScales) in new[]
                     {
                         (1, 1, 1, 1, false, false), (7, 17, 65, 1, true, false), (13, 33, 129, 3, true, false),
                         (13, 33, 129, 3, true, true), (6, 16, 64, 2, false, true), (97, 47, 300, 2, true, false),
                         (150, 160, 2000, 1, true, false),
                     })
            {
                long strideA = (long)m * k;
                long strideB = sharedScales ? 0 : (long)n * k;
                long strideAScale = m + 2;
                long strideBScale = sharedScales ? 0 : n + 3;
                long strideY = (long)m * n + 5;
                sbyte[] a = Seeded.Int8(random, batch * strideA);
                sbyte[] b = Seeded.Int8(random, (batch - 1) * strideB + (long)n * k);
                float[] aScale = Seeded.Floats(random, (batch - 1) * strideAScale + m, 1e-4f, 0.1f);
                float[] bScale = Seeded.Floats(random, (batch - 1) * strideBScale + n, 1e-4f, 0.1f);
                float[] bias = hasBias ? Seeded.Floats(random, (batch - 1) * strideBScale + n, -10f, 10f) : [];
                long length = (batch - 1) * strideY + (long)m * n + Slack;
                var y = new float[length];
                Array.Fill(y, float.NaN);
                Int8GemmSimd.GemmDequant(a, b, aScale, bScale, bias, y, m, n, k, batch, strideA, strideB,
                    strideAScale, strideBScale, strideY, level);
                var written = new bool[length];
                string what = $"dequant m={m} n={n} k={k} batch={batch} bias={hasBias} shared={sharedScales} [{level.ToName()}]";
                for (int bt = 0; bt < batch; bt++)
                {
                    long[] acc = HostReference.Int8Gemm(a.AsSpan((int)(bt * strideA), m * k), b.AsSpan((int)(bt * strideB), n * k), m, n, k);
                    for (int row = 0; row < m; row++)
                    {
                        for (int col = 0; col < n; col++)
                        {
                            // The stated order in float32: (float)acc · aScale · bScale, then + bias.
                            float expected = (float)(int)acc[row * n + col];
                            expected *= aScale[bt * strideAScale + row];
                            expected *= bScale[bt * strideBScale + col];
                            if (hasBias)
                                expected += bias[bt * strideBScale + col];
                            long at = bt * strideY + (long)row * n + col;
                            written[at] = true;
                            if (BitConverter.SingleToInt32Bits(y[at]) != BitConverter.SingleToInt32Bits(expected))
                                Assert.Fail($"{what} batch {bt}: element ({row},{col}) is {y[at]:R}, expected {expected:R} bit for bit");
                        }
                    }
                }
                for (long i = 0; i < length; i++)
                {
                    if (!written[i] && !float.IsNaN(y[i]))
                        Assert.Fail($"{what}: element {i} outside the output was overwritten with {y[i]}");
                }
            }
        });
    }

    [Fact]
    public void Levels_parse_and_invalid_caps_name_the_variable()
    {
        Assert.Equal(SimdLevel.Scalar, CpuSimd.Parse("scalar"));
        Assert.Equal(SimdLevel.Avx2, CpuSimd.Parse("AVX2"));
        Assert.Equal(SimdLevel.AvxVnni, CpuSimd.Parse("avx-vnni"));
        Assert.Equal(SimdLevel.Avx512Vnni, CpuSimd.Parse("avx512-vnni"));
        Assert.Null(CpuSimd.ParseCap(null));
        Assert.Null(CpuSimd.ParseCap(" "));
        Assert.Equal(SimdLevel.Avx2, CpuSimd.ParseCap("avx2"));
        var ex = Assert.Throws<ArgumentException>(() => CpuSimd.ParseCap("sse9"));
        Assert.Equal(CpuSimd.MaxLevelVariable, ex.ParamName);
        Assert.Contains(CpuSimd.MaxLevelVariable, ex.Message, StringComparison.Ordinal);
        foreach (SimdLevel level in Enum.GetValues<SimdLevel>())
        {
            Assert.Equal(level, CpuSimd.Parse(level.ToName()));
            Assert.True(CpuSimd.Resolve(level) <= level);
        }
        Assert.True(CpuSimd.Effective <= CpuSimd.Detected);
    }

    [Fact]
    public unsafe void Invalid_arguments_are_rejected()
    {
        var a = new sbyte[4];
        var b = new sbyte[4];
        var c = new int[4];
        Assert.Throws<ArgumentOutOfRangeException>(() => Int8GemmSimd.Gemm(a, b, c, 0, 1, 1, 1, 0, 0, 0, SimdLevel.Avx2));
        Assert.Throws<ArgumentOutOfRangeException>(() => Int8GemmSimd.Gemm(a, b, c, 1, 1, Check.MaxK + 1, 1, 0, 0, 0, SimdLevel.Avx2));
        Assert.Throws<ArgumentException>(() => Int8GemmSimd.Gemm(a, b, c, 2, 2, 3, 1, 0, 0, 0, SimdLevel.Avx2));
        Assert.Throws<ArgumentException>(() => Int8GemmSimd.Gemm(a, b, c, 1, 1, 1, 2, 1, 1, 0, SimdLevel.Avx2));
        fixed (int* pc = c)
        {
            var ep = SimdEpilogue.Int32(pc, 0);
            Assert.Throws<ArgumentNullException>(() => Int8GemmSimd.Gemm(null, null, 1, 1, 1, 1, 0, 0, ep, SimdLevel.Avx2));
        }
    }
}

public class OneDnnPeerTests
{
    [Fact]
    public void OneDnn_s8s8s32_matches_the_host_reference()
    {
        if (!OneDnn.IsAvailable(out string reason))
            Assert.Skip($"oneDNN not available: {reason}");
        Seeded.Run((random, _) =>
        {
            foreach ((int m, int n, int k) in new[] { (1, 1, 1), (7, 17, 33), (64, 96, 300), (3, 5, 4099) })
            {
                sbyte[] a = Seeded.Int8(random, (long)m * k);
                sbyte[] b = Seeded.Int8(random, (long)n * k);
                var c = new int[m * n];
                OneDnn.GemmS8S8S32(a, b, c, m, n, k);
                Expect.Equal(HostReference.Int8Gemm(a, b, m, n, k), c, $"oneDNN s8s8s32 m={m} n={n} k={k}");
            }
        });
    }

    [Fact]
    public void OneDnn_sgemm_matches_the_host_reference_on_small_integers()
    {
        if (!OneDnn.IsAvailable(out string reason))
            Assert.Skip($"oneDNN not available: {reason}");
        Seeded.Run((random, _) =>
        {
            const int m = 9, n = 21, k = 50;
            sbyte[] a = Seeded.Int8(random, m * k);
            sbyte[] b = Seeded.Int8(random, n * k);
            float[] af = Array.ConvertAll(a, v => (float)v);
            float[] bf = Array.ConvertAll(b, v => (float)v);
            var c = new float[m * n];
            OneDnn.Sgemm(af, bf, c, m, n, k);
            long[] expected = HostReference.Int8Gemm(a, b, m, n, k);
            for (int i = 0; i < c.Length; i++)
                Assert.Equal(expected[i], (long)c[i]);
        });
    }
}
