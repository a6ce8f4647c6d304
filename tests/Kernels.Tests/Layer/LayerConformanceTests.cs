using Kernels.Tests.Conformance;

namespace Kernels.Tests.Layer;

/// <summary>
/// The decoder's small ops on every conformance target (cpu-simd, cpu, cpu-warp4, opencl, cuda), through the
/// device API with NaN-poisoned outputs, against the float64 references of <see cref="HostReference"/>. Every
/// case draws fresh seeded inputs (the seed is in any failure message; replay with KERNELS_TEST_SEED).
/// </summary>
/// <remarks>
/// Acceptance rules (<see cref="LayerAccept"/>):
/// float outputs of RMSNorm and SwiGLU within 2⁻²⁰ relative (8 float32 ulps at the bottom of a binade: float32
/// sums of squares, e^x, and OpenCL's division that is allowed 2.5 ulps) plus 1e-37 absolute (subnormals may be
/// flushed; SwiGLU 2⁻¹⁰⁰, where e^−g overflows float32 for g &lt; −88 and silu(g) becomes −0); RoPE within 2⁻²³·(|a·cos| + |b·sin|) (two products and a difference, each rounded once, or an FMA);
/// add and the embedding within one rounding (2⁻²⁴ relative). Scales within 2⁻²⁰ relative, exactly 0 for an
/// all-zero row. int8 values equal to the float64 quantization, or 1 away only where the float64 quotient y/scale
/// lies within 2⁻¹⁹·max(|y/scale|, 1) of a .5 tie (the float32 quotient can land on the other side).
/// </remarks>
public sealed class LayerConformanceTests
{
    /// <summary>A row case: op (rmsnorm, swiglu, quantize; "+q": int8 output), rows, n (f for SwiGLU), heads, input magnitude.</summary>
    public sealed record RowCase(string Op, int Rows, int N, int Heads, string Values)
    {
        public bool Quantized => Op.EndsWith("+q", StringComparison.Ordinal) || Op == "quantize";

        public override string ToString() => $"{Op} {Rows}×{N}{(Heads > 1 ? $" heads {Heads}" : "")} {Values}";
    }

    public static readonly RowCase[] RowCases =
    [
        new("rmsnorm", 1, 1, 1, "normal"),
        new("rmsnorm", 3, 7, 1, "normal"),
        new("rmsnorm", 2, 127, 1, "huge"),
        new("rmsnorm", 2, 2051, 1, "tiny"),
        new("rmsnorm+q", 1, 1, 1, "normal"),
        new("rmsnorm+q", 5, 127, 1, "zero rows"),
        new("rmsnorm+q", 16, 2051, 1, "normal"),         // parallel rows on cpu-simd
        new("rmsnorm+q", 2, 4099, 1, "huge"),
        new("swiglu", 1, 1, 1, "normal"),
        new("swiglu", 3, 7, 1, "wide"),                   // |g| up to 100: e^−g overflows and underflows
        new("swiglu", 16, 2051, 1, "normal"),
        new("swiglu+q", 2, 127, 1, "zero rows"),
        new("swiglu+q", 3, 2053, 1, "wide"),
        new("swiglu+q", 1, 7, 1, "small"),          // products near 1e-18
        new("quantize", 1, 1, 1, "normal"),
        new("quantize", 4, 127, 1, "zero rows"),
        new("quantize", 3, 21, 3, "normal"),              // merge heads of 7
        new("quantize", 5, 2048, 16, "huge"),             // merge heads of 128
        new("quantize", 17, 2051, 1, "tiny"),
    ];

    public static TheoryData<string, int> Rows => Cases(RowCases.Length);

