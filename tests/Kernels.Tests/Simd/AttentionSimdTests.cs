using System.Runtime.Intrinsics;
using Kernels.Backends.Simd;

namespace Kernels.Tests.Simd;

/// <summary>
/// The SIMD CPU attention against the float64 reference. Tolerance: |error| ≤ 1e-4·|expected| + 2e-5.
/// Outputs are convex combinations of V rows in [−1, 1]; float32 scores carry ~D·2⁻²⁴ relative rounding
/// (a few 1e-6 in the logit even with q scaled by 30), the polynomial 2^x ~2e-7, and the accumulations
/// over ≤ 129 keys ~1e-6 — so 2e-5 absolute leaves a 5–10× margin yet catches any masking, rescaling or
/// indexing bug (those give errors of order 1e-2 and up).
/// </summary>
public class AttentionSimdTests
{
    private const double Rtol = 1e-4, Atol = 2e-5;

    /// <summary>The vector widths of the kernel (16: AVX-512, 8: AVX2, 1: scalar); wider ones skip where absent.</summary>
    public static TheoryData<int> Widths => new(16, 8, 1);

    private static void RequireWidth(int width)
    {
        if (width > AttentionSimd.DetectedWidth)
            Assert.Skip($"width {width}: this machine runs at most {AttentionSimd.DetectedWidth}");
    }

    private static unsafe float[] RunAt(int width, float[] q, float[] k, float[] v, AttentionShape shape,
        AttentionOptions options, int[]? lengths, int splits, bool parallel = false)
    {
        var output = new float[shape.QueryElements];
        Array.Fill(output, 12345f); // every element must be written
        float scale = options.Scale ?? 1f / MathF.Sqrt(shape.HeadDim);
        fixed (float* pq = q)
        fixed (float* pk = k)
        fixed (float* pv = v)
        fixed (float* po = output)
        fixed (int* pl = lengths)
        {
            AttentionSimd.Forward(pq, pk, pv, po, lengths is null ? null : pl, shape, scale, options.Window, splits, width, parallel);
        }
        return output;
    }

    private static (float[] Q, float[] K, float[] V) Inputs(Random random, AttentionShape shape, float qScale = 1)
    {
        float[] q = Seeded.Floats(random, shape.QueryElements, -qScale, qScale);
        float[] k = Seeded.Floats(random, shape.KeyElements, -1, 1);
        float[] v = Seeded.Floats(random, shape.KeyElements, -1, 1);
        return (q, k, v);
    }

