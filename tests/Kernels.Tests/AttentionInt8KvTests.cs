using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.OpenCL;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using Kernels.DeviceCode;

namespace Kernels.Tests;

/// <summary>
/// Decode attention over an int8 KV cache against the float64 reference on the dequantized cache
/// (<see cref="KvCacheQuantization.Dequantize"/>, then <see cref="HostReference.Attention"/> with the cache
/// lengths). Tolerance 1e-4 relative + 1e-4 absolute, as the float attention tests: the dequantized values
/// are exactly representable products, so only the kernels' float32 rounding (~1e-6) remains.
/// </summary>
public sealed class AttentionInt8KvTests
{
    private const double Tolerance = 1e-4;

    private sealed record Cache(float[] Q, sbyte[] K, float[] KScale, sbyte[] V, float[] VScale, float[] KFloat, float[] VFloat);

    private static Cache Make(Random random, AttentionShape shape)
    {
        float[] q = Seeded.Floats(random, shape.QueryElements, -1, 1);
        var (k, ks) = KvCacheQuantization.Quantize(Seeded.Floats(random, shape.KeyElements, -1, 1),
            shape.Batch, shape.KvHeads, shape.KeyLength, shape.HeadDim);
        var (v, vs) = KvCacheQuantization.Quantize(Seeded.Floats(random, shape.KeyElements, -1, 1),
            shape.Batch, shape.KvHeads, shape.KeyLength, shape.HeadDim);
        return new Cache(q, k, ks, v, vs,
            KvCacheQuantization.Dequantize(k, ks, shape.HeadDim), KvCacheQuantization.Dequantize(v, vs, shape.HeadDim));
    }

    private static void Compare(KernelSession session, Random random, AttentionShape shape, AttentionOptions options,
        int[] lengths, int splits)
    {
        Cache c = Make(random, shape);
        double[] expected = HostReference.Attention(c.Q, c.KFloat, c.VFloat, shape, options, lengths);
        float[] actual = session.AttentionDecodeInt8Kv(c.Q, c.K, c.KScale, c.V, c.VScale, lengths, shape, options, splits);
        Expect.Close(expected, actual, Tolerance, Tolerance,
            $"{session.Backend.ToName()} {shape} window {options.Window} lengths [{string.Join(",", lengths)}] splits {splits}");
    }

    [Theory]
    [MemberData(nameof(Sessions.Backends), MemberType = typeof(Sessions))]
    public void Decode_MatchesReferenceOnDequantizedCache(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        Seeded.Run((random, _) =>
        {
            // GQA (8 heads on 2 kv heads), ragged lengths including 0 and the capacity, one and three splits.
            var shape = new AttentionShape(4, 8, 2, 1, 70, 40, Causal: false);
            int[] lengths = [0, 70, 1, 37];
            foreach (int splits in new[] { 1, 3 })
            {
                Compare(session, random, shape, AttentionOptions.Default, lengths, splits);
                Compare(session, random, shape with { Causal = true }, AttentionOptions.Default, lengths, splits);
            }
            // Multi-query, several queries per step, causal with a window; head dim not a multiple of 8.
            var mq = new AttentionShape(2, 4, 1, 3, 33, 13, Causal: true);
            foreach (int splits in new[] { 1, 3 })
            {
                Compare(session, random, mq, new AttentionOptions(Window: 5), [33, 20], splits);
                Compare(session, random, mq with { Causal = false }, new AttentionOptions(Scale: 0.7f, Window: 4), [2, 33], splits);
            }
            // Automatic splits on a longer cache.
            Compare(session, random, new AttentionShape(1, 2, 2, 1, 600, 64, Causal: true), AttentionOptions.Default, [600], 0);
        });
    }

    [Theory]
    [MemberData(nameof(Sessions.Backends), MemberType = typeof(Sessions))]
    public void Decode_EmptyCacheAndAllZeroTokens_GiveZeros(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        var shape = new AttentionShape(2, 2, 1, 1, 4, 8, Causal: true);
        float[] q = Enumerable.Repeat(0.5f, (int)shape.QueryElements).ToArray();
        var k = new sbyte[shape.KeyElements];
        var ks = new float[8];
        var v = new sbyte[shape.KeyElements];
        var vs = new float[8];
        float[] actual = session.AttentionDecodeInt8Kv(q, k, ks, v, vs, [0, 4], shape, splits: 2);
        Assert.All(actual, x => Assert.Equal(0f, x));
    }

    [Fact]
    public void Quantize_RoundTripsWithinHalfAScale()
    {
        Seeded.Run((random, _) =>
        {
            const int b = 2, kvh = 3, cap = 5, d = 17;
            float[] x = Seeded.Floats(random, b * kvh * cap * d, -3, 3);
            x.AsSpan(d * 4, d).Clear(); // one all-zero token
            var (values, scales) = KvCacheQuantization.Quantize(x, b, kvh, cap, d);
            Assert.Equal(0f, scales[4]);
            for (int t = 0; t < b * kvh * cap; t++)
            {
                float max = 0;
                for (int i = 0; i < d; i++)
                    max = Math.Max(max, Math.Abs(x[t * d + i]));
                Assert.Equal(max / 127f, scales[t]);
                for (int i = 0; i < d; i++)
                {
                    int idx = t * d + i;
                    Assert.InRange(values[idx], (sbyte)-127, (sbyte)127);
                    Assert.True(Math.Abs(values[idx] * scales[t] - x[idx]) <= scales[t] / 2 * (1 + 1e-5),
                        $"token {t} element {i}: {values[idx]}·{scales[t]} vs {x[idx]}");
                }
            }
        });
    }