    [Theory]
    [MemberData(nameof(Rows))]
    public void RowOpMatchesTheReference(string target, int index)
    {
        RowCase c = RowCases[index];
        KernelSession session = ConformanceTests.Open(target);
        Seeded.Run((random, seed) =>
        {
            int rows = c.Rows, n = c.N;
            string what = $"{target} {c} (seed {seed})";
            float[] x = Inputs(random, (long)rows * (c.Op.StartsWith("swiglu", StringComparison.Ordinal) ? 2 * n : n), c.Values, rows);
            float[] weight = Seeded.Floats(random, n, -2, 2);
            const float Eps = 1e-5f;
            double[] expected = c.Op switch
            {
                "rmsnorm" or "rmsnorm+q" => HostReference.RmsNorm(x, weight, rows, n, Eps),
                "swiglu" or "swiglu+q" => HostReference.SwiGlu(x, rows, n),
                _ => HostReference.MergeHeads(x, rows, n, c.Heads),
            };
            using DeviceBuffer<float> dx = session.Upload<float>(x);
            using DeviceBuffer<float> dw = session.Upload<float>(weight);
            if (!c.Quantized)
            {
                using DeviceBuffer<float> dy = session.Upload<float>(ConformanceTests.Poisoned((long)rows * n + 5, float.NaN));
                if (c.Op == "rmsnorm")
                    session.RmsNorm(dx, dw, dy, rows, n, Eps);
                else
                    session.SwiGlu(dx, dy, rows, n);
                float[] y = dy.ToArray();
                LayerAccept.Floats(expected, y[..(rows * n)], c.Op == "swiglu" ? LayerAccept.SiluUnderflow : LayerAccept.Subnormal, what);
                LayerAccept.StillPoisoned(y, rows * n, what);
                return;
            }

            using DeviceBuffer<sbyte> dq = session.Upload<sbyte>(ConformanceTests.Poisoned<sbyte>((long)rows * n + 5, -128));
            using DeviceBuffer<float> ds = session.Upload<float>(ConformanceTests.Poisoned(rows + 3L, float.NaN));
            switch (c.Op)
            {
                case "rmsnorm+q":
                    session.RmsNormQuantize(dx, dw, dq, ds, rows, n, Eps);
                    break;
                case "swiglu+q":
                    session.SwiGluQuantize(dx, dq, ds, rows, n);
                    break;
                default:
                    session.QuantizeRows(dx, dq, ds, rows, n, c.Heads);
                    break;
            }
            sbyte[] q = dq.ToArray();
            float[] scale = ds.ToArray();
            LayerAccept.Quantized(HostReference.QuantizeRows(expected, rows, n), q[..(rows * n)], scale[..rows], what);
            Assert.All(q[(rows * n)..], v => Assert.True(v == -128, $"{what}: q written past the output"));
            LayerAccept.StillPoisoned(scale, rows, what);
        });
    }

    /// <summary>A RoPE case: the shape and the magnitude of qkv.</summary>
    public sealed record RopeCase(RopeShape Shape, string Values)
    {
        public override string ToString() => $"{Shape} {Values}";
    }

    public static readonly RopeCase[] RopeCases =
    [
        new(new RopeShape(1, 1, 1, 1, 2, 1, 0), "normal"),
        new(new RopeShape(1, 1, 4, 4, 64, 16, 5), "normal"),      // decode at position 5
        new(new RopeShape(2, 3, 8, 2, 128, 32, 7), "normal"),     // batch, GQA, prefill continuing at 7
        new(new RopeShape(1, 7, 3, 1, 6, 9, 2), "huge"),          // three pairs per head, multi-query
        new(new RopeShape(2, 5, 4, 2, 18, 12, 7), "normal"),      // 16 + 2 features; Start + Tokens = Capacity
        new(new RopeShape(1, 2, 2, 2, 256, 40, 31), "tiny"),      // widest head, far positions
    ];

    public static TheoryData<string, int> Rope => Cases(RopeCases.Length);

    [Theory]
    [MemberData(nameof(Rope))]
    public void RopeKvCacheMatchesTheReference(string target, int index)
    {
        RopeCase c = RopeCases[index];
        RopeShape s = c.Shape;
        KernelSession session = ConformanceTests.Open(target);
        Seeded.Run((random, seed) =>
        {
            string what = $"{target} {c} (seed {seed})";
            float[] qkv = Inputs(random, (long)s.QkvElements, c.Values, 1);
            int maxPositions = s.Start + s.Tokens + random.Next(0, 4);
            float[] table = RopeTable.Compute(maxPositions, s.HeadDim, 10000.0);
            float[] cache = ConformanceTests.Poisoned((long)s.CacheElements + 3, float.NaN);
            RopeReference expected = HostReference.RopeKvCache(qkv, table, cache.AsSpan(0, (int)s.CacheElements), cache.AsSpan(0, (int)s.CacheElements), s);
            using RopeTable rope = session.CreateRopeTable(maxPositions, s.HeadDim, 10000.0);
            Assert.Equal(table, rope.Buffer.ToArray());
            using DeviceBuffer<float> dqkv = session.Upload<float>(qkv);
            using DeviceBuffer<float> dq = session.Upload<float>(ConformanceTests.Poisoned((long)s.QueryElements + 3, float.NaN));
            using DeviceBuffer<float> dk = session.Upload<float>(cache);
            using DeviceBuffer<float> dv = session.Upload<float>(cache);
            session.RopeKvCache(dqkv, rope, dq, dk, dv, s);
            float[] q = dq.ToArray(), k = dk.ToArray(), v = dv.ToArray();
            LayerAccept.StillPoisoned(q, (int)s.QueryElements, what);
            LayerAccept.StillPoisoned(k, (int)s.CacheElements, what);
            LayerAccept.StillPoisoned(v, (int)s.CacheElements, what);
            double[] bound = RotationBounds(qkv, table, s, expected);
            LayerAccept.Rotated(expected.Q, q[..(int)s.QueryElements], bound, what + " q", 0);
            LayerAccept.Rotated(expected.KCache, k[..(int)s.CacheElements], bound, what + " kCache", 1);
            for (int i = 0; i < (int)s.CacheElements; i++)
            {
                // Untouched positions stay NaN (the reference keeps the poison); values are copied exactly.
                bool bothNaN = double.IsNaN(expected.VCache[i]) && float.IsNaN(v[i]);
                Assert.True(bothNaN || expected.VCache[i] == v[i], $"{what} vCache[{i}] = {v[i]}, expected {expected.VCache[i]}");
            }
        });
    }

