using Kernels.Peers;

namespace Kernels.Tests.Peers;

/// <summary>
/// ONNX Runtime as a peer (NuGet, so it must load wherever the tests run: a load failure fails with the
/// reason, it does not skip): its u8s8 int8 GEMM is bit-identical to the int64 reference, its attention
/// within float32 rounding of the float64 reference.
/// </summary>
public sealed class OnnxRuntimePeerTests
{
    /// <summary>Largest absolute error accepted against the float64 reference (inputs in [-1, 1]; measured ~1e-7).</summary>
    private const double AttentionTolerance = 1e-6;

    private static void RequireOrt()
    {
        Assert.True(OnnxRuntimePeer.IsAvailable(out string reason), $"ONNX Runtime does not load: {reason}");
        Assert.False(string.IsNullOrEmpty(OnnxRuntimePeer.Version));
    }

    [Fact]
    public void GemmIsBitIdenticalToTheInt64ReferenceForEveryMOnOneSession()
    {
        RequireOrt();
        Seeded.Run((random, seed) =>
        {
            TestContext.Current.TestOutputHelper?.WriteLine($"seed {seed}");
            foreach ((int n, int k) in new[] { (1, 1), (45, 77), (33, 129), (17, 1031) })
            {
                sbyte[] b = Seeded.Int8(random, (long)n * k);
                using var gemm = new OrtInt8Gemm(b, n, k);
                foreach (int m in new[] { 1, 2, 7, 8, 33 })
                {
                    sbyte[] a = Seeded.Int8(random, (long)m * k);
                    var c = new int[m * n];
                    gemm.Run(a, c, m);
                    Expect.Equal(HostReference.Int8Gemm(a, b, m, n, k), c, $"m={m} n={n} k={k}");
                }
            }
        });
    }

    [Theory]
    [InlineData(-128, -128)]
    [InlineData(127, 127)]
    [InlineData(-128, 127)]
    [InlineData(127, -128)]
    public void GemmIsExactAtTheExtremes(int av, int bv)
    {
        RequireOrt();
        // Constant operands at k = 4099: the shifted product (A+128)·B reaches 255·128·k before the
        // zero point's correction; a mixed row checks the correction per column.
        const int m = 3, n = 5, k = 4099;
        var a = new sbyte[m * k];
        var b = new sbyte[n * k];
        Array.Fill(a, (sbyte)av);
        Array.Fill(b, (sbyte)bv);
        for (int x = 0; x < k; x++)
        {
            a[k + x] = (sbyte)(x % 2 == 0 ? -128 : 127);
            b[2 * k + x] = (sbyte)(x % 3 == 0 ? 127 : -128);
        }
        using var gemm = new OrtInt8Gemm(b, n, k);
        var c = new int[m * n];
        gemm.Run(a, c, m);
        Expect.Equal(HostReference.Int8Gemm(a, b, m, n, k), c, $"A {av}, B {bv}");
    }

    [Fact]
    public void GemmMatchesTheSimdKernelAtADecodeShape()
    {
        RequireOrt();
        Seeded.Run((random, seed) =>
        {
            TestContext.Current.TestOutputHelper?.WriteLine($"seed {seed}");
            const int n = 515, k = 1027;
            sbyte[] b = Seeded.Int8(random, (long)n * k);
            using var gemm = new OrtInt8Gemm(b, n, k);
            KernelSession session = Sessions.Get(Backend.CpuSimd);
            foreach (int m in new[] { 1, 8 })
            {
                sbyte[] a = Seeded.Int8(random, (long)m * k);
                var ort = new int[m * n];
                gemm.Run(a, ort, m);
                int[] ours = session.Int8Gemm(a, b, m, n, k);
                Assert.Equal(ours, ort);
            }
        });
    }

    [Fact]
    public void GemmRejectsShortBuffers()
    {
        RequireOrt();
        using var gemm = new OrtInt8Gemm(new sbyte[6], n: 2, k: 3);
        Assert.Throws<ArgumentException>(() => gemm.Run(new sbyte[5], new int[4], m: 2));
        Assert.Throws<ArgumentException>(() => gemm.Run(new sbyte[6], new int[3], m: 2));
        Assert.Throws<ArgumentException>(() => new OrtInt8Gemm(new sbyte[5], n: 2, k: 3));
    }

    [Theory]
    [InlineData(2, 3, 37, 37, 24, false)]
    [InlineData(2, 3, 37, 37, 24, true)]
    [InlineData(1, 5, 21, 50, 40, false)]
    [InlineData(1, 2, 129, 129, 64, true)]
    [InlineData(1, 2, 129, 129, 128, false)]
    public void AttentionIsWithinFloatRoundingOfTheFloat64Reference(int batch, int heads, int seq, int kvSeq, int headDim, bool causal)
    {
        RequireOrt();
        Seeded.Run((random, seed) =>
        {
            TestContext.Current.TestOutputHelper?.WriteLine($"seed {seed}");
            var shape = new AttentionShape(batch, heads, heads, seq, kvSeq, headDim, causal);
            float[] q = Seeded.Floats(random, shape.QueryElements, -1, 1);
            float[] k = Seeded.Floats(random, shape.KeyElements, -1, 1);
            float[] v = Seeded.Floats(random, shape.KeyElements, -1, 1);
            using var attention = new OrtAttention(batch, heads, seq, kvSeq, headDim, causal);
            var output = new float[attention.QueryElements];
            attention.Run(
                OrtAttention.ToSequenceMajor(q, batch, heads, seq, headDim),
                OrtAttention.ToSequenceMajor(k, batch, heads, kvSeq, headDim),
                OrtAttention.ToSequenceMajor(v, batch, heads, kvSeq, headDim),
                output);
            float[] headMajor = OrtAttention.FromSequenceMajor(output, batch, heads, seq, headDim);
            double[] expected = HostReference.Attention(q, k, v, shape);
            double worst = 0;
            for (int i = 0; i < expected.Length; i++)
                worst = Math.Max(worst, double.IsNaN(headMajor[i]) ? double.PositiveInfinity : Math.Abs(expected[i] - headMajor[i]));
            TestContext.Current.TestOutputHelper?.WriteLine($"max error {worst:G3}");
            Assert.True(worst <= AttentionTolerance, $"max error {worst:G3} > {AttentionTolerance} against the float64 reference");
        });
    }

    [Fact]
    public void LayoutConversionsRoundTrip()
    {
        float[] x = Enumerable.Range(0, 2 * 3 * 5 * 4).Select(i => (float)i).ToArray();
        float[] s = OrtAttention.ToSequenceMajor(x, 2, 3, 5, 4);
        // [b=1, h=2, s=3, d=1] in head-major is at ((1·3+2)·5+3)·4+1; sequence-major ((1·5+3)·3+2)·4+1.
        Assert.Equal(x[((1 * 3 + 2) * 5 + 3) * 4 + 1], s[((1 * 5 + 3) * 3 + 2) * 4 + 1]);
        Assert.Equal(x, OrtAttention.FromSequenceMajor(s, 2, 3, 5, 4));
    }

    [Fact]
    public void CausalAttentionNeedsEqualLengths()
    {
        RequireOrt();
        Assert.Throws<ArgumentException>(() => new OrtAttention(1, 1, 4, 5, 8, causal: true));
    }
}