    [Fact]
    public void Quantize_RoundsHalfToEven()
    {
        // max 127 → scale 1: 2.5 → 2, 3.5 → 4, −2.5 → −2.
        var (values, scales) = KvCacheQuantization.Quantize([127f, 2.5f, 3.5f, -2.5f], 1, 1, 1, 4);
        Assert.Equal(1f, scales[0]);
        Assert.Equal(new sbyte[] { 127, 2, 4, -2 }, values);
    }

    [Theory]
    [MemberData(nameof(Sessions.Backends), MemberType = typeof(Sessions))]
    public void Decode_RejectsBadArguments(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        var shape = new AttentionShape(2, 2, 1, 1, 4, 8, Causal: true);
        var q = new float[shape.QueryElements];
        var k = new sbyte[shape.KeyElements];
        var v = new sbyte[shape.KeyElements];
        var s = new float[8];
        int[] lengths = [1, 4];

        var e = Assert.Throws<ArgumentException>(() => session.AttentionDecodeInt8Kv(q, k, new float[7], v, s, lengths, shape));
        Assert.Equal("kScale", e.ParamName);
        Assert.Contains("8", e.Message, StringComparison.Ordinal);
        Assert.Contains("7", e.Message, StringComparison.Ordinal);

        float[] bad = new float[8];
        bad[3] = float.NaN;
        e = Assert.Throws<ArgumentException>(() => session.AttentionDecodeInt8Kv(q, k, s, v, bad, lengths, shape));
        Assert.Equal("vScale", e.ParamName);
        Assert.Contains("NaN", e.Message, StringComparison.Ordinal);
        bad[3] = -1f;
        e = Assert.Throws<ArgumentException>(() => session.AttentionDecodeInt8Kv(q, k, bad, v, s, lengths, shape));
        Assert.Equal("kScale", e.ParamName);
        Assert.Contains("-1", e.Message, StringComparison.Ordinal);
        bad[3] = float.PositiveInfinity;
        Assert.Throws<ArgumentException>(() => session.AttentionDecodeInt8Kv(q, k, bad, v, s, lengths, shape));

        e = Assert.Throws<ArgumentException>(() => session.AttentionDecodeInt8Kv(q, new sbyte[3], s, v, s, lengths, shape));
        Assert.Equal("k", e.ParamName);
        var r = Assert.Throws<ArgumentOutOfRangeException>(() => session.AttentionDecodeInt8Kv(q, k, s, v, s, [1, 5], shape));
        Assert.Equal("cacheLengths", r.ParamName);
        r = Assert.Throws<ArgumentOutOfRangeException>(() => session.AttentionDecodeInt8Kv(q, k, s, v, s, [-1, 0], shape));
        Assert.Equal("cacheLengths", r.ParamName);
        Assert.Throws<ArgumentException>(() => session.AttentionDecodeInt8Kv(q, k, s, v, s, [1], shape));
        Assert.Throws<ArgumentOutOfRangeException>(() => session.AttentionDecodeInt8Kv(q, k, s, v, s, lengths, shape, splits: -1));
    }

    [Fact]
    public void Quantize_RejectsBadArguments()
    {
        var e = Assert.Throws<ArgumentException>(() => KvCacheQuantization.Quantize(new float[5], 1, 1, 1, 4));
        Assert.Equal("x", e.ParamName);
        Assert.Throws<ArgumentException>(() => KvCacheQuantization.Quantize([1f, float.NaN], 1, 1, 1, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => KvCacheQuantization.Quantize([1f], 1, 0, 1, 1));
    }

    [Fact]
    public void ForwardKernel_CompilesToPtxForSm90AndOpenCLC()
    {
        using var context = Context.Create(b => b.CPU().Optimize(OptimizationLevel.O2));
        var entry = EntryPointDescription.FromExplicitlyGroupedKernel(
            typeof(AttentionKernels).GetMethod(nameof(AttentionKernels.Forward))!.MakeGenericMethod(typeof(Int8KvAttentionIo)));
        using (var ptx = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90),
            CudaArchitecture.SM_90, CudaInstructionSet.ISA_78, null))
        {
            var compiled = (PTXCompiledKernel)ptx.Compile(entry, KernelSpecialization.Empty);
            Assert.Contains(".entry", compiled.PTXAssembly, StringComparison.Ordinal);
            Assert.Contains("bar.sync", compiled.PTXAssembly, StringComparison.Ordinal);
        }
        using var cl = new CLBackend(context, new CLCapabilityContext(false, false, false, false, true), CLDeviceVendor.Other, CLCVersion.CL20);
        var source = ((CLCompiledKernel)cl.Compile(entry, KernelSpecialization.Empty)).Source;
        Assert.Contains("kernel", source, StringComparison.Ordinal);
        Assert.Contains("barrier", source, StringComparison.Ordinal);
    }
}