    [Theory]
    [MemberData(nameof(Elementwise))]
    public void AddAndEmbedMatchTheReference(string target, int n)
    {
        KernelSession session = ConformanceTests.Open(target);
        Seeded.Run((random, seed) =>
        {
            string what = $"{target} n = {n} (seed {seed})";
            int rows = 1 + random.Next(0, 5);
            float[] x = Seeded.Floats(random, (long)rows * n, -1e3f, 1e3f);
            float[] y = Seeded.Floats(random, (long)rows * n, -1e-3f, 1e-3f);
            double[] sum = HostReference.Add(x, y);
            using DeviceBuffer<float> dx = session.Upload<float>([.. x, float.NaN, float.NaN]);
            using DeviceBuffer<float> dy = session.Upload<float>([.. y, 1f]);
            session.Add(dx, dy, x.Length);
            float[] got = dx.ToArray();
            Expect.Close(sum, got[..x.Length], Math.Pow(2, -24), 0, what + " add");
            LayerAccept.StillPoisoned(got, x.Length, what + " add");

            int vocab = 3 + random.Next(0, 40);
            sbyte[] table = Seeded.Int8(random, (long)vocab * n, -127, 127);
            float[] rowScale = Seeded.Floats(random, vocab, 1e-4f, 1f);
            rowScale[0] = 0;
            int[] tokens = [.. Enumerable.Range(0, rows + 2).Select(i => i == 0 ? vocab - 1 : random.Next(0, vocab))];
            using DeviceBuffer<sbyte> dt = session.Upload<sbyte>(table);
            using DeviceBuffer<float> ds = session.Upload<float>(rowScale);
            using DeviceBuffer<float> de = session.Upload<float>(ConformanceTests.Poisoned((long)tokens.Length * n + 2, float.NaN));
            session.EmbedInt8(dt, ds, tokens, de, vocab, n);
            float[] e = de.ToArray();
            Expect.Close(HostReference.EmbedInt8(table, rowScale, tokens, n), e[..(tokens.Length * n)], Math.Pow(2, -24), 0, what + " embed");
            LayerAccept.StillPoisoned(e, tokens.Length * n, what + " embed");
        });
    }

    public static TheoryData<string, int> Elementwise
    {
        get
        {
            var data = new TheoryData<string, int>();
            foreach (string target in ConformanceTests.Targets)
            {
                foreach (int n in new[] { 1, 7, 127, 2051 })
                    data.Add(target, n);
            }
            return data;
        }
    }

    // --------------------------------------------------------------------------------------- helpers

    private static TheoryData<string, int> Cases(int count)
    {
        var data = new TheoryData<string, int>();
        foreach (string target in ConformanceTests.Targets)
        {
            for (int i = 0; i < count; i++)
                data.Add(target, i);
        }
        return data;
    }

    /// <summary>
    /// Inputs of a magnitude: normal (±4), wide (±100), huge (±1e15), tiny (±1e-18), small (±1e-9), or zero rows
    /// (every other row of <paramref name="rows"/> all zero, the rest normal).
    /// </summary>
    private static float[] Inputs(Random random, long length, string values, int rows)
    {
        float range = values switch { "wide" => 100f, "huge" => 1e15f, "tiny" => 1e-18f, "small" => 1e-9f, _ => 4f };
        float[] x = Seeded.Floats(random, length, -range, range);
        if (values == "zero rows")
        {
            long width = length / rows;
            for (int r = 0; r < rows; r += 2)
                Array.Clear(x, (int)(r * width), (int)width);
        }
        return x;
    }