    private static void Compare(int width, AttentionShape shape, AttentionOptions options, Random random, float qScale = 1,
        int[]? lengths = null, int splits = 1)
    {
        var (q, k, v) = Inputs(random, shape, qScale);
        double[] expected = HostReference.Attention(q, k, v, shape, options, lengths);
        float[] actual = RunAt(width, q, k, v, shape, options, lengths, splits);
        Expect.Close(expected, actual, Rtol, Atol, $"{shape} window {options.Window} splits {splits} width {width}");
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void RandomShapesMatchReference(int width)
    {
        RequireWidth(width);
        Seeded.Run((random, _) =>
        {
            int[] lengths = [1, 7, 33, 129];
            int[] dims = [1, 3, 16, 24, 64, 80, 128];
            for (int c = 0; c < 24; c++)
            {
                int sq = lengths[random.Next(lengths.Length)];
                int sk = random.Next(2) == 0 ? sq : lengths[random.Next(lengths.Length)];
                int kvh = random.Next(1, 3), group = random.Next(1, 4);
                var shape = new AttentionShape(random.Next(1, 3), kvh * group, kvh, sq, sk, dims[random.Next(dims.Length)], random.Next(2) == 0);
                int window = random.Next(3) == 0 ? random.Next(1, 40) : 0;
                Compare(width, shape, new AttentionOptions(Window: window), random);
            }
        });
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(64)]
    [InlineData(128)]
    [InlineData(256)]
    public void HeadDimsThroughSession(int d)
    {
        KernelSession session = Sessions.Get(Backend.CpuSimd);
        Seeded.Run((random, _) =>
        {
            foreach (bool causal in new[] { false, true })
            {
                foreach (var (sq, sk) in new[] { (33, 33), (7, 129), (129, 129) })
                {
                    var shape = new AttentionShape(1, 2, 1, sq, sk, d, causal);
                    var (q, k, v) = Inputs(random, shape);
                    Expect.Close(HostReference.Attention(q, k, v, shape), session.Attention(q, k, v, shape), Rtol, Atol, $"{shape}");
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void GqaAndMqa(int width)
    {
        RequireWidth(width);
        Seeded.Run((random, _) =>
        {
            foreach (int kvh in new[] { 2, 1 })
            {
                foreach (int sq in new[] { 1, 7, 33 })
                {
                    Compare(width, new AttentionShape(2, 8, kvh, sq, 129, 64, true), AttentionOptions.Default, random);
                    Compare(width, new AttentionShape(1, 8, kvh, sq, 33, 3, false), AttentionOptions.Default, random);
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void WindowsIncludingRowsWithNoVisibleKey(int width)
    {
        RequireWidth(width);
        Seeded.Run((random, _) =>
        {
            foreach (int window in new[] { 1, 5, 64, 200, int.MaxValue })
            {
                Compare(width, new AttentionShape(1, 2, 2, 129, 129, 64, true), new AttentionOptions(Window: window), random);
                Compare(width, new AttentionShape(1, 2, 2, 33, 129, 16, false), new AttentionOptions(Window: window), random);
            }
            // Causal with more queries than keys: the first rows see nothing → zeros.
            var shape = new AttentionShape(1, 2, 1, 129, 33, 64, true);
            var (q, k, v) = Inputs(random, shape);
            float[] actual = RunAt(width, q, k, v, shape, AttentionOptions.Default, null, 1);
            Expect.Close(HostReference.Attention(q, k, v, shape), actual, Rtol, Atol, "Sq > Sk causal");
            Assert.All(actual.AsSpan(0, (129 - 33) * 64).ToArray(), x => Assert.Equal(0f, x));
        });
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void LargeLogitsAreStable(int width)
    {
        RequireWidth(width);
        Seeded.Run((random, _) =>
        {
            Compare(width, new AttentionShape(1, 2, 1, 129, 129, 64, true), AttentionOptions.Default, random, qScale: 30);
            Compare(width, new AttentionShape(1, 2, 2, 33, 129, 128, false), AttentionOptions.Default, random, qScale: 30);
            Compare(width, new AttentionShape(1, 4, 1, 1, 129, 128, false), AttentionOptions.Default, random, qScale: 30, lengths: [100], splits: 3);
        });
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void NanPropagatesOnlyToItsRows(int width)
    {
        RequireWidth(width);
        Seeded.Run((random, _) =>
        {
            foreach (var shape in new[] { new AttentionShape(1, 2, 1, 33, 129, 64, true), new AttentionShape(1, 4, 1, 1, 129, 64, false) })
            {
                var (q, k, v) = Inputs(random, shape);
                int row = shape.QueryLength == 1 ? 2 : 17;
                q[row * shape.HeadDim + 5] = float.NaN;
                // A NaN in a V row no causal query before it may see must not leak into those rows.
                if (shape.Causal)
                    v[(shape.KeyLength - 1) * shape.HeadDim + 3] = float.NaN;
                double[] expected = HostReference.Attention(q, k, v, shape);
                foreach (int splits in new[] { 1, 2 })
                {
                    float[] actual = RunAt(width, q, k, v, shape, AttentionOptions.Default, null, splits);
                    for (int i = 0; i < expected.Length; i++)
                    {
                        if (double.IsNaN(expected[i]))
                            Assert.True(float.IsNaN(actual[i]), $"element {i}: expected NaN, got {actual[i]} ({shape}, splits {splits})");
                        else if (!(Math.Abs(actual[i] - expected[i]) <= Rtol * Math.Abs(expected[i]) + Atol))
                            Assert.Fail($"element {i} is {actual[i]}, expected {expected[i]} ({shape}, splits {splits})");
                    }
                    Assert.True(float.IsNaN(actual[row * shape.HeadDim]), "the NaN row");
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void RaggedDecodeAndSplitsMatch(int width)
    {
        RequireWidth(width);
        Seeded.Run((random, _) =>
        {
            foreach (var (h, kvh, sq, d) in new[] { (8, 8, 1, 128), (8, 2, 1, 64), (8, 1, 3, 3), (4, 2, 7, 64) })
            {
                var shape = new AttentionShape(4, h, kvh, sq, 300, d, true);
                int[] lengths = [0, 1, 300, random.Next(2, 300)];
                var (q, k, v) = Inputs(random, shape);
                double[] expected = HostReference.Attention(q, k, v, shape, AttentionOptions.Default, lengths);
                float[] unsplit = RunAt(width, q, k, v, shape, AttentionOptions.Default, lengths, 1);
                Expect.Close(expected, unsplit, Rtol, Atol, $"{shape} unsplit");
                for (int i = 0; i < h * sq * d; i++)
                    Assert.Equal(0f, unsplit[i]); // cache length 0 → zeros
                foreach (int splits in new[] { 2, 5 })
                {
                    float[] split = RunAt(width, q, k, v, shape, AttentionOptions.Default, lengths, splits, parallel: true);
                    Expect.Close(expected, split, Rtol, Atol, $"{shape} splits {splits}");
                    Expect.Close(Array.ConvertAll(unsplit, x => (double)x), split, 1e-5, 1e-6, $"{shape} splits {splits} vs unsplit");
                }
            }
        });
    }

    /// <summary>
    /// Q, K, V and the output flush against inaccessible pages (after them, then before them): no path reads
    /// or writes outside them, whatever the tile edges (key groups that run past the last key, ragged
    /// lengths, padded rows).
    /// </summary>
    [Theory]
    [MemberData(nameof(Widths))]
    public unsafe void StaysInsideItsBuffers(int width)
    {
        RequireWidth(width);
        Seeded.Run((random, _) =>
        {
            foreach (var (shape, lengths) in new (AttentionShape, int[]?)[]
            {
                (new AttentionShape(1, 2, 1, 129, 129, 64, false), null),  // lanes path, last tile of one key
                (new AttentionShape(2, 3, 1, 7, 61, 24, true), [61, 13]),  // lanes path, 21 rows, ragged
                (new AttentionShape(1, 4, 2, 50, 70, 3, false), null),     // lanes path, two blocks, d = 3
                (new AttentionShape(2, 4, 4, 1, 37, 80, true), [37, 5]),   // direct path (decode)
            })
            {
                var (q, k, v) = Inputs(random, shape);
                double[] expected = HostReference.Attention(q, k, v, shape, AttentionOptions.Default, lengths);
                foreach (bool atEnd in new[] { true, false })
                {
                    using var gq = GuardedBuffer.Of(q, atEnd);
                    using var gk = GuardedBuffer.Of(k, atEnd);
                    using var gv = GuardedBuffer.Of(v, atEnd);
                    using var go = GuardedBuffer.Of(new float[shape.QueryElements], atEnd);
                    fixed (int* pl = lengths)
                    {
                        AttentionSimd.Forward((float*)gq.Pointer, (float*)gk.Pointer, (float*)gv.Pointer, (float*)go.Pointer,
                            lengths is null ? null : pl, shape, 1f / MathF.Sqrt(shape.HeadDim), 0, 1, width, parallel: false);
                    }
                    float[] actual = new Span<float>(go.Pointer, (int)shape.QueryElements).ToArray();
                    Expect.Close(expected, actual, Rtol, Atol, $"{shape} {(atEnd ? "end" : "start")}-aligned width {width}");
                }
            }
        });
    }

    [Fact]
    public void DecodeThroughSession()
    {
        KernelSession session = Sessions.Get(Backend.CpuSimd);
        Seeded.Run((random, _) =>
        {
            var shape = new AttentionShape(3, 8, 2, 1, 1024, 128, true);
            int[] lengths = [1024, 0, 517];
            var (q, k, v) = Inputs(random, shape);
            double[] expected = HostReference.Attention(q, k, v, shape, AttentionOptions.Default, lengths);
            foreach (int splits in new[] { 0, 1, 2, 5 })
                Expect.Close(expected, session.AttentionDecode(q, k, v, lengths, shape, splits: splits), Rtol, Atol, $"splits {splits}");
            var windowed = new AttentionOptions(Scale: 0.05f, Window: 100);
            Expect.Close(HostReference.Attention(q, k, v, shape, windowed, lengths),
                session.AttentionDecode(q, k, v, lengths, shape, windowed, splits: 3), Rtol, Atol, "window 100, splits 3");
        });
    }

    [Fact]
    public void ParallelLargeCausalMatches()
    {
        KernelSession session = Sessions.Get(Backend.CpuSimd);
        Seeded.Run((random, _) =>
        {
            var shape = new AttentionShape(1, 4, 2, 257, 257, 64, true);
            var (q, k, v) = Inputs(random, shape);
            Expect.Close(HostReference.Attention(q, k, v, shape), session.Attention(q, k, v, shape), Rtol, Atol, $"{shape}");
        });
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void Exp2IsAccurate(int width)
    {
        RequireWidth(width);
        double worst = 0;
        for (float x = -125.9f; x <= 0; x += 0.0137f)
        {
            float e = width switch
            {
                16 => AttentionSimd.Exp2(Vector512.Create(x)).GetElement(0),
                8 => AttentionSimd.Exp2(Vector256.Create(x)).GetElement(0),
                _ => AttentionSimd.Exp2(x),
            };
            double exact = Math.Pow(2, x);
            worst = Math.Max(worst, Math.Abs(e - exact) / exact);
        }
        Assert.True(worst < 5e-7, $"relative error {worst}");
        Assert.Equal(0f, AttentionSimd.Exp2(float.NegativeInfinity));
        Assert.Equal(0f, AttentionSimd.Exp2(Vector256.Create(float.NegativeInfinity)).GetElement(0));
    }
}
