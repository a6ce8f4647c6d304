using Kernels.Backends.Simd;
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
        if (CpuSimd.Detected < level)
            Assert.Skip($"{level.ToName()}: this processor/runtime supports only {CpuSimd.Detected.ToName()}");
        if (CpuSimd.Effective < level)
            Assert.Skip($"{level.ToName()}: capped by {CpuSimd.MaxLevelVariable} or {CpuSimd.JitVariable} to {CpuSimd.Effective.ToName()}");
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

    /// <summary>Packs B once and checks the pre-packed GEMM like <see cref="CheckGemm"/>, twice (the packing is reusable).</summary>
    private static unsafe void CheckPacked(SimdLevel level, sbyte[] a, sbyte[] b, int m, int n, int k, int batch,
        long strideA, long strideB, long strideC, string what)
    {
        PackedWeights packed;
        fixed (sbyte* pb = b)
            packed = Int8GemmSimd.PackWeights(pb, n, k, batch, strideB, level);
        using (packed)
        {
            Assert.Equal(CpuSimd.Resolve(level), packed.Level);
            Assert.Equal(n, packed.N);
            Assert.Equal(k, packed.K);
            // Overwrite B: the packed copy must not read it again.
            var saved = (sbyte[])b.Clone();
            Array.Fill(b, (sbyte)99);
            try
            {
                for (int round = 0; round < 2; round++)
                {
                    long length = (batch - 1) * strideC + (long)m * n + Slack;
                    var c = new int[length];
                    Array.Fill(c, unchecked((int)Poison));
                    Int8GemmSimd.Gemm(a, packed, c, m, batch, strideA, strideC);
                    var written = new bool[length];
                    for (int bt = 0; bt < batch; bt++)
                    {
                        long[] expected = HostReference.Int8Gemm(
                            a.AsSpan((int)(bt * strideA), m * k), saved.AsSpan((int)(bt * strideB), n * k), m, n, k);
                        for (int i = 0; i < expected.Length; i++)
                        {
                            long at = bt * strideC + i;
                            written[at] = true;
                            if (c[at] != expected[i])
                                Assert.Fail($"packed {what} [{level.ToName()}] round {round} batch {bt}: element ({i / n},{i % n}) is {c[at]}, expected {expected[i]}");
                        }
                    }
                    for (long i = 0; i < length; i++)
                    {
                        if (!written[i] && c[i] != unchecked((int)Poison))
                            Assert.Fail($"packed {what} [{level.ToName()}]: element {i} outside the output was overwritten with {c[i]}");
                    }
                }
            }
            finally
            {
                saved.CopyTo(b, 0);
            }
        }
        Assert.True(packed.IsDisposed);
        Assert.Equal(0, packed.Bytes);
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void Packed_weights_match_the_reference_on_ragged_shapes(SimdLevel level)
    {
        Require(level);
        Seeded.Run((random, _) =>
        {
            foreach ((int m, int n, int k) in new[]
                     {
                         (1, 1, 1), (5, 3, 2), (6, 16, 4), (7, 17, 5), (13, 33, 31), (12, 47, 65), (97, 15, 129),
                         (200, 301, 1000), (1, 1000, 777), (301, 3, 513),
                     })
            {
                sbyte[] a = Seeded.Int8(random, (long)m * k);
                sbyte[] b = Seeded.Int8(random, (long)n * k);
                CheckPacked(level, a, b, m, n, k, 1, 0, 0, 0, $"m={m} n={n} k={k}");
            }
        });
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void Packed_weights_serve_shared_and_per_batch_B(SimdLevel level)
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
                    CheckPacked(level, a, b, m, n, k, batch, strideA, strideB, strideC, $"batch={batch} m={m} n={n} k={k} strideB={strideB}");
                }
                sbyte[] bs = Seeded.Int8(random, (batch - 1) * ((long)n * k) + (long)n * k);
                CheckPacked(level, a, bs, m, n, k, batch, 0, (long)n * k, strideC, $"shared A batch={batch} m={m} n={n} k={k}");
            }
        });
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public unsafe void Packed_weights_dequant_is_bit_identical_to_the_unpacked_path(SimdLevel level)
    {
        Require(level);
        Seeded.Run((random, _) =>
        {
            foreach ((int m, int n, int k, int batch, bool shared) in new[] { (7, 17, 65, 1, false), (13, 33, 129, 3, false), (97, 47, 300, 2, true) })
            {
                long strideB = shared ? 0 : (long)n * k;
                long strideScale = shared ? 0 : n + 3;
                sbyte[] a = Seeded.Int8(random, batch * (long)m * k);
                sbyte[] b = Seeded.Int8(random, (batch - 1) * strideB + (long)n * k);
                float[] aScale = Seeded.Floats(random, batch * m, 1e-4f, 0.1f);
                float[] bScale = Seeded.Floats(random, (batch - 1) * strideScale + n, 1e-4f, 0.1f);
                float[] bias = Seeded.Floats(random, (batch - 1) * strideScale + n, -10f, 10f);
                var expected = new float[batch * m * n];
                var y = new float[batch * m * n];
                Int8GemmSimd.GemmDequant(a, b, aScale, bScale, bias, expected, m, n, k, batch, (long)m * k, strideB,
                    m, strideScale, (long)m * n, level);
                fixed (sbyte* pa = a)
                fixed (sbyte* pb = b)
                fixed (float* pas = aScale)
                fixed (float* pbs = bScale)
                fixed (float* pbias = bias)
                fixed (float* py = y)
                {
                    using PackedWeights packed = Int8GemmSimd.PackWeights(pb, n, k, batch, strideB, level);
                    var ep = SimdEpilogue.Dequant(py, (long)m * n, pas, m, pbs, pbias, strideScale);
                    Int8GemmSimd.Gemm(pa, packed, m, batch, (long)m * k, ep);
                }
                for (int i = 0; i < y.Length; i++)
                {
                    if (BitConverter.SingleToInt32Bits(y[i]) != BitConverter.SingleToInt32Bits(expected[i]))
                        Assert.Fail($"packed dequant m={m} n={n} k={k} batch={batch} [{level.ToName()}]: element {i} is {y[i]:R}, expected {expected[i]:R}");
                }
            }
        });
    }

    [Fact]
    public unsafe void Packed_weights_reject_mismatches_and_use_after_dispose()
    {
        const int m = 3, n = 5, k = 7;
        var a = new sbyte[2 * m * k];
        var b = new sbyte[2 * n * k];
        var c = new int[2 * m * n];
        fixed (sbyte* pbFixed = b)
        {
            nint pbAddress = (nint)pbFixed;
            sbyte* pb = (sbyte*)pbAddress;
            Assert.Throws<ArgumentNullException>(() => Int8GemmSimd.PackWeights(null, n, k, 1, 0, SimdLevel.Avx2));
            Assert.Throws<ArgumentOutOfRangeException>(() => Int8GemmSimd.PackWeights(pb, 0, k, 1, 0, SimdLevel.Avx2));
            Assert.Throws<ArgumentOutOfRangeException>(() => Int8GemmSimd.PackWeights(pb, n, Check.MaxK + 1, 1, 0, SimdLevel.Avx2));
            Assert.Throws<ArgumentOutOfRangeException>(() => Int8GemmSimd.PackWeights(pb, n, k, 0, 0, SimdLevel.Avx2));
            Assert.Throws<ArgumentOutOfRangeException>(() => Int8GemmSimd.PackWeights(pb, n, k, 2, -1, SimdLevel.Avx2));

            // Per-GEMM weights for a batch of 2 serve only a batch of 2.
            using (PackedWeights perBatch = Int8GemmSimd.PackWeights(pb, n, k, 2, (long)n * k, SimdLevel.Scalar))
            {
                Assert.False(perBatch.Shared);
                Assert.Throws<ArgumentException>(() => Int8GemmSimd.Gemm(a, perBatch, c, m, 1, (long)m * k, (long)m * n));
                Int8GemmSimd.Gemm(a, perBatch, c, m, 2, (long)m * k, (long)m * n);
            }
            // Shared weights serve any batch.
            using (PackedWeights shared = Int8GemmSimd.PackWeights(pb, n, k, 2, 0, SimdLevel.Scalar))
            {
                Assert.True(shared.Shared);
                Int8GemmSimd.Gemm(a, shared, c, m, 2, (long)m * k, (long)m * n);
                Int8GemmSimd.Gemm(a, shared, c, m, 1, 0, 0);
            }

            // A layout for one level is refused by a call at another.
            fixed (sbyte* paFixed = a)
            fixed (int* pc = c)
            {
                nint paAddress = (nint)paFixed;
                sbyte* pa = (sbyte*)paAddress;
                var ep = SimdEpilogue.Int32(pc, 0);
                using PackedWeights scalar = Int8GemmSimd.PackWeights(pb, n, k, 1, 0, SimdLevel.Scalar);
                Int8GemmSimd.Gemm(pa, scalar, m, 1, 0, ep, SimdLevel.Scalar);
                if (CpuSimd.Effective >= SimdLevel.Avx2)
                {
                    var ex = Assert.Throws<ArgumentException>(() => Int8GemmSimd.Gemm(pa, scalar, m, 1, 0, ep, SimdLevel.Avx2));
                    Assert.Equal("b", ex.ParamName);
                    using PackedWeights avx2 = Int8GemmSimd.PackWeights(pb, n, k, 1, 0, SimdLevel.Avx2);
                    Assert.Throws<ArgumentException>(() => Int8GemmSimd.Gemm(pa, avx2, m, 1, 0, ep, SimdLevel.Scalar));
                }
                Assert.Throws<ArgumentNullException>(() => Int8GemmSimd.Gemm(null, scalar, m, 1, 0, ep));
                Assert.Throws<ArgumentOutOfRangeException>(() => Int8GemmSimd.Gemm(pa, scalar, 0, 1, 0, ep));
                Assert.Throws<ArgumentNullException>(() => Int8GemmSimd.Gemm(pa, (PackedWeights)null!, m, 1, 0, ep));

                // Disposing frees the memory; later use is refused.
                PackedWeights disposed = Int8GemmSimd.PackWeights(pb, n, k, 1, 0, CpuSimd.Effective);
                Assert.True(disposed.Bytes >= (long)n * k);
                disposed.Dispose();
                Assert.True(disposed.IsDisposed);
                Assert.Equal(0, disposed.Bytes);
                Assert.Throws<ObjectDisposedException>(() => Int8GemmSimd.Gemm(pa, disposed, m, 1, 0, ep));
                disposed.Dispose();
            }
        }
    }

    [Fact]
    public void Levels_parse_and_invalid_caps_name_the_variable()
    {
        Assert.Equal(SimdLevel.Scalar, CpuSimd.Parse("scalar"));
        Assert.Equal(SimdLevel.Avx2, CpuSimd.Parse("AVX2"));
        Assert.Equal(SimdLevel.AvxVnni, CpuSimd.Parse("avx-vnni"));
        Assert.Equal(SimdLevel.Avx512Vnni, CpuSimd.Parse(" AVX512-VNNI"));
        Assert.Throws<ArgumentException>(() => CpuSimd.Parse("avx512"));
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