    /// <summary>Per output element of q (index 0) and kCache (index 1) of the RoPE: 2⁻²³·(|a·cos| + |b·sin|); 0 elsewhere.</summary>
    private static double[] RotationBounds(float[] qkv, float[] table, RopeShape s, RopeReference expected)
    {
        _ = expected;
        int slots = s.Heads + 2 * s.KvHeads, d = s.HeadDim;
        var bound = new double[2 * Math.Max((int)s.QueryElements, (int)s.CacheElements)];
        int offset = bound.Length / 2;
        for (int b = 0; b < s.Batch; b++)
        {
            for (int t = 0; t < s.Tokens; t++)
            {
                int p = s.Start + t;
                for (int h = 0; h < s.Heads + s.KvHeads; h++)
                {
                    for (int i = 0; i < d / 2; i++)
                    {
                        double a = qkv[((b * s.Tokens + t) * slots + h) * d + 2 * i], c = qkv[((b * s.Tokens + t) * slots + h) * d + 2 * i + 1];
                        double cos = table[(p * (d / 2) + i) * 2], sin = table[(p * (d / 2) + i) * 2 + 1];
                        double e0 = Math.Pow(2, -23) * (Math.Abs(a * cos) + Math.Abs(c * sin));
                        double e1 = Math.Pow(2, -23) * (Math.Abs(a * sin) + Math.Abs(c * cos));
                        int at = h < s.Heads
                            ? ((b * s.Heads + h) * s.Tokens + t) * d + 2 * i
                            : offset + ((b * s.KvHeads + h - s.Heads) * s.Capacity + p) * d + 2 * i;
                        bound[at] = e0;
                        bound[at + 1] = e1;
                    }
                }
            }
        }
        return bound;
    }
}

/// <summary>The acceptance rules of the layer ops (stated on <see cref="LayerConformanceTests"/>).</summary>
internal static class LayerAccept
{
    /// <summary>Relative tolerance of RMSNorm and SwiGLU floats and of the scales: 2⁻²⁰.</summary>
    public static readonly double FloatRelative = Math.Pow(2, -20);

    /// <summary>Absolute slack for values the device may flush to zero (float32 subnormals are below 1.2e-38).</summary>
    public const double Subnormal = 1e-37;

    /// <summary>How near a .5 tie (relative to max(|y/scale|, 1)) the float64 quotient must be for q to be 1 off.</summary>
    public static readonly double TieWindow = Math.Pow(2, -19);

    /// <summary>
    /// Absolute slack of SwiGLU: for g &lt; −88 float32's e^−g overflows and silu(g)·u comes out as −0 (as
    /// PyTorch's float32 silu), where the float64 value is |g·e^g·u| &lt; 1e-35; 2⁻¹⁰⁰ ≈ 7.9e-31.
    /// </summary>
    public static readonly double SiluUnderflow = Math.Pow(2, -100);

    public static void Floats(double[] expected, float[] actual, double absolute, string what) =>
        Expect.Close(expected, actual, FloatRelative, absolute, what);

    public static void Quantized(QuantizedReference expected, sbyte[] q, float[] scale, string what)
    {
        int rows = scale.Length, n = q.Length / rows;
        for (int r = 0; r < rows; r++)
        {
            double s = expected.Scales[r];
            if (s == 0)
                Assert.True(scale[r] == 0, $"{what}: row {r} is all zero, scale {scale[r]}, expected 0");
            else
                Assert.True(Math.Abs(scale[r] - s) <= FloatRelative * s, $"{what}: scale[{r}] = {scale[r]}, expected {s}");
        }
        int offTie = 0;
        for (int i = 0; i < q.Length; i++)
        {
            int want = expected.Values[i];
            if (q[i] == want)
                continue;
            double t = expected.Quotients[i];
            double tie = Math.Abs(Math.Abs(t - Math.Floor(t)) - 0.5);
            Assert.True(Math.Abs(q[i] - want) == 1 && tie <= TieWindow * Math.Max(Math.Abs(t), 1),
                $"{what}: q[{i / n}, {i % n}] = {q[i]}, expected {want} (float64 quotient {t:R}, {tie:E2} from a tie)");
            offTie++;
        }
        Assert.True(offTie <= Math.Max(2, q.Length / 1000), $"{what}: {offTie} values one off at ties, more than expected");
    }

    /// <summary>|actual − expected| ≤ the element's bound (index 0: its own, 1: in the second half of <paramref name="bound"/>); NaN where the reference kept the poison.</summary>
    public static void Rotated(double[] expected, float[] actual, double[] bound, string what, int half)
    {
        int offset = half * (bound.Length / 2);
        for (int i = 0; i < expected.Length; i++)
        {
            if (double.IsNaN(expected[i]))
            {
                Assert.True(float.IsNaN(actual[i]), $"{what}[{i}] = {actual[i]}: written, expected untouched");
                continue;
            }
            double err = Math.Abs(actual[i] - expected[i]);
            Assert.True(err <= bound[offset + i], $"{what}[{i}] = {actual[i]}, expected {expected[i]} (error {err:E2}, bound {bound[offset + i]:E2})");
        }
    }

    /// <summary>Everything from <paramref name="from"/> on is still NaN.</summary>
    public static void StillPoisoned(float[] values, int from, string what)
    {
        for (int i = from; i < values.Length; i++)
            Assert.True(float.IsNaN(values[i]), $"{what}: element {i} past the output was written");
    }
}
